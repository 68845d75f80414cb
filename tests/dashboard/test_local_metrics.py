"""Known traffic through `serve --lambda`, and the local metrics it must produce, as CloudWatch would have them.

Every expectation comes from outside the store: counts from what the client sent and got back, Lambda's
durations from the emulator's REPORT lines, the function's own metrics from the EMF lines in its log
streams (parsed here with json), percentiles by their definition (:mod:`tests.dashboard.reference`). Gateway latency
can't be seen from outside, but each request's is shorter than what the client waited, so every order
statistic of the store's is at most the client's.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import numpy as np
import pytest

from tests.dashboard.conftest import ALIAS_RESOURCE, API_ID, FUNCTION, REPORT_DURATION, MonitoredStack, next_minute
from tests.dashboard.reference import nearest_rank

pytestmark = [pytest.mark.integration, pytest.mark.models, pytest.mark.timeout(240)]

EMBEDDER = "all-minilm-l6-v2"
TABULAR = "breast-cancer-classifier"
#: The REPORT line's resolution: durations are printed to 0.01 ms.
REPORT_RESOLUTION_MS = 0.005


@dataclass(frozen=True)
class Sent:
    status: int
    seconds: float
    #: Answered by API Gateway alone (the authorizer, routing, throttling): no invocation.
    gateway_only: bool


def _embed(texts: int) -> dict[str, object]:
    return {"model": EMBEDDER, "input": [f"sentence number {i} about serverless inference" for i in range(texts)]}


def test_metrics_match_known_traffic(monitored_stack: MonitoredStack) -> None:
    stack = monitored_stack
    start = next_minute()
    reports_before = len(stack.report_lines())
    sent: list[Sent] = []
    client = httpx.Client(base_url=stack.url, timeout=60)

    def send(
        method: str,
        path: str,
        *,
        auth: bool = True,
        gateway_only: bool = False,
        content_type: str | None = None,
        **kwargs: object,
    ) -> int:
        headers = stack.headers() if auth else {}
        if content_type:
            headers["content-type"] = content_type
        began = time.perf_counter()
        response = client.request(method, path, headers=headers, **kwargs)  # type: ignore[arg-type]
        throttled = response.status_code == 429
        sent.append(Sent(response.status_code, time.perf_counter() - began, gateway_only or throttled))
        return response.status_code

    for count in (1, 3, 8, 1, 2):
        assert send("POST", "/v1/embeddings", json=_embed(count)) == 200
    features = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 30], "data": [0.5] * 30}]}
    for _ in range(3):
        assert send("POST", f"/v2/models/{TABULAR}/infer", json=features) == 200
    assert send("GET", "/v2/health/ready", auth=False) == 200
    # 4xx from API Gateway itself, and from the function
    assert send("POST", "/v1/embeddings", auth=False, gateway_only=True, json=_embed(1)) == 401
    assert send("GET", "/no/such/route", gateway_only=True) == 404
    assert send("POST", "/v1/embeddings", content=b'{"model": ', content_type="application/json") == 400
    assert send("GET", "/v2/models/no-such-model") == 404
    # 5xx: two real function errors, by the emulator's fault switch
    stack.inject_function_errors(2)
    assert send("POST", "/v1/embeddings", json=_embed(1)) == 500
    assert send("GET", "/v2/models/" + EMBEDDER) == 500
    # Throttles: bursts of six at two environments, until some are refused
    with ThreadPoolExecutor(6) as burst:
        for _ in range(5):
            statuses = list(burst.map(lambda _: send("POST", "/v1/embeddings", json=_embed(16)), range(6)))
            assert set(statuses) <= {200, 429}, statuses
            if 429 in statuses:
                break
    end = time.time()
    client.close()

    statuses = [s.status for s in sent]
    throttled = statuses.count(429)
    assert throttled >= 1, "no burst was throttled"
    invoked = [s for s in sent if not s.gateway_only]
    reports = stack.report_lines()[reports_before:]
    assert len(reports) == len(invoked), "one REPORT line per invocation"

    def api(name: str, stat: str) -> float:
        return stack.metric("AWS/ApiGateway", name, {"ApiId": API_ID, "Stage": "$default"}, stat, start, end)

    def function(name: str, stat: str) -> float:
        return stack.metric(
            "AWS/Lambda", name, {"FunctionName": FUNCTION, "Resource": ALIAS_RESOURCE}, stat, start, end
        )

    # Counts, exactly
    assert api("Count", "Sum") == len(sent)
    assert api("4xx", "Sum") == sum(400 <= s < 500 for s in statuses)
    assert api("5xx", "Sum") == statuses.count(500) == 2
    assert api("4xx", "SampleCount") == len(sent)
    assert function("Invocations", "Sum") == len(invoked)
    assert function("Errors", "Sum") == 2 == sum("Status: error" in line for line in reports)
    assert function("Throttles", "Sum") == throttled
    assert api("IntegrationLatency", "SampleCount") == len(invoked) + throttled
    # A throttle means both environments were busy: the most in flight at once is the limit, 2
    assert function("ConcurrentExecutions", "Maximum") == 2
    # The same invocations under the function alone and with the version the alias runs
    assert stack.metric("AWS/Lambda", "Invocations", {"FunctionName": FUNCTION}, "Sum", start, end) == len(invoked)
    versioned = {"FunctionName": FUNCTION, "Resource": ALIAS_RESOURCE, "ExecutedVersion": "1"}
    assert stack.metric("AWS/Lambda", "Errors", versioned, "Sum", start, end) == 2

    # Lambda's durations: the REPORT lines' values
    durations = np.array([float(REPORT_DURATION.search(line).group(1)) for line in reports])  # type: ignore[union-attr]
    assert function("Duration", "SampleCount") == durations.size
    for percentile in ("50", "90", "99"):
        expected = nearest_rank(durations, percentile)
        assert function("Duration", f"p{percentile}") == pytest.approx(expected, abs=REPORT_RESOLUTION_MS)
    assert function("Duration", "Maximum") == pytest.approx(durations.max(), abs=REPORT_RESOLUTION_MS)
    assert function("Duration", "Sum") == pytest.approx(durations.sum(), abs=REPORT_RESOLUTION_MS * durations.size)

    # API Gateway's latency is within what each client waited
    waited = np.array([s.seconds * 1000 for s in sent])
    assert api("Latency", "SampleCount") == len(sent)
    for percentile in ("50", "99"):
        assert 0 < api("Latency", f"p{percentile}") <= nearest_rank(waited, percentile)

    # The function's own EMF metrics, from its log streams
    inference: dict[tuple[str, str], list[float]] = defaultdict(list)
    for stream in stack.function_logs.rglob("*.log"):
        for line in stream.read_text(errors="replace").splitlines():
            if not line.startswith("{") or '"_aws"' not in line:
                continue
            document = json.loads(line)
            if start <= document["_aws"]["Timestamp"] / 1000 < end and "InferenceTime" in document:
                values = document["InferenceTime"]
                inference[(document["model"], document["model_version"])] += (
                    values if isinstance(values, list) else [values]
                )
    assert {model for model, _ in inference} == {EMBEDDER, TABULAR}
    for (model, version), values in inference.items():
        dimensions = {"model": model, "model_version": version, "service": "onnx-lambda"}
        for percentile in ("50", "99"):
            measured = stack.metric("OnnxLambda", "InferenceTime", dimensions, f"p{percentile}", start, end)
            assert measured == nearest_rank(values, percentile)
        assert stack.metric("OnnxLambda", "InferenceTime", dimensions, "SampleCount", start, end) == len(values)


def test_cold_starts_carry_their_init_duration(monitored_stack: MonitoredStack) -> None:
    """Every REPORT line with an Init Duration is one init_duration datapoint and one ColdStart."""
    stack = monitored_stack
    log_text = stack.log_text()
    inits = [
        float(line.split("Init Duration: ")[1].split(" ms")[0])
        for line in stack.report_lines()
        if "Init Duration" in line
    ]
    assert inits, f"the stack had no cold start: {log_text[-2000:]}"
    end = time.time()
    start = end - 600
    start -= start % 2
    insights = {"function_name": FUNCTION}
    assert stack.metric("LambdaInsights", "init_duration", insights, "SampleCount", start, end) == len(inits)
    assert stack.metric("LambdaInsights", "init_duration", insights, "Maximum", start, end) == pytest.approx(
        max(inits), abs=REPORT_RESOLUTION_MS
    )
    cold = stack.get("/api/metrics")["metrics"]
    cold_starts = [m for m in cold if m["namespace"] == "OnnxLambda" and m["name"] == "ColdStart"]
    assert cold_starts, "the function's ColdStart EMF metric was not read"
    dimensions = {d["name"]: d["value"] for d in cold_starts[0]["dimensions"]}
    assert stack.metric("OnnxLambda", "ColdStart", dimensions, "Sum", start, end) == len(inits)
