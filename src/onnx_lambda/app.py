"""The FastAPI application: Open Inference Protocol v2 and OpenAI-compatible embeddings.

Routes are ``async def`` and run the model inline: a Lambda execution environment serves one request
at a time, so a thread-pool hop would only add latency. Bodies are parsed with orjson straight into
numpy rather than through per-element pydantic models; the pydantic models below document the API in
OpenAPI and validate the small embeddings request.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable, Mapping
from importlib.metadata import version as package_version
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from onnx_lambda import protocol
from onnx_lambda.auth import JwtVerifier, Principal, bearer_token, principal_from_event, require_any_scope
from onnx_lambda.config import Settings
from onnx_lambda.errors import BadRequest, PayloadTooLarge, ServiceError, UnsupportedMediaType
from onnx_lambda.observability import BATCH_SIZE, INFERENCE_TIME, TOKENS, logger, metrics, tracer
from onnx_lambda.registry import ModelRegistry, ServedModel
from onnx_lambda.schemas import (
    ERROR_RESPONSES,
    JSON,
    OPENAI_ERROR_RESPONSES,
    REQUEST_SCHEMAS,
    EmbeddingsRequest,
    EmbeddingsResponse,
    InferRequestBody,
    InferResponseBody,
    ModelList,
    ModelMetadata,
    ReadyResponse,
    ServerMetadata,
    request_body_schema,
    tensor_metadata,
)

SERVER_NAME = "onnx-lambda"
BINARY_HEADER = "inference-header-content-length"


class JSONResponse(Response):
    media_type = JSON

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


_OPENAI_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None, *, path: str = "") -> Response:
    """``{"error": "..."}`` as the Open Inference Protocol says; OpenAI's error object on ``/v1/``."""
    if path.startswith("/v1/"):
        kind = _OPENAI_ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
        body = orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": None}})
    else:
        body = protocol.error_body(message)
    return Response(body, status_code=status, media_type=JSON, headers=headers)


# --- the app ---------------------------------------------------------------------------------------


class ErrorBoundary:
    """Turns any unhandled exception into a 500 with a request id and no internals.

    Starlette's own catch-all re-raises after answering; on Lambda that would fail the invocation
    (a 502 from API Gateway) instead of returning the JSON error.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            request_id = request_id_of(scope)
            logger.exception("unhandled error", extra={"request_id": request_id})
            if started:
                raise
            await internal_error_response(request_id, scope.get("path", ""))(scope, receive, send)


def internal_error_response(request_id: str, path: str) -> Response:
    """The 500 for an unexpected failure: the request id to quote, nothing of the failure itself."""
    return error_response(
        500, f"internal error; request id {request_id}", headers={"x-request-id": request_id}, path=path
    )


def request_id_of(scope: Scope) -> str:
    event = scope.get("aws.event")
    if isinstance(event, dict):
        request_id = event.get("requestContext", {}).get("requestId")
        if isinstance(request_id, str):
            return request_id
    return uuid.uuid4().hex


#: Who is calling, from the request's headers and, on Lambda, the API Gateway event.
Authenticate = Callable[[Mapping[str, str], Mapping[str, Any] | None], Principal]


def make_authenticator(settings: Settings) -> Authenticate:
    """The same authorizer rules in both places: API Gateway's verified claims, or our own JWT check."""
    if settings.auth_mode == "apigateway":

        def from_event(_: Mapping[str, str], event: Mapping[str, Any] | None) -> Principal:
            return principal_from_event(event or {})

        return from_event
    if not settings.jwt_issuer or not settings.jwks_url or not settings.jwt_audience:
        raise ValueError("auth_mode=jwt needs ONNX_LAMBDA_JWT_ISSUER and ONNX_LAMBDA_JWT_AUDIENCE")
    verifier = JwtVerifier(
        issuer=settings.jwt_issuer,
        jwks_url=settings.jwks_url,
        audience=settings.jwt_audience,
        leeway_seconds=settings.jwt_leeway_seconds,
    )

    def from_header(headers: Mapping[str, str], _: Mapping[str, Any] | None) -> Principal:
        return verifier.verify(bearer_token(headers.get("authorization")))

    return from_header


