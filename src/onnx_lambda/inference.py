"""The inference routes' work, free of any web framework: request bytes and headers in, a :class:`Reply` out.

``POST /v1/embeddings`` and ``POST /v2/models/{name}[/versions/{v}]/infer`` carry the traffic. FastAPI's
routes (``app.py``) call :class:`InferenceRoutes`, and so does the Lambda handler's direct path
(``handler.py``), which answers these two routes straight from the API Gateway event. Both therefore
answer with the same code, and the Lambda handler needs neither FastAPI nor Starlette to serve them:
importing those is a quarter of a second of every cold start, so the handler builds the FastAPI app
only when an event for any other route arrives.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import orjson
from pydantic import ValidationError

from onnx_lambda import protocol
from onnx_lambda.auth import JwtVerifier, Principal, bearer_token, principal_from_event, require_any_scope
from onnx_lambda.config import Settings
from onnx_lambda.errors import BadRequest, PayloadTooLarge, ServiceError, UnsupportedMediaType, echo
from onnx_lambda.observability import BATCH_SIZE, INFERENCE_TIME, TOKENS, logger, metrics, tracer
from onnx_lambda.registry import ModelRegistry, ServedModel
from onnx_lambda.schemas import JSON, OPENAI_MAX_REQUEST_TOKENS, EmbeddingsRequest

#: Lower case, as both Starlette's headers and API Gateway's v2 events spell header names.
BINARY_HEADER = "inference-header-content-length"
_OPENAI_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}
#: The largest error body either path sends: messages quote only the start of what the caller sent
#: (:func:`errors.echo`), and this is the backstop, so no request can make an error large.
MAX_ERROR_BODY = 1000
#: How many of pydantic's errors a message lists.
_VALIDATION_ERRORS_SHOWN = 5


@dataclass(frozen=True, slots=True)
class Reply:
    """A response before any framework sees it; ``headers`` carries the content type."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": JSON})


def json_reply(content: Any, status: int = 200) -> Reply:
    """JSON written by orjson, numpy arrays included (no ``tolist()`` copy)."""
    return Reply(status, orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY))


