"""OpenAI's embeddings API, all of it the official ``openai`` client can send, against `onnx-lambda serve`.

Token-id arrays, ``user``, ``dimensions`` (refused, or Matryoshka sizes a manifest declares), empty and
too-long inputs and OpenAI's limits, each answered as OpenAI answers: a vector that matches raw
onnxruntime + tokenizers, or a 400 whose error object names the field (``param``). The Lambda handler's
direct path and FastAPI (through Mangum) must give byte-identical answers to the same events.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort
import openai
import orjson
import pytest
from tokenizers import Tokenizer

from onnx_lambda_tools.invoke import LambdaContext
from onnx_lambda_tools.local.events import build_event
from tests.conftest import Handler
from tests.servers import LocalService, running_serve

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EMBEDDER = "all-minilm-l6-v2"
TABULAR = "breast-cancer-classifier"
TEXTS = ["Serverless inference on AWS Lambda", "第二个句子", "emoji 🚀 and numbers 42, then a few more words"]
CLAIMS = {"sub": "caller", "client_id": "app", "token_use": "access", "scope": "inference/invoke"}
MATRYOSHKA = [64, 128, 256]
PERSON = "jane.doe+embeddings@example.com"


# --- the reference: onnxruntime and tokenizers, nothing of ours ------------------------------------


@pytest.fixture(scope="module")
def tokenizer(models_dir: Path) -> Tokenizer:
    """The published tokenizer.json as the library reads it, counting every token (no truncation, no padding)."""
    loaded = Tokenizer.from_file(str(models_dir / EMBEDDER / "tokenizer.json"))
    loaded.no_truncation()
    loaded.no_padding()
    return loaded


@pytest.fixture(scope="module")
def session(models_dir: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(models_dir / EMBEDDER / "model.onnx"), providers=["CPUExecutionProvider"])


def raw_vectors(session: ort.InferenceSession, rows: list[list[int]]) -> np.ndarray:
    """The model run on exactly these ids, as one batch padded as tokenizer.json pads (id 0, mask 0).

    One batch, because the int8 model's dynamic quantization scales each batch as a whole: a row's vector
    depends, slightly, on its batch.
    """
    width = max(len(row) for row in rows)
    ids = np.array([row + [0] * (width - len(row)) for row in rows], dtype=np.int64)
    mask = np.array([[1] * len(row) + [0] * (width - len(row)) for row in rows], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    return np.asarray(session.run(["sentence_embedding"], feeds)[0], dtype=np.float32)


def vectors_of(response: openai.types.CreateEmbeddingResponse) -> np.ndarray:
    """The client's answer as float32 rows in input order (it asks for base64 and decodes it unless told)."""
    rows = sorted(response.data, key=lambda item: item.index)
    return np.array(
        [
            np.frombuffer(base64.b64decode(r.embedding), "<f4") if isinstance(r.embedding, str) else r.embedding
            for r in rows
        ],
        dtype=np.float32,
    )


@pytest.fixture
def client(local_service: LocalService) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{local_service.url}/v1", api_key=local_service.token, max_retries=0)


# --- token-id arrays -------------------------------------------------------------------------------


def test_the_ids_of_a_text_embed_as_the_text_does(
    client: openai.OpenAI, tokenizer: Tokenizer, session: ort.InferenceSession
) -> None:
    """Ids are the exact sequence (OpenAI's rule): the tokenizer's own ids, [CLS]/[SEP] included, are the text."""
    ids = tokenizer.encode(TEXTS[0]).ids
    assert (ids[0], ids[-1]) == (101, 102)
    from_ids = client.embeddings.create(model=EMBEDDER, input=ids)
    from_text = client.embeddings.create(model=EMBEDDER, input=TEXTS[0])
    np.testing.assert_allclose(vectors_of(from_ids), vectors_of(from_text), atol=1e-6)
    np.testing.assert_allclose(vectors_of(from_ids), raw_vectors(session, [ids]), atol=1e-5)
    assert from_ids.usage.prompt_tokens == from_ids.usage.total_tokens == len(ids)
    assert from_text.usage.prompt_tokens == len(ids)


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
def test_a_batch_of_token_arrays_of_different_lengths(
    client: openai.OpenAI, tokenizer: Tokenizer, session: ort.InferenceSession, encoding_format: str
) -> None:
    rows = [tokenizer.encode(text).ids for text in TEXTS]
    assert len({len(row) for row in rows}) > 1, "the batch must be padded"
    response = client.embeddings.create(model=EMBEDDER, input=rows, encoding_format=encoding_format)  # type: ignore[arg-type]
    got = vectors_of(response)
    assert got.shape == (3, 384)
    np.testing.assert_allclose(got, raw_vectors(session, rows), atol=1e-5)
    assert response.usage.prompt_tokens == sum(len(row) for row in rows)


