"""The local server over real HTTP: bad input of every kind, and the JWT authorizer's refusals.

Tokens are real: the fixture's user token comes from the local Cognito, and forged ones are signed with
the pool's own key (moto ships it) or with keys made here, so each refusal is for the reason it names.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from moto.utilities.utils import load_resource

from onnx_lambda_tools.local.cloud import LocalStack
from tests.servers import LocalService

TABULAR = "breast-cancer-classifier"
EMBEDDER = "all-minilm-l6-v2"
ROW = [0.5] * 30


def infer_body(rows: list[list[float]] | None = None, **overrides: Any) -> dict[str, Any]:
    rows = rows or [ROW]
    tensor = {"name": "features", "datatype": "FP32", "shape": [len(rows), 30], "data": rows}
    return {"inputs": [{**tensor, **overrides}]}


@pytest.fixture(scope="module")
def api(local_service: LocalService) -> httpx.Client:
    return httpx.Client(base_url=local_service.url, headers=local_service.headers(), timeout=30)


def error_of(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    message = error["message"] if isinstance(error, dict) else error
    assert "Traceback" not in message
    return str(message)


# --- bad input: a 4xx that names the problem, never a 500 ---------------------------------------------


def test_malformed_json(api: httpx.Client) -> None:
    response = api.post(
        f"/v2/models/{TABULAR}/infer", content=b'{"inputs": [', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "JSON" in error_of(response)


@pytest.mark.parametrize("path", [f"/v2/models/{TABULAR}/infer", "/v1/embeddings"])
def test_wrong_content_type(api: httpx.Client, path: str) -> None:
    response = api.post(path, content=b"hello", headers={"content-type": "text/plain"})
    assert response.status_code == 415
    assert "content-type" in error_of(response)


@pytest.mark.parametrize(
    ("body", "status", "phrase"),
    [
        ({"inputs": []}, 400, "inputs"),
        ({"nothing": 1}, 400, "inputs"),
        (infer_body(name="pixels"), 400, "pixels"),
        (infer_body(datatype="INT32", data=[[1] * 30]), 400, "FP32"),
        (infer_body(datatype="COMPLEX64"), 400, "COMPLEX64"),
        (infer_body(shape=[1, 29]), 400, "shape"),
        (infer_body(shape=[2, 30]), 400, "shape"),
        (infer_body(data=[["a"] * 30]), 400, "features"),
        ({"inputs": [{"name": "features", "datatype": "FP32", "data": [ROW]}]}, 400, "shape"),
    ],
)
def test_bad_infer_requests(api: httpx.Client, body: dict[str, Any], status: int, phrase: str) -> None:
    response = api.post(f"/v2/models/{TABULAR}/infer", json=body)
    assert response.status_code == status, response.text
    assert phrase in error_of(response)


def test_unknown_model_and_version(api: httpx.Client) -> None:
    assert api.post("/v2/models/nope/infer", json=infer_body()).status_code == 404
    assert api.get(f"/v2/models/{TABULAR}/versions/99").status_code == 404
    assert "nope" in error_of(api.get("/v2/models/nope"))


def test_unknown_output_is_named(api: httpx.Client) -> None:
    response = api.post(f"/v2/models/{TABULAR}/infer", json={**infer_body(), "outputs": [{"name": "logits"}]})
    assert response.status_code == 400
    assert "logits" in error_of(response)


def test_batch_over_the_limit(api: httpx.Client) -> None:
    response = api.post(f"/v2/models/{TABULAR}/infer", json=infer_body([ROW] * 65))
    assert response.status_code == 413
    assert "64" in error_of(response)
    response = api.post("/v1/embeddings", json={"model": EMBEDDER, "input": ["x"] * 65})
    assert response.status_code == 413


def test_text_over_the_limit(api: httpx.Client) -> None:
    response = api.post("/v1/embeddings", json={"model": EMBEDDER, "input": "x" * 20_001})
    assert response.status_code == 413
    assert "input[0]" in error_of(response)


@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        ({"model": EMBEDDER, "input": []}, "empty"),
        ({"model": EMBEDDER}, "input"),
        ({"model": EMBEDDER, "input": [1.5, 2]}, "input"),
        ({"model": EMBEDDER, "input": ""}, "empty string"),
        ({"model": EMBEDDER, "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": EMBEDDER, "input": "x", "dimensions": 12}, "dimensions"),
        ({"model": TABULAR, "input": "x"}, "tensors"),
    ],
)
def test_bad_embeddings_requests(api: httpx.Client, body: dict[str, Any], phrase: str) -> None:
    response = api.post("/v1/embeddings", json=body)
    assert response.status_code == 400, response.text
    assert phrase in error_of(response)


def test_a_body_over_the_lambda_payload_limit(api: httpx.Client) -> None:
    body = b'{"model": "all-minilm-l6-v2", "input": "' + b"x" * (6 * 1024 * 1024) + b'"}'
    response = api.post("/v1/embeddings", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "limit" in error_of(response)


def test_unknown_route_is_a_json_404(api: httpx.Client) -> None:
    response = api.get("/v3/nothing")
    assert response.status_code == 404
    assert error_of(response)


def test_infer_echoes_id_and_selects_outputs(api: httpx.Client) -> None:
    body = {**infer_body(), "id": "req-42", "outputs": [{"name": "label"}], "parameters": {"note": "x"}}
    response = api.post(f"/v2/models/{TABULAR}/infer", json=body)
    assert response.status_code == 200
    document = response.json()
    assert document["id"] == "req-42"
    assert [o["name"] for o in document["outputs"]] == ["label"]


def test_health_needs_no_token(local_service: LocalService) -> None:
    for path in ("/v2/health/live", "/v2/health/ready"):
        assert httpx.get(local_service.url + path).status_code == 200


# --- the authorizer's rules over HTTP ------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(local_service: LocalService) -> LocalStack:
    return LocalStack.load(local_service.state_file)


@pytest.fixture(scope="module")
def pool_key() -> jwt.PyJWK:
    """The private key moto signs every pool's tokens with (`kid: dummy`)."""
    return jwt.PyJWK(load_resource("cognitoidp/resources/jwks-private.json"), algorithm="RS256")


