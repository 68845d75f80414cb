"""The local stack on a real moto server: bootstrap, real Cognito tokens, verification over HTTP.

Plus the client_credentials path of ``machine_token`` against a small token endpoint served here
on loopback (moto has no OAuth2 token endpoint).
"""

from __future__ import annotations

import argparse
import base64
import json
import stat
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import jwt
import pytest
from moto.utilities.utils import load_resource

from onnx_lambda.auth import JwtVerifier, require_any_scope
from onnx_lambda.errors import Forbidden, Unauthorized
from onnx_lambda_tools.local.cloud import INVOKE_SCOPE_NAME, LocalCloudError, LocalStack, bootstrap, start_moto
from onnx_lambda_tools.tokens import (
    TokenCache,
    TokenError,
    add_token_arguments,
    dev_user_token,
    machine_token,
    token_command,
    user_token,
)

pytestmark = pytest.mark.integration

USER_SCOPE = "aws.cognito.signin.user.admin"
ACCEPTED = [INVOKE_SCOPE_NAME, USER_SCOPE]


def client(service: str, stack: LocalStack) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=stack.endpoint_url,
        region_name=stack.region,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("local-stack")


@pytest.fixture(scope="module")
def stack(moto_server: str, state_dir: Path) -> LocalStack:
    # The moto server is shared by the session: this module's bucket has a name of its own.
    return bootstrap(moto_server, state_path=state_dir / "stack.json", bucket=f"auth-models-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="module")
def other_pool(moto_server: str, state_dir: Path) -> LocalStack:
    return bootstrap(
        moto_server, state_path=state_dir / "other.json", bucket=f"auth-other-{uuid.uuid4().hex[:12]}", reuse=False
    )


@pytest.fixture
def cache(tmp_path: Path) -> TokenCache:
    return TokenCache(tmp_path / "cache" / "tokens.json")


def verifier_for(stack: LocalStack, *audience: str) -> JwtVerifier:
    """Verification the way `serve` does it: moto's issuer, moto's JWKS over real HTTP."""
    return JwtVerifier(issuer=stack.issuer, jwks_url=stack.jwks_url, audience=list(audience or [stack.user_client_id]))


def sign_in(stack: LocalStack, cache: TokenCache, **kwargs: Any) -> str:
    return dev_user_token(stack, cache=cache, **kwargs)


# --- what bootstrap creates ----------------------------------------------------------------------


def test_the_model_bucket_is_private_versioned_and_encrypted(stack: LocalStack) -> None:
    s3 = client("s3", stack)
    assert s3.get_bucket_versioning(Bucket=stack.bucket)["Status"] == "Enabled"
    block = s3.get_public_access_block(Bucket=stack.bucket)["PublicAccessBlockConfiguration"]
    assert block == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    rules = s3.get_bucket_encryption(Bucket=stack.bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_the_pool_admits_admin_created_users_only_with_a_strong_password_policy(stack: LocalStack) -> None:
    pool = client("cognito-idp", stack).describe_user_pool(UserPoolId=stack.user_pool_id)["UserPool"]
    assert pool["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    policy = pool["Policies"]["PasswordPolicy"]
    assert policy["MinimumLength"] >= 12
    assert all(policy[k] for k in ("RequireUppercase", "RequireLowercase", "RequireNumbers", "RequireSymbols"))
    assert stack.issuer == f"https://cognito-idp.{stack.region}.amazonaws.com/{stack.user_pool_id}"
    assert stack.jwks_url == f"{stack.endpoint_url}/{stack.user_pool_id}/.well-known/jwks.json"


def test_the_resource_server_and_the_two_clients(stack: LocalStack) -> None:
    cognito = client("cognito-idp", stack)
    server = cognito.describe_resource_server(UserPoolId=stack.user_pool_id, Identifier="inference")
    assert [s["ScopeName"] for s in server["ResourceServer"]["Scopes"]] == ["invoke"]
    user = cognito.describe_user_pool_client(UserPoolId=stack.user_pool_id, ClientId=stack.user_client_id)
    assert "ClientSecret" not in user["UserPoolClient"]
    assert set(user["UserPoolClient"]["ExplicitAuthFlows"]) == {
        "ALLOW_USER_PASSWORD_AUTH",
        "ALLOW_USER_SRP_AUTH",
        "ALLOW_REFRESH_TOKEN_AUTH",
    }
    machine = cognito.describe_user_pool_client(UserPoolId=stack.user_pool_id, ClientId=stack.m2m_client_id)
    assert machine["UserPoolClient"]["ClientSecret"]
    assert machine["UserPoolClient"]["AllowedOAuthFlows"] == ["client_credentials"]
    assert machine["UserPoolClient"]["AllowedOAuthScopes"] == [INVOKE_SCOPE_NAME]


def test_the_dev_user_is_confirmed_with_a_generated_password(stack: LocalStack, other_pool: LocalStack) -> None:
    user = client("cognito-idp", stack).admin_get_user(UserPoolId=stack.user_pool_id, Username=stack.username)
    assert user["UserStatus"] == "CONFIRMED"
    assert len(stack.password) >= 20
    assert stack.password != other_pool.password


def test_the_state_file_is_private_and_loads_back(stack: LocalStack, state_dir: Path) -> None:
    path = state_dir / "stack.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert LocalStack.load(path) == stack


def test_bootstrapping_the_same_server_again_reuses_the_stack(
    moto_server: str, stack: LocalStack, state_dir: Path
) -> None:
    assert bootstrap(moto_server, state_path=state_dir / "stack.json", bucket=stack.bucket) == stack


def test_a_missing_state_file_says_how_to_start_the_stack(tmp_path: Path) -> None:
    with pytest.raises(LocalCloudError, match="make serve"):
        LocalStack.load(tmp_path / "absent.json")


def test_a_busy_port_gets_a_clear_message(moto_server: str) -> None:
    port = urllib.parse.urlsplit(moto_server).port
    assert port is not None
    with pytest.raises(LocalCloudError, match="already in use"):
        start_moto(port=port)


# --- real tokens from the local Cognito, verified against moto's JWKS over HTTP -----------------


def test_a_user_access_token_is_accepted(stack: LocalStack, cache: TokenCache) -> None:
    principal = verifier_for(stack).verify(sign_in(stack, cache))
    assert principal.token_use == "access"
    assert principal.client_id == stack.user_client_id
    assert principal.username == stack.username
    assert principal.subject
    assert principal.scopes == {USER_SCOPE}
    require_any_scope(principal, ACCEPTED)


def test_an_id_token_is_verified_but_refused_on_scoped_routes(stack: LocalStack, cache: TokenCache) -> None:
    principal = verifier_for(stack).verify(sign_in(stack, cache, id_token=True))
    assert principal.token_use == "id"
    assert principal.scopes == frozenset()
    with pytest.raises(Forbidden, match="ID tokens carry no scopes"):
        require_any_scope(principal, ACCEPTED)


def test_a_token_signed_by_the_pool_key_without_an_accepted_scope_is_forbidden(stack: LocalStack) -> None:
    # moto signs every pool's tokens with one key it ships; sign with it as the pool would.
    pool_key = jwt.PyJWK(load_resource("cognitoidp/resources/jwks-private.json"), algorithm="RS256")
    now = int(time.time())
    claims = {
        "iss": stack.issuer,
        "sub": "machine",
        "client_id": stack.user_client_id,
        "token_use": "access",
        "scope": "openid profile",
        "iat": now,
        "exp": now + 600,
    }
    forged = jwt.encode(claims, pool_key.key, algorithm="RS256", headers={"kid": "dummy"})
    principal = verifier_for(stack).verify(forged)
    with pytest.raises(Forbidden):
        require_any_scope(principal, ACCEPTED)


def test_a_token_from_another_user_pool_is_refused(
    stack: LocalStack, other_pool: LocalStack, cache: TokenCache
) -> None:
    foreign = sign_in(other_pool, cache)
    with pytest.raises(Unauthorized, match="issuer"):
        # Even a verifier that accepts the other pool's client refuses its issuer.
        verifier_for(stack, stack.user_client_id, other_pool.user_client_id).verify(foreign)
    verifier_for(other_pool).verify(foreign)


def test_an_unreachable_jwks_fails_closed(stack: LocalStack, cache: TokenCache) -> None:
    port = urllib.parse.urlsplit(stack.endpoint_url).port
    assert port is not None
    with pytest.raises(Unauthorized, match="signing keys are unavailable"):
        JwtVerifier(
            issuer=stack.issuer,
            jwks_url=f"http://127.0.0.1:{port}/no-such-pool/nothing",
            audience=[stack.user_client_id],
        ).verify(sign_in(stack, cache))


def test_a_wrong_password_is_refused_without_echoing_it(stack: LocalStack, cache: TokenCache) -> None:
    with pytest.raises(TokenError, match="NotAuthorizedException") as caught:
        user_token(
            client_id=stack.user_client_id,
            username=stack.username,
            password="Wrong-password-1",
            region=stack.region,
            endpoint_url=stack.endpoint_url,
            cache=cache,
        )
    assert "Wrong-password-1" not in str(caught.value)


def test_srp_sign_in_returns_tokens_the_verifier_accepts(stack: LocalStack, cache: TokenCache) -> None:
    # moto answers SRP's challenge without checking the proof; this exercises our side of the flow.
    principal = verifier_for(stack).verify(sign_in(stack, cache, flow="srp", use_cache=False))
    assert principal.username == stack.username


def test_user_tokens_are_cached_in_a_private_file(stack: LocalStack, cache: TokenCache) -> None:
    first = sign_in(stack, cache)
    assert sign_in(stack, cache) == first
    assert sign_in(stack, cache, use_cache=False) != first  # moto mints a new jti each time
    assert stat.S_IMODE(cache.path.stat().st_mode) == 0o600
    assert stack.password not in cache.path.read_text()


def test_a_token_near_expiry_is_not_reused(stack: LocalStack, tmp_path: Path) -> None:
    clock = [time.time()]
    cache = TokenCache(tmp_path / "tokens.json", clock=lambda: clock[0])
    first = sign_in(stack, cache, clock=lambda: clock[0])
    clock[0] += 3600 - 61
    assert sign_in(stack, cache, clock=lambda: clock[0]) == first
    clock[0] += 2
    assert sign_in(stack, cache, clock=lambda: clock[0]) != first


# --- `onnx-lambda token` --------------------------------------------------------------------


def run_token_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="onnx-lambda token")
    add_token_arguments(parser)
    return token_command(parser.parse_args(argv))


def test_the_token_command_prints_a_local_access_token(
    stack: LocalStack,
    state_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("ONNX_LAMBDA_STATE_FILE", str(state_dir / "stack.json"))
    assert run_token_command([]) == 0
    access = capsys.readouterr().out.strip()
    assert verifier_for(stack).verify(access).token_use == "access"
    assert run_token_command(["--id-token"]) == 0
    assert verifier_for(stack).verify(capsys.readouterr().out.strip()).token_use == "id"
    assert stat.S_IMODE((tmp_path / "onnx-lambda" / "tokens.json").stat().st_mode) == 0o600


def test_the_token_command_explains_a_missing_local_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert run_token_command(["--state-file", str(tmp_path / "absent.json")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "make serve" in captured.err


def test_the_token_command_takes_secrets_from_the_environment_only(
    stack: LocalStack,
    state_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("ONNX_LAMBDA_PASSWORD", raising=False)
    monkeypatch.setattr("sys.stdin", None)
    argv = ["--state-file", str(state_dir / "stack.json"), "--username", "someone-else"]
    assert run_token_command(argv) == 1
    assert "ONNX_LAMBDA_PASSWORD" in capsys.readouterr().err
    client("cognito-idp", stack).admin_create_user(
        UserPoolId=stack.user_pool_id, Username="someone-else", MessageAction="SUPPRESS"
    )
    password = "Another-Strong-Passw0rd!"
    client("cognito-idp", stack).admin_set_user_password(
        UserPoolId=stack.user_pool_id, Username="someone-else", Password=password, Permanent=True
    )
    monkeypatch.setenv("MY_PASSWORD", password)
    assert run_token_command([*argv, "--password-env", "MY_PASSWORD"]) == 0
    assert verifier_for(stack).verify(capsys.readouterr().out.strip()).username == "someone-else"


# --- client_credentials against a token endpoint on loopback ------------------------------------


class TokenEndpoint:
    """A stand-in for a Cognito domain's /oauth2/token that records what clients send."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.refuse = False
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                endpoint.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "form": urllib.parse.parse_qs(body)}
                )
                if endpoint.refuse:
                    self._answer(400, {"error": "invalid_client"})
                    return
                scope = urllib.parse.parse_qs(body).get("scope", [""])[0]
                now = int(time.time())
                access = jwt.encode(
                    {"client_id": "m2m", "scope": scope, "token_use": "access", "iat": now, "exp": now + 3600},
                    "test-signing-key-not-the-pool-key",
                    algorithm="HS256",
                )
                self._answer(200, {"access_token": access, "expires_in": 3600, "token_type": "Bearer"})

            def _answer(self, status: int, document: dict[str, Any]) -> None:
                payload = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/oauth2/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def token_endpoint() -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint()
    yield endpoint
    endpoint.close()


def test_machine_token_sends_basic_auth_grant_type_and_scope(token_endpoint: TokenEndpoint, cache: TokenCache) -> None:
    access = machine_token(token_endpoint.url, "m2m-client", "s3cret-value", [INVOKE_SCOPE_NAME], cache=cache)
    assert jwt.decode(access, options={"verify_signature": False})["scope"] == INVOKE_SCOPE_NAME
    [sent] = token_endpoint.requests
    assert sent["path"] == "/oauth2/token"
    assert sent["headers"]["Authorization"] == "Basic " + base64.b64encode(b"m2m-client:s3cret-value").decode()
    assert sent["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert sent["form"] == {"grant_type": ["client_credentials"], "scope": [INVOKE_SCOPE_NAME]}


def test_machine_tokens_are_cached_per_client_and_scopes(token_endpoint: TokenEndpoint, cache: TokenCache) -> None:
    first = machine_token(token_endpoint.url, "m2m-client", "s3cret-value", [INVOKE_SCOPE_NAME], cache=cache)
    assert machine_token(token_endpoint.url, "m2m-client", "s3cret-value", [INVOKE_SCOPE_NAME], cache=cache) == first
    assert len(token_endpoint.requests) == 1
    machine_token(token_endpoint.url, "m2m-client", "s3cret-value", ["inference/other"], cache=cache)
    machine_token(token_endpoint.url, "another-client", "s3cret-value", [INVOKE_SCOPE_NAME], cache=cache)
    assert len(token_endpoint.requests) == 3
    assert "s3cret-value" not in cache.path.read_text()


def test_a_refused_client_gets_the_oauth_error_without_the_secret(
    token_endpoint: TokenEndpoint, cache: TokenCache
) -> None:
    token_endpoint.refuse = True
    with pytest.raises(TokenError, match="HTTP 400 invalid_client") as caught:
        machine_token(token_endpoint.url, "m2m-client", "s3cret-value", cache=cache)
    assert "s3cret-value" not in str(caught.value)


def test_a_client_secret_never_goes_over_plain_http_to_another_host(cache: TokenCache) -> None:
    with pytest.raises(TokenError, match="https"):
        machine_token("http://auth.example.com/oauth2/token", "m2m-client", "s3cret-value", cache=cache)


def test_the_token_command_gets_a_machine_token(
    token_endpoint: TokenEndpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("M2M_SECRET", "s3cret-value")
    argv = ["--client-credentials", "--token-url", token_endpoint.url, "--client-id", "m2m-client"]
    assert run_token_command([*argv, "--client-secret-env", "M2M_SECRET"]) == 0
    assert capsys.readouterr().out.count(".") == 2
    assert token_endpoint.requests[0]["form"]["scope"] == [INVOKE_SCOPE_NAME]
