"""Every built model directory: its manifest validates, pins its files, and its golden pair replays."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from tokenizers import Tokenizer

from onnx_lambda.config import available_cpus
from onnx_lambda.manifest import (
    MANIFEST_FILE,
    MODEL_FILE,
    OPTIMIZED_MODEL_FILE,
    TOKENIZER_FILE,
    Manifest,
    verify_model_dir,
)
from onnx_lambda.model import GraphOptimization, session_options
from onnx_lambda_tools.export import BREAST_CANCER, MINILM_FP32, MINILM_INT8, MODEL_NAMES, golden
from onnx_lambda_tools.export.minilm import INPUT_NAMES, OUTPUT_NAME, tokenize

from .conftest import open_session

pytestmark = pytest.mark.models

MINILM = (MINILM_INT8, MINILM_FP32)
TOKEN_INPUTS = [{"name": name, "datatype": "INT64", "shape": [-1, -1]} for name in INPUT_NAMES]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_the_manifest_validates_and_pins_every_file(models_dir: Path, name: str) -> None:
    manifest = verify_model_dir(models_dir / name)
    assert (manifest.name, manifest.version) == (name, "1")
    on_disk = {path.name for path in (models_dir / name).iterdir()} - {MANIFEST_FILE}
    assert on_disk == set(manifest.files)
    # Every model carries its copy optimized at build time (OPTIMIZED_MODEL_FILE), written by this onnxruntime.
    expected = (
        {MODEL_FILE, OPTIMIZED_MODEL_FILE, TOKENIZER_FILE} if name in MINILM else {MODEL_FILE, OPTIMIZED_MODEL_FILE}
    )
    assert set(manifest.files) == expected
    assert manifest.optimized is not None
    assert (manifest.optimized.file, manifest.optimized.onnxruntime) == (OPTIMIZED_MODEL_FILE, ort.__version__)
    assert (manifest.tokenizer is not None) == (name in MINILM)
    assert manifest.source, "provenance"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_the_manifest_signature_is_the_models(models_dir: Path, name: str) -> None:
    manifest = verify_model_dir(models_dir / name)
    inputs, outputs = golden.tensor_specs(open_session(models_dir / name / MODEL_FILE))
    assert (manifest.inputs, manifest.outputs) == (inputs, outputs)
    if name in MINILM:
        assert [spec.model_dump() for spec in manifest.inputs] == TOKEN_INPUTS
        assert [spec.model_dump() for spec in manifest.outputs] == [
            {"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, 384]}
        ]


@pytest.mark.parametrize("optimization", ["basic", "extended", "all"])
@pytest.mark.parametrize("threads", [1, available_cpus()])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_the_golden_request_replays_within_atol(
    models_dir: Path, name: str, threads: int, optimization: GraphOptimization
) -> None:
    """Whatever session options the service is configured with, the golden pair holds."""
    manifest = verify_model_dir(models_dir / name)
    assert manifest.golden.atol <= 1e-4
    session = ort.InferenceSession(
        str(models_dir / name / MODEL_FILE),
        sess_options=session_options(threads, optimization),
        providers=["CPUExecutionProvider"],
    )
    request = manifest.golden.infer_request
    answer = golden.answer_infer_request(session, manifest.name, manifest.version, request)
    assert golden.infer_response_difference(manifest.golden.infer_response, answer) <= manifest.golden.atol


@pytest.mark.parametrize("name", MINILM)
def test_the_golden_embeddings_replay_within_atol(models_dir: Path, name: str) -> None:
    manifest = verify_model_dir(models_dir / name)
    assert manifest.golden.embeddings_request is not None
    assert manifest.golden.embeddings_response is not None
    request, expected = manifest.golden.embeddings_request, manifest.golden.embeddings_response
    assert request == {"model": name, "input": ["a short sentence", "another"]}

    feeds = tokenize(Tokenizer.from_file(str(models_dir / name / TOKENIZER_FILE)), request["input"])
    vectors = open_session(models_dir / name / MODEL_FILE).run([OUTPUT_NAME], dict(feeds))[0]
    actual = golden.embeddings_response(name, vectors, feeds["attention_mask"].sum(axis=1).tolist())

    # [CLS] a short sentence [SEP] + [CLS] another [SEP]: real tokens only, never the padding.
    assert expected["usage"] == {"prompt_tokens": 8, "total_tokens": 8}
    assert {key: value for key, value in expected.items() if key != "data"} == {
        key: value for key, value in actual.items() if key != "data"
    }
    assert [(item["object"], item["index"]) for item in expected["data"]] == [("embedding", 0), ("embedding", 1)]
    np.testing.assert_allclose(
        [item["embedding"] for item in actual["data"]],
        [item["embedding"] for item in expected["data"]],
        rtol=0,
        atol=manifest.golden.atol,
    )


def test_the_golden_atol_tells_int8_from_fp32(models_dir: Path) -> None:
    """The tolerance is tight enough to notice the wrong model: fp32's golden fails against the int8 model."""
    fp32 = verify_model_dir(models_dir / MINILM_FP32)
    int8_session = open_session(models_dir / MINILM_INT8 / MODEL_FILE)
    answer = golden.answer_infer_request(int8_session, fp32.name, fp32.version, fp32.golden.infer_request)
    assert golden.infer_response_difference(fp32.golden.infer_response, answer) > 10 * fp32.golden.atol


def test_a_tampered_file_is_refused(models_dir: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(models_dir / BREAST_CANCER, tmp_path / BREAST_CANCER)
    model = copy / MODEL_FILE
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        verify_model_dir(copy)


def test_a_wrong_golden_response_is_noticed(models_dir: Path) -> None:
    manifest: Manifest = verify_model_dir(models_dir / BREAST_CANCER)
    session = open_session(models_dir / BREAST_CANCER / MODEL_FILE)
    answer = golden.answer_infer_request(session, manifest.name, manifest.version, manifest.golden.infer_request)
    probabilities = next(tensor for tensor in answer["outputs"] if tensor["name"] == "probabilities")
    probabilities["data"][0] += 10 * manifest.golden.atol
    assert golden.infer_response_difference(manifest.golden.infer_response, answer) > manifest.golden.atol
    answer["id"] = "someone-else"
    with pytest.raises(ValueError, match="id"):
        golden.infer_response_difference(manifest.golden.infer_response, answer)
