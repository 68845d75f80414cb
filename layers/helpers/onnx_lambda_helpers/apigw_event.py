"""API Gateway HTTP API (payload 2.0) events, for invoking the function directly.

The function trusts ``requestContext.authorizer.jwt`` because only API Gateway's JWT authorizer can
put it there: a direct ``lambda:InvokeFunction`` is guarded by IAM, which is the trust boundary. So a
caller allowed to invoke the function may hand it verified-looking claims; the hook's role may invoke
this one function's versions and nothing else.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any


def http_event(
    *,
    method: str,
    path: str,
    route_key: str,
    body: Mapping[str, Any] | None,
    claims: Mapping[str, str] | None,
    scopes: Sequence[str],
    path_parameters: Mapping[str, str] | None = None,
    user_agent: str = "onnx-lambda-pre-traffic-hook",
) -> dict[str, Any]:
    """One request as API Gateway hands it to the function (JSON body, as text)."""
    now_ms = int(time.time() * 1000)
    headers = {"content-type": "application/json", "user-agent": user_agent, "x-forwarded-proto": "https"}
    context: dict[str, Any] = {
        "http": {
            "method": method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1",
            "userAgent": user_agent,
        },
        "requestId": uuid.uuid4().hex,
        "routeKey": route_key,
        "stage": "$default",
        "time": datetime.fromtimestamp(now_ms / 1000, tz=UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": now_ms,
    }
    if claims is not None:
        context["authorizer"] = {"jwt": {"claims": dict(claims), "scopes": list(scopes) or None}}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": context,
        "isBase64Encoded": False,
    }
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if body is not None:
        event["body"] = json.dumps(body)
    return event


def machine_claims(*, issuer: str, client_id: str, scopes: Sequence[str]) -> dict[str, str]:
    """The claims of a client_credentials access token, stringified as API Gateway passes them."""
    now = int(time.time())
    return {
        "iss": issuer,
        "sub": client_id,
        "client_id": client_id,
        "token_use": "access",
        "scope": " ".join(scopes),
        "auth_time": str(now),
        "iat": str(now),
        "exp": str(now + 300),
        "jti": uuid.uuid4().hex,
    }
