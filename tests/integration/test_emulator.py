"""API Gateway + Lambda on a laptop: `serve --lambda` over real HTTP, with real local Cognito tokens.

Three servers take part:

* ``lambda_service``: `onnx-lambda serve --lambda` as a user runs it (template.yaml's routes and JWT
  authorizer in front of the real runtime running the image's CMD); it must answer every route as
  ``local_service`` (`make serve`) does;
* an in-process front on template.yaml whose environments run ``lambda_faults.handler``, which echoes
  the event it got: the events the front builds are checked against ``events/``;
* in-process fronts on a small template whose function misbehaves on request (sleeps, raises, exits,
  waits at a barrier): timeouts, crashes, throttling, cold starts, reaping and response mapping.
"""

from __future__ import annotations

import base64
import logging
import math
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import numpy as np
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from moto.utilities.utils import load_resource

from onnx_lambda import protocol
from onnx_lambda.auth import JwtVerifier
from onnx_lambda_tools.local.cloud import LocalStack, free_port
from onnx_lambda_tools.local.emulator.front import GatewayApp, build_gateway
from onnx_lambda_tools.local.emulator.gateway import MalformedResponse, http_response
from onnx_lambda_tools.local.emulator.pool import EnvironmentPool
from onnx_lambda_tools.local.emulator.routes import DEFAULT_ROUTE, load_http_api
from onnx_lambda_tools.local.events import build_event
from onnx_lambda_tools.local.sam_local import template_memory_size
from tests.expected_events import EXPECTED, load_event
from tests.servers import ROOT, LambdaService, LocalService

FAULTS_HANDLER = "tests.integration.lambda_faults.handler"
#: Events a request through an HTTP API can't produce: the authorizer refuses them before the function.
AUTHORIZER_REFUSED = {"bad-no-claims", "bad-no-scope"}
REPLAYABLE = sorted(set(EXPECTED) - AUTHORIZER_REFUSED)
GATEWAY_SET_HEADERS = {
    "host",
    "authorization",
    "content-length",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-port",
}
TABULAR = "breast-cancer-classifier"

FAULTY_TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  FunctionTimeout: {Type: Number, Default: 2}
Resources:
  Faulty:
    Type: AWS::Serverless::Function
    Metadata: {Dockerfile: Dockerfile, DockerContext: .}
    Properties:
      PackageType: Image
      MemorySize: 256
      Timeout: !Ref FunctionTimeout
      Environment:
        Variables:
          GREETING: !Sub "hello from ${AWS::Region}"
      Events:
        Patient:
          Type: HttpApi
          Properties: {Method: ANY, Path: "/fast/{proxy+}"}
        Impatient:
          Type: HttpApi
          Properties: {Method: GET, Path: "/impatient/{proxy+}", TimeoutInMillis: 1000}
        Everything:
          Type: HttpApi
