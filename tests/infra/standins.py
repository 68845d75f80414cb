"""Loopback stand-ins for the AWS endpoints moto has no local version of, for the hook and canary tests.

- :class:`CodeDeployRecorder`: CodeDeploy's ``PutLifecycleEventHookExecutionStatus`` (moto's CodeDeploy
  has applications, groups and deployments, but not this call). It records each call.
- :class:`TokenEndpoint`: a Cognito domain's ``/oauth2/token`` for client_credentials (moto has none).
  It checks the client's id and secret against the pool in moto, as Cognito does.
- :class:`ApiFront`: the HTTP API in front of the function: a bearer token the token endpoint issued,
  mapped to a payload 2.0 event with the token's claims, invoked through the Runtime Interface Emulator.
- :class:`LambdaFront`: Lambda's Invoke API in front of the function under the Runtime Interface
  Emulator, which can answer chosen routes with a 500 instead: a function whose non-inference routes fail
  while its inference routes work (issue 10's image, which the inference-only checks let through).

They exist only here, so the code under test talks real HTTP to real sockets and needs no test hooks.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from onnx_lambda_tools.local.events import build_event
from onnx_lambda_tools.local.lambda_runtime import LambdaEnvironment

ROUTES = {
    ("POST", re.compile(r"^/v2/models/(?P<model_name>[^/]+)/infer$")): "POST /v2/models/{model_name}/infer",
    ("GET", re.compile(r"^/v2/models/(?P<model_name>[^/]+)$")): "GET /v2/models/{model_name}",
}
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
    """``POST /oauth2/token`` with HTTP Basic client authentication, as a Cognito domain serves it."""

    def __init__(self, client_secret: Callable[[str], str | None], scope: str) -> None:
        super().__init__()
        self._client_secret = client_secret
        self._scope = scope
        self.issued: dict[str, str] = {}  # token -> client id
        self.requests = 0

    def handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, Any]]:
        self.requests += 1
        form = dict(urllib.parse.parse_qsl(body.decode()))
        scheme, _, credentials = handler.headers.get("authorization", "").partition(" ")
        if handler.path != "/oauth2/token" or scheme != "Basic":
            return 400, {"error": "invalid_request"}
        client_id, _, secret = base64.b64decode(credentials).decode().partition(":")
        expected = self._client_secret(client_id)
        if expected is None or not secrets.compare_digest(secret, expected):
            return 400, {"error": "invalid_client"}
        if form.get("grant_type") != "client_credentials" or form.get("scope") != self._scope:
            return 400, {"error": "invalid_grant"}
        token = secrets.token_urlsafe(24)
        self.issued[token] = client_id
        return 200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}

    def revoke_all(self) -> None:
        self.issued.clear()


class ApiFront(_LoopbackServer):
    """The public API's infer and model metadata routes: the JWT authorizer's decision, then the function,
    one call at a time. A route key in ``failing`` is answered as the function answers a route that fails."""

    def __init__(self, tokens: TokenEndpoint, function: LambdaEnvironment, issuer: str, scope: str) -> None:
        super().__init__()
        self._tokens = tokens
        self._function = function
        self._issuer = issuer
        self._scope = scope
        self._lock = threading.Lock()  # an execution environment serves one invocation at a time
        self.failing: set[str] = set()
        self.calls: list[str] = []

    def handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, Any]]:
        scheme, _, token = handler.headers.get("authorization", "").partition(" ")
        client_id = self._tokens.issued.get(token) if scheme == "Bearer" else None
        if client_id is None:
            return 401, {"message": "Unauthorized"}
        method = handler.command
        matches = [
            (key, found)
            for (route_method, pattern), key in ROUTES.items()
            if route_method == method and (found := pattern.match(handler.path)) is not None
        ]
        if not matches:
            return 404, {"message": "Not Found"}
        ((route_key, route),) = matches
        self.calls.append(route_key)
        event = build_event(
            method=method,
            path=handler.path,
            route_key=route_key,
            headers=[("content-type", handler.headers.get("content-type", "application/json"))] if body else [],
            body=body or None,
            path_parameters=route.groupdict(),
            claims={
                "iss": self._issuer,
                "sub": client_id,
                "client_id": client_id,
                "token_use": "access",
                "scope": self._scope,
            },
            scopes=[self._scope],
        )
        with self._lock:
            result = self._function.invoke(event)
        if result.function_error or not isinstance(result.payload, dict):
            return 502, {"message": "Internal Server Error"}
        response = ROUTE_FAILURE if route_key in self.failing else result.payload
        text = response.get("body") or ""
        if response.get("isBase64Encoded"):
            text = base64.b64decode(text).decode()
        return int(response["statusCode"]), json.loads(text) if text else {}


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
