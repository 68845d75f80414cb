"""The Lambda handler on arbitrary API Gateway v2 events, in-process.

The handler answers the inference routes straight from the event, without FastAPI, and hands every other
event to Mangum: this fuzzes that split (methods, paths, escapes, headers, base64 bodies, claims) with
the real models. API Gateway only ever sends well-formed events, so these are built the way it builds
them; whatever their content, the answer is a proxy result with a status below 500.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import hypothesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnx_lambda_tools.invoke import LambdaContext
from onnx_lambda_tools.local.events import build_event

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]

EMBEDDER = "all-minilm-l6-v2"
TABULAR = "breast-cancer-classifier"
SEGMENT = st.sampled_from(
    ["v2", "v1", "models", EMBEDDER, TABULAR, "versions", "1", "infer", "ready", "embeddings", ""]
)


@st.composite
def paths(draw: st.DrawFn) -> str:
    known = st.sampled_from(
        [
            "/v1/embeddings",
            f"/v2/models/{TABULAR}/infer",
            f"/v2/models/{TABULAR}/versions/1/infer",
            f"/v2/models/{EMBEDDER}/infer",
            "/v2/health/ready",
            f"/v2/models/{TABULAR}",
        ]
    )
    built = st.lists(SEGMENT, min_size=1, max_size=7).map(lambda parts: "/" + "/".join(parts))
    path = draw(known if draw(st.sampled_from([True] * 4 + [False])) else built)
    if draw(st.integers(0, 9)) == 0:
        path = path.replace("models", "mod%65ls") + draw(st.sampled_from(["", "/", "//", "%2F"]))
    return path


BODIES = st.one_of(
    st.just(b""),
    st.binary(max_size=64),
    st.fixed_dictionaries(
        {
            "model": st.sampled_from([EMBEDDER, TABULAR, "nope"]),
            "input": st.one_of(st.text(max_size=30), st.lists(st.text(max_size=10), max_size=3)),
        }
    ).map(lambda document: json.dumps(document).encode()),
    st.fixed_dictionaries(
        {
            "inputs": st.lists(
                st.fixed_dictionaries(
                    {
                        "name": st.sampled_from(["features", "input_ids", "x"]),
                        "datatype": st.sampled_from(["FP32", "INT64", "BYTES"]),
                        "shape": st.one_of(st.just([1, 30]), st.just([1, 3]), st.lists(st.integers(0, 31), max_size=3)),
                        "data": st.one_of(
                            st.lists(st.floats(-2, 2), min_size=30, max_size=30),
                            st.lists(st.integers(0, 40000), min_size=3, max_size=3),
                            st.lists(st.one_of(st.floats(-2, 2), st.integers(0, 40000)), max_size=40),
                        ),
                    }
                ),
                max_size=3,
            )
        }
    ).map(lambda document: json.dumps(document).encode()),
)
VALID_CLAIMS = {"sub": "fuzz", "client_id": "fuzz", "token_use": "access", "scope": "inference/invoke"}
CLAIMS = st.sampled_from(
    [
        None,
        *[VALID_CLAIMS] * 6,
        {"sub": "fuzz", "client_id": "fuzz", "token_use": "id"},
        {"sub": "fuzz", "scope": "other/read"},
    ]
)


@st.composite
def coherent_requests(draw: st.DrawFn) -> tuple[str, bytes]:
    """A request its route should accept, so the fuzzer also walks the direct path to a 200."""
    route = draw(st.sampled_from(["embeddings", "tabular", "tabular-version"]))
    if route == "embeddings":
        text = st.text(min_size=1, max_size=40)  # OpenAI refuses an empty string
        texts = draw(st.one_of(text, st.lists(text, min_size=1, max_size=4)))
        return "/v1/embeddings", json.dumps({"model": EMBEDDER, "input": texts}).encode()
    rows = draw(st.integers(1, 3))
    values = draw(st.lists(st.floats(-1e6, 1e6, width=32), min_size=30 * rows, max_size=30 * rows))
    tensor = {"name": "features", "datatype": "FP32", "shape": [rows, 30], "data": values}
    path = f"/v2/models/{TABULAR}/versions/1/infer" if route == "tabular-version" else f"/v2/models/{TABULAR}/infer"
    return path, json.dumps({"inputs": [tensor]}).encode()


def test_coherent_events_are_served(lambda_handler: Handler) -> None:
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(coherent_requests())
    def served(request: tuple[str, bytes]) -> None:
        path, body = request
        event = build_event(
            method="POST",
            path=path,
            route_key="$default",
            headers=[("content-type", "application/json")],
            body=body,
            claims=VALID_CLAIMS,
            scopes=["inference/invoke"],
        )
        result = lambda_handler(event, LambdaContext())
        assert result["statusCode"] == 200, result

    served()


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    method=st.sampled_from(["POST"] * 6 + ["GET", "PUT", "OPTIONS"]),
    path=paths(),
    content_type=st.sampled_from(["application/json"] * 4 + ["application/json; charset=utf-8", "text/plain", None]),
    binary_header=st.sampled_from([None] * 6 + ["0", "5", "x", "-1", "99999999999999999999"]),
    content_length=st.sampled_from([None] * 6 + ["0", "10", "7000000", "abc"]),
    body=st.one_of(BODIES, coherent_requests().map(lambda request: request[1])),
    claims=CLAIMS,
)
def test_arbitrary_events_never_get_a_server_error(
    lambda_handler: Handler,
    method: str,
    path: str,
    content_type: str | None,
    binary_header: str | None,
    content_length: str | None,
    body: bytes,
    claims: dict[str, Any] | None,
) -> None:
    headers = [("content-type", content_type)] if content_type else []
    if binary_header is not None:
        headers.append(("inference-header-content-length", binary_header))
    if content_length is not None:
        headers.append(("content-length", content_length))
    event = build_event(
        method=method,
        path=path,
        route_key="$default",
        headers=headers,
        body=body or None,
        claims=claims,
        scopes=claims.get("scope", "").split() if claims else None,
    )
    result = lambda_handler(event, LambdaContext())
    hypothesis.event(f"status {result['statusCode']}")
    assert isinstance(result["statusCode"], int)
    assert result["statusCode"] < 500, (result, event)
    assert "Traceback" not in result.get("body", "")
