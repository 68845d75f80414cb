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

import os
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

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
tracer = (
    Tracer(service=SERVICE)
    if tracing_enabled()
    else Tracer(service=SERVICE, disabled=True, auto_patch=False, provider=NoTracing())
)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
