"""The synthetic canary's real code against a local deployment, through the project's API Gateway emulator.

- S3 and the user pool are moto's server. The canary reads the machine client's secret from the pool
  with DescribeUserPoolClient, as in AWS.
- The API is :mod:`onnx_lambda_tools.local.emulator` on template.yaml: its routes, and its JWT authorizer
  checking each token's signature against the pool's JWKS on moto, its issuer, client and scopes. Behind
  it, the inference function runs the image's CMD under the Runtime Interface Emulator.
- moto has no OAuth2 token endpoint, and the local stack (``onnx_lambda_tools.local.cloud``) serves none.
  So ``standins.TokenEndpoint`` issues the token. It checks the client against the pool in moto and signs
  with moto's key for the pool, so the authorizer accepts only what Cognito would have issued.
"""

from __future__ import annotations

import copy
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from starlette.types import Message, Receive, Scope, Send

from onnx_lambda.auth import JwtVerifier
from onnx_lambda_tools.local.cloud import free_port
from onnx_lambda_tools.local.emulator.front import GatewayApp, build_gateway
from tests.faults.support import serving
from tests.infra.conftest import LOCAL_CREDENTIALS, ROOT, TEMPLATE, LocalDeployment, load_module
from tests.infra.standins import TokenEndpoint

canary = load_module("synthetic_canary")
SCOPE = "inference/invoke"
#: API Gateway's answer when the function fails (an HTTP API's, not a REST API's; see docs/emulator.md).
FUNCTION_ERROR_BODY = '{"message":"Internal Server Error"}'


@dataclass(frozen=True)
class MachineClient:
    user_pool_id: str
    client_id: str
    client_secret: str


