"""API Gateway HTTP API payload format 2.0 events, built the way API Gateway builds them.

One builder serves the committed ``events/``, the tests, the benchmarks and the local API Gateway
emulator, so all of them hand the function the same shape that production does. The function itself
only reads events: :mod:`onnx_lambda.apigateway_event`.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-www-form-urlencoded")
#: A deterministic placeholder API: events/ files must not change from run to run.
API_ID = "a1b2c3d4e5"
ACCOUNT_ID = "123456789012"


def is_text(content_type: str | None) -> bool:
    """API Gateway base64-encodes every body it can't prove is text; so do we."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media.startswith(_TEXT_TYPES) or media.endswith("+json")


def request_time(epoch_ms: int) -> str:
    """API Gateway's ``requestContext.time``: ``27/Nov/2026:20:46:23 +0000``."""
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


def build_event(
    *,
    method: str,
    path: str,
    route_key: str,
    headers: Sequence[tuple[str, str]] = (),
    query_string: str = "",
    body: bytes | None = None,
    path_parameters: Mapping[str, str] | None = None,
    claims: Mapping[str, Any] | None = None,
    scopes: Sequence[str] | None = None,
    source_ip: str = "203.0.113.10",
    request_id: str | None = None,
    epoch_ms: int | None = None,
    region: str = "us-east-1",
) -> dict[str, Any]:
    """One v2 event. ``claims`` (when the route has the JWT authorizer) are stringified as API Gateway does."""
    domain = f"{API_ID}.execute-api.{region}.amazonaws.com"
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        lower = name.lower()
        if lower == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        joined[lower] = f"{joined[lower]},{value}" if lower in joined else value
    joined.setdefault("host", domain)
    joined.setdefault("x-forwarded-proto", "https")
    joined.setdefault("x-forwarded-port", "443")
    joined.setdefault("x-forwarded-for", source_ip)
    epoch_ms = epoch_ms if epoch_ms is not None else int(time.time() * 1000)
    request_id = request_id or base64.b64encode(secrets.token_bytes(12)).decode()[:16]
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": query_string,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = joined
    if query_string:
        params: dict[str, str] = {}
        for key, value in parse_qsl(query_string, keep_blank_values=True):
            params[key] = f"{params[key]},{value}" if key in params else value
        event["queryStringParameters"] = params
    context: dict[str, Any] = {
        "accountId": ACCOUNT_ID,
        "apiId": API_ID,
        "domainName": domain,
        "domainPrefix": API_ID,
        "http": {
            "method": method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": source_ip,
            "userAgent": joined.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route_key,
        "stage": "$default",
        "time": request_time(epoch_ms),
        "timeEpoch": epoch_ms,
    }
    if claims is not None:
        context["authorizer"] = {
            "jwt": {
                "claims": {key: _claim(value) for key, value in claims.items()},
                "scopes": list(scopes or []) or None,
            }
        }
    event["requestContext"] = context
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if body is not None and body != b"":
        if is_text(joined.get("content-type")):
            try:
                event["body"] = body.decode("utf-8")
                event["isBase64Encoded"] = False
            except UnicodeDecodeError:
                event["body"] = base64.b64encode(body).decode()
                event["isBase64Encoded"] = True
        else:
            event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = True
    else:
        event["isBase64Encoded"] = False
    return event


def _claim(value: Any) -> str:
    """API Gateway hands every claim to the function as a string; lists become ``[a b]``."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + " ".join(str(item) for item in value) + "]"
    return str(value)