"""


# --- servers -------------------------------------------------------------------------------------------


@contextmanager
def serving(app: GatewayApp) -> Iterator[str]:
    """The front on a free loopback port, in a thread; its environments are stopped on the way out."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", server_header=False)
    )
    thread = threading.Thread(target=server.run, name="gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the front exited while starting"
        assert time.monotonic() < deadline, "the front did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@dataclass
class Gateway:
    url: str
    app: GatewayApp

    @property
    def pool(self) -> EnvironmentPool:
        (pool,) = self.app.pools.values()
        return pool


GatewayFactory = Callable[..., Gateway]


@pytest.fixture
def faulty(tmp_path: Path) -> Iterator[GatewayFactory]:
    """Start a front on the small template whose function misbehaves on request; a fresh pool each."""
    template = tmp_path / "template.yaml"
    template.write_text(FAULTY_TEMPLATE)
    with ExitStack() as stack:

        def start(**options: Any) -> Gateway:
            app = build_gateway(
                template,
                environment={"PYTHONPATH": str(ROOT)},
                verifier=None,
                handler=FAULTS_HANDLER,
                log_dir=tmp_path / "logs",
                **{"max_concurrency": 3, **options},
            )
            return Gateway(stack.enter_context(serving(app)), app)

        yield start


def local_stack_verifier(service: LocalService) -> JwtVerifier:
    stack = LocalStack.load(service.state_file)
    return JwtVerifier(
        issuer=stack.issuer, jwks_url=stack.jwks_url, audience=[stack.user_client_id, stack.m2m_client_id]
    )


@pytest.fixture(scope="module")
def echo(lambda_service: LambdaService, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """template.yaml's routes and authorizer (the local Cognito's) in front of a function that echoes its event."""
    app = build_gateway(
        ROOT / "template.yaml",
        environment={"PYTHONPATH": str(ROOT)},
        verifier=local_stack_verifier(lambda_service),
        handler=FAULTS_HANDLER,
        max_concurrency=1,
        log_dir=tmp_path_factory.mktemp("echo-logs"),
    )
    with serving(app) as url:
        yield url


def replay(url: str, event: dict[str, Any], token: str | None, client: httpx.Client) -> httpx.Response:
    """The HTTP request an event file stands for, sent to ``url``."""
    headers = {k: v for k, v in event["headers"].items() if k not in GATEWAY_SET_HEADERS}
    if token:
        headers["authorization"] = f"Bearer {token}"
    body = event.get("body") or ""
    content = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    query = f"?{event['rawQueryString']}" if event["rawQueryString"] else ""
    return client.request(
        event["requestContext"]["http"]["method"], url + event["rawPath"] + query, headers=headers, content=content
    )


# --- template.yaml is the one source of routes ---------------------------------------------------------


def test_routes_scopes_and_function_come_from_the_template() -> None:
    api = load_http_api(ROOT / "template.yaml")
    routes = {route.key: route for route in api.routes}
    assert routes["GET /v2/health/live"].authorizer is None
    assert routes["GET /v2/health/ready"].authorizer is None
    protected = [route for key, route in routes.items() if "/health/" not in key]
    assert len(protected) >= 9
    for route in protected:
        assert route.authorizer == "CognitoJwt", route.key
        assert set(route.scopes) == {"inference/invoke", "aws.cognito.signin.user.admin"}, route.key
    # RouteScopes with one scope: the second, conditional, one disappears.
    machine_only = load_http_api(ROOT / "template.yaml", {"RouteScopes": "inference/invoke"})
    assert {route.scopes for route in machine_only.routes if route.authorizer} == {("inference/invoke",)}
    (function,) = api.functions.values()
    assert function.package_type == "Image"
    assert function.timeout_seconds < 30  # under the HTTP API's integration timeout
    assert function.environment["ONNX_LAMBDA_AUTH_MODE"] == "apigateway"
    assert function.environment["ONNX_LAMBDA_MODELS"] == "[]"  # the first deploy, before any model
    with_model = load_http_api(ROOT / "template.yaml", {"ModelKey": "models/m/1-a/model.onnx"})
    (function,) = with_model.functions.values()
    assert "ONNX_LAMBDA_MODELS" in function.unresolved_environment  # only a deployed stack knows the bucket


def test_routes_match_as_api_gateway_picks_them(tmp_path: Path) -> None:
    api = load_http_api(ROOT / "template.yaml")
    matched = api.match("GET", "/v2/models/m/versions/7/ready")
    assert matched is not None
    assert matched.route.key == "GET /v2/models/{model_name}/versions/{model_version}/ready"
    assert dict(matched.path_parameters) == {"model_name": "m", "model_version": "7"}
    assert api.match("DELETE", "/v2/models/m") is None
    assert api.match("GET", "/v2/models") is None
    template = tmp_path / "template.yaml"
    template.write_text(FAULTY_TEMPLATE)
    faulty = load_http_api(template)
    assert {r.key: r.integration_timeout_seconds for r in faulty.routes} == {
        "ANY /fast/{proxy+}": 30.0,
        "GET /impatient/{proxy+}": 1.0,
        DEFAULT_ROUTE: 30.0,
    }
    greedy = faulty.match("POST", "/fast/a/b")
    assert greedy is not None
    assert dict(greedy.path_parameters) == {"proxy": "a/b"}
    fallback = faulty.match("POST", "/impatient/a")  # GET only: the rest falls to $default
    assert fallback is not None
    assert fallback.route.key == DEFAULT_ROUTE
    assert faulty.functions["Faulty"].environment["GREETING"] == "hello from us-east-1"


# --- serve --lambda answers as make serve does ----------------------------------------------------------


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60) as client:
        yield client


def assert_close(ours: Any, theirs: Any, where: str = "") -> None:
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), where
        assert ours.keys() == theirs.keys(), where
        for key in theirs:
            assert_close(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list), where
        assert len(ours) == len(theirs), where
        for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_close(a, b, f"{where}[{index}]")
    elif isinstance(theirs, float):
        assert isinstance(ours, float), where
        assert math.isclose(ours, theirs, rel_tol=1e-5, abs_tol=1e-6), where
    else:
        assert ours == theirs, where


