"""The template's alarms, on the local stack: they fire and recover by their own rule from template.yaml.

The rule (statistic, period, N, M, threshold, comparison, missing data) is read here from the template
with a plain YAML load, not through the code under test, and each transition's datapoints are checked
against it. The emulator's log must carry every transition too.
"""

from __future__ import annotations

import math
import time
from typing import Any

import httpx
import pytest
import yaml

from tests.dashboard.conftest import LATENCY_THRESHOLD_MS, MINUTE, TEMPLATE, MonitoredStack, next_minute

pytestmark = [pytest.mark.integration, pytest.mark.models, pytest.mark.timeout(240)]

_COMPARE = {
    "GreaterThanOrEqualToThreshold": lambda value, threshold: value >= threshold,
    "GreaterThanThreshold": lambda value, threshold: value > threshold,
}


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_multi_constructor("!", lambda loader, suffix, node: None)  # intrinsic functions aren't needed here


def template_rule(logical_id: str) -> dict[str, Any]:
    properties: dict[str, Any] = yaml.load(TEMPLATE.read_text(), Loader=_Loader)["Resources"][logical_id]["Properties"]
    return properties


def breaching(alarm: dict[str, Any], rule: dict[str, Any], threshold: float) -> tuple[int, int]:
    """(breaching, considered) over the datapoints the alarm evaluated, by the template's rule: the most
    recent N real datapoints, or all of them and the rest missing (not breaching, as TreatMissingData says)."""
    assert rule["TreatMissingData"] == "notBreaching"
    real = [value for _, value in alarm["datapoints"] if value is not None]
    considered = real[-rule["EvaluationPeriods"] :]
    return sum(_COMPARE[rule["ComparisonOperator"]](value, threshold) for value in considered), len(considered)


def test_api_5xx_alarm_fires_on_one_function_error_and_recovers(monitored_stack: MonitoredStack) -> None:
    stack = monitored_stack
    rule = template_rule("Api5xxAlarm")
    assert (rule["Statistic"], rule["Period"], rule["EvaluationPeriods"], rule["DatapointsToAlarm"]) == (
        "Sum",
        60,
        2,
        1,
    )
    client = httpx.Client(base_url=stack.url, timeout=60)

    def healthy() -> None:
        assert client.get("/v2/health/ready").status_code == 200

    stack.wait_for_alarm("Api5xxAlarm", "OK", within=20 * MINUTE, poke=healthy)
    next_minute()
    healthy()
    stack.inject_function_errors(1)
    assert (
        client.post(
            "/v1/embeddings", headers=stack.headers(), json={"model": "all-minilm-l6-v2", "input": "x"}
        ).status_code
        == 500
    )
    fired = stack.wait_for_alarm("Api5xxAlarm", "ALARM", within=4 * MINUTE)
    count, _ = breaching(fired, rule, rule["Threshold"])
    assert count >= rule["DatapointsToAlarm"]
    assert sum(value or 0 for _, value in fired["datapoints"]) == 1, "one 5xx in the evaluation range"
    recovered = stack.wait_for_alarm("Api5xxAlarm", "OK", within=8 * MINUTE, poke=healthy)
    count, considered = breaching(recovered, rule, rule["Threshold"])
    assert count < rule["DatapointsToAlarm"]
    assert considered == rule["EvaluationPeriods"], "good traffic in every period: real datapoints decide"
    client.close()
    history = [(t["old"], t["new"]) for t in recovered["history"]]
    assert history[-2:] == [("OK", "ALARM"), ("ALARM", "OK")]
    log = stack.log_text()
    assert "Alarm Api5xxAlarm: OK -> ALARM: Threshold Crossed: 1 out of the last" in log
    assert "Alarm Api5xxAlarm: ALARM -> OK" in log


def test_api_latency_alarm_fires_on_slow_periods_and_recovers_in_silence(monitored_stack: MonitoredStack) -> None:
    stack = monitored_stack
    rule = template_rule("ApiLatencyP99Alarm")
    assert (rule["ExtendedStatistic"], rule["EvaluationPeriods"], rule["DatapointsToAlarm"]) == ("p99", 5, 3)
    threshold = float(LATENCY_THRESHOLD_MS)  # the template's ApiLatencyP99ThresholdMs, overridden for the stack
    assert stack.alarm("ApiLatencyP99Alarm")["rule"]["threshold"] == threshold
    stack.wait_for_alarm("ApiLatencyP99Alarm", "OK", within=20 * MINUTE)
    client = httpx.Client(base_url=stack.url, timeout=60)
    long_texts = {"model": "all-minilm-l6-v2", "input": [" ".join(["inference"] * 100) + f" {i}" for i in range(32)]}
    slow: list[float] = []
    started = next_minute()
    # One long batch in each of M periods, M + 1 for margin: each waits far longer than the threshold
    for index in range(rule["DatapointsToAlarm"] + 1):
        wait = started + index * MINUTE + 0.05 - time.time()
        if wait > 0:
            time.sleep(wait)
        began = time.perf_counter()
        assert client.post("/v1/embeddings", headers=stack.headers(), json=long_texts).status_code == 200
        slow.append((time.perf_counter() - began) * 1000)
    client.close()
    fired = stack.wait_for_alarm("ApiLatencyP99Alarm", "ALARM", within=6 * MINUTE)
    count, _ = breaching(fired, rule, threshold)
    assert count >= rule["DatapointsToAlarm"], fired
    assert max(value or 0 for _, value in fired["datapoints"]) <= max(slow), (
        "the gateway's latency is within the client's"
    )
    # No traffic at all: missing periods are not breaching, and the slow ones leave the evaluation range
    recovered = stack.wait_for_alarm("ApiLatencyP99Alarm", "OK", within=(rule["EvaluationPeriods"] + 6) * MINUTE)
    count, _ = breaching(recovered, rule, threshold)
    assert count < rule["DatapointsToAlarm"]
    assert [(t["old"], t["new"]) for t in recovered["history"]][-2:] == [("OK", "ALARM"), ("ALARM", "OK")]
    assert "Alarm ApiLatencyP99Alarm: OK -> ALARM" in stack.log_text()
    assert math.isclose(recovered["rule"]["period"], 60)
