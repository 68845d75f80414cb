"""The model repository extension's index, `POST /v2/repository/index` (issue 11, finding 6), in-process.

`GET /v2` lists `model_repository` in its extensions, so the index must answer as Triton's does: a list
of `{name, version, state}`, with an optional `{"ready": bool}` body, behind the same token and scopes as
the other Open Inference Protocol routes. tritonclient's own call is in `test_clients.py`.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from onnx_lambda.config import Settings
from onnx_lambda.errors import BadRequest
from onnx_lambda.inference import InferenceRoutes
from onnx_lambda.registry import ModelRegistry
from onnx_lambda_tools.invoke import LambdaContext
from onnx_lambda_tools.local.events import build_event
from tests.conftest import Handler

CLAIMS = {"sub": "index", "client_id": "index", "token_use": "access", "scope": "inference/invoke"}
SERVED = [
    {"name": "all-minilm-l6-v2", "version": "1", "state": "READY"},
    {"name": "breast-cancer-classifier", "version": "1", "state": "READY"},
]


def index(
    handler: Handler, body: bytes | None, *, claims: dict[str, Any] | None = CLAIMS, scopes: list[str] | None = None
) -> tuple[int, Any]:
    event = build_event(
        method="POST",
        path="/v2/repository/index",
        route_key="POST /v2/repository/index",
        headers=[("content-type", "application/json")] if body else [],
        body=body,
        claims=claims,
        scopes=scopes if scopes is not None else (["inference/invoke"] if claims else None),
    )
    response = handler(event, LambdaContext())
    text = response["body"]
    return response["statusCode"], json.loads(base64.b64decode(text) if response["isBase64Encoded"] else text)


@pytest.mark.parametrize("body", [None, b"{}", b'{"ready": true}', b'{"ready": false}', b'{"ready": null}', b" "])
def test_the_index_lists_every_served_model_as_ready(lambda_handler: Handler, body: bytes | None) -> None:
    status, listed = index(lambda_handler, body)
    assert status == 200
    assert sorted(listed, key=lambda entry: entry["name"]) == SERVED


@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        (b"[]", "must be a JSON object"),
        (b'{"ready": "yes"}', "'ready' must be true or false"),
        (b'{"ready": 1}', "'ready' must be true or false"),
        (b"{", "not valid JSON"),
    ],
)
def test_a_bad_body_is_a_400(lambda_handler: Handler, body: bytes, phrase: str) -> None:
    status, error = index(lambda_handler, body)
    assert status == 400
    assert phrase in error["error"]


def test_the_index_needs_a_token_with_a_scope(lambda_handler: Handler) -> None:
    assert index(lambda_handler, None, claims=None)[0] == 401
    assert index(lambda_handler, None, claims={**CLAIMS, "scope": "other/read"}, scopes=["other/read"])[0] == 403


def test_the_server_metadata_advertises_it(lambda_handler: Handler) -> None:
    event = build_event(method="GET", path="/v2", route_key="GET /v2", claims=CLAIMS, scopes=["inference/invoke"])
    response = lambda_handler(event, LambdaContext())
    assert "model_repository" in json.loads(response["body"])["extensions"]


@pytest.mark.parametrize(
    "registry",
    [ModelRegistry(error="no model is deployed yet", configured=False), ModelRegistry(error="model x failed")],
    ids=["no-model-yet", "failed-load"],
)
def test_a_deployment_without_ready_models_lists_none(registry: ModelRegistry) -> None:
    routes = InferenceRoutes(registry, Settings(models=[]))
    reply = routes.repository_index(b'{"ready": true}')
    assert (reply.status, json.loads(reply.body)) == (200, [])
    with pytest.raises(BadRequest):
        routes.repository_index(b'{"ready": []}')
