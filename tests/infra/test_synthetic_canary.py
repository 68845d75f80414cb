"""The synthetic canary's real code against a local deployment.

S3 and the user pool are moto's server (the canary reads the machine client's secret from it with
DescribeUserPoolClient, as in AWS). moto has no OAuth2 token endpoint and no API Gateway in front of a
Lambda function, so loopback stand-ins play those parts (``standins.py``): the token endpoint checks
the client's credentials against moto's pool, and the API front admits only the tokens it issued
before invoking the function under the Runtime Interface Emulator.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from onnx_lambda_tools.local.cloud import free_port
from tests.infra.conftest import LOCAL_CREDENTIALS, LocalDeployment, load_module
from tests.infra.standins import ApiFront, TokenEndpoint

canary = load_module("synthetic_canary")
SCOPE = "inference/invoke"


@dataclass(frozen=True)
class MachineClient:
    user_pool_id: str
    client_id: str
    client_secret: str


@pytest.fixture(scope="module")
def machine_client(moto_server: str) -> MachineClient:
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


@pytest.fixture
def token_endpoint(moto_server: str, machine_client: MachineClient) -> Iterator[TokenEndpoint]:
    cognito = boto3.client("cognito-idp", endpoint_url=moto_server, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip

    def secret_of(client_id: str) -> str | None:
        try:
            found = cognito.describe_user_pool_client(UserPoolId=machine_client.user_pool_id, ClientId=client_id)
        except cognito.exceptions.ResourceNotFoundException:
            return None
        return found["UserPoolClient"].get("ClientSecret")

    with TokenEndpoint(secret_of, SCOPE) as endpoint:
        yield endpoint


@pytest.fixture
def api(local_deployment: LocalDeployment, token_endpoint: TokenEndpoint) -> Iterator[ApiFront]:
    issuer = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_local"
    with ApiFront(token_endpoint, local_deployment.function, issuer, SCOPE) as front:
        yield front


@pytest.fixture
def canary_environment(
    local_deployment: LocalDeployment,
    machine_client: MachineClient,
    token_endpoint: TokenEndpoint,
    api: ApiFront,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, str]]:
    environment = local_deployment.environment_of(
        "SyntheticCanaryFunction",
        {"UserPool": machine_client.user_pool_id, "MachineClient": machine_client.client_id, "HttpApi": "api"},
    )
    assert environment["TOKEN_SCOPE"] == SCOPE
    # The two URLs point at the stand-ins instead of API Gateway and the Cognito domain.
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


def test_a_healthy_api_is_available(
    canary_environment: dict[str, str],
    token_endpoint: TokenEndpoint,
    api: ApiFront,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first = canary.handler({}, None)
    second = canary.handler({}, None)
    assert first["available"] is True, first["problems"]
    assert second["available"] is True
    assert token_endpoint.requests == 1, "a warm canary reuses its token"
    assert api.calls == ["POST /v2/models/{model_name}/infer", "GET /v2/models/{model_name}"] * 2
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
    canary_environment: dict[str, str],
    api: ApiFront,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Inference right, model metadata a 500: the image of issue 10, whose FastAPI routes all failed."""
    api.failing.add("GET /v2/models/{model_name}")
    result = canary.handler({}, None)
    assert result["available"] is False
    name = local_deployment.manifest["name"]
    assert result["problems"] == [f'GET {api.url}/v2/models/{name}: HTTP 500: {{"error": "internal"}}']
    (metric,) = _metrics(capsys.readouterr().out)
    assert metric["Availability"] == 0.0


def test_a_revoked_token_is_replaced_once(canary_environment: dict[str, str], token_endpoint: TokenEndpoint) -> None:
    assert canary.handler({}, None)["available"] is True
    token_endpoint.revoke_all()
    result = canary.handler({}, None)
    assert result["available"] is True, result["problems"]
    assert token_endpoint.requests == 2


def test_an_api_that_refuses_the_token_is_unavailable(
    canary_environment: dict[str, str], token_endpoint: TokenEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(token_endpoint, "issued", _Forgetful())
    result = canary.handler({}, None)
    assert result["available"] is False
    assert "HTTP 401" in result["problems"][0]
    assert token_endpoint.requests == 2, "one fresh token, then it gives up"


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
    for token in token_endpoint.issued:
        assert token not in output


class _Forgetful(dict[str, str]):
    """An issued-token table that never remembers: every bearer token is refused, as after a revocation."""

    def __setitem__(self, key: str, value: str) -> None:
        pass
