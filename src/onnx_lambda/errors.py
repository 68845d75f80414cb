"""The service's error vocabulary: each class is one HTTP status, so handlers map them in one place.

Messages are written for the caller: they name the field and what was expected, and never
carry internals (paths, stack traces, tokens).
"""

from __future__ import annotations

#: How much of a caller's own text (a name, a datatype, a header) an error message repeats.
ECHO_LIMIT = 40


def echo(text: str, limit: int = ECHO_LIMIT) -> str:
    """A caller's text as an error message quotes it: ``repr``, cut to ``limit`` characters.

    Names, datatypes, model names and header values come from the request and can be megabytes long;
    a message repeats only their start (and says how long they were), so error bodies stay small.
    """
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


class ServiceError(Exception):
    """Base class: ``status`` is the HTTP status the API answers with."""

    status: int = 500

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: OpenAI's error object names the request field at fault and, for some errors, a code
        #: (``context_length_exceeded``); the ``/v1/`` routes answer with both, the others ignore them.
        self.param = param
        self.code = code


class BadRequest(ServiceError):
    """Malformed input: bad JSON, wrong datatype, shape that doesn't match the data."""

    status = 400


class Unauthorized(ServiceError):
    """Missing or invalid token (answered with ``WWW-Authenticate: Bearer``)."""

    status = 401


class Forbidden(ServiceError):
    """A valid token that carries none of the route's scopes."""

    status = 403


class NotFound(ServiceError):
    """Unknown model, version, input or output name."""

    status = 404


class PayloadTooLarge(ServiceError):
    """Body over the Lambda payload limit, or a batch or text over the configured limits."""

    status = 413


class UnsupportedMediaType(ServiceError):
    status = 415


class Unprocessable(ServiceError):
    """Well-formed but semantically invalid: e.g. an input the model can't take."""

    status = 422


class ServiceUnavailable(ServiceError):
    """The models are not loaded (a failed init in a long-running server): only health answers."""

    status = 503


class ModelLoadError(Exception):
    """A model that must not be served: unreachable, tampered, truncated or not ONNX.

    Raised at init; the message names the object and version.
    """
