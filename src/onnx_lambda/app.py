"""The FastAPI application: Open Inference Protocol v2 and OpenAI-compatible embeddings.

Routes are ``async def`` and run the model inline: a Lambda execution environment serves one request
at a time, so a thread-pool hop would only add latency. The inference routes' work lives in
:mod:`onnx_lambda.inference`, which the Lambda handler also calls directly; bodies are parsed with
orjson straight into numpy rather than through per-element pydantic models.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from onnx_lambda import __version__
from onnx_lambda.apigateway_event import request_id
from onnx_lambda.auth import Principal
from onnx_lambda.config import Settings
from onnx_lambda.errors import ServiceError
from onnx_lambda.inference import (
    InferenceRoutes,
    Reply,
    describe_validation_errors,
    error_reply,
    internal_error_reply,
    service_error_reply,
)
from onnx_lambda.observability import logger
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
    RepositoryIndexRequest,
    RepositoryModel,
    ServerMetadata,
    request_body_schema,
    tensor_metadata,
)

SERVER_NAME = "onnx-lambda"


class JSONResponse(Response):
    media_type = JSON

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None, *, path: str = "") -> Response:
    """``{"error": "..."}`` as the Open Inference Protocol says; OpenAI's error object on ``/v1/``."""
    return to_response(error_reply(status, message, headers, path=path))


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
            reference = request_id(scope.get("aws.event")) or uuid.uuid4().hex
            logger.exception("unhandled error", extra={"request_id": reference})
            if started:
                raise
            await to_response(internal_error_reply(reference, scope.get("path", "")))(scope, receive, send)


def to_response(reply: Reply) -> Response:
    return Response(reply.body, status_code=reply.status, headers=reply.headers)


def create_app(registry: ModelRegistry, settings: Settings, routes: InferenceRoutes | None = None) -> FastAPI:
    """Build the app around an already-loaded registry (the handler loads it at init).

    ``routes`` shares the inference routes (and so the JWT verifier's key cache) with the Lambda
    handler's direct path.
    """
    app = FastAPI(
        title="onnx-lambda",
        version=__version__,
        summary="ONNX models behind the Open Inference Protocol v2 and OpenAI-compatible embeddings",
        openapi_tags=[
            {"name": "health", "description": "Open Inference Protocol health; no auth"},
            {"name": "inference", "description": "Open Inference Protocol v2 (KServe, Triton)"},
            {"name": "embeddings", "description": "OpenAI-compatible embeddings"},
        ],
    )
    routes = routes or InferenceRoutes(registry, settings)
    bearer = HTTPBearer(auto_error=False, description="A Cognito access token")

    async def authorize(request: Request, _: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:
        return routes.authorize(request.headers, request.scope.get("aws.event"))

    health = APIRouter(tags=["health"])
    protected = APIRouter(dependencies=[Depends(authorize)], responses=ERROR_RESPONSES)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> Response:
        return to_response(service_error_reply(exc, request.url.path))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error_response(exc.status_code, str(exc.detail), exc.headers, path=request.url.path)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return error_response(422, describe_validation_errors(exc.errors()), path=request.url.path)

    async def read_body(request: Request) -> bytes:
        routes.check_declared_length(request.headers.get("content-length"))
        return routes.check_body(await request.body())

    # --- the inference routes first: Starlette tries routes in order, and these carry the traffic ----

    @protected.post(
        "/v1/embeddings",
        tags=["embeddings"],
        summary="Create embeddings",
        response_model=EmbeddingsResponse,
        responses=OPENAI_ERROR_RESPONSES,
        openapi_extra=request_body_schema(EmbeddingsRequest),
    )
    async def embeddings(request: Request) -> Response:
        return to_response(routes.embeddings(await read_body(request), request.headers))

    async def infer(request: Request, model_name: str, model_version: str | None = None) -> Response:
        # The body's size is checked before the model is looked up, as on the Lambda handler's direct path.
        body = await read_body(request)
        return to_response(routes.infer(registry.get(model_name, model_version), body, request.headers))

    infer_body = request_body_schema(InferRequestBody, binary=True)

    @protected.post(
        "/v2/models/{model_name}/infer",
        tags=["inference"],
        summary="Inference",
        response_model=InferResponseBody,
        openapi_extra=infer_body,
    )
    async def model_infer(model_name: str, request: Request) -> Response:
        return await infer(request, model_name)

    @protected.post(
        "/v2/models/{model_name}/versions/{model_version}/infer",
        tags=["inference"],
        summary="Inference on a version",
        response_model=InferResponseBody,
        openapi_extra=infer_body,
    )
    async def model_version_infer(model_name: str, model_version: str, request: Request) -> Response:
        return await infer(request, model_name, model_version)

    # --- health: no auth ------------------------------------------------------------------------

    @health.get("/v2/health/live", summary="Server live", response_model=ReadyResponse)
    async def live() -> Response:
        return JSONResponse({"name": SERVER_NAME, "ready": True})

    @health.get(
        "/v2/health/ready",
        summary="Server ready",
        response_model=ReadyResponse,
        responses={
            400: {**ERROR_RESPONSES[400], "description": "Not ready: no model is deployed yet"},
            503: ERROR_RESPONSES[503],
        },
    )
    async def ready() -> Response:
        if registry.ready:
            return JSONResponse({"name": SERVER_NAME, "ready": True})
        if not registry.configured:
            # Nothing is broken, there is just nothing to serve yet: the Open Inference Protocol's "false" is a
            # 4xx (Triton answers 400), and a 5xx here would count towards the API's 5xx rollback alarm.
            return error_response(400, f"not ready: {registry.error}")
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

    @protected.post(
        "/v2/repository/index",
        tags=["inference"],
        summary="Model repository index",
        response_model=list[RepositoryModel],
        openapi_extra=request_body_schema(RepositoryIndexRequest, required=False),
    )
    async def repository_index(request: Request) -> Response:
        return to_response(routes.repository_index(await read_body(request)))

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

    # --- OpenAI-compatible model list -----------------------------------------------------------

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

    app.include_router(protected)
    app.include_router(health)
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
