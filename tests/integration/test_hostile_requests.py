"""Issue 11, findings 1 and 2, end to end: hostile requests get the same short 4xx on the Lambda handler's
direct path and through FastAPI (Mangum), in-process with the real models, and over real HTTP.

Before the fix each request below ended in a 500 (a ValueError, TypeError or RecursionError inside the
codec or the header parsing), took seconds, or answered with an error body larger than the request. A
500 counts towards ``Api5xxAlarm``, a CodeDeploy rollback trigger, so one such request a minute blocked
every deployment.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from onnx_lambda_tools.invoke import LambdaContext
from onnx_lambda_tools.local.events import build_event
from tests.conftest import Handler
from tests.servers import LocalService

TABULAR = "breast-cancer-classifier"
EMBEDDER = "all-minilm-l6-v2"
HUGE = 2**64 - 1
#: The most an error body may weigh, whatever the request.
SMALL = 1000
CLAIMS = {"sub": "hostile", "client_id": "hostile", "token_use": "access", "scope": "inference/invoke"}
ICL = "inference-header-content-length"


def tensor_body(*, name: str = "features", datatype: str = "FP32", shape: Any = (1, 30), **extra: Any) -> bytes:
    spec = {"name": name, "datatype": datatype, "shape": list(shape), **extra}
    if "data" not in spec and "parameters" not in spec:
        spec["data"] = [0.5] * 30
    return orjson.dumps({"inputs": [spec]})


def raw_body(shape: bytes, data: bytes, datatype: str = "FP32") -> bytes:
    return b'{"inputs": [{"name": "features", "datatype": "%s", "shape": %s, "data": %s}]}' % (
        datatype.encode(),
        shape,
        data,
    )


def nested(depth: int, leaf: str) -> bytes:
    return b"[" * depth + leaf.encode() + b"]" * depth


def binary_zero_by_huge(shape: list[int]) -> tuple[bytes, dict[str, str]]:
    header = tensor_body(shape=shape, parameters={"binary_data_size": 0})
    return header, {ICL: str(len(header)), "content-type": "application/octet-stream"}


#: (id, path, body, extra headers, status, phrase the error must contain)
CASES: list[tuple[str, str, bytes, dict[str, str], int, str]] = [
    ("20000-huge-dimensions", TABULAR, tensor_body(shape=[HUGE] * 20_000, data=[]), {}, 400, "20000 dimensions"),
    ("rank-65", TABULAR, tensor_body(shape=[1] * 65, data=[0.5]), {}, 400, "65 dimensions; at most 2"),
    ("rank-over-the-models", TABULAR, tensor_body(shape=[1, 1, 30]), {}, 400, "3 dimensions; at most 2"),
    ("zero-by-2**63", TABULAR, tensor_body(shape=[0, 2**63], data=[]), {}, 400, "describes more elements"),
    (
        "zero-by-2**63-bytes",
        TABULAR,
        tensor_body(datatype="BYTES", shape=[0, 2**63], data=[]),
        {},
        400,
        "describes more elements",
    ),
    ("huge-product", TABULAR, tensor_body(shape=[HUGE, HUGE], data=[0.5]), {}, 400, "describes more elements"),
    ("shape-nested-300", TABULAR, raw_body(nested(300, ""), b"[]"), {}, 400, "'shape' must be a list"),
    ("data-nested-300", TABULAR, raw_body(b"[1, 30]", nested(300, "1")), {}, 400, "nests lists more than 2 deep"),
    (
        "bytes-nested-1000",
        TABULAR,
        raw_body(b"[1, 1]", nested(1000, '"a"'), "BYTES"),
        {},
        400,
        "nests lists more than 2 deep",
    ),
    # The case has three dimensions: past the model's two, so that is what the answer says.
    ("binary-zero-by-2**40-by-2**40", TABULAR, *binary_zero_by_huge([0, 2**40, 2**40]), 400, "3 dimensions"),
    ("binary-zero-by-2**62", TABULAR, *binary_zero_by_huge([0, 2**62]), 400, "describes more elements"),
    ("header-5000-digits", TABULAR, tensor_body(), {ICL: "9" * 5000}, 400, "ASCII digits"),
    ("header-superscript-two", TABULAR, tensor_body(), {ICL: "²"}, 400, "ASCII digits"),
    ("200kb-name", TABULAR, tensor_body(name="n" * 200_000), {}, 400, "(200000 characters)"),
    ("200kb-datatype", TABULAR, tensor_body(datatype="F" * 200_000), {}, 400, "is not a datatype"),
    (
        "200kb-output-names",
        TABULAR,
        orjson.dumps(
            {
                "inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 30], "data": [0.5] * 30}],
                "outputs": [{"name": f"{i}" + "o" * 50_000} for i in range(4)],
            }
        ),
        {},
        400,
        "unknown output(s)",
    ),
    (
        "200kb-input-names",
        TABULAR,
        orjson.dumps(
            {
                "inputs": [
                    {"name": f"{i}" + "i" * 50_000, "datatype": "FP32", "shape": [1], "data": [1]} for i in range(4)
                ]
            }
        ),
        {},
        400,
        "unknown input",
    ),
    ("content-length-5000-digits", TABULAR, tensor_body(), {"content-length": "9" * 5000}, 413, "5000-digit"),
    ("content-length-superscript-two", TABULAR, tensor_body(), {"content-length": "²"}, 200, ""),
    ("100kb-model-name", "m" * 100_000, tensor_body(), {}, 404, "(100000 characters)"),
    (
        "100kb-content-type",
        "/v1/embeddings",
        b'{"model": "all-minilm-l6-v2", "input": "x"}',
        {"content-type": "text/" + "p" * 100_000},
        415,
        "content-type must be",
    ),
    (
        "non-ascii-content-type",
        "/v1/embeddings",
        b'{"model": "all-minilm-l6-v2", "input": "x"}',
        {"content-type": "text/plain²"},
        415,
        "got non-ASCII text",
    ),
    (
        "embeddings-100k-bad-items",
        "/v1/embeddings",
        orjson.dumps({"model": EMBEDDER, "input": [None] * 100_000}),
        {},
        400,
        "input has 100000 items",
    ),
    (
        "embeddings-100kb-model",
        "/v1/embeddings",
        orjson.dumps({"model": "e" * 100_000, "input": "x"}),
        {},
        404,
        "e'...",
    ),
]


def event_for(target: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    path = target if target.startswith("/") else f"/v2/models/{target}/infer"
    merged = {"content-type": "application/json", **headers}
    return build_event(
        method="POST",
        path=path,
        route_key="$default",
        headers=list(merged.items()),
        body=body,
        claims=CLAIMS,
        scopes=["inference/invoke"],
    )


def body_of(response: dict[str, Any]) -> bytes:
    body = response.get("body") or ""
    return base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()


def error_message(body: bytes) -> str:
    error = json.loads(body)["error"]
    return str(error["message"] if isinstance(error, dict) else error)


@pytest.fixture(scope="module")
def fastapi_path(lambda_handler: Handler) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The same function's other path: Mangum around the FastAPI app (what every non-inference event takes)."""
    from onnx_lambda import handler

    return handler.asgi()


