"""API Gateway's own behaviour: its error answers, the JWT authorizer, and the payload 2.0 response mapping.

Statuses and messages are the ones an HTTP API sends, so a client sees the same thing here as in AWS:

* no route: 404 ``{"message":"Not Found"}``;
* the JWT authorizer: 401 ``{"message":"Unauthorized"}`` with a ``www-authenticate`` header that says why,
  403 ``{"message":"Forbidden"}`` when the token has none of the route's scopes;
* a request over the limits: 413 ``{"message":"Request Entity Too Large"}``;
* over the function's concurrency: 429 ``{"message":"Too Many Requests"}``;
* a function error (an unhandled exception, a crash, the function's own timeout, a response in the
  wrong shape): 500 ``{"message":"Internal Server Error"}``. The Lambda guide says 502 for this, but that
  is a REST API's answer; an HTTP API answers 500 with this capitalisation (see the HTTP API
  troubleshooting guide, "My API with a Lambda integration returns {"message":"Internal Server Error"}");
* no answer within the integration timeout (30 s at most): 503 ``{"message":"Service Unavailable"}``,
  which is what HTTP APIs send on an integration timeout (a REST API sends 504).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final

from onnx_lambda.auth import JwtVerifier, Principal, bearer_token, require_any_scope
from onnx_lambda.errors import Forbidden, Unauthorized

#: API Gateway HTTP API's request body limit.
MAX_REQUEST_BYTES: Final = 10 * 1024 * 1024
#: Lambda's synchronous invocation limit, on the event and on the response alike.
MAX_INVOKE_PAYLOAD_BYTES: Final = 6 * 1024 * 1024

NOT_FOUND: Final = 404
UNAUTHORIZED: Final = 401
FORBIDDEN: Final = 403
PAYLOAD_TOO_LARGE: Final = 413
THROTTLED: Final = 429
FUNCTION_ERROR: Final = 500
INTEGRATION_TIMEOUT: Final = 503

_MESSAGES: Final[Mapping[int, str]] = {
    NOT_FOUND: "Not Found",
    UNAUTHORIZED: "Unauthorized",
    FORBIDDEN: "Forbidden",
    PAYLOAD_TOO_LARGE: "Request Entity Too Large",
    THROTTLED: "Too Many Requests",
    FUNCTION_ERROR: "Internal Server Error",
    INTEGRATION_TIMEOUT: "Service Unavailable",
}
_DROPPED_RESPONSE_HEADERS: Final = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})

Headers = list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class GatewayResponse:
    status: int
    headers: Headers
    body: bytes


class MalformedResponse(Exception):
    """The function answered, but not in the payload 2.0 response format."""


def gateway_error(status: int, headers: Sequence[tuple[str, str]] = ()) -> GatewayResponse:
    """One of API Gateway's own answers: ``{"message": "..."}``."""
    message = _MESSAGES.get(status) or HTTPStatus(status).phrase
    body = json.dumps({"message": message}, separators=(",", ":")).encode()
    return GatewayResponse(status, [("content-type", "application/json"), *headers], body)


@dataclass(frozen=True, slots=True)
class Authorized:
    """The claims and scopes the authorizer hands to the function."""

    claims: Mapping[str, Any]
    scopes: list[str] | None


def authorize(
    verifier: JwtVerifier, authorization: str | None, route_scopes: Sequence[str]
) -> Authorized | GatewayResponse:
    """The JWT authorizer on one request: the claims for the event, or the 401/403 to answer with.

    The rules are :mod:`onnx_lambda.auth`'s, which are API Gateway's; the ``www-authenticate`` header
    has API Gateway's form (``Bearer scope="" error="invalid_token" error_description="..."``).
    """
    try:
        principal = verifier.verify(bearer_token(authorization))
    except Unauthorized as refusal:
        return gateway_error(UNAUTHORIZED, [("www-authenticate", _challenge("", "invalid_token", refusal.message))])
    try:
        require_any_scope(principal, route_scopes)
    except Forbidden as refusal:
        challenge = _challenge(" ".join(route_scopes), "insufficient_scope", refusal.message)
        return gateway_error(FORBIDDEN, [("www-authenticate", challenge)])
    return Authorized(claims=principal.claims, scopes=_token_scopes(principal) if route_scopes else None)


def _token_scopes(principal: Principal) -> list[str]:
    """The token's scopes in the order the token lists them, as API Gateway passes them on."""
    scope = principal.claims.get("scope")
    if isinstance(scope, str):
        return scope.split()
    return sorted(principal.scopes)


def _challenge(scope: str, error: str, description: str) -> str:
    def quoted(text: str) -> str:
        return text.replace("\\", "\\\\").replace('"', '\\"')

    return f'Bearer scope="{quoted(scope)}" error="{error}" error_description="{quoted(description)}"'


def http_response(payload: bytes) -> GatewayResponse:
    """The HTTP response for a function's payload, by the payload format 2.0 rules.

    A JSON object with ``statusCode`` is a response (``headers``, ``multiValueHeaders``, ``cookies``,
    ``body``, ``isBase64Encoded``); anything else valid is the body of a 200 ``application/json``.
    """
    try:
        document = json.loads(payload)
    except ValueError:
        raise MalformedResponse("the function's response is not JSON") from None
    if not isinstance(document, dict) or "statusCode" not in document:
        return GatewayResponse(200, [("content-type", "application/json")], payload)
    status = document["statusCode"]
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise MalformedResponse(f"statusCode must be an HTTP status, got {status!r}")
    headers: Headers = []
    for name, value in _mapping(document, "headers").items():
        if name.lower() not in _DROPPED_RESPONSE_HEADERS:
            headers.append((name.lower(), _header_value(value)))
    for name, values in _mapping(document, "multiValueHeaders").items():
        if not isinstance(values, list):
            raise MalformedResponse(f"multiValueHeaders[{name!r}] must be a list")
        if name.lower() not in _DROPPED_RESPONSE_HEADERS:
            headers.extend((name.lower(), _header_value(value)) for value in values)
    cookies = document.get("cookies") or []
    if not isinstance(cookies, list) or not all(isinstance(cookie, str) for cookie in cookies):
        raise MalformedResponse("cookies must be a list of strings")
    headers.extend(("set-cookie", cookie) for cookie in cookies)
    return GatewayResponse(status, headers, _body(document))


def _mapping(document: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = document.get(key) or {}
    if not isinstance(value, dict):
        raise MalformedResponse(f"{key} must be an object")
    return value


def _header_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise MalformedResponse(f"a header value must be a string, got {type(value).__name__}")


def _body(document: Mapping[str, Any]) -> bytes:
    body = document.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise MalformedResponse("body must be a string")
    if document.get("isBase64Encoded") is True:
        try:
            return base64.b64decode(body, validate=True)
        except binascii.Error:
            raise MalformedResponse("isBase64Encoded is true but the body is not base64") from None
    return body.encode()