def test_ids_without_special_tokens_are_taken_as_sent(
    client: openai.OpenAI, tokenizer: Tokenizer, session: ort.InferenceSession
) -> None:
    bare = tokenizer.encode(TEXTS[0], add_special_tokens=False).ids
    got = vectors_of(client.embeddings.create(model=EMBEDDER, input=[bare]))
    np.testing.assert_allclose(got, raw_vectors(session, [bare]), atol=1e-5)
    framed = raw_vectors(session, [tokenizer.encode(TEXTS[0]).ids])
    assert not np.allclose(got, framed, atol=1e-3), "no [CLS]/[SEP] may be added to ids"


def test_the_first_and_last_ids_of_the_vocabulary(
    client: openai.OpenAI, tokenizer: Tokenizer, session: ort.InferenceSession
) -> None:
    row = [101, 0, tokenizer.get_vocab_size() - 1, 102]
    np.testing.assert_allclose(
        vectors_of(client.embeddings.create(model=EMBEDDER, input=row)), raw_vectors(session, [row]), atol=1e-5
    )


# --- refusals, as OpenAI's client sees them --------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message", "code"),
    [
        ("", "input[0] is an empty string", None),
        (["fine", ""], "input[1] is an empty string", None),
        ([[101, 102], []], "input[1] is an empty token array", None),
        ([101, 30522, 102], "input[0][1] is not a token id of model 'all-minilm-l6-v2'", None),
        ([[101, 102], [101, -5, 102]], "input[1][1] is not a token id", None),
        ([101] * 257, "input[0] is 257 tokens; model 'all-minilm-l6-v2' has a maximum context length of 256", "c"),
        ("inference " * 300, "input[0] is 302 tokens", "c"),
        ([["x"]], "input[0][0] is not a token id", None),
    ],
)
def test_bad_input_is_a_400_naming_input(client: openai.OpenAI, value: Any, message: str, code: str | None) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model=EMBEDDER, input=value)
    error = refused.value
    assert error.status_code == 400
    assert isinstance(error.body, dict)
    assert message in error.body["message"]
    assert (error.type, error.param) == ("invalid_request_error", "input")
    assert error.code == ("context_length_exceeded" if code else None)


def test_more_inputs_than_the_deployment_takes_is_a_413_naming_input(client: openai.OpenAI) -> None:
    """64 is this deployment's max batch size (OpenAI's own limit, 2048, is tested in-process below)."""
    with pytest.raises(openai.APIStatusError) as refused:
        client.embeddings.create(model=EMBEDDER, input=[[101, 102]] * 65)
    assert refused.value.status_code == 413
    assert (refused.value.param, refused.value.type) == ("input", "invalid_request_error")
    assert "input has 65 items; the limit is 64" in str(refused.value.body)


def test_user_is_accepted_and_changes_nothing(client: openai.OpenAI) -> None:
    with_user = client.embeddings.create(model=EMBEDDER, input=TEXTS[:2], user=PERSON)
    without = client.embeddings.create(model=EMBEDDER, input=TEXTS[:2])
    np.testing.assert_array_equal(vectors_of(with_user), vectors_of(without))


def test_dimensions_are_refused_unless_the_manifest_declares_them(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model=EMBEDDER, input="x", dimensions=128)
    assert refused.value.param == "dimensions"
    assert "declares no matryoshka_dimensions" in refused.value.message
    assert vectors_of(client.embeddings.create(model=EMBEDDER, input="x", dimensions=384)).shape == (1, 384)


def test_a_tabular_model_is_refused_naming_model(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model=TABULAR, input=[101, 102])
    assert refused.value.param == "model"


