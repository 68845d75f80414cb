"""The CloudWatch rules the local monitoring follows, on hand-made inputs with documented answers.

* Alarms: the rules of CloudWatch's "Configuring how CloudWatch alarms treat missing data", on examples in
  that page's notation (three evaluation periods, three datapoints to alarm, an evaluation range of five;
  X breaches, 0 doesn't, - is missing): with enough real datapoints the most recent decide; with fewer,
  all of them count and the rest are filled in as the alarm says.
* Dashboards: the metric-row shorthand ("." repeats the item above, "..." the rest of the row) as the
  dashboard body reference describes it, on the template's own rows.
* EMF: the embedded metric format specification's example document.
* Percentiles: nearest rank, against its definition in exact arithmetic (and numpy where floats are exact).
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from onnx_lambda_tools.local.monitoring.alarms import AlarmRule, AlarmState, evaluate
from onnx_lambda_tools.local.monitoring.dashboard import expand_rows
from onnx_lambda_tools.local.monitoring.emf import NotEmf, parse_emf
from onnx_lambda_tools.local.monitoring.metrics import MetricId, MetricStore, Statistic
from onnx_lambda_tools.local.monitoring.search import SearchError, parse_search
from tests.dashboard.reference import nearest_rank

OK, ALARM, INSUFFICIENT = AlarmState.OK, AlarmState.ALARM, AlarmState.INSUFFICIENT_DATA


def rule(treatment: str, *, n: int = 3, m: int = 3) -> AlarmRule:
    return AlarmRule.from_properties(
        {
            "Namespace": "AWS/ApiGateway",
            "MetricName": "5xx",
            "Statistic": "Sum",
            "Period": 60,
            "EvaluationPeriods": n,
            "DatapointsToAlarm": m,
            "Threshold": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "TreatMissingData": treatment,
        }
    )


def points(pattern: str) -> list[tuple[float, float | None]]:
    """'0 - X - X' (oldest first): X breaches (5), 0 doesn't, - is missing."""
    values = {"X": 5.0, "0": 0.0, "-": None}
    return [(60.0 * i, values[symbol]) for i, symbol in enumerate(pattern.split())]


# (datapoints, missing, ignore, breaching, notBreaching); None: the state stays as it was
EXAMPLES = [
    ("0 - X - X", OK, OK, OK, OK),  # three real datapoints: they decide, missing data plays no part
    ("0 0 X 0 X", OK, OK, OK, OK),
    ("0 X X - X", ALARM, ALARM, ALARM, ALARM),
    ("- - - - -", INSUFFICIENT, None, ALARM, OK),
    ("- - - - 0", OK, OK, OK, OK),  # one real datapoint; the two filled can't make three breaching
    ("- - - X X", OK, OK, ALARM, OK),  # two real, breaching; the third filled in as the alarm says
]


@pytest.mark.parametrize(("pattern", "missing", "ignore", "breaching", "not_breaching"), EXAMPLES)
def test_alarm_states_by_missing_data_treatment(
    pattern: str,
    missing: AlarmState,
    ignore: AlarmState | None,
    breaching: AlarmState,
    not_breaching: AlarmState,
) -> None:
    for treatment, expected in (
        ("missing", missing),
        ("ignore", ignore),
        ("breaching", breaching),
        ("notBreaching", not_breaching),
    ):
        assert evaluate(rule(treatment), points(pattern)).state is expected, (pattern, treatment)


def test_m_out_of_n_counts_only_the_most_recent_real_datapoints() -> None:
    two_of_five = rule("notBreaching", n=5, m=2)
    assert evaluate(two_of_five, points("0 0 0 X X 0 0 0")).state is ALARM
    assert evaluate(two_of_five, points("0 X X 0 0 0 0 0")).state is OK  # the two X are older than the last 5
    assert evaluate(two_of_five, points("0 0 0 0 0 0 X 0")).state is OK


def test_comparisons_and_extended_statistics() -> None:
    latency = AlarmRule.from_properties(
        {
            "Namespace": "AWS/ApiGateway",
            "MetricName": "Latency",
            "ExtendedStatistic": "p99",
            "Period": 60,
            "EvaluationPeriods": 1,
            "Threshold": 100,
            "ComparisonOperator": "GreaterThanThreshold",
        }
    )
    assert latency.statistic == Statistic("p99", 99.0)
    assert latency.datapoints_to_alarm == 1
    assert latency.treat_missing_data == "missing"
    assert evaluate(latency, [(0.0, 100.0)]).state is OK  # not greater than
    assert evaluate(latency, [(0.0, 100.5)]).state is ALARM


def test_reason_names_the_datapoints_like_cloudwatch() -> None:
    outcome = evaluate(rule("notBreaching", n=2, m=1), points("- - 0 X"))
    assert outcome.reason.startswith("Threshold Crossed: 1 out of the last 2 datapoints [5.0 (")
    assert "was greater than or equal to the threshold (1.0)" in outcome.reason


