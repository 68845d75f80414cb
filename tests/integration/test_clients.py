"""Off-the-shelf clients against `onnx-lambda serve`: tritonclient.http and the official openai client.

They run unchanged: only the URL and the bearer token are ours.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import openai
import pytest
import tritonclient.http as triton
from tokenizers import Tokenizer

from tests.servers import LocalService

EMBEDDER = "all-minilm-l6-v2"
TABULAR = "breast-cancer-classifier"
TEXTS = ["Serverless inference on AWS Lambda", "第二个句子", "emoji 🚀 and numbers 42", " "]  # OpenAI refuses ""


def direct_embeddings(models_dir: Path, texts: list[str]) -> np.ndarray:
    """The reference: onnxruntime and tokenizers with nothing of ours in between."""
    tokenizer = Tokenizer.from_file(str(models_dir / EMBEDDER / "tokenizer.json"))
    tokenizer.enable_truncation(256)
    tokenizer.enable_padding()
    encodings = tokenizer.encode_batch(texts)
    session = ort.InferenceSession(str(models_dir / EMBEDDER / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }
    vectors: np.ndarray = np.asarray(session.run(["sentence_embedding"], feeds)[0])
    return vectors


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    similarity: np.ndarray = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return similarity


@pytest.fixture
def openai_client(local_service: LocalService) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{local_service.url}/v1", api_key=local_service.token, max_retries=0)


@pytest.fixture
def triton_client(local_service: LocalService) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=local_service.url.removeprefix("http://"))


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
def test_openai_embeddings_match_direct_onnxruntime(
    openai_client: openai.OpenAI, models_dir: Path, encoding_format: str
) -> None:
    reference = direct_embeddings(models_dir, TEXTS)
    result = openai_client.embeddings.create(model=EMBEDDER, input=TEXTS, encoding_format=encoding_format)  # type: ignore[arg-type]
    # Asked for base64 explicitly, the client hands back the strings; asked for nothing, it asks for base64
    # and decodes it itself (test_openai_single_string).
    got = np.asarray(
        [
            np.frombuffer(base64.b64decode(item.embedding), dtype="<f4")
            if isinstance(item.embedding, str)
            else item.embedding
            for item in sorted(result.data, key=lambda d: d.index)
        ],
        dtype=np.float32,
    )
    assert got.shape == reference.shape == (len(TEXTS), 384)
    assert cosine(got, reference).min() >= 0.9999
    assert result.model == EMBEDDER
    assert result.usage.prompt_tokens > len(TEXTS) * 2


def test_openai_single_string(openai_client: openai.OpenAI, models_dir: Path) -> None:
    result = openai_client.embeddings.create(model=EMBEDDER, input=TEXTS[0])
    assert len(result.data) == 1
    assert cosine(np.asarray([result.data[0].embedding]), direct_embeddings(models_dir, TEXTS[:1]))[0] >= 0.9999


def test_openai_unknown_model_is_a_404(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.embeddings.create(model="no-such-model", input="x")
    assert "no-such-model" in str(caught.value)


def test_openai_base64_is_little_endian_float32(local_service: LocalService, models_dir: Path) -> None:
    import httpx

    response = httpx.post(
        f"{local_service.url}/v1/embeddings",
        headers=local_service.headers(),
        json={"model": EMBEDDER, "input": TEXTS[0], "encoding_format": "base64"},
    )
    vector = np.frombuffer(base64.b64decode(response.json()["data"][0]["embedding"]), dtype="<f4")
    assert cosine(vector[None, :], direct_embeddings(models_dir, TEXTS[:1]))[0] >= 0.9999


@pytest.mark.parametrize("model", [EMBEDDER, TABULAR])
def test_triton_model_metadata(
    triton_client: triton.InferenceServerClient, local_service: LocalService, model: str
) -> None:
    metadata = triton_client.get_model_metadata(model, headers=local_service.headers())
    manifest = json.loads((Path("models") / model / "manifest.json").read_text())
    assert metadata["name"] == model
    assert [i["name"] for i in metadata["inputs"]] == [i["name"] for i in manifest["inputs"]]
    assert triton_client.is_model_ready(model, headers=local_service.headers())
    assert triton_client.is_server_ready()


@pytest.mark.parametrize("binary", [True, False])
def test_triton_infer_tabular(
    triton_client: triton.InferenceServerClient, local_service: LocalService, models_dir: Path, binary: bool
) -> None:
    from sklearn.datasets import load_breast_cancer

    rows = load_breast_cancer().data[:5].astype(np.float32)
    inputs = [triton.InferInput("features", list(rows.shape), "FP32")]
    inputs[0].set_data_from_numpy(rows, binary_data=binary)
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in ("label", "probabilities")]
    result = triton_client.infer(TABULAR, inputs, outputs=outputs, headers=local_service.headers(), request_id="r-1")
    session = ort.InferenceSession(str(models_dir / TABULAR / "model.onnx"), providers=["CPUExecutionProvider"])
    label, probabilities = session.run(["label", "probabilities"], {"features": rows})
    assert np.array_equal(result.as_numpy("label"), label)
    assert np.allclose(result.as_numpy("probabilities"), probabilities, atol=1e-6)
    assert result.get_response()["id"] == "r-1"


@pytest.mark.parametrize("binary", [True, False])
def test_triton_infer_embedder(
    triton_client: triton.InferenceServerClient, local_service: LocalService, models_dir: Path, binary: bool
) -> None:
    tokenizer = Tokenizer.from_file(str(models_dir / EMBEDDER / "tokenizer.json"))
    tokenizer.enable_padding()
    encodings = tokenizer.encode_batch(TEXTS[:2])
    arrays = {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }
    inputs = []
    for name, array in arrays.items():
        tensor = triton.InferInput(name, list(array.shape), "INT64")
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    result = triton_client.infer(EMBEDDER, inputs, headers=local_service.headers())
    got = result.as_numpy("sentence_embedding")
    assert cosine(got, direct_embeddings(models_dir, TEXTS[:2])).min() >= 0.9999


def test_triton_without_token_is_refused(triton_client: triton.InferenceServerClient) -> None:
    with pytest.raises(triton.InferenceServerException) as caught:
        triton_client.get_model_metadata(TABULAR)
    assert "401" in str(caught.value.status())


def test_triton_model_repository_index(
    triton_client: triton.InferenceServerClient, local_service: LocalService
) -> None:
    """Issue 11, finding 6: `GET /v2` lists model_repository, and tritonclient's index call got a 404."""
    headers = local_service.headers()
    assert "model_repository" in triton_client.get_server_metadata(headers=headers)["extensions"]
    index = triton_client.get_model_repository_index(headers=headers)
    served = [
        card.id for card in openai.OpenAI(base_url=f"{local_service.url}/v1", api_key=local_service.token).models.list()
    ]
    assert sorted(entry["name"] for entry in index) == sorted(served)
    for entry in index:
        assert entry == {"name": entry["name"], "version": "1", "state": "READY"}
        assert triton_client.is_model_ready(entry["name"], entry["version"], headers=headers)
    with pytest.raises(triton.InferenceServerException) as caught:
        triton_client.get_model_repository_index()
    assert "401" in str(caught.value.status())