def claims_for(stack: LocalStack, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "sub": "3f1c2b7a-0000-4000-8000-000000000001",
        "iss": stack.issuer,
        "client_id": stack.user_client_id,
        "token_use": "access",
        "scope": "aws.cognito.signin.user.admin",
        "auth_time": now,
        "iat": now,
        "exp": now + 3600,
        "username": stack.username,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def status_with(local_service: LocalService, authorization: str | None) -> httpx.Response:
    headers = {"authorization": authorization} if authorization is not None else {}
    return httpx.get(f"{local_service.url}/v2/models/{TABULAR}", headers=headers)


def test_a_user_access_token_is_accepted(local_service: LocalService) -> None:
    assert status_with(local_service, f"Bearer {local_service.token}").status_code == 200


def test_an_id_token_is_refused_on_scoped_routes(local_service: LocalService) -> None:
    import subprocess
    import sys

    id_token = subprocess.run(
        [sys.executable, "-m", "onnx_lambda_tools.cli", "token", "--id-token"],
        env=local_service.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    response = status_with(local_service, f"Bearer {id_token}")
    assert response.status_code == 403
    assert "access token" in error_of(response)


def test_a_pool_signed_token_without_an_accepted_scope_is_forbidden(
    local_service: LocalService, stack: LocalStack, pool_key: jwt.PyJWK
) -> None:
    token = jwt.encode(claims_for(stack, scope="other/read"), pool_key.key, "RS256", headers={"kid": "dummy"})
    response = status_with(local_service, f"Bearer {token}")
    assert response.status_code == 403
    assert "inference/invoke" in error_of(response)


def _forgeries(stack: LocalStack, pool_key: jwt.PyJWK) -> dict[str, Callable[[], str]]:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = pool_key.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def signed(**overrides: Any) -> str:
        return jwt.encode(claims_for(stack, **overrides), pool_key.key, "RS256", headers={"kid": "dummy"})

    def alg_none() -> str:
        header = b64url(json.dumps({"alg": "none", "kid": "dummy"}).encode())
        return f"{header}.{b64url(json.dumps(claims_for(stack)).encode())}."

    def hs256_with_public_key() -> str:
        header = b64url(json.dumps({"alg": "HS256", "kid": "dummy", "typ": "JWT"}).encode())
        payload = b64url(json.dumps(claims_for(stack)).encode())
        import hashlib
        import hmac

        signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{b64url(signature)}"

    def tampered() -> str:
        header, _, signature = signed().split(".")
        payload = b64url(json.dumps(claims_for(stack, sub="someone-else")).encode())
        return f"{header}.{payload}.{signature}"

    now = int(time.time())
    return {
        "garbage": lambda: "not-a-jwt",
        "alg none": alg_none,
        "HS256 with the public key": hs256_with_public_key,
        "another RSA key, same kid": lambda: jwt.encode(
            claims_for(stack), other_key, "RS256", headers={"kid": "dummy"}
        ),
        "expired": lambda: signed(iat=now - 7200, exp=now - 3600),
        "nbf in the future": lambda: signed(nbf=now + 3600),
        "wrong issuer": lambda: signed(iss="https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Other"),
        "wrong client_id": lambda: signed(client_id="someone-elses-client"),
        "another user pool": lambda: signed(
            iss=stack.issuer.rsplit("/", 1)[0] + "/us-east-1_AnotherPool", client_id="x"
        ),
        "tampered payload": tampered,
        "oversized": lambda: signed(padding="x" * 20_000),
    }


FORGERIES = [
    "garbage",
    "alg none",
    "HS256 with the public key",
    "another RSA key, same kid",
    "expired",
    "nbf in the future",
    "wrong issuer",
    "wrong client_id",
    "another user pool",
    "tampered payload",
    "oversized",
]


@pytest.mark.parametrize("forgery", FORGERIES)
def test_forged_tokens_are_unauthorized(
    local_service: LocalService, stack: LocalStack, pool_key: jwt.PyJWK, forgery: str
) -> None:
    token = _forgeries(stack, pool_key)[forgery]()
    response = status_with(local_service, f"Bearer {token}")
    assert response.status_code == 401, (forgery, response.text)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert token[:40] not in response.text


@pytest.mark.parametrize("authorization", [None, "Basic dXNlcjpwYXNz", "Bearer", "Token abc"])
def test_missing_or_non_bearer_authorization(local_service: LocalService, authorization: str | None) -> None:
    response = status_with(local_service, authorization)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_the_embeddings_work_with_the_token(api: httpx.Client) -> None:
    response = api.post("/v1/embeddings", json={"model": EMBEDDER, "input": ["a", "b"]})
    assert response.status_code == 200
    vectors = np.asarray([d["embedding"] for d in response.json()["data"]])
    assert vectors.shape == (2, 384)