def test_template_rows_expand_as_cloudwatch_reads_them() -> None:
    rows = expand_rows(
        [
            ["AWS/ApiGateway", "Latency", "ApiId", "api", "Stage", "$default", {"stat": "p50"}],
            ["...", {"stat": "p99"}],
            [".", "IntegrationLatency", ".", ".", ".", ".", {"stat": "p99"}],
            [{"expression": "SEARCH('Namespace=\"OnnxLambda\" MetricName=\"ColdStart\"', 'Sum', 300)", "id": "c"}],
        ]
    )
    latency = MetricId.of("AWS/ApiGateway", "Latency", {"ApiId": "api", "Stage": "$default"})
    assert [row.metric for row in rows[:3]] == [
        latency,
        latency,
        MetricId.of("AWS/ApiGateway", "IntegrationLatency", {"ApiId": "api", "Stage": "$default"}),
    ]
    assert [row.options.get("stat") for row in rows[:3]] == ["p50", "p99", "p99"]
    assert rows[3].metric is None
    assert rows[3].expression is not None


def test_search_with_a_schema_wants_exactly_its_dimensions() -> None:
    search = parse_search("SEARCH('{OnnxLambda,model,model_version,service} MetricName=\"InferenceTime\"', 'p99', 60)")
    full = MetricId.of("OnnxLambda", "InferenceTime", {"model": "m", "model_version": "1", "service": "s"})
    assert search.matches(full)
    assert not search.matches(MetricId.of("OnnxLambda", "InferenceTime", {"service": "s"}))
    assert not search.matches(MetricId.of("OnnxLambda", "InferenceTimes", dict(full.dimensions)))
    assert (search.statistic.name, search.period) == ("p99", 60)
    anywhere = parse_search("SEARCH('Namespace=\"OnnxLambda\" MetricName=\"ColdStart\"', 'Sum', 300)")
    assert anywhere.matches(MetricId.of("OnnxLambda", "ColdStart", {"function_name": "f", "service": "s"}))
    assert anywhere.matches(MetricId.of("OnnxLambda", "ColdStart"))
    assert not anywhere.matches(MetricId.of("OnnxLambda/Canary", "ColdStart"))
    with pytest.raises(SearchError, match="OR, NOT"):
        parse_search("SEARCH('Namespace=\"A\" OR Namespace=\"B\"', 'Sum', 60)")


def test_the_emf_specification_example() -> None:
    document = {
        "_aws": {
            "Timestamp": 1574109732004,
            "CloudWatchMetrics": [
                {
                    "Namespace": "lambda-function-metrics",
                    "Dimensions": [["functionVersion"]],
                    "Metrics": [{"Name": "time", "Unit": "Milliseconds", "StorageResolution": 60}],
                }
            ],
        },
        "functionVersion": "$LATEST",
        "time": 100,
        "requestId": "989ffbf8-9ace-4817-a57c-e4dd734019ee",
    }
    (found,) = parse_emf(json.loads(json.dumps(document)))
    assert found.metric == MetricId.of("lambda-function-metrics", "time", {"functionVersion": "$LATEST"})
    assert (found.values, found.timestamp, found.unit) == ((100.0,), 1574109732.004, "Milliseconds")
    document["time"] = [1, 2.5]
    assert parse_emf(document)[0].values == (1.0, 2.5)
    del document["functionVersion"]
    with pytest.raises(NotEmf, match="functionVersion"):
        parse_emf(document)


def test_percentiles_are_nearest_rank() -> None:
    rng = random.Random(7)
    metric = MetricId.of("N", "m")
    for size in (1, 2, 3, 10, 99, 100, 101, 1000):
        values = [rng.uniform(0, 50) for _ in range(size)]
        store = MetricStore(clock=lambda: 1000.0)
        for value in values:
            store.put(metric, value, timestamp=900.0)
        for percentile in ("0.1", "1", "50", "90", "99", "99.9", "100"):
            (point,) = store.datapoints(metric, Statistic.parse(f"p{percentile}"), 600, 600, 1200)
            assert point.value == nearest_rank(values, percentile), (size, percentile)
    assert nearest_rank(range(1, 11), "50") == np.percentile(np.arange(1, 11), 50, method="inverted_cdf") == 5


def test_the_window_is_bounded() -> None:
    now = [1000.0]
    store = MetricStore(retention_seconds=100, max_datapoints=50, clock=lambda: now[0])
    metric = MetricId.of("N", "m")
    for second in range(200):
        now[0] = 1000.0 + second
        store.put(metric, 1.0)
    sum_all = Statistic.parse("Sum")
    (point,) = store.datapoints(metric, sum_all, 10_000, 0, now[0] + 1)
    assert point.value <= 50  # at most max_datapoints are kept
    assert store.values(metric, 0, now[0] + 1).size <= 50
    now[0] += 500  # everything is older than the retention
    assert store.datapoints(metric, sum_all, 10_000, 0, now[0] + 1) == []
