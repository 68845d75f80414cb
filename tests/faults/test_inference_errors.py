"""An exception inside inference, under the real Lambda runtime: a 500 that carries the request id and
nothing else, the details in the function's log, and the next request served as if nothing happened.

The failure is real, not mocked: a model built here whose graph reshapes ``[batch, 6]`` to ``[-1, 4]``.
Its signature accepts any batch, so a request with batch 1 is valid-looking and passes every check the
service makes; onnxruntime then fails inside ``session.run`` (6 elements do not make rows of 4).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from onnx_lambda.manifest import MANIFEST_FILE, MODEL_FILE, FileEntry, Golden, Manifest, TensorSpec, sha256_hex
from onnx_lambda_tools.local.lambda_runtime import LambdaEnvironment
from tests.faults.support import function_environment, infer_event, json_lines

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FRAGILE = "fragile-reshape"


def fragile_model() -> bytes:
    """``y = Reshape(x, [-1, 4])`` for ``x: float[batch, 6]``: fine for even batches, an ORT error for odd ones."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"], name="regroup")],
        "fragile",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="onnx-lambda-tests")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    data: bytes = model.SerializeToString()
    return data


def tensor(rows: int) -> dict[str, object]:
    return {"name": "x", "datatype": "FP32", "shape": [rows, 6], "data": [1.0] * (6 * rows)}


def write_bundle(directory: Path) -> Path:
    model = fragile_model()
    manifest = Manifest(
        name=FRAGILE,
        version="1",
        files={MODEL_FILE: FileEntry(sha256=sha256_hex(model), bytes=len(model))},
        inputs=[TensorSpec(name="x", datatype="FP32", shape=[-1, 6])],
        outputs=[TensorSpec(name="y", datatype="FP32", shape=[-1, 4])],
        golden=Golden(
            infer_request={"inputs": [tensor(2)]},
            infer_response={
                "model_name": FRAGILE,
                "model_version": "1",
                "outputs": [{"name": "y", "datatype": "FP32", "shape": [3, 4], "data": [1.0] * 12}],
            },
        ),
        source={"test": "inference errors"},
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MODEL_FILE).write_bytes(model)
    (directory / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2))
    return directory


@pytest.fixture(scope="module")
def fn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LambdaEnvironment]:
    models = tmp_path_factory.mktemp("models")
    write_bundle(models / FRAGILE)
    log = tmp_path_factory.mktemp("rie") / "function.log"
    source = {"uri": (models / FRAGILE / MODEL_FILE).as_uri(), "sha256": sha256_hex(fragile_model())}
    environment = function_environment([source], None, models / "cache")
    with LambdaEnvironment(environment, log_path=log) as lambda_environment:
        yield lambda_environment


def test_an_ort_error_is_a_500_with_the_request_id_and_no_internals(fn: LambdaEnvironment) -> None:
    before = fn.invoke(infer_event(FRAGILE, {"inputs": [tensor(2)]}))
    assert before.payload["statusCode"] == 200, before.payload

    result = fn.invoke(infer_event(FRAGILE, {"inputs": [tensor(1)]}, request_id="req-ort-1"))

    assert not result.function_error, "the handler must answer, not crash the invocation (a 502 at API Gateway)"
    response = result.payload
    assert response["statusCode"] == 500
    assert response["headers"]["x-request-id"] == "req-ort-1"
    body = json.loads(response["body"])
    assert body == {"error": "internal error; request id req-ort-1"}
    for internal in ("Reshape", "regroup", "onnxruntime", "Traceback", ".py", "/"):
        assert internal not in response["body"].replace("application/json", "")

    after = fn.invoke(infer_event(FRAGILE, {"inputs": [tensor(4)]}))
    assert after.payload["statusCode"] == 200, after.payload
    assert json.loads(after.payload["body"])["outputs"][0]["shape"] == [6, 4]


def test_the_details_go_to_the_log_under_the_same_request_id(fn: LambdaEnvironment) -> None:
    fn.invoke(infer_event(FRAGILE, {"inputs": [tensor(3)]}, request_id="req-ort-2"))
    assert fn.log_path is not None
    errors = [line for line in json_lines(fn.log_path) if line.get("message") == "unhandled error"]
    logged = [line for line in errors if line.get("request_id") == "req-ort-2"]
    assert logged, errors
    assert "Reshape" in logged[0]["exception"]
    assert logged[0]["level"] == "ERROR"
