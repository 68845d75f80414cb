"""With the issuer's JWKS unreachable, the local server fails closed: 401, and the outage is logged."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
import uvicorn
from moto.utilities.utils import load_resource

from onnx_lambda.app import create_app
from onnx_lambda.config import ModelSource, Settings
from onnx_lambda.manifest import read_manifest
from onnx_lambda.registry import load_registry
from onnx_lambda_tools.local.cloud import free_port
from tests.integration.moto import closed_port_url

ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_JwksDown"
CLIENT = "client-jwks-down"


@pytest.fixture(scope="module")
def server(models_dir: Path) -> Iterator[str]:
    model_dir = models_dir / "breast-cancer-classifier"
    settings = Settings(
        models=[ModelSource(uri=(model_dir / "model.onnx").as_uri(), sha256=read_manifest(model_dir).model_sha256)],
        auth_mode="jwt",
        jwt_issuer=ISSUER,
        jwt_jwks_url=f"{closed_port_url()}/us-east-1_JwksDown/.well-known/jwks.json",
        jwt_audience=[CLIENT],
    )
    port = free_port()
    config = uvicorn.Config(
        create_app(load_registry(settings), settings), host="127.0.0.1", port=port, log_level="error"
    )
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uvicorn_server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    uvicorn_server.should_exit = True
    thread.join(timeout=10)


def test_a_valid_token_is_refused_when_the_keys_cannot_be_fetched(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    key = jwt.PyJWK(load_resource("cognitoidp/resources/jwks-private.json"), algorithm="RS256")
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "client_id": CLIENT,
        "token_use": "access",
        "scope": "inference/invoke",
        "iat": now,
        "exp": now + 600,
    }
    token = jwt.encode(claims, key.key, "RS256", headers={"kid": "dummy"})
    with caplog.at_level(logging.WARNING, logger="onnx_lambda.auth"):
        response = httpx.get(
            f"{server}/v2/models/breast-cancer-classifier", headers={"authorization": f"Bearer {token}"}
        )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "keys" in response.json()["error"]
    assert any("JWKS" in record.getMessage() for record in caplog.records)
    assert all(token not in record.getMessage() for record in caplog.records)
    assert httpx.get(f"{server}/v2/health/ready").status_code == 200