@pytest.mark.parametrize("name", REPLAYABLE)
def test_every_route_answers_as_make_serve_does(
    name: str, lambda_service: LambdaService, local_service: LocalService, http: httpx.Client
) -> None:
    event = load_event(name)
    ours = replay(lambda_service.url, event, lambda_service.token, http)
    theirs = replay(local_service.url, event, local_service.token, http)
    assert ours.status_code == theirs.status_code == EXPECTED[name][0], (name, ours.text[:300])
    assert ours.headers["content-type"] == theirs.headers["content-type"]
    assert ours.headers["apigw-requestid"]
    length = theirs.headers.get("inference-header-content-length")
    assert ours.headers.get("inference-header-content-length") == length
    if length is None:
        assert_close(ours.json(), theirs.json(), name)
        return
    a, b = (protocol.decode_infer_response(r.content, int(length)) for r in (ours, theirs))
    assert (a.model_name, a.id) == (b.model_name, b.id)
    for output, expected in b.outputs.items():
        assert np.allclose(a.outputs[output], expected, atol=1e-6), output


def test_cold_starts_are_reported(lambda_service: LambdaService, http: httpx.Client) -> None:
    http.get(f"{lambda_service.url}/v2/health/live")
    reports = lambda_service.report_lines()
    cold = [line for line in reports if "Init Duration:" in line]
    assert 1 <= len(cold) <= 2  # --lambda-concurrency 2: at most two environments ever started
    assert len(reports) > len(cold)  # the rest were warm
    for line in reports:
        fields = dict(part.split(": ", 1) for part in line.split("\t") if ": " in part)
        assert fields["Memory Size"] == f"{template_memory_size()} MB"  # the template's MemorySize
        assert float(fields["Duration"].removesuffix(" ms")) >= 0


# --- the authorizer -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sign(lambda_service: LambdaService) -> Callable[..., str]:
    """A token signed with the key moto signs every pool's tokens with, with any claims."""
    stack = LocalStack.load(lambda_service.state_file)
    key = jwt.PyJWK(load_resource("cognitoidp/resources/jwks-private.json"), algorithm="RS256")

    def signed(signing_key: Any = None, **overrides: Any) -> str:
        now = int(time.time())
        claims = {
            "sub": "3f1c2b7a-0000-4000-8000-000000000001",
            "iss": stack.issuer,
            "client_id": stack.m2m_client_id,
            "token_use": "access",
            "scope": "inference/invoke",
            "iat": now,
            "exp": now + 3600,
            **overrides,
        }
        return jwt.encode(claims, signing_key or key.key, "RS256", headers={"kid": "dummy"})

    return signed


def metadata(service: LocalService, authorization: str | None) -> httpx.Response:
    headers = {"authorization": authorization} if authorization is not None else {}
    return httpx.get(f"{service.url}/v2/models/{TABULAR}", headers=headers, timeout=60)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("no header", "missing Authorization header"),
        ("not bearer", "scheme"),
        ("garbage", "well-formed"),
        ("another key", "signature"),
        ("expired", "expired"),
        ("wrong issuer", "issuer"),
        ("wrong client", "client_id"),
    ],
)
def test_the_authorizer_refuses_with_401(
    case: str, reason: str, lambda_service: LambdaService, sign: Callable[..., str]
) -> None:
    now = int(time.time())
    tokens: dict[str, Callable[[], str | None]] = {
        "no header": lambda: None,
        "not bearer": lambda: f"Basic {sign()}",
        "garbage": lambda: "Bearer not-a-jwt",
        "another key": lambda: f"Bearer {sign(rsa.generate_private_key(public_exponent=65537, key_size=2048))}",
        "expired": lambda: f"Bearer {sign(iat=now - 7200, exp=now - 3600)}",
        "wrong issuer": lambda: f"Bearer {sign(iss='https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Other')}",
        "wrong client": lambda: f"Bearer {sign(client_id='someone-else')}",
    }
    response = metadata(lambda_service, tokens[case]())
    assert response.status_code == 401, case
    assert response.json() == {"message": "Unauthorized"}
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer scope="" error="invalid_token" error_description="'), challenge
    assert reason in challenge, challenge


