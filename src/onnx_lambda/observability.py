"""The process-wide Powertools Logger, Tracer and Metrics.

One instance each, shared by the app and the handler, so log keys appended in a route (the caller's
identity) land in the same JSON lines the handler's context injection writes. Metric names are
documented here because alarms and the dashboard in template.yaml depend on them.

Tracing runs only where Powertools would trace (inside Lambda, not under SAM local, not with
``POWERTOOLS_TRACE_DISABLED``). Elsewhere the tracer gets a provider that does nothing, because the
X-Ray SDK costs even when disabled: importing it builds its sampler's two botocore clients (about
0.3 s of every cold start, measured by ``onnx-lambda bench``), and every call then creates dummy
segments with random ids.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment

SERVICE = "onnx-lambda"
NAMESPACE = "OnnxLambda"

#: EMF metric names (CloudWatch alarms and the dashboard refer to these).
COLD_START = "ColdStart"
MODEL_LOAD_TIME = "ModelLoadTime"
MODEL_BYTES = "ModelBytes"
MODEL_LOAD_FAILURE = "ModelLoadFailure"
INFERENCE_TIME = "InferenceTime"
BATCH_SIZE = "BatchSize"
TOKENS = "Tokens"


def tracing_enabled() -> bool:
    """Powertools' own rule: trace inside Lambda, but not under SAM local or Chalice, nor when disabled."""
    if os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() in ("1", "true", "yes", "on", "y", "t"):
        return False
    if os.environ.get("AWS_SAM_LOCAL") or os.environ.get("AWS_CHALICE_CLI_MODE"):
        return False
    return bool(os.environ.get("LAMBDA_TASK_ROOT"))


class _NoSegment(BaseSegment):
    def close(self, end_time: int | None = None) -> None:
        pass

    def add_subsegment(self, subsegment: Any) -> None:
        pass

    def remove_subsegment(self, subsegment: Any) -> None:
        pass

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None:
        pass


class NoTracing(BaseProvider):
    """The tracer's provider where nothing is traced: no X-Ray SDK import, no per-call segments."""

    _segment = _NoSegment()

    @contextmanager
    def in_subsegment(self, name: str | None = None, **kwargs: Any) -> Iterator[BaseSegment]:
        yield self._segment

    @asynccontextmanager
    async def in_subsegment_async(self, name: str | None = None, **kwargs: Any) -> AsyncIterator[BaseSegment]:
        yield self._segment

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def patch(self, modules: Sequence[str]) -> None:
        pass

    def patch_all(self) -> None:
        pass


logger = Logger(service=SERVICE)
# No auto-patching: the function calls nothing after init but onnxruntime (its only outbound calls, the model
# fetch, happen at init, before Lambda gives a trace), and patching would import botocore, requests and the
# other libraries X-Ray patches just to wrap them (botocore alone: 0.1 s of CPU and 20 MiB at a cold start).
tracer = (
    Tracer(service=SERVICE, auto_patch=False)
    if tracing_enabled()
    else Tracer(service=SERVICE, disabled=True, auto_patch=False, provider=NoTracing())
)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


@dataclass(slots=True)
class InitSpan:
    """A stage of init (model fetch, session creation), timed for the first invocation's trace."""

    name: str
    start: float
    end: float = 0.0
    annotations: dict[str, str] = field(default_factory=dict)


_init_spans: list[InitSpan] = []


@contextmanager
def init_span(name: str) -> Iterator[InitSpan]:
    """Time an init stage, to be traced later: X-Ray discards any subsegment begun during init.

    Lambda gives the runtime a trace header only with an invocation, so the X-Ray SDK drops what init
    begins ("Lambda worker still initializing", aws/aws-xray-sdk-python#185). The stages are therefore
    recorded here with their wall-clock times and sent, with those times, by :func:`trace_init_stages`.
    """
    span = InitSpan(name, start=time.time())
    try:
        yield span
    finally:
        span.end = time.time()
        record_init_span(span)


def record_init_span(span: InitSpan) -> None:
    if tracing_enabled():
        _init_spans.append(span)


_Handler = TypeVar("_Handler", bound=Callable[..., Any])


def trace_init_stages(handler: _Handler) -> _Handler:
    """On the first traced invocation, send init's stages as subsegments of Lambda's segment.

    Goes outside ``tracer.capture_lambda_handler``, so the stages hang from the invocation's segment
    beside ``## lambda_handler``, not inside it (they happened before it).
    """

    @functools.wraps(handler)
    def traced(*args: Any, **kwargs: Any) -> Any:
        if _init_spans:
            spans = list(_init_spans)
            _init_spans.clear()
            _send(spans)
        return handler(*args, **kwargs)

    return traced  # type: ignore[return-value]  # same signature


def _send(spans: Sequence[InitSpan]) -> None:
    from aws_xray_sdk.core import xray_recorder  # type: ignore[import-untyped]  # no stubs in the image's deps

    for span in spans:
        subsegment = xray_recorder.begin_subsegment(span.name)
        if subsegment is None:  # not sampled
            continue
        subsegment.start_time = span.start
        for key, value in span.annotations.items():
            subsegment.put_annotation(key, value)
        xray_recorder.end_subsegment(span.end)