class InferenceRoutes:
    """The work of the protected inference routes, on bytes and headers instead of a framework's request.

    FastAPI's routes call it, and so does the Lambda handler's direct path for the two routes that
    carry the traffic (see ``handler.py``), so both answer with the same code. ``headers`` is any
    mapping with lower-case keys: Starlette's ``Headers`` or an API Gateway event's ``headers``.
    """

    def __init__(self, registry: ModelRegistry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings
        self._authenticate = make_authenticator(settings)
        self._accepted_scopes = tuple(settings.jwt_scopes)

    def authorize(self, headers: Mapping[str, str], event: Mapping[str, Any] | None) -> Principal:
        principal = self._authenticate(headers, event)
        require_any_scope(principal, self._accepted_scopes)
        logger.append_keys(sub=principal.subject, client_id=principal.client_id)
        return principal

    def check_declared_length(self, declared: str | None) -> None:
        if declared is not None and declared.isdigit() and int(declared) > self.settings.max_body_bytes:
            raise PayloadTooLarge(f"body is {declared} bytes; the limit is {self.settings.max_body_bytes}")

    def check_body(self, body: bytes) -> bytes:
        if len(body) > self.settings.max_body_bytes:
            raise PayloadTooLarge(f"body is {len(body)} bytes; the limit is {self.settings.max_body_bytes}")
        return body

    def infer(self, served: ServedModel, body: bytes, headers: Mapping[str, str]) -> Response:
        header_length = headers.get(BINARY_HEADER)
        json_length: int | None = None
        if header_length is not None:
            if not header_length.isdigit():
                raise BadRequest(f"Inference-Header-Content-Length must be a byte count, got {header_length!r}")
            json_length = int(header_length)
        else:
            _require_json(headers)
        decoded = protocol.decode_infer_request(body, json_length)
        model = served.model
        feeds = {tensor.name: tensor.array for tensor in decoded.inputs}
        model.validate(feeds, self.settings.max_batch_size)
        if served.embedder is not None:
            served.embedder.check_token_inputs(feeds)
        requested = [o.name for o in decoded.outputs] if decoded.outputs else None
        started = time.perf_counter()
        with tracer.provider.in_subsegment("## inference"):
            results = model.run(feeds, requested)
        _record(model.name, model.version, time.perf_counter() - started, _batch_of(feeds))
        binary = [name for name in results if decoded.wants_binary(name)]
        content, response_headers = protocol.encode_infer_response(
            model_name=model.name,
            model_version=model.version,
            request_id=decoded.id,
            outputs=list(results.items()),
            binary_outputs=binary,
        )
        return Response(content, headers=response_headers)

    def embeddings(self, body: bytes, headers: Mapping[str, str]) -> Response:
        _require_json(headers)
        settings = self.settings
        try:
            parsed = EmbeddingsRequest.model_validate_json(body)
        except ValidationError as exc:
            raise BadRequest(_describe(exc.errors())) from None
        served = self.registry.get(parsed.model)
        if served.embedder is None:
            raise BadRequest(
                f"model {parsed.model!r} takes tensors, not text; embedding models: {sorted(self.registry.embedders())}"
            )
        embedder = served.embedder
        texts = [parsed.input] if isinstance(parsed.input, str) else parsed.input
        if not texts:
            raise BadRequest("input is an empty list: send at least one string")
        if len(texts) > settings.max_batch_size:
            raise PayloadTooLarge(f"input has {len(texts)} items; the limit is {settings.max_batch_size}")
        for index, text in enumerate(texts):
            if len(text) > settings.max_text_chars:
                raise PayloadTooLarge(
                    f"input[{index}] is {len(text)} characters; the limit is {settings.max_text_chars}"
                )
        if parsed.dimensions is not None and parsed.dimensions != embedder.dimensions:
            raise BadRequest(f"dimensions must be {embedder.dimensions} for model {parsed.model!r}, or omitted")
        started = time.perf_counter()
        with tracer.provider.in_subsegment("## inference"):
            result = embedder.embed(texts)
        model = served.model
        _record(model.name, model.version, time.perf_counter() - started, len(texts), result.prompt_tokens)
        vectors = result.vectors
        items: list[Any]
        if parsed.encoding_format == "base64":
            little = vectors.astype("<f4", copy=False)
            items = [
                {"object": "embedding", "index": i, "embedding": base64.b64encode(row.tobytes()).decode()}
                for i, row in enumerate(little)
            ]
        else:
            items = [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(vectors)]
        return JSONResponse(
            {
                "object": "list",
                "data": items,
                "model": model.name,
                "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
            }
        )


def create_app(registry: ModelRegistry, settings: Settings) -> FastAPI:
    """Build the app around an already-loaded registry (the handler loads it at init)."""
    app = FastAPI(
        title="onnx-lambda",
        version=package_version("onnx-lambda"),
        summary="ONNX models behind the Open Inference Protocol v2 and OpenAI-compatible embeddings",
        openapi_tags=[
            {"name": "health", "description": "Open Inference Protocol health; no auth"},
            {"name": "inference", "description": "Open Inference Protocol v2 (KServe, Triton)"},
            {"name": "embeddings", "description": "OpenAI-compatible embeddings"},
        ],
    )
    routes = InferenceRoutes(registry, settings)
    app.state.inference = routes
    bearer = HTTPBearer(auto_error=False, description="A Cognito access token")

    async def authorize(request: Request, _: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:
        return routes.authorize(request.headers, request.scope.get("aws.event"))

    health = APIRouter(tags=["health"])
    protected = APIRouter(dependencies=[Depends(authorize)], responses=ERROR_RESPONSES)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> Response:
        headers = {"www-authenticate": 'Bearer error="invalid_token"'} if exc.status == 401 else None
        return error_response(exc.status, exc.message, headers, path=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error_response(exc.status_code, str(exc.detail), exc.headers, path=request.url.path)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return error_response(422, _describe(exc.errors()), path=request.url.path)

    async def read_body(request: Request) -> bytes:
        routes.check_declared_length(request.headers.get("content-length"))
        return routes.check_body(await request.body())

    # --- health: no auth ------------------------------------------------------------------------

    @health.get("/v2/health/live", summary="Server live", response_model=ReadyResponse)
    async def live() -> Response:
        return JSONResponse({"name": SERVER_NAME, "ready": True})

    @health.get(
        "/v2/health/ready",
        summary="Server ready",
        response_model=ReadyResponse,
        responses={503: ERROR_RESPONSES[503]},
    )
    async def ready() -> Response:
        if registry.ready:
            return JSONResponse({"name": SERVER_NAME, "ready": True})
        return error_response(503, f"not ready: {registry.error}")

    # --- Open Inference Protocol v2 -------------------------------------------------------------

    @protected.get("/v2", tags=["inference"], summary="Server metadata", response_model=ServerMetadata)
    async def server_metadata() -> Response:
        return JSONResponse(
            {
                "name": SERVER_NAME,
                "version": app.version,
                "extensions": ["binary_tensor_data", "model_repository"],
            }
        )

    def model_metadata(served: ServedModel) -> Response:
        model = served.model
        return JSONResponse(
            {
                "name": model.name,
                "versions": [model.version],
                "platform": model.manifest.platform,
                "inputs": tensor_metadata(model.signature.inputs),
                "outputs": tensor_metadata(model.signature.outputs),
            }
        )

    @protected.get(
        "/v2/models/{model_name}", tags=["inference"], summary="Model metadata", response_model=ModelMetadata
    )
    async def model_meta(model_name: str) -> Response:
        return model_metadata(registry.get(model_name))

    @protected.get(
        "/v2/models/{model_name}/versions/{model_version}",
        tags=["inference"],
        summary="Model version metadata",
        response_model=ModelMetadata,
    )
    async def model_version_meta(model_name: str, model_version: str) -> Response:
        return model_metadata(registry.get(model_name, model_version))

    @protected.get(
        "/v2/models/{model_name}/ready",
        tags=["inference"],
        summary="Model ready",
        response_model=ReadyResponse,
    )
    async def model_ready(model_name: str) -> Response:
        return JSONResponse({"name": registry.get(model_name).model.name, "ready": True})

    @protected.get(
        "/v2/models/{model_name}/versions/{model_version}/ready",
        tags=["inference"],
        summary="Model version ready",
        response_model=ReadyResponse,
    )
    async def model_version_ready(model_name: str, model_version: str) -> Response:
        return JSONResponse({"name": registry.get(model_name, model_version).model.name, "ready": True})

    async def infer(request: Request, served: ServedModel) -> Response:
        return routes.infer(served, await read_body(request), request.headers)

    infer_body = request_body_schema(InferRequestBody, binary=True)

    @protected.post(
        "/v2/models/{model_name}/infer",
        tags=["inference"],
        summary="Inference",
        response_model=InferResponseBody,
        openapi_extra=infer_body,
    )
    async def model_infer(model_name: str, request: Request) -> Response:
        return await infer(request, registry.get(model_name))

    @protected.post(
        "/v2/models/{model_name}/versions/{model_version}/infer",
        tags=["inference"],
        summary="Inference on a version",
        response_model=InferResponseBody,
        openapi_extra=infer_body,
    )
    async def model_version_infer(model_name: str, model_version: str, request: Request) -> Response:
        return await infer(request, registry.get(model_name, model_version))

    # --- OpenAI-compatible embeddings -----------------------------------------------------------

    @protected.post(
        "/v1/embeddings",
        tags=["embeddings"],
        summary="Create embeddings",
        response_model=EmbeddingsResponse,
        responses=OPENAI_ERROR_RESPONSES,
        openapi_extra=request_body_schema(EmbeddingsRequest),
    )
    async def embeddings(request: Request) -> Response:
        _require_json(request.headers)
        return routes.embeddings(await read_body(request), request.headers)

    @protected.get(
        "/v1/models",
        tags=["embeddings"],
        summary="List models",
        response_model=ModelList,
        responses=OPENAI_ERROR_RESPONSES,
    )
    async def list_models() -> Response:
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"id": name, "object": "model", "created": 0, "owned_by": SERVER_NAME}
                    for name in (registry.models if registry.ready else {})
                ],
            }
        )

    app.include_router(health)
    app.include_router(protected)
    app.add_middleware(ErrorBoundary)
    generate_openapi = app.openapi

    def openapi_with_request_schemas() -> dict[str, Any]:
        document = generate_openapi()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in REQUEST_SCHEMAS.items():
            schemas.setdefault(name, schema)
        return document

    app.openapi = openapi_with_request_schemas  # type: ignore[method-assign]
    return app