def error_reply(
    status: int,
    message: str,
    headers: Mapping[str, str] | None = None,
    *,
    path: str = "",
    param: str | None = None,
    code: str | None = None,
) -> Reply:
    """``{"error": "..."}`` as the Open Inference Protocol says; OpenAI's error object on ``/v1/``.

    OpenAI's object also names the request field at fault (``param``) and, for some errors, a ``code``.
    The body is at most :data:`MAX_ERROR_BODY` bytes: a longer message is cut (each cut halves it).
    """
    openai = path.startswith("/v1/")
    kind = _OPENAI_ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")

    def render(text: str) -> bytes:
        if openai:
            return orjson.dumps({"error": {"message": text, "type": kind, "param": param, "code": code}})
        return protocol.error_body(text)

    body = render(message)
    while len(body) > MAX_ERROR_BODY and len(message) > 16:
        message = message[: len(message) // 2] + "..."
        body = render(message)
    return Reply(status, body, {"content-type": JSON, **(headers or {})})


def service_error_reply(exc: ServiceError, path: str) -> Reply:
    """The reply to a refusal, the same from FastAPI's exception handler and the Lambda handler's direct path."""
    headers = {"www-authenticate": 'Bearer error="invalid_token"'} if exc.status == 401 else None
    return error_reply(exc.status, exc.message, headers, path=path, param=exc.param, code=exc.code)


def internal_error_reply(request_id: str, path: str) -> Reply:
    """The 500 for an unexpected failure: the request id to quote, nothing of the failure itself."""
    return error_reply(500, f"internal error; request id {request_id}", {"x-request-id": request_id}, path=path)


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
    """The protected inference routes. ``headers`` is any mapping with lower-case keys."""

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
        """A Content-Length over the limit is refused before the body is read; anything but ASCII digits is
        left to :meth:`check_body` (``isdigit`` alone would let ``"²"`` through to ``int``, a 500)."""
        if declared is None or not declared.isascii() or not declared.isdigit():
            return
        digits = declared.lstrip("0")
        limit = self.settings.max_body_bytes
        if len(digits) > protocol.MAX_HEADER_DIGITS:
            raise PayloadTooLarge(f"body is a {len(digits)}-digit number of bytes; the limit is {limit}")
        if int(digits or "0") > limit:
            raise PayloadTooLarge(f"body is {digits} bytes; the limit is {limit}")

    def check_body(self, body: bytes) -> bytes:
        if len(body) > self.settings.max_body_bytes:
            raise PayloadTooLarge(f"body is {len(body)} bytes; the limit is {self.settings.max_body_bytes}")
        return body

    def infer(self, served: ServedModel, body: bytes, headers: Mapping[str, str]) -> Reply:
        header_length = headers.get(BINARY_HEADER)
        json_length: int | None = None
        if header_length is not None:
            json_length = protocol.parse_byte_count(header_length)
        else:
            require_json(headers)
        model = served.model
        decoded = protocol.decode_infer_request(body, json_length, max_rank=model.max_rank)
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
        return Reply(200, content, {key.lower(): value for key, value in response_headers.items()})

    def repository_index(self, body: bytes) -> Reply:
        """The model repository extension's index (``POST /v2/repository/index``), as Triton answers it.

        The body is optional: ``{}`` or ``{"ready": true}`` lists the models ready to serve, which here are
        all the models this deployment serves (it loads them all at init, or serves none). A deployment
        that serves nothing yet, or whose models failed to load, lists none.
        """
        if body.strip():
            try:
                document = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise BadRequest(f"repository index request body is not valid JSON: {exc}") from None
            if not isinstance(document, dict):
                raise BadRequest('repository index request body must be a JSON object, e.g. {"ready": true}')
            ready = document.get("ready")
            if ready is not None and not isinstance(ready, bool):
                raise BadRequest("repository index request: 'ready' must be true or false")
        served = self.registry.models.values() if self.registry.ready else ()
        return json_reply([{"name": s.model.name, "version": s.model.version, "state": "READY"} for s in served])

    def embeddings(self, body: bytes, headers: Mapping[str, str]) -> Reply:
        """OpenAI's ``POST /v1/embeddings``: its four forms of ``input``, its limits and its error object.

        A refusal names the field (``param``) as OpenAI's does. OpenAI's own rules (no empty input, at most
        2048 inputs, the context length, 300,000 tokens in all) are 400s as OpenAI answers them; this
        deployment's configurable limits (batch size, text length, body size) stay 413s. ``user`` is
        read and dropped: it may identify a person, so it is never logged.
        """
        require_json(headers)
        settings = self.settings
        try:
            parsed = EmbeddingsRequest.model_validate_json(body)
        except ValidationError as exc:
            errors = exc.errors()
            raise BadRequest(describe_validation_errors(errors), param=_field_at_fault(errors)) from None
        served = self.registry.get(parsed.model)
        if served.embedder is None:
            embedders = sorted(self.registry.embedders())
            raise BadRequest(
                f"model {parsed.model!r} takes tensors, not text; embedding models: {embedders}", param="model"
            )
        embedder = served.embedder
        texts, rows = _texts_or_token_arrays(parsed.input)
        count = len(texts) + len(rows)
        if not count:
            raise BadRequest("input is an empty list: send at least one string or token array", param="input")
        if count > settings.max_batch_size:
            raise PayloadTooLarge(f"input has {count} items; the limit is {settings.max_batch_size}", param="input")
        if parsed.dimensions is not None:
            embedder.check_dimensions(parsed.dimensions)
        started = time.perf_counter()  # tokenization included, as it always was
        if texts:
            for index, text in enumerate(texts):
                if not text:
                    raise BadRequest(f"input[{index}] is an empty string", param="input")
                if len(text) > settings.max_text_chars:
                    raise PayloadTooLarge(
                        f"input[{index}] is {len(text)} characters; the limit is {settings.max_text_chars}",
                        param="input",
                    )
            feeds = embedder.text_feeds(texts)
        else:
            feeds = embedder.id_feeds(rows)
        tokens = int(feeds["attention_mask"].sum())
        if tokens > OPENAI_MAX_REQUEST_TOKENS:
            raise BadRequest(
                f"input is {tokens} tokens in all; OpenAI's limit per request is {OPENAI_MAX_REQUEST_TOKENS}",
                param="input",
            )
        with tracer.provider.in_subsegment("## inference"):
            result = embedder.run(feeds)
        model = served.model
        _record(model.name, model.version, time.perf_counter() - started, count, result.prompt_tokens)
        vectors = embedder.shorten(result.vectors, parsed.dimensions)
        items: list[Any]
        if parsed.encoding_format == "base64":
            little = vectors.astype("<f4", copy=False)
            items = [
                {"object": "embedding", "index": i, "embedding": base64.b64encode(row.tobytes()).decode()}
                for i, row in enumerate(little)
            ]
        else:
            items = [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(vectors)]
        return json_reply(
            {
                "object": "list",
                "data": items,
                "model": model.name,
                "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
            }
        )


def require_json(headers: Mapping[str, str]) -> None:
    content_type = headers.get("content-type")
    if content_type is None:
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if media != JSON and not media.endswith("+json"):
        # Echoed only when ASCII: Starlette decodes header bytes as Latin-1, the Lambda event holds UTF-8.
        shown = echo(media) if media.isascii() else "non-ASCII text"
        raise UnsupportedMediaType(f"content-type must be {JSON}, got {shown}")


def describe_validation_errors(errors: Any) -> str:
    """pydantic's errors as one line: 'input: Input should be a valid string; model: Field required'.

    A list of a million bad items is a million errors: the message names the first few and counts the rest.
    """
    parts = []
    for error in errors[:_VALIDATION_ERRORS_SHOWN]:
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
        parts.append(f"{location[:80]}: {str(error.get('msg', 'invalid'))[:160]}")
    if len(errors) > _VALIDATION_ERRORS_SHOWN:
        parts.append(f"and {len(errors) - _VALIDATION_ERRORS_SHOWN} more")
    return "; ".join(parts) or "invalid request"


def _texts_or_token_arrays(value: str | list[str] | list[int] | list[list[int]]) -> tuple[list[str], list[list[int]]]:
    """OpenAI's four forms of ``input`` as a list of texts or a list of token arrays (the other one empty).

    pydantic has already chosen the form, so the first item tells which it is.
    """
    if isinstance(value, str):
        return [value], []
    if not value or isinstance(value[0], str):
        return cast("list[str]", value), []
    if isinstance(value[0], int):
        return [], [value]
    return [], value


def _field_at_fault(errors: Any) -> str | None:
    """The top-level request field pydantic's first error is about, for OpenAI's ``param``."""
    location = errors[0].get("loc", ()) if errors else ()
    field_name = location[0] if location else None
    return field_name if field_name in EmbeddingsRequest.model_fields else None


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
