"""The export's building blocks, on the tiny models that ship inside onnxruntime: no built models needed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from onnxruntime.datasets import get_example

from onnx_lambda.manifest import (
    MANIFEST_FILE,
    MODEL_FILE,
    OPTIMIZED_MODEL_FILE,
    Golden,
    OptimizedModel,
    file_entry,
    verify_model_dir,
)
from onnx_lambda_tools.export import golden
from onnx_lambda_tools.export.bundle import dumps, staged_model_dir, write_manifest

#: Y = X * [[1, 2], [3, 4], [5, 6]], elementwise, for X of shape [3, 2].
MUL = Path(get_example("mul_1.onnx"))


def mul_fields(session: ort.InferenceSession) -> dict[str, Any]:
    inputs, outputs = golden.tensor_specs(session)
    request = golden.infer_request("golden-mul", {"X": np.ones((3, 2), np.float32)}, ["Y"])
    response = golden.answer_infer_request(session, "mul", "1", request)
    return {
        "name": "mul",
        "version": "1",
        "inputs": inputs,
        "outputs": outputs,
        "golden": Golden(infer_request=request, infer_response=response),
    }


def test_a_sealed_directory_replaces_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "mul"
    target.mkdir()
    (target / "stale.txt").write_text("from an older export")
    session = ort.InferenceSession(str(MUL), providers=["CPUExecutionProvider"])
    with staged_model_dir(target) as staging:
        (staging / MODEL_FILE).write_bytes(MUL.read_bytes())
        manifest = write_manifest(staging, mul_fields(session))
    assert sorted(path.name for path in target.iterdir()) == [MANIFEST_FILE, MODEL_FILE, OPTIMIZED_MODEL_FILE]
    assert verify_model_dir(target) == manifest
    # The optimized copy is pinned like the others, and says which onnxruntime wrote it at which level.
    assert manifest.optimized == OptimizedModel(
        file=OPTIMIZED_MODEL_FILE, onnxruntime=ort.__version__, level="extended"
    )
    assert manifest.files[OPTIMIZED_MODEL_FILE] == file_entry(target / OPTIMIZED_MODEL_FILE)
    optimized = ort.InferenceSession(str(target / OPTIMIZED_MODEL_FILE), providers=["CPUExecutionProvider"])
    x = np.full((3, 2), 2.0, np.float32)
    assert optimized.run(None, {"X": x})[0].tolist() == session.run(None, {"X": x})[0].tolist()
    assert manifest.golden.infer_response["outputs"][0]["data"] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert [spec.shape for spec in manifest.inputs] == [[3, 2]]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["mul"]  # no staging or retired leftovers


def test_a_failed_export_leaves_the_old_directory_alone(tmp_path: Path) -> None:
    target = tmp_path / "mul"
    target.mkdir()
    (target / "kept.txt").write_text("the previous, complete export")

    def export() -> None:
        with staged_model_dir(target) as staging:
            (staging / MODEL_FILE).write_bytes(b"half a model")
            raise RuntimeError("conversion failed")

    with pytest.raises(RuntimeError, match="conversion failed"):
        export()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["mul"]
    assert [path.name for path in target.iterdir()] == ["kept.txt"]


def test_dumps_is_json_with_number_lists_on_one_line() -> None:
    value = {"a": [1, 2.5, -3], "b": {"c": [{"d": [0.1, 0.2]}], "e": None, "f": "ü"}, "g": [], "h": {}}
    text = dumps(value)
    assert json.loads(text) == value
    assert '"a": [1, 2.5, -3]' in text
    assert '"d": [0.1, 0.2]' in text
    assert '"f": "ü"' in text


@pytest.mark.parametrize(
    "array",
    [
        np.array([[True, False]]),
        np.arange(6, dtype=np.uint8).reshape(2, 3),
        np.array([-(2**63), 2**63 - 1], dtype=np.int64),
        np.array([[0.1, -1e-8, 3.4028235e38]], dtype=np.float32),
        np.array([0.1, 65504.0], dtype=np.float16),
        np.array([np.pi], dtype=np.float64),
    ],
    ids=lambda array: str(array.dtype),
)
def test_tensors_round_trip_exactly_through_json(array: np.ndarray) -> None:
    tensor = json.loads(json.dumps(golden.encode_tensor("x", array)))
    decoded = golden.decode_tensor(tensor)
    assert decoded.dtype == array.dtype
    assert np.array_equal(decoded, array)
    assert tensor["shape"] == list(array.shape)


def test_a_model_with_non_tensor_outputs_is_refused_by_name() -> None:
    session = ort.InferenceSession(get_example("logreg_iris.onnx"), providers=["CPUExecutionProvider"])
    with pytest.raises(ValueError, match=r"'probabilities' has type seq.*zipmap=False"):
        golden.tensor_specs(session)


def test_float32_values_are_written_in_their_shortest_form() -> None:
    assert golden.json_values(np.array([0.1, 1 / 3], dtype=np.float32)) == [0.1, 0.33333334]


def test_response_differences_name_what_does_not_match() -> None:
    def response(data: list[float], shape: list[int] | None = None, name: str = "y") -> dict[str, Any]:
        tensor = {"name": name, "datatype": "FP32", "shape": shape or [len(data)], "data": data}
        return {"model_name": "m", "model_version": "1", "id": "r", "outputs": [tensor]}

    assert golden.infer_response_difference(response([1.0, 2.0]), response([1.0, 2.5])) == 0.5
    with pytest.raises(ValueError, match="shape"):
        golden.infer_response_difference(response([1.0, 2.0]), response([1.0, 2.0], shape=[2, 1]))
    with pytest.raises(ValueError, match="outputs"):
        golden.infer_response_difference(response([1.0]), response([1.0], name="z"))