# --- both paths of the Lambda function: the same bytes ---------------------------------------------


def event(body: bytes) -> dict[str, Any]:
    return build_event(
        method="POST",
        path="/v1/embeddings",
        route_key="$default",
        headers=[("content-type", "application/json")],
        body=body,
        claims=CLAIMS,
        scopes=["inference/invoke"],
    )


def error_of(response: dict[str, Any]) -> dict[str, Any]:
    error: dict[str, Any] = json.loads(response["body"])["error"]
    return error


BOTH_PATHS = [
    ({"input": [101, 7592, 2088, 102]}, 200, None, None),
    ({"input": [[101, 7592, 102], [101, 102]], "user": PERSON}, 200, None, None),
    ({"input": "x", "dimensions": 384}, 200, None, None),
    ({"input": ""}, 400, "input", None),
    ({"input": [[]]}, 400, "input", None),
    ({"input": [101, 40000]}, 400, "input", None),
    ({"input": [101] * 300}, 400, "input", "context_length_exceeded"),
    ({"input": "word " * 300}, 400, "input", "context_length_exceeded"),
    ({"input": [101, "x"]}, 400, "input", None),
    ({"input": ["x"] * 2049}, 400, "input", None),
    ({"input": ["x"] * 65}, 413, "input", None),
    ({"input": "x", "dimensions": 12}, 400, "dimensions", None),
    ({"input": "x", "dimensions": 0}, 400, "dimensions", None),
    ({"input": "x", "encoding_format": "int8"}, 400, "encoding_format", None),
    ({"input": "x", "user": 5}, 400, "user", None),
    ({"input": "x", "model": TABULAR}, 400, "model", None),
]


@pytest.mark.parametrize(("fields", "status", "param", "code"), BOTH_PATHS)
def test_the_direct_path_and_fastapi_answer_alike(
    lambda_handler: Handler, fields: dict[str, Any], status: int, param: str | None, code: str | None
) -> None:
    from onnx_lambda import handler

    body = orjson.dumps({"model": EMBEDDER, **fields})
    direct = lambda_handler(event(body), LambdaContext())
    mangum: Any = handler.asgi()  # Mangum's own LambdaContext type; ours has the same fields
    through_fastapi = mangum(event(body), LambdaContext())
    assert direct == through_fastapi
    assert direct["statusCode"] == status, direct["body"][:300]
    if status != 200:
        error = error_of(direct)
        assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
        assert len(direct["body"]) < 1000


def test_openais_limits_per_request(lambda_handler: Handler) -> None:
    """2048 inputs (here the deployment's own limit is raised above it) and 300,000 tokens in all."""
    from onnx_lambda import handler
    from onnx_lambda.inference import InferenceRoutes

    routes = InferenceRoutes(handler.registry, handler.settings.model_copy(update={"max_batch_size": 4096}))
    headers = {"content-type": "application/json"}
    full = orjson.loads(
        routes.embeddings(orjson.dumps({"model": EMBEDDER, "input": [[101, 102]] * 2048}), headers).body
    )
    assert len(full["data"]) == 2048
    assert full["usage"]["prompt_tokens"] == 4096
    over = [[101, 102]] * 2049
    response = handler.direct_response(event(orjson.dumps({"model": EMBEDDER, "input": over})))
    assert response is not None
    assert response["statusCode"] == 400
    assert "input has 2049 items; OpenAI's limit is 2048" in error_of(response)["message"]
    # 2048 inputs of 147 tokens, 301,056 tokens: each input fits, the request does not.
    from onnx_lambda.errors import BadRequest

    with pytest.raises(BadRequest) as refused:
        routes.embeddings(orjson.dumps({"model": EMBEDDER, "input": [[101] + [2088] * 145 + [102]] * 2048}), headers)
    assert refused.value.message == "input is 301056 tokens in all; OpenAI's limit per request is 300000"
    assert refused.value.param == "input"


