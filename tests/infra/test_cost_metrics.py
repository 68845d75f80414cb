"""The custom metrics the cost model bills for, against what the function and the canary actually print.

CloudWatch bills each distinct (namespace, metric, dimension values) an EMF line declares as one custom
metric. So the real code is run and its EMF lines collected:

- the inference function as the template deploys it (one embeddings model from the local S3, the image's
  CMD under the Runtime Interface Emulator), over every event in ``events/``;
- the synthetic canary's real handler against the local stack: the bucket on moto, a pool and machine
  client on moto, the project's API Gateway emulator on template.yaml in front of the function, and a
  client_credentials token endpoint (moto serves none) that signs with moto's key for the pool;
- the function again with two model kinds (an embeddings model and a tabular one), and once with a
  model that fails to load, for the per-model-version and failure-only metrics.

The set of distinct metrics must be :mod:`onnx_lambda_tools.cost.metrics`'s catalogue, and its size the
count the cost model bills (:func:`~onnx_lambda_tools.cost.metrics.billed_metrics`, used by
``onnx-lambda cost`` and docs/cost.md).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import secrets
import time
import urllib.parse
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import boto3
import jwt
import pytest
from moto.utilities.utils import load_resource

from onnx_lambda.auth import JwtVerifier
from onnx_lambda_tools.cost import model as cost_model
from onnx_lambda_tools.cost.metrics import CANARY_NAMESPACE, CATALOGUE, billed_metrics
from onnx_lambda_tools.cost.model import Scenario, custom_metrics
from onnx_lambda_tools.invoke import function_environment
from onnx_lambda_tools.local.emulator.front import build_gateway
from onnx_lambda_tools.local.lambda_runtime import LambdaEnvironment
from tests.faults.support import serving
from tests.infra.conftest import LOCAL_CREDENTIALS, ROOT, TEMPLATE, LocalDeployment, load_module
from tests.infra.standins import _LoopbackServer

canary = load_module("synthetic_canary")
EVENTS = sorted((ROOT / "events").glob("*.json"))
SCOPE = "inference/invoke"

#: (namespace, metric, ((dimension, value), ...)): one billed custom metric.
Metric = tuple[str, str, tuple[tuple[str, str], ...]]


def emitted(lines: Iterable[str]) -> set[Metric]:
    """Every metric the EMF lines among ``lines`` declare, with the values of its dimensions."""
    found: set[Metric] = set()
    for line in lines:
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        record = json.loads(line)
        for directive in record["_aws"]["CloudWatchMetrics"]:
            for dimensions in directive["Dimensions"]:
                values = tuple(sorted((name, str(record[name])) for name in dimensions))
                found |= {(directive["Namespace"], metric["Name"], values) for metric in directive["Metrics"]}
    return found


def shape(metrics: Iterable[Metric]) -> set[tuple[str, str, tuple[str, ...]]]:
    """Namespace, metric and dimension names: what the catalogue lists."""
    return {(namespace, name, tuple(key for key, _ in values)) for namespace, name, values in metrics}


def run_function(environment: dict[str, str], log_path: Path, events: Iterable[Path]) -> set[Metric]:
    """A fresh execution environment (the image's CMD under the emulator) over ``events``; what it emitted."""
    with LambdaEnvironment(environment, log_path=log_path) as function:
        for event in events:
            function.invoke(json.loads(event.read_text()), timeout=120)
    return emitted(log_path.read_text().splitlines())


class ClientCredentials(_LoopbackServer):
    """A Cognito domain's ``POST /oauth2/token`` for one pool: the client's secret, flow and scopes are read from
    moto, the token is a client_credentials access token signed with moto's key (what the pool's JWKS holds)."""

    def __init__(self, endpoint_url: str, user_pool_id: str) -> None:
        super().__init__()
        self._cognito = boto3.client("cognito-idp", endpoint_url=endpoint_url, region_name="us-east-1",
                                     aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
        self._pool = user_pool_id
        self._key = jwt.PyJWK(load_resource("cognitoidp/resources/jwks-private.json"))
        self.issuer = f"https://cognito-idp.us-east-1.amazonaws.com/{user_pool_id}"
        self.requests = 0

    def handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, Any]]:
        self.requests += 1
        scheme, _, credentials = handler.headers.get("authorization", "").partition(" ")
        form = dict(urllib.parse.parse_qsl(body.decode()))
        if handler.path != "/oauth2/token" or scheme != "Basic" or form.get("grant_type") != "client_credentials":
            return 400, {"error": "invalid_request"}
        client_id, _, secret = base64.b64decode(credentials).decode().partition(":")
        client = self._cognito.describe_user_pool_client(UserPoolId=self._pool, ClientId=client_id)["UserPoolClient"]
        if not secrets.compare_digest(secret, client["ClientSecret"]) or form.get("scope") != SCOPE:
            return 400, {"error": "invalid_client"}
        now = int(time.time())
        claims = {"sub": client_id, "client_id": client_id, "token_use": "access", "scope": SCOPE, "iss": self.issuer,
                  "iat": now, "auth_time": now, "exp": now + 3600, "version": 2, "jti": str(uuid.uuid4())}  # fmt: skip
        token = jwt.encode(claims, self._key.key, algorithm="RS256", headers={"kid": self._key.key_id})
        return 200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}


