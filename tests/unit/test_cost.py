"""The cost model: its arithmetic against a case computed by hand, and docs/cost.md's generator."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path
from statistics import NormalDist

import pytest

from onnx_lambda_tools.cli import main
from onnx_lambda_tools.cost.lambda_sizing import Z_P99, AmdahlFit, Durations, basis, billed_ms, spread_from, vcpus
from onnx_lambda_tools.cost.measurements import FALLBACK, Measurements, WorkloadTiming, load_measurements
from onnx_lambda_tools.cost.memory_advice import advise
from onnx_lambda_tools.cost.metrics import billed_metrics
from onnx_lambda_tools.cost.model import (
    Scenario,
    break_even,
    canary_tokens_per_month,
    custom_metrics,
    lambda_compute_cost,
    resolve,
    sagemaker_instances,
    sagemaker_realtime_cost,
    sagemaker_serverless_cost,
    stack_breakdown,
    xray_traces,
)
from onnx_lambda_tools.cost.prices import PriceBookError, load_prices
from onnx_lambda_tools.cost.report import unit_price

ROOT = Path(__file__).resolve().parents[2]

#: Round prices, so the hand computation below is easy to follow (the real ones are in prices.json).
ROUND_PRICES = {
    "lambda.request": 2e-7,
    "lambda.duration.x86_64": 1e-5,
    "lambda.duration.arm64": 8e-6,
    "lambda.provisioned.x86_64": 4e-6,
    "lambda.provisioned_duration.x86_64": 1e-5,
    "lambda.provisioned.arm64": 3e-6,
    "lambda.provisioned_duration.arm64": 8e-6,
    "api_gateway.http_request": 1e-6,
    "api_gateway.rest_request": 3.5e-6,
    "data_transfer.out_to_internet": 0.1,
    "cognito.m2m_app_client": 5.0,
    "cognito.m2m_token_request": 0.002,
    "cognito.essentials_mau": 0.01,
    "s3.get_request": 1e-6,
    "cloudwatch.logs_ingestion": 0.5,
    "cloudwatch.logs_storage": 0.03,
    "cloudwatch.custom_metric": 0.3,
    "cloudwatch.alarm": 0.1,
    "cloudwatch.dashboard": 3.0,
    "xray.trace_recorded": 5e-6,
    "sagemaker.serverless": 2e-5,
    "sagemaker.serverless_data": 0.02,
    "sagemaker.ml.m5.large": 0.1,
}

MEASURED = Measurements(
    workloads={"embeddings-1": WorkloadTiming(4.5, 3.0, 1024, 10240)},
    init_one_thread_ms=1500.0,
    init_two_threads_ms=1000.0,
    source="test",
    date="2026-01-01",
    machine="test",
)

HAND_CASE = Scenario(
    requests_per_month=2_000_000,
    memory_mb=2048,
    duration_ms=2.5,  # billed as 3 ms
    init_ms=999.2,  # billed as 1,000 ms
    cold_start_rate=0.01,
    user_maus=12_000,
    m2m_app_clients=2,
    m2m_callers=3,
    token_validity_minutes=60,
    log_bytes_per_request=1000,
    log_retention_days=30,
    custom_metrics=10,
    alarms=5,
    dashboards=1,
    s3_gets_per_cold_start=4,
    canary=False,
)


@pytest.fixture
def round_prices(tmp_path: Path):
    entries = {}
    for key, usd in ROUND_PRICES.items():
        entry = {"usd": usd, "per": "unit", "source": "https://example.com/", "checked": "2026-01-01",
                 "confidence": "aws", "note": ""}  # fmt: skip
        if key == "api_gateway.http_request":
            entry["tiers"] = [{"up_to": 3e8, "usd": 1e-6}, {"up_to": 1e9, "usd": 9e-7}, {"up_to": None, "usd": 8e-7}]
            entry["increment_kb"] = 512
        if key == "sagemaker.ml.m5.large":
            entry["vcpus"] = 2
        entries[key] = entry
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"region": "test", "currency": "USD", "about": "", "prices": entries}))
    return load_prices(path)


def test_the_monthly_bill_matches_the_hand_computation(round_prices):
    items = {item.price_key + " " + item.item.split(" (")[0]: item.usd for item in
             stack_breakdown(HAND_CASE, MEASURED, round_prices).items}  # fmt: skip
    # 2,000,000 requests; 2 GB; cold starts = 2,000,000 x 0.01 = 20,000.
    expected = {
        "lambda.request Lambda requests": 0.40,  # 2,000,000 x $0.0000002
        "lambda.duration.x86_64 Lambda duration, warm": 0.12,  # 2,000,000 x 0.003 s x 2 GB = 12,000 GB-s x $0.00001
        "lambda.duration.x86_64 Lambda duration, INIT": 0.40,  # 20,000 x 1.000 s x 2 GB = 40,000 GB-s x $0.00001
        "api_gateway.http_request API Gateway HTTP API": 2.00,  # 2,000,000 x 1 unit (11 KB < 512 KB) x $0.000001
        "data_transfer.out_to_internet data transfer out": 2.048,  # 2,000,000 x 10,240 B = 20.48 GB x $0.10
        "cognito.essentials_mau Cognito user MAUs": 120.0,  # 12,000 x $0.01 (no free tier)
        "cognito.m2m_app_client Cognito M2M app clients": 10.0,  # 2 x $5
        "cognito.m2m_token_request Cognito M2M token requests": 4.38,  # 3 callers x 730 h x 1 token/h = 2,190 x $0.002
        "s3.get_request S3 GETs on cold starts": 0.08,  # 20,000 x 4 = 80,000 x $0.000001
        "cloudwatch.logs_ingestion CloudWatch Logs ingestion": 1.00,  # 2,000,000 x 1,000 B = 2 GB x $0.50
        "cloudwatch.logs_storage CloudWatch Logs storage": 0.0591781,  # 2 GB x 30 d / 30.41667 d = 1.972603 x $0.03
        "cloudwatch.custom_metric CloudWatch custom metrics": 3.00,  # 10 x $0.30
        "cloudwatch.alarm CloudWatch alarms": 0.50,  # 5 x $0.10
        "cloudwatch.dashboard CloudWatch dashboard": 3.00,  # 1 x $3
        # 2,000,000 a month is r = 0.761035 a second. A second records its first request and 5 % of the rest:
        # 0.95 x (1 - e^-0.761035) + 0.05 x 0.761035 = 0.95 x 0.532817 + 0.038052 = 0.544228 a second,
        # x 2,628,000 s = 1,430,232 traces (not all 2,000,000: some seconds get two) x $0.000005
        "xray.trace_recorded X-Ray traces": 7.1511591,
    }
    assert items.keys() == expected.keys()
    for key, usd in expected.items():
        assert items[key] == pytest.approx(usd, rel=1e-6), key
    breakdown = stack_breakdown(HAND_CASE, MEASURED, round_prices)
    # 0.40 + 0.12 + 0.40 + 2.00 + 2.048 + 120 + 10 + 4.38 + 0.08 + 1.00 + 0.0591781 + 3 + 0.50 + 3 + 7.1511591
    assert breakdown.total == pytest.approx(154.1383372, rel=1e-8)
    assert breakdown.per_million == pytest.approx(77.0691686, rel=1e-8)  # 154.1383372 / 2
    assert lambda_compute_cost(HAND_CASE, MEASURED, round_prices) == pytest.approx(0.92)  # 0.40 + 0.12 + 0.40


def test_the_free_tiers_and_the_canary_are_counted(round_prices):
    free = stack_breakdown(replace(HAND_CASE, free_tier=True), MEASURED, round_prices)
    by_name = {item.item.split(" (")[0]: item for item in free.items}
    assert by_name["Lambda requests"].quantity == 1_000_000  # 2,000,000 - 1,000,000 free
    assert by_name["Lambda duration, warm"].quantity == 0  # 12,000 GB-s inside the 400,000 free
    assert by_name["Lambda duration, INIT"].quantity == 0  # 40,000 more GB-s, still inside
    assert by_name["Cognito user MAUs"].quantity == 2_000  # 12,000 - 10,000 free
    assert by_name["X-Ray traces"].quantity == pytest.approx(1_330_232, abs=1)  # 1,430,232 - 100,000 free
    canary = stack_breakdown(replace(HAND_CASE, canary=True), MEASURED, round_prices)
    # The canary runs 8,760 times a month (every 5 minutes for 730 h):
    #   inference Lambda requests 8,760 x $0.0000002 = 0.001752; API calls 8,760 x $0.000001 = 0.00876;
    #   logs 8,760 x 1,000 B = 0.00876 GB x $0.50 = 0.00438, kept 30/30.41667 months x $0.03 = 0.0002592;
    #   730 tokens (one every 12 runs: a 60-minute token is dropped 2 minutes early, the 12th run comes 55
    #   minutes after the fetch, the 13th 60) x $0.002 = 1.46; its own requests 8,760 x $0.0000002 = 0.001752
    #   and 8,760 x 1 s x 0.25 GB = 2,190 arm64 GB-s x $0.000008 = 0.01752;
    #   X-Ray: the inference function's 2,008,760 calls record 1,434,551.2 traces against 1,430,231.8 without
    #   the canary, 4,319.4 x $0.000005 = 0.0215971; the canary's own function one a run, 8,760 x $0.000005 = 0.0438.
    # 0.001752 + 0.00876 + 0.00438 + 0.0002592 + 1.46 + 0.001752 + 0.01752 + 0.0215971 + 0.0438 = 1.5598203
    assert canary.total - stack_breakdown(HAND_CASE, MEASURED, round_prices).total == pytest.approx(1.5598203)


def test_api_gateway_tiers_and_payload_units(round_prices):
    http = round_prices["api_gateway.http_request"]
    # 300M x $1/M + 700M x $0.90/M + 200M x $0.80/M = 300 + 630 + 160
    assert http.tiered(1_200_000_000) == pytest.approx(1090.0)
    big = replace(HAND_CASE, response_kb=600)  # 600 KB responses: two 512 KB units each
    item = next(i for i in stack_breakdown(big, MEASURED, round_prices).items if i.price_key == http.key)
    assert item.quantity == 4_000_000


def test_provisioned_concurrency(round_prices):
    scenario = replace(HAND_CASE, provisioned_concurrency=1)
    items = {item.item.split(" (")[0]: item for item in stack_breakdown(scenario, MEASURED, round_prices).items}
    # 1 x 2 GB x 2,628,000 s = 5,256,000 GB-s x $0.000004 = $21.024
    assert items["provisioned concurrency"].usd == pytest.approx(21.024)
    # Peak concurrency is 2,000,000 / 2,628,000 s x 3 x 0.0025 s = 0.0057, under 1: the provisioned environment
    # serves every request, 2,000,000 x 0.003 s x 2 GB = 12,000 GB-s x $0.00001 = $0.12, and nothing is on demand.
    assert items["duration on provisioned environments"].usd == pytest.approx(0.12)
    assert items["Lambda duration, warm"].usd == 0
    assert items["Lambda duration, INIT"].usd == 0


def test_the_alternatives(round_prices):
    # SageMaker Serverless: 2,000,000 x 0.003 s x 2 GB x $0.00002 = $0.24, plus 2,000,000 x 11,264 B = 22.528 GB x $0.02
    assert sagemaker_serverless_cost(HAND_CASE, MEASURED, round_prices) == pytest.approx(0.24 + 0.45056)
    # Real-time: one worker per vCPU at 4.5 + 0.5 ms a request = 2 x 200 x 70 % = 280 requests/s an instance.
    # 1B a month is 380.5 req/s on average, 1,141.6 at peak: 5 instances x $0.10 x 730 h.
    big = replace(HAND_CASE, requests_per_month=1e9)
    assert sagemaker_instances(big, MEASURED, round_prices) == 5
    assert sagemaker_realtime_cost(big, MEASURED, round_prices) == pytest.approx(365.0)
    assert sagemaker_realtime_cost(HAND_CASE, MEASURED, round_prices) == pytest.approx(146.0)  # the 2-instance floor
    # Lambda compute is 0.92 / 2,000,000 = $0.00000046 a request: it reaches the $146 floor at 317,391,304.
    crossing = break_even(lambda_compute_cost, sagemaker_realtime_cost, HAND_CASE, MEASURED, round_prices)
    assert crossing.kind == "crosses"
    assert crossing.volume is not None
    assert 317_391_304 <= crossing.volume <= 317_393_000
    assert break_even(sagemaker_realtime_cost, lambda_compute_cost, HAND_CASE, MEASURED, round_prices).kind == "always"
    cheap = replace(HAND_CASE, sagemaker_min_instances=0)
    assert break_even(sagemaker_realtime_cost, sagemaker_realtime_cost, cheap, MEASURED, round_prices).kind == "always"


def test_cpu_scaling_and_billing_granularity():
    fit = AmdahlFit(4.0, 3.0)  # p = 2 x (1 - 3/4) = 0.5
    assert fit.parallel_fraction == pytest.approx(0.5)
    assert fit.at(1.0) == pytest.approx(4.0)
    assert fit.at(2.0) == pytest.approx(3.0)
    assert fit.at(4.0) == pytest.approx(2.5)  # 4 x (0.5 + 0.5 / 4)
    assert fit.at(0.5) == pytest.approx(8.0)  # half a core for the single thread
    assert AmdahlFit(3.0, 3.5).parallel_fraction == 0.0  # a noisy slower 2-thread figure means no speed-up
    assert vcpus(1769) == 1.0
    assert vcpus(10240) == pytest.approx(5.7886, rel=1e-3)
    assert [basis(m) for m in (1024, 1769, 2048, 3538, 4096)] == [
        "modelled", "measured", "interpolated", "measured", "modelled",
    ]  # fmt: skip
    assert [billed_ms(x) for x in (0.2, 1.0, 1.01, 2.5)] == [1, 1, 2, 3]
    with pytest.raises(ValueError, match="128-10240"):
        vcpus(64)


def test_memory_advice_prefers_the_cheapest_size_close_to_the_fastest(round_prices):
    advice = advise(replace(HAND_CASE, duration_ms=None, init_ms=None), MEASURED, round_prices)
    fastest = min(option.warm_ms for option in advice.options)
    assert advice.recommended.warm_ms <= fastest * 1.25
    cheaper = [o for o in advice.options if o.per_million < advice.recommended.per_million - 1e-9]
    assert all(o.warm_ms > fastest * 1.25 for o in cheaper)
    assert {o.basis for o in advice.options} == {"measured", "interpolated", "modelled"}


def test_bad_scenarios_are_refused():
    with pytest.raises(ValueError, match="cold-start rate"):
        Scenario(cold_start_rate=1.5)
    with pytest.raises(ValueError, match="Lambda memory"):
        Scenario(memory_mb=20_000)


def test_the_packaged_price_file_is_complete_and_sourced():
    prices = load_prices()
    assert set(ROUND_PRICES) <= set(prices.prices)
    for price in prices.prices.values():
        assert price.source.startswith("https://"), price.key
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", price.checked), price.key
        assert price.note, price.key
    init = prices.fact("lambda.init_billing")
    assert "2025" in init.note
    assert init.source.startswith("https://aws.amazon.com/")
    with pytest.raises(PriceBookError, match="no price"):
        prices["lambda.gpu"]


def test_the_generator_is_deterministic_and_docs_are_current(tmp_path):
    pytest.importorskip("matplotlib", reason="the cost extra (matplotlib) draws the chart")
    from onnx_lambda_tools.cost.power_tuning import load_tuning
    from onnx_lambda_tools.cost.report import write_docs

    prices, measurements, tuning = load_prices(), load_measurements(ROOT), load_tuning(ROOT)
    first = write_docs(tmp_path / "a", Scenario(), measurements, prices, tuning)
    second = write_docs(tmp_path / "b", Scenario(), measurements, prices, tuning)
    for one, two in zip(first, second, strict=True):
        assert one.read_bytes() == two.read_bytes(), one.name
    committed = ROOT / "docs" / "cost.md"
    assert committed.read_text() == first[0].read_text(), "docs/cost.md is stale: run `make cost`"
    assert "](cost.png)" in committed.read_text()


def test_the_command(capsys, tmp_path):
    assert main(["cost", "--requests", "25M", "--root", str(tmp_path), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["scenario"]["requests_per_month"] == 25_000_000
    assert document["measurements"] == FALLBACK.source  # no bench/ under this root
    assert document["total_usd"] == pytest.approx(sum(item["usd"] for item in document["items"]))
    assert math.isclose(document["per_million_usd"], document["total_usd"] / 25)
    assert main(["cost", "--root", str(tmp_path), "--sagemaker-instance", "ml.p5.48xlarge"]) == 1
    assert "no price for SageMaker instance 'ml.p5.48xlarge'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["cost", "--requests", "lots"])
    assert exit_info.value.code == 2
    assert "not a request volume" in capsys.readouterr().err


def test_measurements_come_from_the_newest_files(tmp_path):
    scaling = tmp_path / "bench" / "thread-scaling"
    scaling.mkdir(parents=True)

    def thread(mean: float, init: float) -> dict[str, object]:
        timing = {"mean_ms": mean, "p50_ms": mean, "request_bytes": 70, "response_bytes": 5000}
        return {"init_ms": init, "workloads": {"embeddings-1": timing}}

    document = {"date": "2026-02-01", "machine": {"cpus": 2, "cpu": "Test CPU"}, "threads": {}}
    (scaling / "2026-01-01.json").write_text(
        json.dumps({**document, "threads": {"1": thread(9, 900), "2": thread(8, 800)}})
    )
    (scaling / "2026-02-01.json").write_text(
        json.dumps({**document, "threads": {"1": thread(3, 600), "2": thread(2, 500)}})
    )
    measured = load_measurements(tmp_path)
    assert measured.source == "thread-scaling/2026-02-01.json"
    assert measured.workload("embeddings-1") == WorkloadTiming(3, 2, 70, 5000)
    assert measured.cold_start_ms is None

    results = tmp_path / "bench" / "results"
    results.mkdir()
    (results / "2026-02-02.json").write_text(
        json.dumps(
            {
                "cold_start": [
                    {"model": "all-minilm-l6-v2", "raw": {"total_ms": 500.0}, "ours": {"total_ms": 700.0}},
                    {"model": "all-minilm-l6-v2-fp32", "ours": {"total_ms": 1900.0}},
                ]
            }
        )
    )
    with_bench = load_measurements(tmp_path)
    assert with_bench.cold_start_ms == 700.0  # ours, not raw, not the fp32 model
    assert with_bench.bench_source == "bench/results/2026-02-02.json"
    # INIT at 3,538 MB (2 vCPUs) is the bench's cold start; at 1,769 MB it is scaled by init(1) / init(2) = 600 / 500.
    assert resolve_init(with_bench, 3538) == pytest.approx(700.0)
    assert resolve_init(with_bench, 1769) == pytest.approx(840.0)


def resolve_init(measurements: Measurements, memory_mb: int) -> float:
    return resolve(Scenario(memory_mb=memory_mb), measurements).init_ms


def test_each_invocation_is_rounded_up_on_its_own():
    """E[ceil(d)] of a log-normal, against the mean of ceil over 200,000 evenly spaced quantiles (stdlib inverse)."""
    sigma = math.log(5.1 / 2.99) / NormalDist().inv_cdf(0.99)  # the container's p50 2.99 ms, p99 5.1 ms
    assert spread_from(2.99, 5.1, Z_P99) == pytest.approx(sigma)
    durations = Durations(2.99, sigma)
    n = 200_000
    reference = (
        sum(max(1, math.ceil(2.99 * math.exp(sigma * NormalDist().inv_cdf((i + 0.5) / n)))) for i in range(n)) / n
    )
    assert durations.expected_billed_ms() == pytest.approx(reference, abs=2e-3)
    # Not the rounded mean: the mean is 3.07 ms, which would bill 4 ms; about half the calls bill 3 ms.
    assert durations.mean_ms == pytest.approx(2.99 * math.exp(sigma**2 / 2))
    assert billed_ms(durations.mean_ms) == 4
    assert 3.5 < durations.expected_billed_ms() < 3.65
    # A constant duration bills its own ceiling; twice as slow is the same shape scaled.
    assert Durations(2.5).expected_billed_ms() == 3
    assert Durations(0.2).expected_billed_ms() == 1
    assert durations.scaled(2).median_ms == pytest.approx(5.98)
    assert Durations.with_mean(4.0, 0.3).mean_ms == pytest.approx(4.0)


def test_xray_records_a_reservoir_a_second_and_five_percent_of_the_rest():
    """Traces a month against the expectation over the Poisson pmf, summed term by term, either side of 1/s."""
    seconds = 730 * 3600
    for requests in (100_000, 2_000_000, 10_000_000, 300_000_000):
        rate = requests / seconds
        per_second = 0.0
        for k in range(int(rate * 10) + 30):
            pmf = math.exp(k * math.log(rate) - rate - math.lgamma(k + 1))
            per_second += pmf * (min(k, 1) + 0.05 * max(k - 1, 0))  # the first of the second, 5 % of the rest
        assert xray_traces(requests) == pytest.approx(per_second * seconds, rel=1e-6), requests
    # Far below 1/s nearly every request is the first of its second; far above, 1/s + 5 % of the rest.
    assert xray_traces(10_000) == pytest.approx(10_000, rel=0.01)
    assert xray_traces(1e10) == pytest.approx(seconds + 0.05 * (1e10 - seconds), rel=1e-6)
    assert xray_traces(0) == 0


def test_the_canary_fetches_a_token_when_its_cached_one_is_within_two_minutes_of_expiry():
    # 60-minute tokens, usable 58 minutes, a run every 5: the 12th run after the fetch is at 55 min, the 13th at 60.
    assert canary_tokens_per_month(Scenario()) == 8_760 / 12
    # 10-minute tokens, usable 8 minutes: every second run.
    assert canary_tokens_per_month(Scenario(token_validity_minutes=10)) == 8_760 / 2
    assert canary_tokens_per_month(Scenario(canary_tokens_per_month=8_760)) == 8_760  # a new environment every run
    assert canary_tokens_per_month(Scenario(canary=False)) == 0


def test_custom_metrics_are_counted_per_model_version():
    # ColdStart; ModelLoadTime, ModelBytes, InferenceTime, BatchSize, Tokens for the embeddings version;
    # the canary's Availability and Latency.
    assert billed_metrics() == 1 + 5 + 2
    assert billed_metrics(failures=True) == 9  # + ModelLoadFailure
    assert billed_metrics(1, 1) == 1 + 5 + 4 + 2  # a tabular model has no Tokens
    assert billed_metrics(2, canary=False) == 1 + 10
    assert custom_metrics(Scenario()) == 8
    assert custom_metrics(Scenario(embedding_model_versions=2)) == 13  # a version replaced in the month
    assert custom_metrics(Scenario(custom_metrics=3)) == 3
    with pytest.raises(ValueError, match="model version"):
        Scenario(embedding_model_versions=-1)


def test_init_and_warm_come_from_the_functions_container(tmp_path):
    (tmp_path / "bench" / "results").mkdir(parents=True)
    container = {
        "memory_mb": 2048,
        "init_duration_ms": 700.0,
        "init_duration_all_ms": [690.2, 700.0, 720.4],
        "duration_p50_ms": 2.99,
        "duration_p99_ms": 5.1,
    }
    (tmp_path / "bench" / "results" / "2026-02-02.json").write_text(json.dumps({"container": container}))
    measured = replace(load_measurements(tmp_path), workloads=MEASURED.workloads,
                       init_one_thread_ms=1500.0, init_two_threads_ms=1000.0)  # fmt: skip
    assert measured.container is not None
    assert measured.container.tracing  # the function's own container: the image's LAMBDA_TASK_ROOT, nothing off
    at_2048 = resolve(Scenario(memory_mb=2048), measured)
    # Each cold start billed on its own: 691 + 700 + 721 = 2,112 / 3 = 704 ms; the mean is 703.53 ms.
    assert at_2048.init_billed_ms == pytest.approx(704.0)
    assert at_2048.init_ms == pytest.approx(703.5333333)
    assert at_2048.warm.median_ms == pytest.approx(2.99)
    assert at_2048.warm_basis == "measured"
    # 1,769 MB: init fit 1,500 / 1,000 ms at 1 / 2 vCPUs (p = 2/3), at 1.1577 vCPUs 1,500 x (1/3 + (2/3) / 1.1577)
    # = 1,363.7 ms, so INIT is 1,500 / 1,363.7 = 1.0999 times the container's; warm likewise with 4.5 / 3.0 ms.
    at_1769 = resolve(Scenario(memory_mb=1769), measured)
    ratio = 1500.0 / (1500.0 * (1 / 3 + (2 / 3) / (2048 / 1769)))
    assert at_1769.init_ms == pytest.approx(703.5333333 * ratio)
    assert at_1769.warm.median_ms == pytest.approx(2.99 * ratio)
    assert at_1769.warm_basis == "interpolated"
    # Another workload keeps the in-process mean; a container section that says tracing was off is believed.
    container["tracing"] = "off"
    (tmp_path / "bench" / "results" / "2026-02-02.json").write_text(json.dumps({"container": container}))
    stated = load_measurements(tmp_path).container
    assert stated is not None
    assert not stated.tracing


def test_the_bench_container_runs_the_function_with_tracing_on(monkeypatch):
    """The container section's environment, as bench/container.py builds it, makes the handler load X-Ray."""
    from onnx_lambda.observability import tracing_enabled
    from onnx_lambda_tools.local.containers import function_environment

    image_env = (ROOT / "containers" / "lambda-python" / "Dockerfile").read_text()
    assert re.search(r"^\s*LAMBDA_TASK_ROOT=/var/task", image_env, re.MULTILINE), "the image sets LAMBDA_TASK_ROOT"
    assert "POWERTOOLS_TRACE_DISABLED" not in (ROOT / "template.yaml").read_text()
    for name in ("POWERTOOLS_TRACE_DISABLED", "AWS_SAM_LOCAL", "AWS_CHALICE_CLI_MODE", "LAMBDA_TASK_ROOT"):
        monkeypatch.delenv(name, raising=False)
    environment = function_environment({"ONNX_LAMBDA_MODELS": "s3://bucket/model.onnx"}, 2048)
    for name, value in {**environment, "LAMBDA_TASK_ROOT": "/var/task"}.items():
        monkeypatch.setenv(name, value)
    assert tracing_enabled()


def test_unit_prices_keep_their_precision():
    assert unit_price(0.115) == "$0.115"
    assert unit_price(0.102) == "$0.102"
    assert unit_price(1.66667e-05) == "$0.0000166667"
    document = (ROOT / "docs" / "cost.md").read_text()
    assert "ml.m5.large at $0.115 an hour" in document
