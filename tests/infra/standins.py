"""Loopback stand-ins for the AWS endpoints moto has no local version of, for the hook and canary tests.

- :class:`CodeDeployRecorder`: CodeDeploy's ``PutLifecycleEventHookExecutionStatus`` (moto's CodeDeploy
  has applications, groups and deployments, but not this call). It records each call.
- :class:`TokenEndpoint`: a Cognito domain's ``/oauth2/token`` for client_credentials (moto has none).
  It checks the client against the pool in moto, as Cognito does, and issues the JWT Cognito would,
  signed with the key moto signs that pool's tokens with, so the pool's JWKS on moto verifies it.
- :class:`LambdaFront`: Lambda's Invoke API in front of the function under the Runtime Interface
  Emulator, which can answer chosen routes with a 500 instead: a function whose non-inference routes fail
  while its inference routes work (issue 10's image, which the inference-only checks let through).

The canary's API is not stood in for: its test uses the project's API Gateway emulator
(:mod:`onnx_lambda_tools.local.emulator`). They exist only here, so the code under test talks real HTTP to
real sockets and needs no test hooks.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import boto3
import jwt
from moto.utilities.utils import load_resource

from onnx_lambda_tools.local.lambda_runtime import LambdaEnvironment

#: Seconds a client_credentials access token lives (the app client's default).
TOKEN_LIFETIME_SECONDS = 3600
#: What the function's error boundary answers when a route fails (``internal_error_reply``), in short.
ROUTE_FAILURE: dict[str, Any] = {
    "statusCode": 500,
    "headers": {"content-type": "application/json"},
    "body": '{"error": "internal"}',
}


class _LoopbackServer:
    """A threaded HTTP server on 127.0.0.1:<free port>; a context manager that shuts it down."""

    def __init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None

    def handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, Any]]:
        raise NotImplementedError

    def __enter__(self) -> Self:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                status, answer = owner.handle(self, body)
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name=type(self).__name__, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None, "use it as a context manager"
        return f"http://127.0.0.1:{self._server.server_address[1]}"


class CodeDeployRecorder(_LoopbackServer):
    """Answers CodeDeploy's JSON API for the one call a lifecycle hook makes, and records it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict[str, Any]] = []

    def handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, Any]]:
        target = handler.headers.get("x-amz-target", "")
        if target != "CodeDeploy_20141006.PutLifecycleEventHookExecutionStatus":
            return 400, {"__type": "UnknownOperationException", "message": target}
        call = json.loads(body)
        self.calls.append(call)
        return 200, {"lifecycleEventHookExecutionId": call["lifecycleEventHookExecutionId"]}


class TokenEndpoint(_LoopbackServer):
    """``POST /oauth2/token`` with HTTP Basic client authentication, as one pool's Cognito domain serves it.

    The client's secret, allowed flows and scopes are read from the pool in moto (DescribeUserPoolClient).
    The access token has a client_credentials token's claims and is signed with moto's key for every pool
    (``kid`` and all), so a JWT authorizer with the pool's issuer and moto's JWKS URL accepts it. ``clock``
    is the pool's time, which a test may move ahead of the caller's.
    """

    def __init__(
        self, endpoint_url: str, user_pool_id: str, *, region: str = "us-east-1", clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__()
        self._cognito = boto3.client("cognito-idp", endpoint_url=endpoint_url, region_name=region,
                                     aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
        self._user_pool_id = user_pool_id
        self._key = jwt.PyJWK(load_resource("cognitoidp/resources/jwks-private.json"))
        self._clock = clock
        self.issuer = f"https://cognito-idp.{region}.amazonaws.com/{user_pool_id}"
        self.issued: list[str] = []
        self.requests = 0

    def handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, Any]]:
        self.requests += 1
        form = dict(urllib.parse.parse_qsl(body.decode()))
        scheme, _, credentials = handler.headers.get("authorization", "").partition(" ")
        if handler.path != "/oauth2/token" or handler.command != "POST" or scheme != "Basic":
            return 400, {"error": "invalid_request"}
        try:
            client_id, _, secret = base64.b64decode(credentials, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return 400, {"error": "invalid_request"}
        try:
            found = self._cognito.describe_user_pool_client(UserPoolId=self._user_pool_id, ClientId=client_id)
        except self._cognito.exceptions.ResourceNotFoundException:
            return 400, {"error": "invalid_client"}
        client = found["UserPoolClient"]
        if not secrets.compare_digest(secret, client.get("ClientSecret", "")):
            return 400, {"error": "invalid_client"}
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        if "client_credentials" not in client.get("AllowedOAuthFlows", []):
            return 400, {"error": "unauthorized_client"}
        allowed = client.get("AllowedOAuthScopes", [])
        scopes = form.get("scope", "").split() or allowed
        if not scopes or not set(scopes) <= set(allowed):
            return 400, {"error": "invalid_scope"}
        now = int(self._clock())
        claims = {
            "sub": client_id,
            "token_use": "access",
            "scope": " ".join(scopes),
            "auth_time": now,
            "iss": self.issuer,
            "exp": now + TOKEN_LIFETIME_SECONDS,
            "iat": now,
            "version": 2,
            "jti": str(uuid.uuid4()),
            "client_id": client_id,
        }
        token = jwt.encode(claims, self._key.key, algorithm="RS256", headers={"kid": self._key.key_id})
        self.issued.append(token)
        return 200, {"access_token": token, "expires_in": TOKEN_LIFETIME_SECONDS, "token_type": "Bearer"}


class LambdaFront(_LoopbackServer):
    """Lambda's ``Invoke`` (``POST /2015-03-31/functions/<name>/invocations``) in front of the function.

    Events for a route key in ``failing`` get the answer of a function whose route fails; every other
    event reaches the function, and its answer goes back as Lambda returns it.
    """

    def __init__(self, function: LambdaEnvironment) -> None:
        super().__init__()
        self._function = function
        self._lock = threading.Lock()
        self.failing: set[str] = set()

    def handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, Any]]:
        if not re.fullmatch(r"/2015-03-31/functions/[^/]+/invocations", handler.path.split("?")[0]):
            return 404, {"message": f"no such API: {handler.path}"}
        event = json.loads(body)
        with self._lock:
            result = self._function.invoke(event)
        if event.get("routeKey") in self.failing:
            return 200, dict(ROUTE_FAILURE)
        return 200, result.payload