def test_a_token_without_the_route_scopes_is_forbidden(lambda_service: LambdaService, sign: Callable[..., str]) -> None:
    response = metadata(lambda_service, f"Bearer {sign(scope='other/read')}")
    assert response.status_code == 403
    assert response.json() == {"message": "Forbidden"}
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert "inference/invoke" in response.headers["www-authenticate"]


def test_an_id_token_is_forbidden_on_scoped_routes(lambda_service: LambdaService) -> None:
    id_token = subprocess.run(
        [sys.executable, "-m", "onnx_lambda_tools.cli", "token", "--id-token"],
        cwd=ROOT,
        env=lambda_service.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    response = metadata(lambda_service, f"Bearer {id_token}")
    assert response.status_code == 403
    assert response.json() == {"message": "Forbidden"}


def test_health_is_open_and_unknown_routes_are_api_gateways_404(lambda_service: LambdaService) -> None:
    assert httpx.get(f"{lambda_service.url}/v2/health/live", timeout=60).status_code == 200
    for method, path in (("GET", "/docs"), ("GET", "/v3/nothing"), ("DELETE", f"/v2/models/{TABULAR}")):
        response = httpx.request(method, lambda_service.url + path, headers={"authorization": "Bearer x"})
        assert response.status_code == 404, path
        assert response.json() == {"message": "Not Found"}


# --- payload limits -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "content_type", "size"),
    [
        ("/v1/embeddings", "application/json", 6 * 1024 * 1024 + 1),  # the event is over Lambda's 6 MB
        # Binary bodies travel base64-encoded: 4.8 MB of them make an event of over 6 MB.
        (f"/v2/models/{TABULAR}/infer", "application/octet-stream", 4_800_000),
        ("/v1/embeddings", "application/json", 10 * 1024 * 1024 + 1),  # over API Gateway's own 10 MB
    ],
)
def test_a_request_over_the_payload_limits_is_413(
    path: str, content_type: str, size: int, lambda_service: LambdaService
) -> None:
    response = httpx.post(
        lambda_service.url + path,
        content=b"x" * size,
        headers={"content-type": content_type, "authorization": f"Bearer {lambda_service.token}"},
        timeout=60,
    )
    assert response.status_code == 413
    assert response.json() == {"message": "Request Entity Too Large"}


# --- the events the front builds --------------------------------------------------------------------------


