"""docs/cost.md: the cost model written out, generated from the price file and the measurements.

Nothing here measures or prices anything: it lays out what :mod:`.model` and :mod:`.memory_advice`
compute. The output depends only on its inputs (no clock, no environment), so ``make cost`` run
twice on the same inputs writes the same bytes, and a changed doc in a diff means changed inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from onnx_lambda_tools.cost import power_tuning
from onnx_lambda_tools.cost.chart import write_chart
from onnx_lambda_tools.cost.lambda_sizing import MB_PER_VCPU, billed_ms
from onnx_lambda_tools.cost.measurements import WORKLOAD_LABELS, Measurements
from onnx_lambda_tools.cost.memory_advice import MAX_INIT_MS, MemoryAdvice, advise
from onnx_lambda_tools.cost.metrics import CATALOGUE, billed_metrics
from onnx_lambda_tools.cost.model import (
    ALTERNATIVES,
    CANARY_INTERVAL_SECONDS,
    CANARY_RUNS_PER_MONTH,
    CANARY_TOKEN_MARGIN_SECONDS,
    HOURS_PER_MONTH,
    PROXY_MEMORY_GB,
    PROXY_OVERHEAD_MS,
    SECONDS_PER_MONTH,
    WHOLE_STACKS,
    Breakdown,
    BreakEven,
    Scenario,
    at_volume,
    break_even,
    canary_tokens_per_month,
    custom_metrics,
    lambda_compute_cost,
    proxy_cost_per_request,
    resolve,
    sagemaker_instances,
    sagemaker_realtime_cost,
    sagemaker_realtime_stack_cost,
    sagemaker_serverless_cost,
    sagemaker_serverless_stack_cost,
    stack_breakdown,
    stack_cost,
    xray_traces,
)
from onnx_lambda_tools.cost.prices import PriceBook

WORKED_VOLUMES: Final = (1_000_000, 10_000_000, 100_000_000)
TABLE_VOLUMES: Final = (100_000, 1_000_000, 10_000_000, 100_000_000, 1_000_000_000)
CHART_VOLUMES: Final = tuple(10 ** (5 + i / 10) for i in range(41))
CHART_FILE: Final = "cost.png"
DOC_FILE: Final = "cost.md"
SENSITIVITY_RATES: Final = (0.001, 0.01, 0.05)


def money(usd: float) -> str:
    if usd == 0:
        return "$0"
    if abs(usd) < 0.01:
        return f"${usd:.4f}"
    return f"${usd:,.2f}"


def volume(requests: float) -> str:
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if requests >= size:
            return f"{requests / size:,.3g}{suffix}"
    return f"{requests:,.0f}"


def quantity(value: float) -> str:
    if value == 0:
        return "0"
    if value >= 100 or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:,.3g}"


def unit_price(usd: float) -> str:
    return f"${usd:.10f}".rstrip("0").rstrip(".") if usd < 0.01 else f"${usd:,.10g}"


def break_even_text(result: BreakEven, first: str, second: str) -> str:
    if result.kind == "always":
        return f"{first} costs more than {second} at every volume from 10k requests a month"
    if result.kind == "never":
        return f"{first} stays cheaper than {second} up to 10B requests a month"
    assert result.volume is not None
    return f"{first} costs more than {second} from **{volume(result.volume)} requests a month** ({result.volume:,.0f})"


def write_docs(
    directory: Path,
    scenario: Scenario,
    measurements: Measurements,
    prices: PriceBook,
    tuning: tuple[Path, Mapping[str, Any]] | None = None,
) -> tuple[Path, ...]:
    """Write ``cost.md`` and ``cost.png`` (and, with ``make tune``'s results, its chart) into ``directory``."""
    chart = directory / CHART_FILE
    series: dict[str, list[float]] = {}
    for label in WHOLE_STACKS:
        whole, compute = WHOLE_STACKS[label], ALTERNATIVES[label]
        series[f"{label}, whole stack"] = [whole(at_volume(scenario, v), measurements, prices) for v in CHART_VOLUMES]
        series[f"{label}, compute tier"] = [
            compute(at_volume(scenario, v), measurements, prices) for v in CHART_VOLUMES
        ]
    write_chart(
        chart,
        CHART_VOLUMES,
        series,
        title=f"{WORKLOAD_LABELS.get(scenario.workload, scenario.workload)}, {scenario.memory_mb} MB "
        f"{scenario.architecture}, {scenario.cold_start_rate:.1%} cold starts",
        marks=_marks(scenario, measurements, prices),
    )
    written = [chart]
    tuning_section = ""
    if tuning is not None:
        tuning_path, tuning_document = tuning
        power_tuning.write_chart(directory / power_tuning.CHART_FILE, tuning_document)
        written.append(directory / power_tuning.CHART_FILE)
        source = f"bench/tune/{tuning_path.name}"
        tuning_section = power_tuning.section(source, tuning_document, power_tuning.CHART_FILE)
    document = render(scenario, measurements, prices, tuning_section)
    path = directory / DOC_FILE
    path.write_text(document, encoding="utf-8")
    return (path, *written)


def _marks(scenario: Scenario, measurements: Measurements, prices: PriceBook) -> list[tuple[float, float, str]]:
    """The break-even points against the always-on endpoint, where the curves cross."""
    marks = []
    for first, second, label in (
        (stack_cost, sagemaker_realtime_stack_cost, "whole stack"),
        (lambda_compute_cost, sagemaker_realtime_cost, "compute"),
    ):
        result = break_even(first, second, scenario, measurements, prices)
        if result.kind == "crosses" and result.volume is not None:
            cost = second(at_volume(scenario, result.volume), measurements, prices)
            marks.append((result.volume, cost, f"{label} break-even {volume(result.volume)}"))
    return marks


def render(scenario: Scenario, measurements: Measurements, prices: PriceBook, tuning_section: str = "") -> str:
    worked = [stack_breakdown(at_volume(scenario, v), measurements, prices) for v in WORKED_VOLUMES]
    advice = {name: advise(replace(scenario, workload=name), measurements, prices) for name in measurements.workloads}
    lines: list[str] = []
    add = lines.append
    add("# Cost model")
    add("")
    add("<!-- Generated by `make cost` (`onnx-lambda cost --write-docs docs`). Do not edit: change")
    add("     src/onnx_lambda_tools/cost/prices.json or the measurements and regenerate. -->")
    add("")
    add("What one deployment of `template.yaml` costs a month, line by line, from the prices in")
    add("[`src/onnx_lambda_tools/cost/prices.json`](../src/onnx_lambda_tools/cost/prices.json) (each with its")
    add(f"source and the date it was checked; region {prices.region}) and the handler times measured on this")
    add("project's machine. `onnx-lambda cost --help` runs the same model for your own volume, memory,")
    add("architecture, cold-start rate, payload and callers.")
    add("")
    add(_summary(scenario, worked, measurements, prices, advice))
    add(_inputs(scenario, measurements))
    add(_assumptions(scenario, measurements, prices))
    add(_worked(worked, prices))
    add(_comparison(scenario, measurements, prices))
    add(_memory(advice, scenario))
    if tuning_section:
        add(tuning_section)
    add(_sensitivity(scenario, measurements, prices))
    add(_price_table(prices))
    add(_excluded())
    return "\n".join(lines).rstrip("\n") + "\n"


def _break_evens(scenario: Scenario, measurements: Measurements, prices: PriceBook) -> list[str]:
    lines = []
    for basis_label, ours, serverless, realtime in (
        ("whole stack", stack_cost, sagemaker_serverless_stack_cost, sagemaker_realtime_stack_cost),
        ("compute tier", lambda_compute_cost, sagemaker_serverless_cost, sagemaker_realtime_cost),
    ):
        for other, name in ((realtime, "SageMaker real-time"), (serverless, "SageMaker Serverless")):
            result = break_even(ours, other, scenario, measurements, prices)
            lines.append(f"{basis_label}: {break_even_text(result, 'Lambda', name)}")
    return lines


def _summary(
    scenario: Scenario,
    worked: Sequence[Breakdown],
    measurements: Measurements,
    prices: PriceBook,
    advice: dict[str, MemoryAdvice],
) -> str:
    totals = ", ".join(f"{money(b.total)} at {volume(b.scenario.requests_per_month)}" for b in worked)
    per_million = ", ".join(money(b.per_million) for b in worked)
    chosen = advice.get(scenario.workload)
    memory_line = ""
    if chosen is not None:
        pick = chosen.recommended
        memory_line = (
            f"- Memory: **{pick.memory_mb} MB** for {WORKLOAD_LABELS.get(chosen.workload, chosen.workload)} "
            f"({pick.basis}; see [Memory size](#memory-size)).\n"
        )
    evens = "".join(f"- Break-even, {line}.\n" for line in _break_evens(scenario, measurements, prices))
    return (
        "## Summary\n\n"
        f"For {WORKLOAD_LABELS.get(scenario.workload, scenario.workload)} at {scenario.memory_mb} MB "
        f"({scenario.architecture}), {scenario.cold_start_rate:.1%} cold starts and {scenario.m2m_callers} machine "
        "callers:\n\n"
        f"- The whole stack costs {totals} requests a month: {per_million} per million requests.\n"
        f"{evens}"
        f"{memory_line}"
        f"\nSageMaker real-time is {scenario.sagemaker_min_instances} x {scenario.sagemaker_instance} or more, "
        'always on; "whole stack" puts the same Cognito, logs, metrics and traces around each option, with the '
        "cheapest API that can call SageMaker in front of it (see [Against SageMaker](#against-sagemaker)).\n"
    )


def _inputs(scenario: Scenario, measurements: Measurements) -> str:
    rows = [
        "## Inputs\n",
        f"Measured: **{measurements.source}** ({measurements.machine}, {measurements.date}): the Lambda handler",
        "in-process on API Gateway v2 events (Mangum, FastAPI, auth claims, the model, JSON), mean per invocation,",
        "with onnxruntime limited to 1 and then 2 intra-op threads. `onnx-lambda cost --measure-threads` refreshes it.",
        "",
        "| workload | 1 thread | 2 threads | request | response |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, timing in sorted(measurements.workloads.items()):
        rows.append(
            f"| {WORKLOAD_LABELS.get(name, name)} (`{name}`) | {timing.one_thread_ms:.3f} ms | "
            f"{timing.two_threads_ms:.3f} ms | {timing.request_bytes:,} B | {timing.response_bytes:,} B |"
        )
    rows += [
        "",
        f"Init (imports, model fetch and checks, sessions): {measurements.init_one_thread_ms:,.0f} ms at 1 thread, "
        f"{measurements.init_two_threads_ms:,.0f} ms at 2 (tracing off), in-process: these give only how init "
        "scales with the CPU share.",
    ]
    container = measurements.container
    if container is not None:
        inits = ", ".join(f"{value:,.0f}" for value in container.init_ms)
        rows += [
            "",
            f"The function's container from `make bench` ({measurements.bench_source}, its `container` section): "
            f"the image under {container.memory_mb} MB and Lambda's CPU quota "
            f"({container.memory_mb / MB_PER_VCPU:.3f} vCPU), tracing "
            f"{'on' if container.tracing else 'off'} ({container.tracing_basis}), model from local S3, the "
            "Runtime Interface Emulator's INIT REPORT and REPORT lines read as Lambda writes them:",
            "",
            f"- Init Duration of {len(container.init_ms)} fresh containers: {inits} ms (mean "
            f"{container.init_mean_ms:,.1f} ms). INIT at other memory sizes is these, scaled by the in-process "
            "init's CPU share.",
            f"- warm Duration of `{container.workload}`: p50 {container.duration_p50_ms:g} ms, p99 "
            f"{container.duration_p99_ms:g} ms. That workload's warm time at other sizes is this distribution, "
            "scaled by the in-process Amdahl fit; the other workloads are the in-process means.",
        ]
    elif measurements.cold_start_ms is not None:
        rows.append(
            f"Cold start from `make bench` ({measurements.bench_source}): {measurements.cold_start_ms:,.0f} ms "
            "from exec to "
            "the first response, model from local S3; INIT is this, scaled by the CPU share like the init above."
        )
    else:
        rows.append("No `make bench` cold start was found, so INIT is the in-process init above, scaled by CPU share.")
    rows += [
        "",
        "Scenario (the defaults of `onnx-lambda cost`, which match `template.yaml`):",
        "",
        "| input | value |",
        "|---|---|",
        f"| memory, architecture | {scenario.memory_mb} MB ({scenario.memory_mb / MB_PER_VCPU:.2f} vCPU), "
        f"{scenario.architecture} |",
        f"| cold-start rate | {scenario.cold_start_rate:.1%} of invocations start an execution environment |",
        f"| provisioned concurrency | {scenario.provisioned_concurrency} |",
        f"| peak-to-average request rate | {scenario.peak_to_average:g} |",
        f"| callers | {scenario.m2m_callers} machine clients caching {scenario.token_validity_minutes}-minute tokens; "
        f"{scenario.user_maus:,} user MAUs |",
        f"| logs | {scenario.log_bytes_per_request:,} B per request (EMF line ~330 B measured, Lambda platform lines "
        f"and the API access-log line estimated), kept {scenario.log_retention_days} days |",
        f"| model versions served in the month | {scenario.embedding_model_versions} embeddings, "
        f"{scenario.other_model_versions} other |",
        f"| metrics, alarms, dashboards | {custom_metrics(scenario)} (what the code emits, see below), "
        f"{scenario.alarms}, {scenario.dashboards} (template.yaml) |",
        f"| S3 per cold start | {scenario.s3_gets_per_cold_start} GETs "
        "(model.onnx in 8 MiB ranges, tokenizer, manifest) |",
        f"| synthetic canary | every {CANARY_INTERVAL_SECONDS // 60} minutes: one inference call, its own 256 MB "
        f"arm64 function, {quantity(canary_tokens_per_month(scenario))} tokens a month (see below) |",
        f"| free tiers | {'applied' if scenario.free_tier else 'not applied (they are per account and shared)'} |",
        "",
    ]
    return "\n".join(rows)


def _assumptions(scenario: Scenario, measurements: Measurements, prices: PriceBook) -> str:
    """The inputs an audit found easy to get wrong, each with its assumption, its source and its range."""
    resolved = resolve(scenario, measurements)
    warm = resolved.warm
    token_price = prices["cognito.m2m_token_request"].usd
    cached = canary_tokens_per_month(replace(scenario, canary=True, canary_tokens_per_month=None))
    usable_minutes = (scenario.token_validity_minutes * 60 - CANARY_TOKEN_MARGIN_SECONDS) / 60
    client = prices["cognito.m2m_app_client"]
    init_fact = prices.fact("lambda.init_billing")
    metric_price = prices["cloudwatch.custom_metric"].usd
    rows = [
        "## Assumptions\n",
        "**Billed duration.** Lambda rounds each invocation's duration up to the next millisecond (at least 1 ms), "
        "so what it bills on average is the mean of the rounded durations, not the rounded mean. Single "
        "invocations are modelled as a log-normal through the measured percentiles (the container's p50 and p99, "
        "or the in-process p50 and p90 at the nearer thread count). "
        f"Here: mean {warm.mean_ms:.3f} ms, median {warm.median_ms:.3f} ms, spread (sigma) {warm.sigma:.3f}, "
        f"billed {resolved.warm_billed_ms:.3f} ms on average, where rounding up the mean would bill "
        f"{billed_ms(warm.mean_ms)} ms. INIT is billed the same way, cold start by cold start.",
        "",
        f"**INIT.** From {resolved.init_source}. The bench's container runs the "
        "image under the CPU quota with tracing on as deployed (`Tracing: Active`: the X-Ray SDK loads during init, "
        "about 0.3 s of it as measured for `src/onnx_lambda/observability.py`); the in-process measurements run "
        "with tracing off and only give how init scales with the CPU share. Billing "
        f"({init_fact.confidence}, [{_host(init_fact.source)}]({init_fact.source})): {init_fact.note} "
        "Environments kept by provisioned concurrency initialise inside its own charge.",
        "",
        "**X-Ray.** The default sampling rule records the first request in each second and 5 % of the others, "
        "which Lambda applies to a function with `Tracing: Active` (assumed: per function, not shared with other "
        "functions). Requests are assumed to arrive at random at a steady rate (Poisson at the month's average "
        "rate), so a second may get none, one or several. A second with n requests records "
        "1 + 5 % x (n - 1) of them when n >= 1, so a month records 95 % x (1 - e^-r) + 5 % x r traces a second "
        "at r requests a second. Traffic in bursts records fewer (the expression is concave in r): the figures "
        "are an upper bound. The canary's own function adds one trace a run.",
        "",
        "| requests a month | requests a second | traces recorded | share of requests |",
        "|---:|---:|---:|---:|",
    ]
    for v in TABLE_VOLUMES:
        traces = xray_traces(v)
        rows.append(f"| {volume(v)} | {v / SECONDS_PER_MONTH:.3g} | {quantity(traces)} | {traces / v:.1%} |")
    rows += [
        "",
        "**Custom metrics.** CloudWatch bills each metric name with each set of dimension *values* as one metric, "
        "prorated by the hour it is sent. `model` and `model_version` are dimensions, so each served model version "
        "has its own; a version replaced mid-month is billed for both, each for its hours. What the code emits "
        "(`tests/infra/test_cost_metrics.py` runs the real handler over `events/` and the real canary, and checks "
        "this list and the count against what they print):",
        "",
        "| namespace | metric | dimensions | one per | sent |",
        "|---|---|---|---|---|",
    ]
    for metric in CATALOGUE:
        rows.append(
            f"| {metric.namespace} | {metric.name} | {', '.join(metric.dimensions)} | {metric.scope} | "
            f"{metric.when}: {metric.emitted_by} |"
        )
    healthy = custom_metrics(scenario)
    failing = billed_metrics(scenario.embedding_model_versions, scenario.other_model_versions,
                             canary=scenario.canary, failures=True)  # fmt: skip
    rows += [
        "",
        f"With {scenario.embedding_model_versions} embeddings and {scenario.other_model_versions} other model "
        f"version(s) and the canary: **{healthy} metrics** ({money(healthy * metric_price)} a month); a month in "
        f"which a model fails to load adds at most {failing - healthy} more, for the hours it is sent.",
        "",
        f"**The canary's tokens.** The canary caches its token in its execution environment until "
        f"{CANARY_TOKEN_MARGIN_SECONDS // 60} minutes before it expires. With {scenario.token_validity_minutes}-"
        f"minute tokens ({usable_minutes:g} minutes usable) and a run every {CANARY_INTERVAL_SECONDS // 60} minutes, "
        f"a warm environment fetches one token every {math.ceil(usable_minutes * 60 / CANARY_INTERVAL_SECONDS)} "
        f"runs: {quantity(cached)} a month ({money(cached * token_price)}), the figure used here. Lambda does not "
        "say how long it keeps an idle environment; if every run starts a new one, every run fetches a token: "
        f"{quantity(CANARY_RUNS_PER_MONTH)} a month ({money(CANARY_RUNS_PER_MONTH * token_price)}). "
        "`--canary-tokens-per-month` sets another figure.",
        "",
        f"**Cognito M2M app clients.** {unit_price(client.usd)} per app client a month ({client.confidence}): "
        f"{client.note}",
        "",
    ]
    return "\n".join(rows)


def _worked(worked: Sequence[Breakdown], prices: PriceBook) -> str:
    rows = ["## Worked examples\n"]
    for breakdown in worked:
        requests = breakdown.scenario.requests_per_month
        resolved = breakdown.resolved
        rows += [
            f"### {volume(requests)} requests a month\n",
            f"Warm invocation {resolved.warm_ms:.3f} ms on average ({resolved.warm_basis}; "
            f"{resolved.warm_source}), {resolved.warm_billed_ms:.3f} ms billed on average, each invocation rounded "
            f"up on its own; INIT {resolved.init_ms:,.0f} ms ({resolved.init_billed_ms:,.0f} ms billed; "
            f"{resolved.init_source}).",
            "",
            "| tier | item | quantity | unit price | per month |",
            "|---|---|---:|---:|---:|",
        ]
        for item in breakdown.items:
            price = prices[item.price_key]
            per = f"{unit_price(price.usd)} / {price.per}" + (" (tiered)" if price.tiers else "")
            rows.append(
                f"| {item.tier} | {item.item} | {quantity(item.quantity)} {item.unit} | {per} | {money(item.usd)} |"
            )
        rows += [
            f"| | **total** | | | **{money(breakdown.total)}** |",
            "",
            f"{money(breakdown.per_million)} per million requests. By tier: "
            + ", ".join(
                f"{tier} {money(breakdown.tier_total(tier))}"
                for tier in ("compute", "front door", "auth", "observability", "model storage")
            )
            + ".",
            "",
        ]
    return "\n".join(rows)


def _comparison(scenario: Scenario, measurements: Measurements, prices: PriceBook) -> str:
    hourly = prices[f"sagemaker.{scenario.sagemaker_instance}"].usd
    rest = prices["api_gateway.rest_request"].usd * 1e6
    http = prices["api_gateway.http_request"].usd * 1e6
    proxied = http + proxy_cost_per_request(scenario, measurements, prices) * 1e6
    cheaper, door = ("proxy function", proxied) if proxied < rest else ("REST API", rest)
    rows = [
        "## Against SageMaker\n",
        f"![Monthly cost against volume]({CHART_FILE})",
        "",
        "Whole stack (each option with Cognito, logs, metrics, traces and its API in front):",
        "",
        "| requests a month | Lambda (this service) | SageMaker Serverless | SageMaker real-time |",
        "|---:|---:|---:|---:|",
    ]
    for v in TABLE_VOLUMES:
        point = at_volume(scenario, v)
        rows.append(
            f"| {volume(v)} | "
            + " | ".join(money(cost(point, measurements, prices)) for cost in WHOLE_STACKS.values())
            + " |"
        )
    rows += [
        "",
        "Compute tier only (what runs the model):",
        "",
        "| requests a month | Lambda (this service) | SageMaker Serverless | SageMaker real-time |",
        "|---:|---:|---:|---:|",
    ]
    for v in TABLE_VOLUMES:
        point = at_volume(scenario, v)
        instances = sagemaker_instances(point, measurements, prices)
        rows.append(
            f"| {volume(v)} | {money(lambda_compute_cost(point, measurements, prices))} | "
            f"{money(sagemaker_serverless_cost(point, measurements, prices))} | "
            f"{money(sagemaker_realtime_cost(point, measurements, prices))} "
            f"({instances} x {scenario.sagemaker_instance}) |"
        )
    rows += ["", "Break-even volumes:", ""]
    rows += [f"- {line}." for line in _break_evens(scenario, measurements, prices)]
    rows += [
        "",
        "How the alternatives are priced:",
        "",
        f"- **SageMaker real-time**: {scenario.sagemaker_instance} at {unit_price(hourly)} an hour, "
        f"{HOURS_PER_MONTH} hours a month, at least {scenario.sagemaker_min_instances} instances (so that the endpoint "
        "spans Availability Zones, as Lambda does by itself), more when the peak rate "
        f"(average x {scenario.peak_to_average:g}) exceeds {scenario.sagemaker_target_utilisation:.0%} of capacity. "
        "Capacity is one model worker per vCPU, each taking the measured 1-thread handler time plus "
        f"{scenario.server_overhead_ms:g} ms of HTTP serving per request (modelled: the instance's vCPUs are not "
        "this machine's cores).",
        "- **SageMaker Serverless Inference**: the memory size rounded up to whole GB (1-6), the same warm time "
        "as Lambda, billed per millisecond, plus data processed in and out; no request fee, and its cold starts are "
        "assumed free (neither is confirmed on the AWS page).",
        "- **The front door**: a SageMaker endpoint takes SigV4-signed calls and an HTTP API can't integrate it. "
        f"The whole-stack figures use the cheaper of a REST API ({money(rest)} per million requests, an AWS "
        f"service integration that keeps the Cognito authorizer) and the HTTP API ({money(http)} per million) with "
        f"a {PROXY_MEMORY_GB * 1024:.0f} MB arm64 proxy function that waits for the endpoint (the model's time + "
        f"{PROXY_OVERHEAD_MS:g} ms assumed); here the {cheaper} is cheaper, at {money(door)} per million requests. "
        "Cognito, logs, metrics, traces and data transfer are the same for all three.",
        "",
    ]
    return "\n".join(rows)


def _memory(advice: dict[str, MemoryAdvice], scenario: Scenario) -> str:
    rows = [
        "## Memory size\n",
        "Lambda gives CPU in proportion to memory (one vCPU at 1,769 MB). The handler was measured at 1 and 2 threads,",
        "which is what 1,769 MB and 3,538 MB get; Amdahl's law through those two points gives the time at other",
        "sizes. *measured* = one of those two points (or, for the request the bench's container sent, the",
        "container's own size, from which the fit scales it), *interpolated* = between 1 and 2 vCPUs, **modelled** =",
        "extrapolated below one vCPU (a time share of one core) or above two (more threads than were measured). The",
        "advice is the",
        f"cheapest size whose warm time is within {next(iter(advice.values())).tolerance:.0%} of the fastest size's "
        f"(compute tier, {scenario.cold_start_rate:.1%} cold starts) and whose INIT stays under "
        f"{MAX_INIT_MS / 1000:g} s, half of Lambda's 10 s INIT limit.",
        "",
    ]
    for name, result in sorted(advice.items()):
        rows += [
            f"### {WORKLOAD_LABELS.get(name, name)}\n",
            "| memory | vCPU | warm | INIT | basis | Lambda compute per 1M requests |",
            "|---:|---:|---:|---:|---|---:|",
        ]
        for option in result.options:
            mark = "**" if option is result.recommended else ""
            label = "**modelled**" if option.basis == "modelled" else option.basis
            rows.append(
                f"| {mark}{option.memory_mb:,} MB{mark} | {option.vcpus:.2f} | {option.warm_ms:.2f} ms | "
                f"{option.init_ms:,.0f} ms | {label} | {mark}{money(option.per_million)}{mark} |"
            )
        pick = result.recommended
        rows += [
            "",
            f"Advice: **{pick.memory_mb:,} MB** ({pick.basis}).",
            "",
        ]
    return "\n".join(rows)


def _sensitivity(scenario: Scenario, measurements: Measurements, prices: PriceBook) -> str:
    requests = WORKED_VOLUMES[-1]
    resolved = resolve(scenario, measurements)
    ratio = resolved.init_billed_ms / resolved.warm_billed_ms
    rows = [
        "## Sensitivity to the cold-start rate\n",
        f"INIT is billed: one cold start ({resolved.init_billed_ms:,.0f} ms) bills as much duration as {ratio:,.0f} "
        f"warm invocations ({resolved.warm_billed_ms:.2f} ms each on average). The rate depends on the traffic: "
        "steady traffic "
        "keeps execution environments warm for hours, bursts start new ones.",
        "",
        f"| cold-start rate | whole stack at {volume(requests)} | Lambda compute tier |",
        "|---:|---:|---:|",
    ]
    for rate in SENSITIVITY_RATES:
        point = replace(at_volume(scenario, requests), cold_start_rate=rate)
        rows.append(
            f"| {rate:.1%} | {money(stack_breakdown(point, measurements, prices).total)} | "
            f"{money(lambda_compute_cost(point, measurements, prices))} |"
        )
    rows.append("")
    return "\n".join(rows)


def _price_table(prices: PriceBook) -> str:
    rows = [
        "## Prices and facts\n",
        prices.about,
        "",
        "| key | price | confidence | checked | source | note |",
        "|---|---:|---|---|---|---|",
    ]
    for key, price in sorted(prices.prices.items()):
        rows.append(
            f"| `{key}` | {unit_price(price.usd)} / {price.per} | {price.confidence} | {price.checked} | "
            f"[{_host(price.source)}]({price.source}) | {price.note} |"
        )
    rows += ["", "| fact | confidence | checked | source | what it says |", "|---|---|---|---|---|"]
    for key, fact in sorted(prices.facts.items()):
        rows.append(
            f"| `{key}` | {fact.confidence} | {fact.checked} | [{_host(fact.source)}]({fact.source}) | {fact.note} |"
        )
    rows.append("")
    return "\n".join(rows)


def _excluded() -> str:
    return (
        "## Not included\n\n"
        "Each of these is under a few cents a month for this stack, or depends on things outside it: ECR storage of "
        "the image, S3 storage of the models (tens of MB a version), SNS alarm e-mails, AWS Budgets (the first two "
        "budgets are free), CodeDeploy (free for Lambda), the pre-traffic hook (one run per deployment), CloudWatch "
        "Logs Insights queries, requests that API Gateway throttles or rejects before the function, taxes, and any "
        "Savings Plan or enterprise discount.\n"
    )


def _host(url: str) -> str:
    return url.split("//", 1)[-1].split("/", 1)[0]
