"""Every manifest's golden answers, recomputed with onnxruntime and tokenizers used directly.

The pre-traffic hook and several tests compare the service with these goldens, and the exporter wrote them
with the service's own decoding, session options and Embedder. ``test_manifests.py`` replays them with that
same code. Here the reference is independent (``tests/raw_reference.py``): onnxruntime's default session on
model.onnx, and for embedders ``tokenizers`` on the tokenizer.json beside it. A golden that only agrees
with the code that wrote it fails here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests import raw_reference

pytestmark = pytest.mark.models

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"

MODEL_DIRS = sorted(path.parent.name for path in MODELS_DIR.glob("*/manifest.json"))
EMBEDDERS = [name for name in MODEL_DIRS if (MODELS_DIR / name / "tokenizer.json").is_file()]


def assert_tensor_matches(name: str, golden: dict[str, Any], actual: np.ndarray, datatype: str, atol: float) -> None:
    assert golden["name"] == name
    assert golden["datatype"] == datatype
    assert np.dtype(raw_reference.DTYPES[datatype]) == actual.dtype, f"{name}: the model returns {actual.dtype}"
    assert golden["shape"] == list(actual.shape), name
    values = np.asarray(golden["data"], dtype=actual.dtype).reshape(actual.shape)
    if np.issubdtype(actual.dtype, np.floating):
        np.testing.assert_allclose(values, actual, rtol=0, atol=atol, err_msg=name)
    else:  # labels, indices, flags: exactly
        np.testing.assert_array_equal(values, actual, err_msg=name)


def test_every_built_model_is_checked(models_dir: Path) -> None:
    assert {"all-minilm-l6-v2", "all-minilm-l6-v2-fp32", "breast-cancer-classifier"} <= set(MODEL_DIRS)
    assert {"all-minilm-l6-v2", "all-minilm-l6-v2-fp32"} <= set(EMBEDDERS)


@pytest.mark.parametrize("name", MODEL_DIRS)
def test_the_golden_infer_response_is_what_onnxruntime_answers(models_dir: Path, name: str) -> None:
    manifest = raw_reference.read_manifest_json(models_dir / name)
    golden = manifest["golden"]
    request, expected = golden["infer_request"], golden["infer_response"]
    assert 0 < golden["atol"] <= 1e-4

    actual = raw_reference.run_infer_request(models_dir / name / "model.onnx", request)

    assert (expected["model_name"], expected["model_version"]) == (manifest["name"], manifest["version"])
    assert expected["id"] == request["id"]
    assert [tensor["name"] for tensor in expected["outputs"]] == list(actual)
    datatypes = {spec["name"]: spec["datatype"] for spec in manifest["outputs"]}
    for tensor, (output, array) in zip(expected["outputs"], actual.items(), strict=True):
        assert_tensor_matches(output, tensor, array, datatypes[output], golden["atol"])


@pytest.mark.parametrize("name", EMBEDDERS)
def test_the_golden_embeddings_are_what_the_tokenizer_and_model_give(models_dir: Path, name: str) -> None:
    manifest = raw_reference.read_manifest_json(models_dir / name)
    golden = manifest["golden"]
    request, expected = golden["embeddings_request"], golden["embeddings_response"]
    texts = [request["input"]] if isinstance(request["input"], str) else request["input"]
    assert request["model"] == name

    raw = raw_reference.embed(models_dir / name, texts, manifest["tokenizer"]["max_length"])

    assert expected["object"] == "list"
    assert expected["model"] == name
    assert expected["usage"] == {"prompt_tokens": sum(raw.token_counts), "total_tokens": sum(raw.token_counts)}
    assert [(item["object"], item["index"]) for item in expected["data"]] == [
        ("embedding", index) for index in range(len(texts))
    ]
    np.testing.assert_allclose(
        np.asarray([item["embedding"] for item in expected["data"]], dtype=np.float32),
        raw.vectors,
        rtol=0,
        atol=golden["atol"],
    )
    # The golden infer request is the same texts, tokenized: the hook checks both routes on one answer.
    token_tensors = {tensor["name"]: raw_reference.tensor_array(tensor) for tensor in golden["infer_request"]["inputs"]}
    assert token_tensors.keys() == raw.feeds.keys()
    for input_name, array in raw.feeds.items():
        np.testing.assert_array_equal(token_tensors[input_name], array, err_msg=input_name)
