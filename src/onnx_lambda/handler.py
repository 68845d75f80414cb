"""The Lambda entry point (the image's CMD): Powertools around ``Mangum(app)``.

The models load here, at init, outside the handler: init runs once per execution environment, with
the full CPU allocation (and free of charge on the first 10 s for on-demand functions), so no
request pays for it. If a model fails its checks, init fails and the environment never serves.

The two routes that carry the traffic, ``POST /v1/embeddings`` and ``POST /v2/models/{name}[/versions/{v}]/infer``,
are answered straight from the API Gateway event by the same :class:`~onnx_lambda.app.InferenceRoutes`
that FastAPI's routes call. Mangum's ASGI translation, Starlette's middleware and FastAPI's routing and
dependency injection cost about 250 µs a call (measured by ``onnx-lambda bench``: more than a third of a
one-sentence embedding), and buy nothing for a route whose whole input is one body. Everything else
(health, metadata, OpenAPI, unknown paths, other event versions) goes through ``Mangum`` to FastAPI.
"""

from __future__ import annotations

import base64
import uuid
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from mangum import Mangum
from starlette.responses import Response

from onnx_lambda.app import InferenceRoutes, create_app, error_response, internal_error_response
from onnx_lambda.config import get_settings
from onnx_lambda.errors import ServiceError
from onnx_lambda.observability import logger, metrics, tracer
from onnx_lambda.registry import load_registry

# An invocation that ends in a 4xx records no inference metrics; that's expected, not worth a warning.
warnings.filterwarnings("ignore", message="No application metrics to publish")

settings = get_settings()
registry = load_registry(settings)
app = create_app(registry, settings)
asgi = Mangum(app, lifespan="off")
inference: InferenceRoutes = app.state.inference
#: Mangum's rule for which response bodies go back as text rather than base64: the same here.
_TEXT_MIME_TYPES: tuple[str, ...] = tuple(asgi.config["text_mime_types"])

Route = Callable[[bytes, Mapping[str, str]], Response]


def direct_route(method: str, path: str) -> Route | None:
    """The inference route a v2 event's method and path name, or None to leave the event to FastAPI.

    Paths match exactly as FastAPI's would (no trailing slash, non-empty segments); an escaped path is
    left to Mangum, which unquotes it.
    """
    if method != "POST" or "%" in path:
        return None
    if path == "/v1/embeddings":
        return inference.embeddings
    parts = path.split("/")
    if len(parts) < 5 or parts[1] != "v2" or parts[2] != "models" or parts[-1] != "infer" or not all(parts[1:]):
        return None
    if len(parts) == 5:
        name, version = parts[3], None
    elif len(parts) == 7 and parts[4] == "versions":
        name, version = parts[3], parts[5]
    else:
        return None

    def infer(body: bytes, headers: Mapping[str, str]) -> Response:
        return inference.infer(inference.registry.get(name, version), body, headers)

    return infer


def direct_response(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """Answer an inference request from its API Gateway v2 event, or None when it is not one."""
    if event.get("version") != "2.0":
        return None
    request_context = event.get("requestContext")
    http = request_context.get("http") if isinstance(request_context, Mapping) else None
    if not isinstance(http, Mapping):
        return None
    method, path = http.get("method"), http.get("path")
    if not isinstance(method, str) or not isinstance(path, str):
        return None
    route = direct_route(method, path)
    if route is None:
        return None
    assert isinstance(request_context, Mapping)
    headers = {key.lower(): value for key, value in (event.get("headers") or {}).items()}
    try:
        inference.authorize(headers, event)
        inference.check_declared_length(headers.get("content-length"))
        response = route(inference.check_body(_event_body(event)), headers)
    except ServiceError as exc:
        extra = {"www-authenticate": 'Bearer error="invalid_token"'} if exc.status == 401 else None
        response = error_response(exc.status, exc.message, extra, path=path)
    except Exception:
        request_id = request_context.get("requestId")
        request_id = request_id if isinstance(request_id, str) else uuid.uuid4().hex
        logger.exception("unhandled error", extra={"request_id": request_id})
        response = internal_error_response(request_id, path)
    return proxy_response(response)


def _event_body(event: Mapping[str, Any]) -> bytes:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return base64.b64decode(body)
    return body.encode() if isinstance(body, str) else bytes(body)


def proxy_response(response: Response) -> dict[str, Any]:
    """A Starlette response as the HTTP API v2 proxy result, exactly as Mangum would write it."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for raw_key, raw_value in response.raw_headers:
        key, value = raw_key.decode().lower(), raw_value.decode()
        if key == "set-cookie":
            cookies.append(value)
        else:
            headers[key] = f"{headers[key]},{value}" if key in headers else value
    body = bytes(response.body)
    text = ""
    encoded = False
    if body:
        content_type = headers.get("content-type", "")
        if any(mime in content_type for mime in _TEXT_MIME_TYPES):
            try:
                text = body.decode()
            except UnicodeDecodeError:
                text, encoded = base64.b64encode(body).decode(), True
        else:
            text, encoded = base64.b64encode(body).decode(), True
    result: dict[str, Any] = {"statusCode": response.status_code, "body": text, "headers": headers}
    if cookies:
        result["cookies"] = cookies
    result["isBase64Encoded"] = encoded
    return result


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    direct = direct_response(event)
    if direct is not None:
        return direct
    return asgi(event, context)  # type: ignore[arg-type]  # Powertools' and Mangum's context types agree at runtime