def assert_same_shape(ours: Any, theirs: Any, where: str = "event") -> None:
    """Same keys (recursively) and the same value types; header names and claim names may differ."""
    if where.endswith(".headers") or where.endswith(".claims"):
        assert isinstance(ours, dict), where
        assert all(isinstance(v, str) for v in ours.values()), where
        if where.endswith(".headers"):
            assert set(theirs) <= set(ours), (where, set(theirs) - set(ours))
        return
    assert type(ours) is type(theirs), (where, ours, theirs)
    if isinstance(theirs, dict):
        assert ours.keys() == theirs.keys(), (where, set(ours) ^ set(theirs))
        for key in theirs:
            assert_same_shape(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(theirs, list) and theirs:
        for item in ours:
            assert_same_shape(item, theirs[0], f"{where}[]")


@pytest.mark.parametrize("name", REPLAYABLE)
def test_the_front_builds_events_of_the_events_files_shape(
    name: str, echo: str, lambda_service: LambdaService, http: httpx.Client
) -> None:
    expected = load_event(name)
    response = replay(echo, expected, lambda_service.token, http)
    assert response.status_code == 200, response.text[:300]
    event = response.json()
    assert_same_shape(event, expected)
    for key in ("routeKey", "rawPath", "rawQueryString", "isBase64Encoded", "body", "pathParameters"):
        assert event.get(key) == expected.get(key), key
    assert event["requestContext"]["http"]["method"] == expected["requestContext"]["http"]["method"]


def test_claims_reach_the_function_as_api_gateway_hands_them(
    echo: str, lambda_service: LambdaService, sign: Callable[..., str]
) -> None:
    token = sign(scope="aws.cognito.signin.user.admin inference/invoke", groups=["a", "b"], version=2)
    response = httpx.get(f"{echo}/v2/models/{TABULAR}", headers={"authorization": f"Bearer {token}"})
    jwt_context = response.json()["requestContext"]["authorizer"]["jwt"]
    assert jwt_context["scopes"] == ["aws.cognito.signin.user.admin", "inference/invoke"]
    claims = jwt_context["claims"]
    assert claims["groups"] == "[a b]"
    assert claims["version"] == "2"
    assert isinstance(claims["exp"], str)
    assert claims["exp"].isdigit()
    health = httpx.get(f"{echo}/v2/health/live", headers={"authorization": f"Bearer {token}"}).json()
    assert "authorizer" not in health["requestContext"]  # no authorizer on the route: no claims


def test_the_builder_and_the_front_agree_on_a_bare_request(echo: str) -> None:
    ours = httpx.get(f"{echo}/v2/health/ready?verbose=1&verbose=2", headers={"cookie": "a=1; b=2"}).json()
    theirs = build_event(
        method="GET",
        path="/v2/health/ready",
        route_key="GET /v2/health/ready",
        headers=[("cookie", "a=1; b=2")],
        query_string="verbose=1&verbose=2",
    )
    assert_same_shape(ours, theirs)
    assert ours["cookies"] == ["a=1", "b=2"]
    assert ours["queryStringParameters"] == {"verbose": "1,2"}


# --- the pool: concurrency, cold starts, timeouts, crashes, reaping --------------------------------------


def test_concurrency_grows_the_pool_with_cold_starts_then_throttles(
    faulty: GatewayFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="onnx_lambda_tools.local.emulator")
    gateway = faulty(max_concurrency=3)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    url = f"{gateway.url}/fast/x?fault=barrier&n=3&dir={barrier}"
    with ThreadPoolExecutor(3) as threads:  # only three environments at once can pass the barrier
        responses = list(threads.map(lambda _: httpx.get(url, timeout=60), range(3)))
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert len({r.headers["x-pid"] for r in responses}) == 3
    assert gateway.pool.stats.cold_starts == 3
    assert gateway.pool.environments == 3
    reports = [r.getMessage() for r in caplog.records if r.getMessage().startswith("REPORT")]
    assert sum("Init Duration" in line for line in reports) == 3

    release = tmp_path / "release"
    held_url = f"{gateway.url}/fast/x?fault=hold&until={release}"
    with ThreadPoolExecutor(3) as threads:
        held = [threads.submit(httpx.get, held_url, timeout=60) for _ in range(3)]
        wait_until(lambda: gateway.pool.busy == 3)
        throttled = httpx.get(f"{gateway.url}/fast/x", timeout=60)
        release.touch()
        assert [future.result().status_code for future in held] == [200, 200, 200]
    assert throttled.status_code == 429
    assert throttled.json() == {"message": "Too Many Requests"}
    assert gateway.pool.stats.cold_starts == 3  # the held ones ran warm
    assert gateway.pool.stats.throttles == 1


def test_a_function_timeout_is_a_500_and_the_environment_is_replaced(
    faulty: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="onnx_lambda_tools.local.emulator")
    gateway = faulty()
    first = httpx.get(f"{gateway.url}/fast/x", timeout=60)
    response = httpx.get(f"{gateway.url}/fast/x?fault=sleep&seconds=30", timeout=60)  # the function's Timeout is 2
    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}
    assert gateway.pool.stats.timeouts == 1
    assert gateway.pool.stats.replaced == 1
    assert any("Status: timeout" in r.getMessage() for r in caplog.records)
    after = httpx.get(f"{gateway.url}/fast/x", timeout=60)
    assert after.status_code == 200
    assert gateway.pool.stats.cold_starts == 2  # a new environment, not the timed-out one
    assert after.headers["x-pid"] != first.headers["x-pid"]
    wait_until(lambda: not Path(f"/proc/{first.headers['x-pid']}").exists())


def test_an_integration_timeout_is_a_503_and_the_environment_is_replaced(faulty: GatewayFactory) -> None:
    gateway = faulty(function_timeout_seconds=20)
    first = httpx.get(f"{gateway.url}/impatient/x", timeout=60)
    response = httpx.get(f"{gateway.url}/impatient/x?fault=sleep&seconds=15", timeout=60)  # TimeoutInMillis: 1000
    assert response.status_code == 503
    assert response.json() == {"message": "Service Unavailable"}
    wait_until(lambda: gateway.pool.stats.replaced == 1)
    assert gateway.pool.environments == 0
    after = httpx.get(f"{gateway.url}/impatient/x", timeout=60)
    assert after.status_code == 200
    assert after.headers["x-pid"] != first.headers["x-pid"]
    assert gateway.pool.stats.cold_starts == 2


