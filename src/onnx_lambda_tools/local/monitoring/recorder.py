"""The emulator's requests and invocations, as the metrics API Gateway and Lambda publish for them.

API Gateway (HTTP API, no detailed route metrics), per answered request, under ``ApiId`` and
``ApiId, Stage``: ``Count`` 1; ``4xx`` and ``5xx`` 1 or 0 by the status (so their ``Sum`` counts errors and
their ``Average`` is a rate); ``Latency`` (arrival to answer, ms); ``IntegrationLatency`` (the function's
part, ms) when a function was called.

Lambda, per invocation through the alias API Gateway invokes, under ``FunctionName``,
``FunctionName, Resource`` and ``FunctionName, Resource, ExecutedVersion``: ``Invocations`` 1, ``Errors``
1 or 0, ``Throttles`` 0, ``Duration`` (ms, as the REPORT line), ``ConcurrentExecutions`` (invocations in
flight when it started); a throttled request is ``Throttles`` 1 and no invocation. A cold start's
``Init Duration`` goes where Lambda Insights puts it: ``LambdaInsights`` ``init_duration``
(``function_name``), since Lambda itself reports it only in the REPORT line.

Then the invocation's log stream is read for the function's own EMF lines (:mod:`.emf`): they are
written before the runtime posts the response, so they are stored by the time the caller has its answer.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from onnx_lambda_tools.local.emulator.front import RequestRecord
from onnx_lambda_tools.local.emulator.pool import InvocationRecord, Outcome
from onnx_lambda_tools.local.monitoring.emf import LogTail
from onnx_lambda_tools.local.monitoring.metrics import MetricId, MetricStore
from onnx_lambda_tools.local.monitoring.template import LocalFunction

API_NAMESPACE = "AWS/ApiGateway"
LAMBDA_NAMESPACE = "AWS/Lambda"
INSIGHTS_NAMESPACE = "LambdaInsights"
#: Every metric the emulator itself publishes, by namespace.
EMULATED_METRICS: Mapping[str, frozenset[str]] = {
    API_NAMESPACE: frozenset({"Count", "4xx", "5xx", "Latency", "IntegrationLatency"}),
    LAMBDA_NAMESPACE: frozenset({"Invocations", "Errors", "Throttles", "Duration", "ConcurrentExecutions"}),
    INSIGHTS_NAMESPACE: frozenset({"init_duration"}),
}
#: Why some metrics the template may name have no local source.
_ABSENT_HINTS: Mapping[str, str] = {
    "ProvisionedConcurrency": "provisioned concurrency is not emulated",
    "OnnxLambda/Canary": "the synthetic canary runs on a schedule, in AWS only",
}


def local_availability(emf_namespaces: Collection[str]) -> Callable[[MetricId], str | None]:
    """Why a metric can't exist locally (``None`` if it can): the emulator publishes
    :data:`EMULATED_METRICS`, the function whatever it likes in its own EMF namespaces."""

    def why_not(metric: MetricId) -> str | None:
        if metric.namespace in emf_namespaces:
            return None
        emulated = EMULATED_METRICS.get(metric.namespace)
        if emulated is not None and (metric.name in emulated or not metric.name):
            return None
        for prefix, hint in _ABSENT_HINTS.items():
            if metric.name.startswith(prefix) or metric.namespace == prefix:
                return hint
        if emulated is not None:
            return f"the emulator doesn't publish {metric.namespace} {metric.name}"
        return f"nothing publishes to {metric.namespace} locally"

    return why_not


class Recorder:
    """Listens to the gateway and the pools, and puts what they report into the store."""

    def __init__(self, store: MetricStore, *, api_id: str, stage: str, functions: Mapping[str, LocalFunction]) -> None:
        self.store = store
        self._api = ({"ApiId": api_id}, {"ApiId": api_id, "Stage": stage})
        self._functions = {function.name: function for function in functions.values()}
        self._tail = LogTail(store)

    def on_request(self, record: RequestRecord) -> None:
        at = record.timestamp
        values: list[tuple[str, float, str]] = [
            ("Count", 1.0, "Count"),
            ("4xx", 1.0 if 400 <= record.status < 500 else 0.0, "Count"),
            ("5xx", 1.0 if record.status >= 500 else 0.0, "Count"),
            ("Latency", record.latency_ms, "Milliseconds"),
        ]
        if record.integration_latency_ms is not None:
            values.append(("IntegrationLatency", record.integration_latency_ms, "Milliseconds"))
        for dimensions in self._api:
            for name, value, unit in values:
                self.store.put(MetricId.of(API_NAMESPACE, name, dimensions), value, timestamp=at, unit=unit)

    def on_invocation(self, record: InvocationRecord) -> None:
        function = self._functions.get(record.function_name) or LocalFunction("", record.function_name, None)
        dimension_sets = [
            {"FunctionName": function.name},
            {"FunctionName": function.name, "Resource": function.resource},
        ]
        if function.alias:
            dimension_sets.append({**dimension_sets[1], "ExecutedVersion": function.version})
        at = record.timestamp
        if record.outcome is Outcome.THROTTLED:
            values: list[tuple[str, float, str]] = [("Throttles", 1.0, "Count")]
        else:
            values = [
                ("Invocations", 1.0, "Count"),
                ("Errors", 0.0 if record.outcome is Outcome.SUCCESS else 1.0, "Count"),
                ("Throttles", 0.0, "Count"),
                ("ConcurrentExecutions", float(record.concurrency), "Count"),
            ]
            if record.duration_ms is not None:
                values.append(("Duration", record.duration_ms, "Milliseconds"))
        for dimensions in dimension_sets:
            for name, value, unit in values:
                self.store.put(MetricId.of(LAMBDA_NAMESPACE, name, dimensions), value, timestamp=at, unit=unit)
        if record.init_ms is not None:
            metric = MetricId.of(INSIGHTS_NAMESPACE, "init_duration", {"function_name": function.name})
            self.store.put(metric, record.init_ms, timestamp=at, unit="Milliseconds")
        if record.log_path is not None:
            self._tail.read(record.log_path)