def create_machine_client(moto_server: str) -> MachineClient:
    """A pool with the inference/invoke scope and a client_credentials client, as the template creates."""
    cognito = boto3.client("cognito-idp", endpoint_url=moto_server, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
    pool = cognito.create_user_pool(PoolName=f"canary-{uuid.uuid4().hex[:8]}")["UserPool"]["Id"]
    cognito.create_resource_server(
        UserPoolId=pool,
        Identifier="inference",
        Name="inference",
        Scopes=[{"ScopeName": "invoke", "ScopeDescription": "call the inference routes"}],
    )
    client = cognito.create_user_pool_client(
        UserPoolId=pool,
        ClientName="machines",
        GenerateSecret=True,
        AllowedOAuthFlowsUserPoolClient=True,
        AllowedOAuthFlows=["client_credentials"],
        AllowedOAuthScopes=[SCOPE],
    )["UserPoolClient"]
    return MachineClient(pool, client["ClientId"], client["ClientSecret"])


class PoolClock:
    """The time at Cognito and API Gateway, which a test may move ahead of the canary's own (``time.time``)."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def __call__(self) -> float:
        return time.time() + self.ahead


class Recording:
    """The emulator's front unchanged, noting the method, path and status of each request it answers."""

    def __init__(self, app: GatewayApp) -> None:
        self.app = app
        self.calls: list[tuple[str, str, int]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def noting(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.calls.append((scope["method"], scope["path"], message["status"]))
            await send(message)

        await self.app(scope, receive, noting)


@dataclass(frozen=True)
class Api:
    url: str
    front: Recording


@pytest.fixture(scope="module")
def machine_client(moto_server: str) -> MachineClient:
    return create_machine_client(moto_server)


@pytest.fixture(scope="module")
def pool_clock() -> PoolClock:
    return PoolClock()


def start_api(
    local_deployment: LocalDeployment,
    machine_client: MachineClient,
    clock: PoolClock,
    log_dir: Path,
    handler: str | None = None,
) -> GatewayApp:
    """template.yaml's HTTP API in front of the inference function, as `onnx-lambda serve --lambda` builds it,
    with this deployment's function environment and an authorizer that trusts this pool's machine client."""
    environment = {
        **local_deployment.environment_of("InferenceFunction", {}),
        **LOCAL_CREDENTIALS,
        "AWS_REGION": "us-east-1",
        "ONNX_LAMBDA_S3_ENDPOINT_URL": local_deployment.endpoint_url,
        "PYTHONPATH": str(ROOT),  # for a handler from tests/
    }
    authorizer = JwtVerifier(
        issuer=f"https://cognito-idp.us-east-1.amazonaws.com/{machine_client.user_pool_id}",
        jwks_url=f"{local_deployment.endpoint_url}/{machine_client.user_pool_id}/.well-known/jwks.json",
        audience=[machine_client.client_id],
        clock=clock,
    )
    return build_gateway(
        TEMPLATE,
        environment=environment,
        verifier=authorizer,
        max_concurrency=1,
        log_dir=log_dir,
        handler=handler,
        parameters=local_deployment.model_parameters,
    )


def get(url: str) -> tuple[int, str]:
    """An unauthenticated GET (the health routes); the status and body, errors included."""
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture(scope="module")
def serving_api(
    local_deployment: LocalDeployment,
    machine_client: MachineClient,
    pool_clock: PoolClock,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Api]:
    front = Recording(start_api(local_deployment, machine_client, pool_clock, tmp_path_factory.mktemp("api-logs")))
    with serving(front) as url:
        # The cold start (model fetch, session) before the canary's first call, which allows it 10 s.
        assert get(f"{url}/v2/health/ready")[0] == 200
        yield Api(url, front)


@pytest.fixture
def api(serving_api: Api, pool_clock: PoolClock) -> Api:
    serving_api.front.calls.clear()
    pool_clock.ahead = 0.0
    return serving_api


@pytest.fixture
def token_endpoint(moto_server: str, machine_client: MachineClient, pool_clock: PoolClock) -> Iterator[TokenEndpoint]:
    with TokenEndpoint(moto_server, machine_client.user_pool_id, clock=pool_clock) as endpoint:
        yield endpoint


@pytest.fixture
def canary_environment(
    local_deployment: LocalDeployment,
    machine_client: MachineClient,
    token_endpoint: TokenEndpoint,
    api: Api,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, str]]:
    environment = local_deployment.environment_of(
        "SyntheticCanaryFunction",
        {"UserPool": machine_client.user_pool_id, "MachineClient": machine_client.client_id, "HttpApi": "api"},
    )
    assert environment["TOKEN_SCOPE"] == SCOPE
    # The two URLs point at the emulator and the token endpoint instead of API Gateway and the Cognito domain.
    environment |= {"API_URL": api.url, "TOKEN_URL": f"{token_endpoint.url}/oauth2/token"}
    for name, value in {
        **environment,
        **LOCAL_CREDENTIALS,
        "AWS_ENDPOINT_URL_S3": local_deployment.endpoint_url,
        "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER": local_deployment.endpoint_url,
    }.items():
        monkeypatch.setenv(name, value)
    _forget()
    yield environment
    _forget()


def _forget() -> None:
    """A fresh execution environment: no cached clients, token or golden request."""
    canary._s3.cache_clear()
    canary._cognito.cache_clear()
    canary._token_cache.clear()
    canary._golden_cache.clear()


def _metrics(output: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [line for line in lines if "_aws" in line]


def _routes(local_deployment: LocalDeployment) -> tuple[tuple[str, str], tuple[str, str]]:
    name = local_deployment.manifest["name"]
    return ("POST", f"/v2/models/{name}/infer"), ("GET", f"/v2/models/{name}")


def test_a_healthy_api_is_available(
    local_deployment: LocalDeployment,
    canary_environment: dict[str, str],
    token_endpoint: TokenEndpoint,
    api: Api,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first = canary.handler({}, None)
    second = canary.handler({}, None)
    assert first["available"] is True, first["problems"]
    assert second["available"] is True
    assert token_endpoint.requests == 1, "a warm canary reuses its token"
    infer, metadata = _routes(local_deployment)
    assert api.front.calls == [(*infer, 200), (*metadata, 200)] * 2
    (metric, _) = _metrics(capsys.readouterr().out)
    directive = metric["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "OnnxLambda/Canary"
    assert directive["Dimensions"] == [["Stack"]]
    assert metric["Stack"] == canary_environment["STACK_NAME"]
    assert metric["Availability"] == 1.0
    assert metric["Latency"] > 0


def test_a_wrong_answer_makes_the_api_unavailable(
    local_deployment: LocalDeployment,
    canary_environment: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    manifest = copy.deepcopy(local_deployment.manifest)
    manifest["golden"]["infer_response"]["outputs"][0]["data"][0] += 1.0
    for name, value in local_deployment.put_manifest_beside("canary-wrong", manifest).items():
        monkeypatch.setenv(name, value)
    result = canary.handler({}, None)
    assert result["available"] is False
    assert any("atol" in problem for problem in result["problems"])
    (metric,) = _metrics(capsys.readouterr().out)
    assert metric["Availability"] == 0.0
    assert "Latency" in metric, "the API answered: its latency still counts"


def test_a_failing_metadata_route_makes_the_api_unavailable(
    local_deployment: LocalDeployment,
    machine_client: MachineClient,
    pool_clock: PoolClock,
    canary_environment: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Inference right, model metadata a 500: issue 10's image, whose FastAPI routes all failed.

    The emulator has no fault switch; its ``handler`` override runs the real handler with issue 10's defect
    put back (``broken_app_function``) behind the same front and authorizer."""
    broken = Recording(
        start_api(
            local_deployment, machine_client, pool_clock, tmp_path, "tests.infra.broken_app_function.lambda_handler"
        )
    )
    with serving(broken) as url:
        # Warm, and broken as intended: health is a FastAPI route too.
        assert get(f"{url}/v2/health/ready") == (500, FUNCTION_ERROR_BODY)
        monkeypatch.setenv("API_URL", url)
        result = canary.handler({}, None)
    assert result["available"] is False
    name = local_deployment.manifest["name"]
    assert result["problems"] == [f"GET {url}/v2/models/{name}: HTTP 500: {FUNCTION_ERROR_BODY}"]
    infer, metadata = _routes(local_deployment)
    assert broken.calls[1:] == [(*infer, 200), (*metadata, 500)]
    (metric,) = _metrics(capsys.readouterr().out)
    assert metric["Availability"] == 0.0


def test_a_cached_token_the_api_refuses_is_replaced_once(
    local_deployment: LocalDeployment,
    canary_environment: dict[str, str],
    token_endpoint: TokenEndpoint,
    api: Api,
    pool_clock: PoolClock,
) -> None:
    """A warm canary's token that has expired by the pool's and the authorizer's clock while the canary's own
    still counts it good (as after a revocation, the API refuses it): one 401, one fresh token, on it goes."""
    assert canary.handler({}, None)["available"] is True
    pool_clock.ahead = 2 * 3600.0  # past the token's exp and the authorizer's leeway
    result = canary.handler({}, None)
    assert result["available"] is True, result["problems"]
    assert token_endpoint.requests == 2
    infer, metadata = _routes(local_deployment)
    assert api.front.calls == [(*infer, 200), (*metadata, 200), (*infer, 401), (*infer, 200), (*metadata, 200)]


def test_an_api_that_refuses_the_token_is_unavailable(
    moto_server: str,
    local_deployment: LocalDeployment,
    canary_environment: dict[str, str],
    api: Api,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The canary set up with another pool's client than the one the API's authorizer trusts: its tokens are
    real, and refused (401); one fresh token is refused too, and it gives up."""
    other = create_machine_client(moto_server)
    with TokenEndpoint(moto_server, other.user_pool_id) as elsewhere:
        monkeypatch.setenv("USER_POOL_ID", other.user_pool_id)
        monkeypatch.setenv("CLIENT_ID", other.client_id)
        monkeypatch.setenv("TOKEN_URL", f"{elsewhere.url}/oauth2/token")
        result = canary.handler({}, None)
    assert result["available"] is False
    assert "HTTP 401" in result["problems"][0]
    assert elsewhere.requests == 2, "one fresh token, then it gives up"
    infer, _ = _routes(local_deployment)
    assert api.front.calls == [(*infer, 401)] * 2


def test_an_unreachable_api_is_unavailable(
    canary_environment: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("API_URL", f"http://127.0.0.1:{free_port()}")
    result = canary.handler({}, None)
    assert result["available"] is False
    assert result["latency_ms"] is None
    (metric,) = _metrics(capsys.readouterr().out)
    assert metric["Availability"] == 0.0


def test_bad_client_credentials_are_unavailable_and_never_logged(
    machine_client: MachineClient,
    canary_environment: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CLIENT_ID", "no-such-client")
    result = canary.handler({}, None)
    assert result["available"] is False
    output = capsys.readouterr().out
    assert machine_client.client_secret not in output
    assert "Basic" not in output


def test_the_secret_and_token_never_reach_the_logs(
    machine_client: MachineClient,
    canary_environment: dict[str, str],
    token_endpoint: TokenEndpoint,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert canary.handler({}, None)["available"] is True
    output = capsys.readouterr().out
    assert machine_client.client_secret not in output
    assert token_endpoint.issued
    for token in token_endpoint.issued:
        assert token not in output
