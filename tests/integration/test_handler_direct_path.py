"""The Lambda handler's direct path answers exactly as Mangum -> FastAPI would, and keeps FastAPI off init.

``handler.direct_response`` serves the two inference routes straight from the API Gateway event. Every
committed event it takes must get a byte-identical proxy response from both paths, and every event it
leaves alone must be one FastAPI should answer.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from onnx_lambda_tools.invoke import LambdaContext, function_environment
from tests.expected_events import EXPECTED, load_event

ROOT = Path(__file__).resolve().parents[2]


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
