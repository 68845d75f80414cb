"""The Lambda handler's direct path answers exactly as Mangum -> FastAPI would, and keeps FastAPI off init.

``handler.direct_response`` serves the two inference routes straight from the API Gateway event. Every
committed event it takes must get a byte-identical proxy response from both paths, and every event it
leaves alone must be one FastAPI should answer.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from onnx_lambda.protocol import encode_infer_request
from onnx_lambda_tools.invoke import LambdaContext, function_environment
from onnx_lambda_tools.local.events import build_event
from tests.expected_events import EXPECTED, load_event

ROOT = Path(__file__).resolve().parents[2]
CLAIMS = {"sub": "direct", "client_id": "direct", "token_use": "access", "scope": "inference/invoke"}


@pytest.fixture(scope="module")
def handler(models_dir: Path) -> Iterator[ModuleType]:
    saved = dict(os.environ)
    os.environ.update(function_environment(models_dir))
    from onnx_lambda.config import get_settings

    get_settings.cache_clear()
    from onnx_lambda import handler as module

    yield module
    os.environ.clear()
    os.environ.update(saved)
    get_settings.cache_clear()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_direct_path_matches_fastapi(name: str, handler: ModuleType) -> None:
    event = load_event(name)
    http = event["requestContext"]["http"]
    direct = handler.direct_response(copy.deepcopy(event))
    through_fastapi = handler.asgi()(copy.deepcopy(event), LambdaContext())
    inference_route = http["method"] == "POST" and (http["path"] == "/v1/embeddings" or http["path"].endswith("/infer"))
    if inference_route:
        assert direct == through_fastapi
    else:
        assert direct is None


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/embeddings/"),
        ("GET", "/v1/embeddings"),
        ("POST", "/v2/models/breast-cancer-classifier/infer/"),
        ("POST", "/v2/models//infer"),
        ("POST", "/v2/models/a%2Fb/infer"),
        ("POST", "/v2/models/m/versions/1/extra/infer"),
        ("POST", "/v2/models/m/ready"),
    ],
)
def test_anything_else_is_left_to_fastapi(method: str, path: str, handler: ModuleType) -> None:
    assert handler.direct_route(method, path) is None


def test_versioned_infer_takes_the_direct_path(handler: ModuleType) -> None:
    event = load_event("infer-tabular-version")
    assert handler.direct_route("POST", event["requestContext"]["http"]["path"]) is not None
    response = handler.lambda_handler(copy.deepcopy(event), LambdaContext())
    assert response == handler.asgi()(copy.deepcopy(event), LambdaContext())


def test_inference_needs_no_fastapi(models_dir: Path) -> None:
    """Init and the inference routes import neither FastAPI, Starlette nor Mangum (a quarter second of cold start)."""
    script = textwrap.dedent(
        """
        import json, os, sys
        from pathlib import Path
        from onnx_lambda_tools.invoke import LambdaContext, function_environment
        from tests.expected_events import load_event
        os.environ.update(function_environment(Path(sys.argv[1])))
        sys.stdout = open(os.devnull, "w")
        import onnx_lambda.handler as handler
        statuses = [handler.lambda_handler(load_event(n), LambdaContext())["statusCode"]
                    for n in ("embeddings", "infer-tabular", "bad-json")]
        loaded = sorted(m for m in ("fastapi", "starlette", "mangum") if m in sys.modules)
        sys.stdout = sys.__stdout__
        print(json.dumps({"statuses": statuses, "loaded": loaded}))
        """
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("ONNX_LAMBDA_", "POWERTOOLS_"))}
    completed = subprocess.run(
        [sys.executable, "-c", script, str(models_dir)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = completed.stdout.strip().splitlines()[-1]
    assert result == '{"statuses": [200, 200, 400], "loaded": []}'


# --- edges a mutation run found unpinned (`make mutation`, docs/testing.md) -------------------------


@pytest.mark.parametrize("path", ["/v3/models/m/infer", "/v2/x/m/infer", "/v1/embeddings/extra"])
def test_paths_that_only_look_like_inference_are_left_to_fastapi(path: str, handler: ModuleType) -> None:
    assert handler.direct_route("POST", path) is None


def inference_event(path: str, body: bytes | None, headers: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    return build_event(
        method="POST",
        path=path,
        route_key="POST " + path,
        headers=headers if headers is not None else [("content-type", "application/json")],
        body=body,
        claims=CLAIMS,
        scopes=["inference/invoke"],
        request_id="direct-path-req",
    )


def test_an_unknown_version_is_the_same_404_on_both_paths(handler: ModuleType) -> None:
    event = load_event("infer-tabular-version")
    event["requestContext"]["http"]["path"] = event["rawPath"] = (
        "/v2/models/breast-cancer-classifier/versions/999/infer"
    )
    direct = handler.direct_response(copy.deepcopy(event))
    assert direct is not None
    assert direct["statusCode"] == 404
    assert direct == handler.asgi()(copy.deepcopy(event), LambdaContext())


def test_a_bodyless_request_gets_the_same_answer_on_both_paths(handler: ModuleType) -> None:
    for path in ("/v1/embeddings", "/v2/models/breast-cancer-classifier/infer"):
        event = inference_event(path, None)
        direct = handler.direct_response(copy.deepcopy(event))
        assert direct is not None
        assert direct["statusCode"] == 400
        assert direct == handler.asgi()(copy.deepcopy(event), LambdaContext())


def test_a_binary_response_that_happens_to_be_utf8_is_still_base64(handler: ModuleType) -> None:
    """Mangum's rule is by content type: application/octet-stream goes base64 even when its bytes decode."""
    rows = np.zeros((2, 30), dtype=np.float32)
    body, headers = encode_infer_request([("features", rows)], outputs=["label"], binary_outputs=True)
    event = inference_event(
        "/v2/models/breast-cancer-classifier/infer", body, [(k.lower(), v) for k, v in headers.items()]
    )
    direct = handler.direct_response(copy.deepcopy(event))
    assert direct is not None
    payload = base64.b64decode(direct["body"])
    assert payload[int(direct["headers"]["inference-header-content-length"]) :].decode("utf-8")  # it would decode
    assert direct["isBase64Encoded"] is True
    assert direct == handler.asgi()(copy.deepcopy(event), LambdaContext())


