"""An exception inside inference, under the real Lambda runtime: a 500 that carries the request id and
nothing else, the details in the function's log, and the next request served as if nothing happened.

The failure is real, not mocked: a model built here whose graph reshapes ``[batch, 6]`` to ``[-1, 4]``.
Its signature accepts any batch, so a request with batch 1 is valid-looking and passes every check the
service makes; onnxruntime then fails inside ``session.run`` (6 elements do not make rows of 4).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnx_lambda.manifest import MANIFEST_FILE, MODEL_FILE, FileEntry, Golden, Manifest, TensorSpec, sha256_hex
from onnx_lambda_tools.local.events import build_event
from onnx_lambda_tools.local.lambda_runtime import LambdaEnvironment
from tests.faults.support import CLAIMS, function_environment, infer_event, json_lines

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


LOOKUP = "lookup-table"
#: The lookup model's table: row i is [i, 10 i, 100 i].
TABLE = np.array([[i, 10 * i, 100 * i] for i in range(4)], dtype=np.float32)


def lookup_model() -> bytes:
    """``y = Gather(TABLE, idx)``: every int64 index passes the service's checks; onnxruntime refuses one
    outside the table with INVALID_ARGUMENT, a verdict on the caller's values (a 422), not a fault (a 500)."""
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "idx"], ["y"], axis=0)],
        "lookup",
        [helper.make_tensor_value_info("idx", TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor("table", TensorProto.FLOAT, list(TABLE.shape), TABLE.flatten().tolist())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="onnx-lambda-tests")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    data: bytes = model.SerializeToString()
    return data


def indices(*values: int) -> dict[str, object]:
    return {"name": "idx", "datatype": "INT64", "shape": [len(values)], "data": list(values)}


def write_bundle(
    directory: Path, name: str, model: bytes, inputs: list[TensorSpec], outputs: list[TensorSpec], golden: Golden
) -> dict[str, str]:
    """A model directory as `make model` writes one; returns its source for ONNX_LAMBDA_MODELS."""
    manifest = Manifest(
        name=name,
        version="1",
        files={MODEL_FILE: FileEntry(sha256=sha256_hex(model), bytes=len(model))},
        inputs=inputs,
        outputs=outputs,
        golden=golden,
        source={"test": "inference errors"},
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MODEL_FILE).write_bytes(model)
    (directory / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2))
    return {"uri": (directory / MODEL_FILE).as_uri(), "sha256": sha256_hex(model)}


@pytest.fixture(scope="module")
def fn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LambdaEnvironment]:
    models = tmp_path_factory.mktemp("models")
    fragile = write_bundle(
        models / FRAGILE,
        FRAGILE,
        fragile_model(),
        [TensorSpec(name="x", datatype="FP32", shape=[-1, 6])],
        [TensorSpec(name="y", datatype="FP32", shape=[-1, 4])],
        Golden(
            infer_request={"inputs": [tensor(2)]},
            infer_response={
                "model_name": FRAGILE,
                "model_version": "1",
                "outputs": [{"name": "y", "datatype": "FP32", "shape": [3, 4], "data": [1.0] * 12}],
            },
        ),
    )
    lookup = write_bundle(
        models / LOOKUP,
        LOOKUP,
        lookup_model(),
        [TensorSpec(name="idx", datatype="INT64", shape=[-1])],
        [TensorSpec(name="y", datatype="FP32", shape=[-1, 3])],
        Golden(
            infer_request={"inputs": [indices(1)]},
            infer_response={
                "model_name": LOOKUP,
                "model_version": "1",
                "outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 3], "data": TABLE[1].tolist()}],
            },
        ),
    )
    log = tmp_path_factory.mktemp("rie") / "function.log"
    environment = function_environment([fragile, lookup], None, models / "cache")
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


def caller_event(request_id: str, sub: str, client_id: str, path: str) -> dict[str, Any]:
    """An infer request the fragile model fails on (batch 1), from one caller, as API Gateway hands it over."""
    now = int(time.time())
    return build_event(
        method="POST",
        path=path,
        route_key="POST /v2/models/{model_name}/infer",
        headers=[("content-type", "application/json")],
        body=json.dumps({"inputs": [tensor(1)]}).encode(),
        path_parameters={"model_name": FRAGILE},
        claims={**CLAIMS, "sub": sub, "client_id": client_id, "iat": now, "exp": now + 3600},
        scopes=["inference/invoke"],
        request_id=request_id,
    )


@pytest.mark.parametrize(
    "path",
    [
        f"/v2/models/{FRAGILE}/infer",  # answered by the handler's direct route
        f"/v2/models/{FRAGILE.replace('-', '%2D')}/infer",  # escaped: left to Mangum and FastAPI
    ],
    ids=["direct", "fastapi"],
)
def test_the_log_line_carries_the_api_gateway_request_id_and_the_caller(fn: LambdaEnvironment, path: str) -> None:
    """What operations search the function's log by: the correlation id is API Gateway's requestId (the
    id the caller sees), and ``sub`` and ``client_id`` are the caller's, from the authorizer's claims."""
    tag = uuid.uuid4().hex[:8]
    events = [
        caller_event(f"Yk3eFhDhIAMEbQw-{tag}", f"2f1c6a70-machine-{tag}", f"7k2n0c9dmachine{tag}", path),
        caller_event(f"Yk3eGiEiIAMEbRx-{tag}", f"9b8e1d22-user-{tag}", f"5u9s3rweb0user{tag}", path),
    ]
    for event in events:
        assert fn.invoke(event).payload["statusCode"] == 500
    assert fn.log_path is not None
    errors = [line for line in json_lines(fn.log_path) if line.get("message") == "unhandled error"]
    for event in events:
        context = event["requestContext"]
        claims = context["authorizer"]["jwt"]["claims"]
        logged = [line for line in errors if line.get("correlation_id") == context["requestId"]]
        assert len(logged) == 1, (context["requestId"], errors)
        assert (logged[0].get("sub"), logged[0].get("client_id")) == (claims["sub"], claims["client_id"])


def test_onnxruntime_refusing_the_values_is_a_422_that_says_so(fn: LambdaEnvironment) -> None:
    good = fn.invoke(infer_event(LOOKUP, {"inputs": [indices(3, 0)]}))
    assert good.payload["statusCode"] == 200, good.payload
    output = json.loads(good.payload["body"])["outputs"][0]
    assert np.array_equal(np.asarray(output["data"]).reshape(output["shape"]), TABLE[[3, 0]])

    refused = fn.invoke(infer_event(LOOKUP, {"inputs": [indices(1, 99)]}, request_id="req-invalid-1"))
    assert refused.payload["statusCode"] == 422, refused.payload
    message = json.loads(refused.payload["body"])["error"]
    assert message.startswith(f"model '{LOOKUP}' cannot run on these input values")
    assert "Traceback" not in message