@pytest.mark.parametrize(
    ("target", "body", "headers", "status", "phrase"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_hostile_requests_get_the_same_short_4xx_on_both_paths(
    lambda_handler: Handler,
    fastapi_path: Callable[[dict[str, Any], Any], dict[str, Any]],
    target: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    phrase: str,
) -> None:
    event = event_for(target, body, headers)
    direct = lambda_handler(event, LambdaContext())
    through_fastapi = fastapi_path(event_for(target, body, headers), LambdaContext())
    for response in (direct, through_fastapi):
        assert response["statusCode"] == status, body_of(response)[:500]
        if status >= 400:
            assert len(body_of(response)) < SMALL, len(body_of(response))
            assert phrase in error_message(body_of(response))
    assert body_of(direct) == body_of(through_fastapi)


def test_still_ready_after_the_hostile_requests(lambda_handler: Handler) -> None:
    for path in ("/v2/health/ready", f"/v2/models/{TABULAR}/ready"):
        event = build_event(method="GET", path=path, route_key="$default", claims=CLAIMS, scopes=["inference/invoke"])
        assert lambda_handler(event, LambdaContext())["statusCode"] == 200


def _sendable(case: tuple[str, str, bytes, dict[str, str], int, str]) -> bool:
    """What an HTTP client can send at all: uvicorn refuses a request line or header over 16 KB itself,
    httpx sets Content-Length, and header values are ASCII."""
    _, target, _, headers, _, _ = case
    return (
        len(target) < 1000
        and "content-length" not in headers
        and all(len(value) < 1000 and value.isascii() for value in headers.values())
    )


@pytest.mark.integration
@pytest.mark.parametrize("case", [case for case in CASES if _sendable(case)], ids=lambda case: case[0])
def test_hostile_requests_over_http(
    local_service: LocalService, case: tuple[str, str, bytes, dict[str, str], int, str]
) -> None:
    """`onnx-lambda serve` (uvicorn, a verifying JWT check): the same answers over real HTTP."""
    _, target, body, headers, status, phrase = case
    path = target if target.startswith("/") else f"/v2/models/{target}/infer"
    response = httpx.post(
        f"{local_service.url}{path}",
        content=body,
        headers=local_service.headers(**{"content-type": "application/json", **headers}),
        timeout=30,
    )
    assert response.status_code == status, response.text[:500]
    assert len(response.content) < SMALL
    assert phrase in error_message(response.content)
