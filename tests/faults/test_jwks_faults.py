"""The local server's JWT verification with the issuer's keys (the local Cognito) stopped, slowed or corrupted.

Over real HTTP, with real tokens from the real local Cognito. Whatever goes wrong with the JWKS, a token
that can't be checked is refused (401, fail closed), the outage is logged without the token, and health
stays up: an auth outage is not a model outage. Keys fetched before an outage keep verifying tokens signed
with them, so an outage of the issuer doesn't take down callers whose keys are known.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from moto.utilities.utils import load_resource

from onnx_lambda.app import create_app
from onnx_lambda.config import ModelSource, Settings
from onnx_lambda.registry import load_registry
from onnx_lambda_tools.local.cloud import LocalStack, MotoServer, bootstrap
from onnx_lambda_tools.tokens import dev_user_token
from tests.faults.support import TABULAR, file_source, serving, tabular_body
from tests.integration.moto import Blackhole, start_moto_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


@pytest.fixture
def cognito(tmp_path: Path) -> Iterator[tuple[MotoServer, LocalStack]]:
    """A local Cognito of this test's own, so the test can stop it."""
    with start_moto_server(tmp_path / "moto.log") as server:
        yield server, bootstrap(server.endpoint_url, state_path=tmp_path / "stack.json", reuse=False)


def real_token(stack: LocalStack) -> str:
    return dev_user_token(stack, use_cache=False)


def app_for(stack: LocalStack, models_dir: Path, jwks_url: str | None = None) -> FastAPI:
    settings = Settings(
        models=[ModelSource(**file_source(models_dir))],
        auth_mode="jwt",
        jwt_issuer=stack.issuer,
        jwt_jwks_url=jwks_url or stack.jwks_url,
        jwt_audience=[stack.user_client_id, stack.m2m_client_id],
    )
    return create_app(load_registry(settings), settings)


def infer(url: str, token: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v2/models/{TABULAR}/infer",
        json=tabular_body(),
        headers={"authorization": f"Bearer {token}"},
        timeout=30,
    )


def assert_fails_closed(response: httpx.Response, caplog: pytest.LogCaptureFixture, token: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "signing keys are unavailable" in response.json()["error"]
    outage = [record for record in caplog.records if record.name == "onnx_lambda.auth"]
    assert any("JWKS unavailable" in record.getMessage() for record in outage), caplog.text
    assert token not in caplog.text
    assert token[-20:] not in response.text


def test_cognito_stopped_fails_closed(
    cognito: tuple[MotoServer, LocalStack], models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server, stack = cognito
    token = real_token(stack)
    with serving(app_for(stack, models_dir)) as url:
        server.stop()
        with caplog.at_level(logging.WARNING, logger="onnx_lambda.auth"):
            response = infer(url, token)
        assert_fails_closed(response, caplog, token)
        assert httpx.get(f"{url}/v2/health/ready").status_code == 200


def test_a_jwks_endpoint_that_never_answers_fails_closed(
    cognito: tuple[MotoServer, LocalStack], models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, stack = cognito
    token = real_token(stack)
    with Blackhole() as silent, serving(app_for(stack, models_dir, f"{silent.endpoint_url}/jwks.json")) as url:
        with caplog.at_level(logging.WARNING, logger="onnx_lambda.auth"):
            response = infer(url, token)
        assert_fails_closed(response, caplog, token)
        assert "timed out" in caplog.text


@contextlib.contextmanager
def jwks_server(body: bytes, content_type: str = "application/json") -> Iterator[str]:
    """An issuer whose key endpoint answers 200 with ``body``: a corrupted or wrong key set."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", "text/html"),
        (b'{"keys": "not a list"}', "application/json"),
        (b'{"keys": [{"kty": "oct", "kid": "dummy", "k": "c2VjcmV0", "alg": "HS256"}]}', "application/json"),
        (b'{"keys": [{"kty": "RSA", "kid": "dummy", "n": "AQAB", "e": "garbage!"}]}', "application/json"),
    ],
    ids=["html", "keys-not-a-list", "hmac-key-only", "broken-rsa-key"],
)
def test_a_corrupted_jwks_fails_closed(
    cognito: tuple[MotoServer, LocalStack],
    models_dir: Path,
    caplog: pytest.LogCaptureFixture,
    body: bytes,
    content_type: str,
) -> None:
    _, stack = cognito
    token = real_token(stack)
    with jwks_server(body, content_type) as jwks_url, serving(app_for(stack, models_dir, jwks_url)) as url:
        with caplog.at_level(logging.WARNING, logger="onnx_lambda.auth"):
            response = infer(url, token)
        assert_fails_closed(response, caplog, token)


def test_keys_fetched_before_an_outage_keep_verifying_and_nothing_else_does(
    cognito: tuple[MotoServer, LocalStack], models_dir: Path
) -> None:
    server, stack = cognito
    token = real_token(stack)
    pool_key = jwt.PyJWK(load_resource("cognitoidp/resources/jwks-private.json"), algorithm="RS256")
    now = int(time.time())
    claims = {
        "sub": "after-the-outage",
        "iss": stack.issuer,
        "client_id": stack.user_client_id,
        "token_use": "access",
        "scope": "inference/invoke",
        "iat": now,
        "exp": now + 600,
    }
    with serving(app_for(stack, models_dir)) as url:
        assert infer(url, token).status_code == 200  # the keys are fetched now
        server.stop()
        fresh = jwt.encode(claims, pool_key.key, "RS256", headers={"kid": "dummy"})
        assert infer(url, fresh).status_code == 200
        rotated = jwt.encode(claims, pool_key.key, "RS256", headers={"kid": "rotated-while-down"})
        response = infer(url, rotated)
        assert response.status_code == 401
        assert "unavailable" in response.json()["error"] or "unknown key" in response.json()["error"]