@pytest.mark.parametrize(
    "request_context",
    [
        "not an object",
        {"http": "not an object"},
        {"http": {"method": "POST", "path": 5}},
        {"http": {"method": 5, "path": "/v1/embeddings"}},
        {"http": {"method": "POST"}},
    ],
)
def test_a_malformed_event_is_left_to_mangum(request_context: Any, handler: ModuleType) -> None:
    assert handler.direct_response({"version": "2.0", "requestContext": request_context}) is None


def test_an_unexpected_failure_is_a_500_that_quotes_the_request_id(handler: ModuleType) -> None:
    """A body that isn't base64 although the event says it is (only a broken front could send it)."""
    event = inference_event("/v2/models/breast-cancer-classifier/infer", b"{}")
    event["body"], event["isBase64Encoded"] = "!!! not base64 !!!", True
    response = handler.direct_response(event)
    assert response is not None
    assert response["statusCode"] == 500
    assert response["headers"]["x-request-id"] == "direct-path-req"
    assert json.loads(response["body"]) == {"error": "internal error; request id direct-path-req"}


def test_without_an_api_gateway_request_id_the_500_quotes_a_fresh_one(handler: ModuleType) -> None:
    event = inference_event("/v1/embeddings", b"{}")
    event["body"], event["isBase64Encoded"] = "!!! not base64 !!!", True
    del event["requestContext"]["requestId"]
    response = handler.direct_response(event)
    assert response is not None
    reference = response["headers"]["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", reference)
    assert json.loads(response["body"])["error"] == {
        "message": f"internal error; request id {reference}",
        "type": "server_error",
        "param": None,
        "code": None,
    }


def test_the_prefetching_store_hands_over_what_it_fetched(handler: ModuleType, models_dir: Path) -> None:
    """Each configured model's verified bytes, as its manifest pins them; an unconfigured source is fetched then."""
    store = handler.PrefetchingStore(handler.settings)
    for source in handler.settings.models:
        artifacts = store.fetch(source)
        assert hashlib.sha256(artifacts.model).hexdigest() == artifacts.manifest.files["model.onnx"].sha256
        assert artifacts.model == (models_dir / artifacts.manifest.name / "model.onnx").read_bytes()
    again = store.fetch(handler.settings.models[0])  # no longer pending: a plain fetch
    assert again.model == store.fetch(handler.settings.models[0]).model


def test_a_failed_prefetch_is_raised_by_fetch(handler: ModuleType, models_dir: Path) -> None:
    source = handler.settings.models[0]
    wrong = type(source)(**{**source.model_dump(), "sha256": "0" * 64})
    settings = type(handler.settings)(**{**handler.settings.model_dump(), "models": [wrong]})
    store = handler.PrefetchingStore(settings)
    with pytest.raises(Exception, match="sha256") as prefetched:
        store.fetch(wrong)
    with pytest.raises(type(prefetched.value)):
        handler.ModelStore(settings).fetch(wrong)


def test_settling_after_init_freezes_the_heap_init_built(handler: ModuleType) -> None:
    import gc

    gc.unfreeze()
    handler.settle_after_init()
    assert gc.get_freeze_count() > 0
