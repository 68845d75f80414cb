"""The Lambda entry point (the image's CMD): Powertools around the inference routes and ``Mangum(app)``.

The models load here, at init, outside the handler: init runs once per execution environment, with
the full CPU allocation, so no request pays for it. If a model fails its checks, init fails and the
environment never serves.

Init is ordered for the cold start (``onnx-lambda bench`` measures each stage):

* the model fetch starts first, in the background, so that the S3 transfer and the sha256 check (both
  free of the GIL) overlap the imports of onnxruntime, numpy and the rest instead of following them;
* the two routes that carry the traffic, ``POST /v1/embeddings`` and
  ``POST /v2/models/{name}[/versions/{v}]/infer``, are answered straight from the API Gateway event by
  :class:`~onnx_lambda.inference.InferenceRoutes`, the same code FastAPI's routes call. So init imports
  neither FastAPI, Starlette nor Mangum (a quarter of a second), and a warm request skips their ASGI
  translation, middleware, routing and dependency injection (about 250 µs, a third of a one-sentence
  embedding). Any other event (health, metadata, OpenAPI, unknown paths, other event versions) builds
  the FastAPI app on first use and goes through ``Mangum``.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import gc
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from functools import cache
from typing import TYPE_CHECKING, Any

from onnx_lambda.config import ModelSource, Settings, get_settings
from onnx_lambda.model_store import ModelArtifacts, ModelStore

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mangum import Mangum


class PrefetchingStore(ModelStore):
    """A model store that starts fetching every configured model the moment it is built.

    A download is handed over before it is written to the /tmp cache, so the write (for a re-init in this
    environment) runs while the session is built, not before it; :meth:`join` waits for it at the end of
    init. Deferring it past the first response would keep the downloaded bytes alive after init, to save a
    few ms of CPU (docs/performance.md).
    """

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._pending: dict[ModelSource, Future[ModelArtifacts]] = {}
        #: When each prefetch ran (wall clock), for the first invocation's trace.
        self._fetched: dict[ModelSource, tuple[float, float]] = {}
        self._threads: list[threading.Thread] = []
        for source in settings.models:
            future: Future[ModelArtifacts] = Future()
            self._pending[source] = future
            thread = threading.Thread(target=self._prefetch, args=(source, future), name="model-prefetch", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _prefetch(self, source: ModelSource, future: Future[ModelArtifacts]) -> None:
        started = time.time()
        try:
            artifacts, write_cache = super().fetch_then_cache(source)
        except BaseException as error:  # handed to the caller of fetch(), which raises it
            future.set_exception(error)
            return
        self._fetched[source] = (started, time.time())
        future.set_result(artifacts)
        write_cache()

    def join(self) -> None:
        """Wait for the prefetch threads (their cache writes), so that init ends with their buffers freed."""
        for thread in self._threads:
            thread.join()

    def fetch(self, source: ModelSource) -> ModelArtifacts:
        pending = self._pending.pop(source, None)
        if pending is None:
            return super().fetch(source)
        artifacts = pending.result()
        # Imported here, not at the top: the download starts before Powertools (and X-Ray) are imported.
        from onnx_lambda.observability import InitSpan, record_init_span

        started, ended = self._fetched.pop(source)
        record_init_span(InitSpan("## model fetch", started, ended, {"model": artifacts.manifest.name}))
        return artifacts


settings = get_settings()
store = PrefetchingStore(settings)

# Imported while the models download.
from onnx_lambda.apigateway_event import request_id  # noqa: E402
from onnx_lambda.errors import ServiceError  # noqa: E402
from onnx_lambda.inference import InferenceRoutes, Reply, internal_error_reply, service_error_reply  # noqa: E402
from onnx_lambda.observability import logger, metrics, trace_init_stages, tracer  # noqa: E402
from onnx_lambda.registry import load_registry  # noqa: E402

# An invocation that ends in a 4xx records no inference metrics; that's expected, not worth a warning.
warnings.filterwarnings("ignore", message="No application metrics to publish")

registry = load_registry(settings, store)
inference = InferenceRoutes(registry, settings)
store.join()
del store  # its download buffers and S3 client are garbage now

#: Mangum's rule (its default ``text_mime_types``) for bodies that go back as text rather than base64.
TEXT_MIME_TYPES = (
    "text/",
    "application/json",
    "application/javascript",
    "application/xml",
    "application/vnd.api+json",
    "application/vnd.oai.openapi",
)

Route = Callable[[bytes, Mapping[str, str]], Reply]


def settle_after_init() -> None:
    """Freeze what init built, and give the heap it freed back to the OS.

    Frozen objects (the imported modules, the models) are never traversed again by the cycle collector,
    so a full collection during a request costs what the request allocated, not what init did. (No
    ``gc.collect()`` first: it costs 15-50 ms of cold start and freed nothing measurable.) glibc keeps
    freed heap pages mapped; ``malloc_trim`` returns init's transient copies of the model (the download
    buffers, the bytes the session was built from), which would otherwise count towards what Lambda
    reports as "Max Memory Used".
    """
    gc.freeze()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


settle_after_init()


@cache
def asgi() -> Mangum:
    """``Mangum`` around the FastAPI app, built on the first event the direct routes don't take."""
    from mangum import Mangum

    from onnx_lambda.app import create_app

    return Mangum(create_app(registry, settings, inference), lifespan="off", text_mime_types=list(TEXT_MIME_TYPES))


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

    def infer(body: bytes, headers: Mapping[str, str]) -> Reply:
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
    headers = {key.lower(): value for key, value in (event.get("headers") or {}).items()}
    try:
        inference.authorize(headers, event)
        inference.check_declared_length(headers.get("content-length"))
        reply = route(inference.check_body(_event_body(event)), headers)
    except ServiceError as exc:
        reply = service_error_reply(exc, path)
    except Exception:
        reference = request_id(event) or uuid.uuid4().hex
        logger.exception("unhandled error", extra={"request_id": reference})
        reply = internal_error_reply(reference, path)
    return proxy_response(reply)


def _event_body(event: Mapping[str, Any]) -> bytes:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return base64.b64decode(body)
    return body.encode() if isinstance(body, str) else bytes(body)


def proxy_response(reply: Reply) -> dict[str, Any]:
    """A reply as the HTTP API v2 proxy result, exactly as Mangum writes a Starlette response."""
    headers = {**reply.headers, "content-length": str(len(reply.body))}
    body, encoded = "", False
    if reply.body:
        content_type = headers.get("content-type", "")
        if any(mime in content_type for mime in TEXT_MIME_TYPES):
            try:
                body = reply.body.decode()
            except UnicodeDecodeError:
                body, encoded = base64.b64encode(reply.body).decode(), True
        else:
            body, encoded = base64.b64encode(reply.body).decode(), True
    return {"statusCode": reply.status, "body": body, "headers": headers, "isBase64Encoded": encoded}


@logger.inject_lambda_context(clear_state=True)
@trace_init_stages
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.set_correlation_id(request_id(event))
    direct = direct_response(event)
    if direct is not None:
        return direct
    return asgi()(event, context)  # type: ignore[arg-type]  # Powertools' and Mangum's context types agree at runtime