@dataclass(frozen=True)
class MachineClient:
    user_pool_id: str
    client_id: str


def machine_client(moto_server: str) -> MachineClient:
    """A pool with the inference/invoke scope and a client_credentials client, as the template creates them."""
    cognito = boto3.client("cognito-idp", endpoint_url=moto_server, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
    pool = cognito.create_user_pool(PoolName=f"cost-{uuid.uuid4().hex[:8]}")["UserPool"]["Id"]
    cognito.create_resource_server(UserPoolId=pool, Identifier="inference", Name="inference",
                                   Scopes=[{"ScopeName": "invoke", "ScopeDescription": "inference"}])  # fmt: skip
    client = cognito.create_user_pool_client(
        UserPoolId=pool, ClientName="machines", GenerateSecret=True, AllowedOAuthFlowsUserPoolClient=True,
        AllowedOAuthFlows=["client_credentials"], AllowedOAuthScopes=[SCOPE],
    )["UserPoolClient"]  # fmt: skip
    return MachineClient(pool, client["ClientId"])


@pytest.fixture(scope="module")
def deployed(local_deployment: LocalDeployment) -> set[Metric]:
    """The function as deployed, over every event; its log holds everything it printed since its init."""
    for event in EVENTS:
        local_deployment.function.invoke(json.loads(event.read_text()), timeout=120)
    log_path = local_deployment.function.log_path
    assert log_path is not None
    return emitted(log_path.read_text().splitlines())


@pytest.fixture(scope="module")
def canary_run(
    moto_server: str, local_deployment: LocalDeployment, tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[dict[str, Any]], set[Metric]]:
    """Two scheduled runs of the real canary through the API emulator: their results and what they emitted."""
    client = machine_client(moto_server)
    gateway = build_gateway(
        TEMPLATE,
        environment={
            **local_deployment.environment_of("InferenceFunction", {}),
            **LOCAL_CREDENTIALS,
            "AWS_REGION": "us-east-1",
            "ONNX_LAMBDA_S3_ENDPOINT_URL": local_deployment.endpoint_url,
        },
        verifier=JwtVerifier(
            issuer=f"https://cognito-idp.us-east-1.amazonaws.com/{client.user_pool_id}",
            jwks_url=f"{local_deployment.endpoint_url}/{client.user_pool_id}/.well-known/jwks.json",
            audience=[client.client_id],
        ),
        max_concurrency=1,
        log_dir=tmp_path_factory.mktemp("gateway"),
        parameters=local_deployment.model_parameters,
    )
    environment = local_deployment.environment_of(
        "SyntheticCanaryFunction",
        {"UserPool": client.user_pool_id, "MachineClient": client.client_id, "HttpApi": "api"},
    )
    printed = io.StringIO()
    with (
        pytest.MonkeyPatch.context() as patch,
        ClientCredentials(moto_server, client.user_pool_id) as tokens,
        serving(gateway) as url,
    ):
        for name, value in {
            **environment,
            **LOCAL_CREDENTIALS,
            "API_URL": url,
            "TOKEN_URL": f"{tokens.url}/oauth2/token",
            "AWS_ENDPOINT_URL_S3": local_deployment.endpoint_url,
            "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER": local_deployment.endpoint_url,
            "HTTP_TIMEOUT_SECONDS": "120",  # the first call waits for the function's cold start
        }.items():
            patch.setenv(name, value)
        _fresh_canary_environment()
        try:
            with contextlib.redirect_stdout(printed):
                results = [canary.handler({}, None) for _ in range(2)]
        finally:
            _fresh_canary_environment()
        assert tokens.requests == 1, "a warm canary reuses its token"
    return results, emitted(printed.getvalue().splitlines())


def _fresh_canary_environment() -> None:
    """No cached clients, token or golden request: a new execution environment of the canary."""
    canary._s3.cache_clear()
    canary._cognito.cache_clear()
    canary._token_cache.clear()
    canary._golden_cache.clear()


@pytest.fixture(scope="module")
def two_model_kinds(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> set[Metric]:
    """The function serving the embeddings model and the tabular one (local files), over every event."""
    return run_function(function_environment(models_dir), tmp_path_factory.mktemp("two") / "function.log", EVENTS)


@pytest.fixture(scope="module")
def failing(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> set[Metric]:
    """The function with a model whose bytes don't match their pin: its init fails."""
    environment = function_environment(models_dir)
    sources = json.loads(environment["ONNX_LAMBDA_MODELS"])[:1]
    sources[0]["sha256"] = "0" * 64
    environment["ONNX_LAMBDA_MODELS"] = json.dumps(sources)
    events = [ROOT / "events" / "health-ready.json"]
    return run_function(environment, tmp_path_factory.mktemp("failing") / "function.log", events)


def test_the_deployed_stack_emits_what_the_cost_model_bills(
    deployed: set[Metric], canary_run: tuple[list[dict[str, Any]], set[Metric]]
) -> None:
    results, from_canary = canary_run
    assert all(result["available"] for result in results), results
    everything = deployed | from_canary
    assert {namespace for namespace, _, _ in from_canary} == {CANARY_NAMESPACE}
    assert shape(everything) == {(m.namespace, m.name, m.dimensions) for m in CATALOGUE if m.when == "always"}
    # One embeddings model version and the canary: what the template deploys, and docs/cost.md's count.
    assert len(everything) == billed_metrics(1, 0, canary=True) == custom_metrics(Scenario())
    assert len({values for _, _, values in everything if ("model_version", "1") in values}) == 1


def test_each_model_version_adds_its_own_metrics(two_model_kinds: set[Metric]) -> None:
    per_model: dict[str, set[str]] = {}
    for _, name, values in two_model_kinds:
        model = dict(values).get("model")
        if model is not None:
            per_model.setdefault(model, set()).add(name)
    assert per_model["all-minilm-l6-v2"] - per_model["breast-cancer-classifier"] == {"Tokens"}
    assert shape(two_model_kinds) <= {(m.namespace, m.name, m.dimensions) for m in CATALOGUE}
    assert len(two_model_kinds) == billed_metrics(1, 1, canary=False)


def test_a_failed_model_load_adds_the_failure_only_metrics(failing: set[Metric]) -> None:
    only_on_failure = {(m.namespace, m.name, m.dimensions) for m in CATALOGUE if m.when == "on failure"}
    assert shape(failing) == only_on_failure
    assert len(failing) == billed_metrics(failures=True) - billed_metrics()


def test_the_canary_constants_are_the_canarys_and_the_templates(template: dict[str, Any]) -> None:
    """The token arithmetic uses the canary's margin, its schedule and the machine client's token lifetime."""
    assert canary.NAMESPACE == CANARY_NAMESPACE
    assert canary.TOKEN_MARGIN_SECONDS == cost_model.CANARY_TOKEN_MARGIN_SECONDS
    resources = template["Resources"]
    schedule = resources["SyntheticCanaryFunction"]["Properties"]["Events"]["EveryFiveMinutes"]["Properties"]
    assert schedule["Schedule"] == f"rate({cost_model.CANARY_INTERVAL_SECONDS // 60} minutes)"
    machine = resources["MachineClient"]["Properties"]
    assert machine["TokenValidityUnits"]["AccessToken"] == "minutes"
    assert machine["AccessTokenValidity"] == Scenario().token_validity_minutes