def test_user_is_never_logged(lambda_handler: Handler, capfd: pytest.CaptureFixture[str]) -> None:
    """``user`` may identify a person: neither a served nor a refused request writes it anywhere."""
    capfd.readouterr()
    served = lambda_handler(event(orjson.dumps({"model": EMBEDDER, "input": "hi", "user": PERSON})), LambdaContext())
    refused = lambda_handler(event(orjson.dumps({"model": EMBEDDER, "input": "", "user": PERSON})), LambdaContext())
    assert (served["statusCode"], refused["statusCode"]) == (200, 400)
    assert PERSON not in served["body"] + refused["body"]
    written = capfd.readouterr()
    assert "InferenceTime" in written.out, "the function's output was not captured"
    assert "jane.doe" not in written.out + written.err
    template = (ROOT / "template.yaml").read_text()
    assert "POWERTOOLS_LOGGER_LOG_EVENT" not in template, "logging whole events would log user"


# --- Matryoshka sizes a manifest declares ----------------------------------------------------------


@pytest.fixture(scope="module")
def matryoshka_models(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built models, with the embedder's manifest declaring Matryoshka sizes (the rest linked as they are)."""
    directory = tmp_path_factory.mktemp("matryoshka-models")
    for entry in models_dir.iterdir():
        if entry.is_dir() and entry.name != EMBEDDER:
            (directory / entry.name).symlink_to(entry.resolve())
    shutil.copytree(models_dir / EMBEDDER, directory / EMBEDDER)
    manifest = json.loads((directory / EMBEDDER / "manifest.json").read_text())
    (directory / EMBEDDER / "manifest.json").write_text(json.dumps({**manifest, "matryoshka_dimensions": MATRYOSHKA}))
    return directory


@pytest.fixture(scope="module")
def matryoshka_client(matryoshka_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    """`onnx-lambda serve` on those models: published to its local S3 and loaded from there."""
    home = tmp_path_factory.mktemp("serve-matryoshka")
    with running_serve(home, "--models-dir", str(matryoshka_models), "--model", EMBEDDER) as (url, token, _, _):
        yield openai.OpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0)


def shortened(vectors: np.ndarray, size: int) -> np.ndarray:
    head = vectors[:, :size].astype(np.float64)
    result: np.ndarray = head / np.linalg.norm(head, axis=1, keepdims=True)
    return result


def test_declared_dimensions_cut_and_normalise_again(
    matryoshka_client: openai.OpenAI, tokenizer: Tokenizer, session: ort.InferenceSession
) -> None:
    client = matryoshka_client
    full = raw_vectors(session, [tokenizer.encode(text).ids for text in TEXTS])
    formats: tuple[Literal["float", "base64"], ...] = ("float", "base64")
    for size in MATRYOSHKA:
        for encoding_format in formats:
            response = client.embeddings.create(
                model=EMBEDDER,
                input=TEXTS,
                dimensions=size,
                encoding_format=encoding_format,
            )
            got = vectors_of(response)
            assert got.shape == (3, size)
            np.testing.assert_allclose(got, shortened(full, size), atol=1e-5)
            np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors_of(client.embeddings.create(model=EMBEDDER, input=TEXTS)), full, atol=1e-5)
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model=EMBEDDER, input=TEXTS, dimensions=100)
    assert refused.value.param == "dimensions"
    assert "dimensions must be one of [64, 128, 256, 384]" in refused.value.message


def test_declared_dimensions_on_the_lambda_direct_path(
    matryoshka_models: Path, tmp_path: Path, tokenizer: Tokenizer, session: ort.InferenceSession
) -> None:
    """`onnx-lambda invoke`: the Lambda handler in its own process, on the edited manifest."""
    request = event(orjson.dumps({"model": EMBEDDER, "input": TEXTS[:1], "dimensions": 64}))
    (tmp_path / "event.json").write_text(json.dumps(request))
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("ONNX_LAMBDA_", "POWERTOOLS_"))}
    command = ["invoke", str(tmp_path / "event.json"), "--models-dir", str(matryoshka_models)]
    completed = subprocess.run(
        [sys.executable, "-m", "onnx_lambda_tools.cli", *command],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    response = json.loads(completed.stdout)
    assert response["statusCode"] == 200, response["body"][:300]
    got = np.array([item["embedding"] for item in json.loads(response["body"])["data"]], dtype=np.float32)
    expected = shortened(raw_vectors(session, [tokenizer.encode(TEXTS[0]).ids]), 64)
    assert got.shape == (1, 64)
    np.testing.assert_allclose(got, expected, atol=1e-5)