@pytest.mark.parametrize(
    ("fault", "replaced"),
    [
        ("exit", True),  # the runtime process dies: the environment is not reused
        ("raise", False),  # an unhandled exception: Lambda keeps the environment
    ],
)
def test_a_function_error_is_a_500_and_the_next_request_succeeds(
    fault: str, replaced: bool, faulty: GatewayFactory
) -> None:
    gateway = faulty()
    first = httpx.get(f"{gateway.url}/fast/x", timeout=60)
    response = httpx.get(f"{gateway.url}/fast/x?fault={fault}", timeout=60)
    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}
    assert "Traceback" not in response.text
    after = httpx.get(f"{gateway.url}/fast/x", timeout=60)
    assert after.status_code == 200
    assert gateway.pool.stats.function_errors == 1
    assert gateway.pool.stats.replaced == int(replaced)
    assert gateway.pool.stats.cold_starts == 1 + int(replaced)
    assert (after.headers["x-pid"] != first.headers["x-pid"]) is replaced


def test_idle_environments_are_reaped(faulty: GatewayFactory) -> None:
    gateway = faulty(idle_seconds=0.5)
    response = httpx.get(f"{gateway.url}/fast/x", timeout=60)
    assert response.status_code == 200
    wait_until(lambda: gateway.pool.stats.reaped == 1)
    assert gateway.pool.environments == 0
    wait_until(lambda: not Path(f"/proc/{response.headers['x-pid']}").exists())
    assert httpx.get(f"{gateway.url}/fast/x", timeout=60).status_code == 200
    assert gateway.pool.stats.cold_starts == 2


def test_the_functions_response_is_mapped_by_the_payload_2_0_rules(faulty: GatewayFactory) -> None:
    gateway = faulty()
    url = f"{gateway.url}/fast/respond?fault=respond"
    binary = bytes(range(256))
    response = httpx.post(
        url,
        json={
            "statusCode": 201,
            "headers": {"content-type": "application/octet-stream", "x-one": "1"},
            "multiValueHeaders": {"x-many": ["a", "b"]},
            "cookies": ["session=abc; Secure", "theme=dark"],
            "body": base64.b64encode(binary).decode(),
            "isBase64Encoded": True,
        },
        timeout=60,
    )
    assert response.status_code == 201
    assert response.content == binary
    assert response.headers["x-one"] == "1"
    assert response.headers.get_list("x-many") == ["a", "b"]
    assert response.headers.get_list("set-cookie") == ["session=abc; Secure", "theme=dark"]
    no_status = httpx.post(url, json={"answer": 42}, timeout=60)
    assert no_status.status_code == 200
    assert no_status.headers["content-type"] == "application/json"
    assert no_status.json() == {"answer": 42}
    malformed = httpx.post(url, json={"statusCode": "teapot"}, timeout=60)
    assert malformed.status_code == 500
    assert malformed.json() == {"message": "Internal Server Error"}
    too_big = httpx.get(f"{gateway.url}/fast/x?fault=big&bytes={6 * 1024 * 1024 + 1}", timeout=60)
    assert too_big.status_code == 500


def test_default_route_takes_what_no_other_route_matches(faulty: GatewayFactory) -> None:
    gateway = faulty()
    event = httpx.post(f"{gateway.url}/anything/else?q=1", content=b"\x00\x01", timeout=60).json()
    assert event["routeKey"] == "$default"
    assert event["isBase64Encoded"] is True  # no content-type: API Gateway can't tell it's text
    assert base64.b64decode(event["body"]) == b"\x00\x01"
    assert "pathParameters" not in event


@pytest.mark.parametrize(
    "payload",
    [b"not json", b'{"statusCode": 99}', b'{"statusCode": 200, "body": 5}', b'{"statusCode": 200, "cookies": "a"}'],
)
def test_malformed_responses_are_refused(payload: bytes) -> None:
    with pytest.raises(MalformedResponse):
        http_response(payload)


# --- helpers ----------------------------------------------------------------------------------------------


def wait_until(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    """Wait for something the server does in the background; fail (not flake) if it never happens."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never became true"
        time.sleep(0.02)