def _require_json(headers: Mapping[str, str]) -> None:
    content_type = headers.get("content-type")
    if content_type is None:
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if media != JSON and not media.endswith("+json"):
        raise UnsupportedMediaType(f"content-type must be {JSON}, got {media!r}")


def _batch_of(feeds: Mapping[str, np.ndarray]) -> int:
    for array in feeds.values():
        return int(array.shape[0]) if array.ndim else 1
    return 0


def _record(model: str, model_version: str, seconds: float, batch: int, tokens: int | None = None) -> None:
    """EMF for one inference. Lambda flushes after every invocation; a long-running local server flushes
    whenever the model changes, so each batch of metrics carries the dimensions it was measured under."""
    dimensions = metrics.provider.dimension_set
    if dimensions.get("model") != model or dimensions.get("model_version") != model_version:
        if "model" in dimensions:
            metrics.flush_metrics()
        metrics.add_dimension(name="model", value=model)
        metrics.add_dimension(name="model_version", value=model_version)
    metrics.add_metric(name=INFERENCE_TIME, unit="Milliseconds", value=seconds * 1000)
    metrics.add_metric(name=BATCH_SIZE, unit="Count", value=batch)
    if tokens is not None:
        metrics.add_metric(name=TOKENS, unit="Count", value=tokens)


def _describe(errors: Any) -> str:
    """pydantic's errors as one line: 'input: Input should be a valid string; model: Field required'."""
    parts = []
    for error in errors:
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
        parts.append(f"{location}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"
