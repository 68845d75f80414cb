"""The monthly bill of the deployed stack, line by line, and what SageMaker would charge for the same work.

Inputs are a :class:`Scenario` (volume, memory, architecture, cold-start rate, payload, callers) plus
the :class:`~.measurements.Measurements` and the :class:`~.prices.PriceBook`. Every charge is a
:class:`LineItem` that carries its quantity and the price key it was multiplied by, so a report can
show the arithmetic and a test can check it by hand.

Comparisons with SageMaker are on the *compute tier* (what runs the model): a SageMaker endpoint is
called with SigV4, so a caller-facing API with Cognito tokens needs the same API Gateway, Cognito and
logging in front of it (and an HTTP API can't call SageMaker directly: a REST API or a proxy
function costs more again). The front door is therefore at least as expensive for SageMaker, and
the compute-tier break-even volumes are the ones that matter.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, Literal

from onnx_lambda_tools.cost.lambda_sizing import (
    MB_PER_VCPU,
    Z_P99,
    AmdahlFit,
    Basis,
    Durations,
    basis,
    billed_ms,
    spread_from,
    vcpus,
)
from onnx_lambda_tools.cost.measurements import Measurements
from onnx_lambda_tools.cost.metrics import billed_metrics
from onnx_lambda_tools.cost.prices import PriceBook

HOURS_PER_MONTH: Final = 730
SECONDS_PER_MONTH: Final = HOURS_PER_MONTH * 3600
BYTES_PER_GB: Final = 1_000_000_000
LAMBDA_FREE_REQUESTS: Final = 1_000_000
LAMBDA_FREE_GB_SECONDS: Final = 400_000
COGNITO_FREE_MAUS: Final = 10_000
CLOUDWATCH_FREE_LOG_GB: Final = 5
CLOUDWATCH_FREE_METRICS: Final = 10
CLOUDWATCH_FREE_ALARMS: Final = 10
CLOUDWATCH_FREE_DASHBOARDS: Final = 3
XRAY_FREE_TRACES: Final = 100_000
DATA_TRANSFER_FREE_GB: Final = 100
#: X-Ray's default rule, as Lambda applies it to a function with Tracing: Active: the first request
#: each second (the reservoir), then 5 % of the rest.
XRAY_FIXED_RATE: Final = 0.05
#: template.yaml's synthetic canary: every 5 minutes (its schedule), 256 MB arm64, one inference call
#: through the API per run.
CANARY_INTERVAL_SECONDS: Final = 300
CANARY_RUNS_PER_MONTH: Final = SECONDS_PER_MONTH // CANARY_INTERVAL_SECONDS
#: The canary drops a cached token this long before it expires (its TOKEN_MARGIN_SECONDS).
CANARY_TOKEN_MARGIN_SECONDS: Final = 120
CANARY_MEMORY_GB: Final = 0.25
CANARY_SECONDS_PER_RUN: Final = 1.0
SAGEMAKER_SERVERLESS_MAX_GB: Final = 6
#: A proxy function between an HTTP API and a SageMaker endpoint: 128 MB arm64, waiting on InvokeEndpoint.
PROXY_MEMORY_GB: Final = 0.125
#: SageMaker Runtime's round trip on top of the model's own time (assumed; whole milliseconds).
PROXY_OVERHEAD_MS: Final = 15

Architecture = Literal["x86_64", "arm64"]
Tier = Literal["compute", "front door", "auth", "observability", "model storage"]


@dataclass(frozen=True)
class Scenario:
    """Everything about the deployment and its traffic that the bill depends on; defaults are template.yaml's."""

    requests_per_month: float = 10_000_000
    workload: str = "embeddings-1"
    memory_mb: int = 1769
    architecture: Architecture = "x86_64"
    #: Overrides of the modelled figures (warm handler time and init at this memory).
    duration_ms: float | None = None
    init_ms: float | None = None
    #: Share of invocations that start a new execution environment.
    cold_start_rate: float = 0.01
    #: Overrides of the workload's measured request/response body sizes.
    request_kb: float | None = None
    response_kb: float | None = None
    provisioned_concurrency: int = 0
    #: Peak request rate over the monthly average (sizes provisioned concurrency and instances).
    peak_to_average: float = 3.0
    user_maus: int = 0
    m2m_app_clients: int = 1
    #: Processes that call the API with a machine token, each caching it for its lifetime.
    m2m_callers: int = 10
    token_validity_minutes: int = 60
    #: Function logs (EMF metrics line, Lambda platform lines) plus the API access log line.
    log_bytes_per_request: int = 1400
    log_retention_days: int = 30
    #: Model versions the function serves in the month (a version replaced mid-month counts too): each
    #: adds its own metrics (model and model_version are dimensions). Embeddings models add Tokens.
    embedding_model_versions: int = 1
    other_model_versions: int = 0
    #: Billed custom metrics; None: what the code emits for the model versions above (:mod:`.metrics`).
    custom_metrics: int | None = None
    alarms: int = 8
    dashboards: int = 1
    #: Ranged GETs of model.onnx (8 MiB parts) + tokenizer.json + manifest.json per cold start.
    s3_gets_per_cold_start: int = 5
    canary: bool = True
    #: The canary's token requests a month; None: one per token lifetime, from its execution environment's
    #: cache (the environment assumed to stay warm between runs). A new environment every run makes it
    #: one per run (:data:`CANARY_RUNS_PER_MONTH`).
    canary_tokens_per_month: float | None = None
    #: Apply the always-free tiers (Lambda, CloudWatch, X-Ray, Cognito MAUs, data transfer).
    free_tier: bool = False
    sagemaker_instance: str = "ml.m5.large"
    #: Two instances so the endpoint spans Availability Zones, as Lambda does by itself.
    sagemaker_min_instances: int = 2
    sagemaker_target_utilisation: float = 0.7
    #: Per-request cost of a model server's HTTP layer on an instance, added to the 1-thread time.
    server_overhead_ms: float = 0.5

    def __post_init__(self) -> None:
        problems = []
        if self.requests_per_month < 0:
            problems.append("requests per month must be >= 0")
        if not 0 <= self.cold_start_rate <= 1:
            problems.append("cold-start rate must be between 0 and 1")
        if self.peak_to_average < 1:
            problems.append("peak-to-average must be >= 1")
        if not 0 < self.sagemaker_target_utilisation <= 1:
            problems.append("SageMaker target utilisation must be in (0, 1]")
        if self.provisioned_concurrency < 0 or self.m2m_callers < 0 or self.user_maus < 0:
            problems.append("counts must be >= 0")
        if self.token_validity_minutes <= 0:
            problems.append("token validity must be > 0 minutes")
        if self.embedding_model_versions < 0 or self.other_model_versions < 0:
            problems.append("model version counts must be >= 0")
        if self.canary_tokens_per_month is not None and self.canary_tokens_per_month < 0:
            problems.append("canary tokens a month must be >= 0")
        vcpus(self.memory_mb)  # raises on a memory size Lambda doesn't offer
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class LineItem:
    tier: Tier
    item: str
    quantity: float
    unit: str
    price_key: str
    usd: float


@dataclass(frozen=True)
class Resolved:
    """The scenario's figures after modelling: what the line items multiply."""

    #: Mean warm duration, and the mean of what Lambda bills for it (each invocation rounded up on its own).
    warm_ms: float
    warm_billed_ms: float
    warm_basis: Basis
    warm: Durations
    #: Mean INIT duration and the mean billed INIT (each cold start rounded up on its own).
    init_ms: float
    init_billed_ms: float
    request_bytes: int
    response_bytes: int
    memory_gb: float
    #: Where the warm and INIT figures come from, for the report.
    warm_source: str = ""
    init_source: str = ""


@dataclass(frozen=True)
class Breakdown:
    scenario: Scenario
    resolved: Resolved
    items: tuple[LineItem, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def total(self) -> float:
        return sum(item.usd for item in self.items)

    def tier_total(self, tier: Tier) -> float:
        return sum(item.usd for item in self.items if item.tier == tier)

    @property
    def per_million(self) -> float:
        requests = self.scenario.requests_per_month
        return self.total / requests * 1_000_000 if requests else math.nan


def _warm(scenario: Scenario, measurements: Measurements) -> tuple[Durations, Basis, str]:
    """Single invocations' durations at the scenario's memory, where they come from, and its basis.

    The workload the bench's container section sent is anchored there (Lambda's own Duration, under the
    quota, at the template's memory) and scaled to other sizes by the in-process Amdahl fit; other
    workloads are the fit's mean with the in-process spread at the nearer thread count.
    """
    timing = measurements.workload(scenario.workload)
    fit = AmdahlFit(timing.one_thread_ms, timing.two_threads_ms)
    memory = scenario.memory_mb
    sigma = timing.one_thread_sigma if vcpus(memory) < 1.5 else timing.two_threads_sigma
    container = measurements.container
    if container is not None and container.workload == scenario.workload:
        sigma = spread_from(container.duration_p50_ms, container.duration_p99_ms, Z_P99)
        if scenario.duration_ms is None:
            anchored = Durations(container.duration_p50_ms, sigma)
            ratio = fit.at_memory(memory) / fit.at_memory(container.memory_mb)
            source = f"the function's container at {container.memory_mb} MB (p50, p99)"
            if memory == container.memory_mb:
                return anchored, "measured", source
            in_range = 1.0 <= memory / MB_PER_VCPU <= 2.0
            return anchored.scaled(ratio), "interpolated" if in_range else "modelled", f"{source}, scaled"
    if scenario.duration_ms is not None:
        return Durations.with_mean(scenario.duration_ms, sigma), "measured", "given (--duration-ms)"
    return Durations.with_mean(fit.at_memory(memory), sigma), basis(memory), "in-process, 1 and 2 threads"


def _init_samples(scenario: Scenario, measurements: Measurements) -> tuple[tuple[float, ...], str]:
    """INIT of each cold start at the scenario's memory, and where the figures come from."""
    if scenario.init_ms is not None:
        return (scenario.init_ms,), "given (--init-ms)"
    fit = AmdahlFit(measurements.init_one_thread_ms, measurements.init_two_threads_ms)
    at_memory = fit.at_memory(scenario.memory_mb)
    container = measurements.container
    if container is not None:
        # Lambda's Init Duration in the function's container, tracing on; other sizes by the CPU share.
        ratio = at_memory / fit.at_memory(container.memory_mb)
        tracing = "tracing on" if container.tracing else "tracing off"
        return tuple(value * ratio for value in container.init_ms), f"the function's container, {tracing}"
    if measurements.cold_start_ms is not None:
        # The bench's cold start (fresh process, model from local S3) includes what the in-process
        # init misses (interpreter start-up); scale it by the CPU share like the init it measures.
        return (measurements.cold_start_ms * at_memory / fit.at(2.0),), "make bench's in-process cold start"
    return (at_memory,), "in-process init"


def resolve(scenario: Scenario, measurements: Measurements) -> Resolved:
    timing = measurements.workload(scenario.workload)
    warm, warm_basis, warm_source = _warm(scenario, measurements)
    inits, init_source = _init_samples(scenario, measurements)
    return Resolved(
        warm_ms=warm.mean_ms,
        warm_billed_ms=warm.expected_billed_ms(),
        warm_basis=warm_basis,
        warm=warm,
        init_ms=sum(inits) / len(inits),
        init_billed_ms=sum(billed_ms(value) for value in inits) / len(inits),
        request_bytes=round(scenario.request_kb * 1024) if scenario.request_kb is not None else timing.request_bytes,
        response_bytes=(
            round(scenario.response_kb * 1024) if scenario.response_kb is not None else timing.response_bytes
        ),
        memory_gb=scenario.memory_mb / 1024,
        warm_source=warm_source,
        init_source=init_source,
    )


def xray_traces(requests_per_month: float) -> float:
    """Traces X-Ray's default rule records a month for one function, arrivals Poisson at a steady rate.

    With ``n`` requests in a second, the rule records the first and 5 % of the others: on average
    ``P(n >= 1) + 5 % x E[max(n - 1, 0)] = 95 % x (1 - e^-rate) + 5 % x rate``. Below one request a
    second that is less than every request (some seconds get two); far above, 1/s + 5 %. The expression
    is concave in the rate, so traffic that comes in bursts (the same volume, uneven rates) records fewer
    traces than this: it is an upper bound for any arrival pattern.
    """
    rate = requests_per_month / SECONDS_PER_MONTH
    per_second = (1 - XRAY_FIXED_RATE) * -math.expm1(-rate) + XRAY_FIXED_RATE * rate
    return per_second * SECONDS_PER_MONTH


def canary_tokens_per_month(scenario: Scenario) -> float:
    """The canary's token requests: one per run that finds no cached token still good."""
    if not scenario.canary:
        return 0.0
    if scenario.canary_tokens_per_month is not None:
        return scenario.canary_tokens_per_month
    usable = scenario.token_validity_minutes * 60 - CANARY_TOKEN_MARGIN_SECONDS
    runs_per_token = max(1, math.ceil(usable / CANARY_INTERVAL_SECONDS))
    return CANARY_RUNS_PER_MONTH / runs_per_token


def custom_metrics(scenario: Scenario) -> int:
    if scenario.custom_metrics is not None:
        return scenario.custom_metrics
    return billed_metrics(scenario.embedding_model_versions, scenario.other_model_versions, canary=scenario.canary)


def _free(quantity: float, allowance: float, apply: bool) -> float:
    return max(0.0, quantity - allowance) if apply else quantity


def provisioned_share(scenario: Scenario, warm_ms: float) -> float:
    """The share of requests provisioned environments serve: all of them while peak concurrency fits."""
    if scenario.provisioned_concurrency == 0 or scenario.requests_per_month == 0:
        return 0.0
    peak_concurrency = scenario.requests_per_month / SECONDS_PER_MONTH * scenario.peak_to_average * warm_ms / 1000
    return min(1.0, scenario.provisioned_concurrency / peak_concurrency) if peak_concurrency > 0 else 1.0


def lambda_compute_items(scenario: Scenario, resolved: Resolved, prices: PriceBook) -> list[LineItem]:
    """Requests, warm duration, INIT duration and provisioned concurrency of the inference function."""
    arch = scenario.architecture
    requests = scenario.requests_per_month
    gb = resolved.memory_gb
    share = provisioned_share(scenario, resolved.warm_ms)
    on_demand = requests * (1 - share)
    cold_starts = on_demand * scenario.cold_start_rate
    free = scenario.free_tier and scenario.provisioned_concurrency == 0
    invocations = requests + (CANARY_RUNS_PER_MONTH if scenario.canary else 0)
    warm_gb_s = on_demand * resolved.warm_billed_ms / 1000 * gb
    init_gb_s = cold_starts * resolved.init_billed_ms / 1000 * gb
    free_warm = min(warm_gb_s, LAMBDA_FREE_GB_SECONDS) if free else 0.0
    items = [
        _item("compute", "Lambda requests", _free(invocations, LAMBDA_FREE_REQUESTS, free), "requests",
              "lambda.request", prices),
        _item("compute", f"Lambda duration, warm ({resolved.warm_billed_ms:.2f} ms billed on average x {gb:g} GB)",
              warm_gb_s - free_warm, "GB-s", f"lambda.duration.{arch}", prices),
        _item("compute", f"Lambda duration, INIT ({cold_starts:,.0f} cold starts x {resolved.init_billed_ms:,.0f} ms"
              " billed)", _free(init_gb_s, LAMBDA_FREE_GB_SECONDS - free_warm, free), "GB-s",
              f"lambda.duration.{arch}", prices),
    ]  # fmt: skip
    if scenario.provisioned_concurrency:
        configured = scenario.provisioned_concurrency * gb * SECONDS_PER_MONTH
        served = requests * share * resolved.warm_billed_ms / 1000 * gb
        items += [
            _item("compute", f"provisioned concurrency ({scenario.provisioned_concurrency} x {gb:g} GB, all month)",
                  configured, "GB-s", f"lambda.provisioned.{arch}", prices),
            _item("compute", f"duration on provisioned environments ({share:.0%} of requests)",
                  served, "GB-s", f"lambda.provisioned_duration.{arch}", prices),
        ]  # fmt: skip
    return items


def stack_breakdown(scenario: Scenario, measurements: Measurements, prices: PriceBook) -> Breakdown:
    """The whole monthly bill of one deployment of template.yaml under ``scenario``."""
    resolved = resolve(scenario, measurements)
    requests = scenario.requests_per_month
    free = scenario.free_tier
    api_calls = requests + (CANARY_RUNS_PER_MONTH if scenario.canary else 0)
    increment = float((prices["api_gateway.http_request"].extra or {}).get("increment_kb", 512)) * 1024
    units = max(1, math.ceil(max(resolved.request_bytes, resolved.response_bytes) / increment))
    share = provisioned_share(scenario, resolved.warm_ms)
    cold_starts = requests * (1 - share) * scenario.cold_start_rate
    out_gb = requests * resolved.response_bytes / BYTES_PER_GB
    tokens_per_caller = HOURS_PER_MONTH * 60 / scenario.token_validity_minutes
    tokens = scenario.m2m_callers * tokens_per_caller + canary_tokens_per_month(scenario)
    log_gb = api_calls * scenario.log_bytes_per_request / BYTES_PER_GB
    stored_gb = log_gb * scenario.log_retention_days / (HOURS_PER_MONTH / 24)
    # The inference function's invocations (the canary's calls among them) are sampled together; the
    # canary's own function is traced too (Globals: Tracing: Active), each run alone in its second.
    traces = xray_traces(api_calls) + (CANARY_RUNS_PER_MONTH if scenario.canary else 0)
    metrics = custom_metrics(scenario)
    http = prices["api_gateway.http_request"]
    items = [
        *lambda_compute_items(scenario, resolved, prices),
        LineItem("front door", f"API Gateway HTTP API ({units} x 512 KB unit per request)", api_calls * units,
                 "requests", http.key, http.tiered(api_calls * units)),
        _item("front door", f"data transfer out ({resolved.response_bytes:,} B responses)",
              _free(out_gb, DATA_TRANSFER_FREE_GB, free), "GB", "data_transfer.out_to_internet", prices),
        _item("auth", "Cognito user MAUs (Essentials)", _free(scenario.user_maus, COGNITO_FREE_MAUS, free),
              "MAUs", "cognito.essentials_mau", prices),
        _item("auth", "Cognito M2M app clients", scenario.m2m_app_clients, "clients", "cognito.m2m_app_client",
              prices),
        _item("auth", f"Cognito M2M token requests ({scenario.m2m_callers} callers and the canary, "
              f"{scenario.token_validity_minutes} min tokens, cached)", tokens, "tokens", "cognito.m2m_token_request",
              prices),
        _item("model storage", f"S3 GETs on cold starts ({scenario.s3_gets_per_cold_start} per cold start)",
              cold_starts * scenario.s3_gets_per_cold_start, "requests", "s3.get_request", prices),
        _item("observability", f"CloudWatch Logs ingestion ({scenario.log_bytes_per_request:,} B per request)",
              _free(log_gb, CLOUDWATCH_FREE_LOG_GB, free), "GB", "cloudwatch.logs_ingestion", prices),
        _item("observability", f"CloudWatch Logs storage ({scenario.log_retention_days} days retained)",
              stored_gb, "GB-month", "cloudwatch.logs_storage", prices),
        _item("observability", "CloudWatch custom metrics (EMF, metric x dimension values)",
              _free(metrics, CLOUDWATCH_FREE_METRICS, free), "metrics", "cloudwatch.custom_metric", prices),
        _item("observability", "CloudWatch alarms", _free(scenario.alarms, CLOUDWATCH_FREE_ALARMS, free), "alarms",
              "cloudwatch.alarm", prices),
        _item("observability", "CloudWatch dashboard", _free(scenario.dashboards, CLOUDWATCH_FREE_DASHBOARDS, free),
              "dashboards", "cloudwatch.dashboard", prices),
        _item("observability", "X-Ray traces (default sampling: 1/s + 5 %, Poisson arrivals)",
              _free(traces, XRAY_FREE_TRACES, free), "traces", "xray.trace_recorded", prices),
    ]  # fmt: skip
    if scenario.canary:
        canary_gb_s = CANARY_RUNS_PER_MONTH * CANARY_SECONDS_PER_RUN * CANARY_MEMORY_GB
        items += [
            _item("observability", "synthetic canary function: requests (every 5 min)", CANARY_RUNS_PER_MONTH,
                  "requests", "lambda.request", prices),
            _item("observability", "synthetic canary function: duration (256 MB arm64, ~1 s)", canary_gb_s, "GB-s",
                  "lambda.duration.arm64", prices),
        ]  # fmt: skip
    notes = []
    if scenario.free_tier:
        notes.append("always-free tiers applied (Lambda, CloudWatch, X-Ray, Cognito MAUs, data transfer)")
    return Breakdown(scenario, resolved, tuple(items), tuple(notes))


def _item(tier: Tier, item: str, quantity: float, unit: str, key: str, prices: PriceBook) -> LineItem:
    return LineItem(tier, item, quantity, unit, key, quantity * prices[key].usd)


# --- the alternatives: compute tier only ----------------------------------------------------------


def lambda_compute_cost(scenario: Scenario, measurements: Measurements, prices: PriceBook) -> float:
    """The inference function alone: requests, warm and INIT duration, provisioned concurrency."""
    return sum(item.usd for item in lambda_compute_items(scenario, resolve(scenario, measurements), prices))


def sagemaker_serverless_cost(scenario: Scenario, measurements: Measurements, prices: PriceBook) -> float:
    """SageMaker Serverless Inference at the nearest memory size (1-6 GB), same handler time, cold starts free."""
    resolved = resolve(scenario, measurements)
    memory_gb = min(SAGEMAKER_SERVERLESS_MAX_GB, max(1, math.ceil(scenario.memory_mb / 1024)))
    requests = scenario.requests_per_month
    compute = requests * resolved.warm_billed_ms / 1000 * memory_gb * prices["sagemaker.serverless"].usd
    data_gb = requests * (resolved.request_bytes + resolved.response_bytes) / BYTES_PER_GB
    return compute + data_gb * prices["sagemaker.serverless_data"].usd


def sagemaker_instances(scenario: Scenario, measurements: Measurements, prices: PriceBook) -> int:
    """Instances an always-on real-time endpoint needs at peak: one model worker per vCPU, 1 thread each."""
    timing = measurements.workload(scenario.workload)
    vcpu_count = float((prices[f"sagemaker.{scenario.sagemaker_instance}"].extra or {}).get("vcpus", 2))
    per_request_ms = timing.one_thread_ms + scenario.server_overhead_ms
    capacity = vcpu_count * 1000 / per_request_ms * scenario.sagemaker_target_utilisation
    peak = scenario.requests_per_month / SECONDS_PER_MONTH * scenario.peak_to_average
    return max(scenario.sagemaker_min_instances, math.ceil(peak / capacity))


def sagemaker_realtime_cost(scenario: Scenario, measurements: Measurements, prices: PriceBook) -> float:
    hourly = prices[f"sagemaker.{scenario.sagemaker_instance}"].usd
    return sagemaker_instances(scenario, measurements, prices) * hourly * HOURS_PER_MONTH


def stack_cost(scenario: Scenario, measurements: Measurements, prices: PriceBook) -> float:
    return stack_breakdown(scenario, measurements, prices).total


def sagemaker_front_door_cost(scenario: Scenario, measurements: Measurements, prices: PriceBook) -> float:
    """What a SageMaker option needs besides its compute: this stack without the inference function's tier.

    An HTTP API can't integrate a SageMaker endpoint, so the API costs the cheaper of a REST API (an AWS
    service integration; the first volume tier, up to 333M a month, is applied throughout) and the HTTP
    API plus a small proxy function (:data:`PROXY_MEMORY_GB` arm64, running for the model's time plus
    :data:`PROXY_OVERHEAD_MS`). Cognito, logs, metrics, traces and data transfer are unchanged.
    """
    breakdown = stack_breakdown(scenario, measurements, prices)
    http = [item for item in breakdown.items if item.price_key == "api_gateway.http_request"]
    http_usd = sum(item.usd for item in http)
    calls = sum(item.quantity for item in http)
    rest = calls * prices["api_gateway.rest_request"].usd
    proxy = calls * proxy_cost_per_request(scenario, measurements, prices)
    return breakdown.total - breakdown.tier_total("compute") - http_usd + min(rest, http_usd + proxy)


def proxy_cost_per_request(scenario: Scenario, measurements: Measurements, prices: PriceBook) -> float:
    """One call through the proxy function in front of a SageMaker endpoint: request fee and duration.

    The overhead is a whole number of milliseconds, so each call bills the model's rounded-up time plus it.
    """
    seconds = (resolve(scenario, measurements).warm_billed_ms + PROXY_OVERHEAD_MS) / 1000
    return prices["lambda.request"].usd + seconds * PROXY_MEMORY_GB * prices["lambda.duration.arm64"].usd


def sagemaker_serverless_stack_cost(scenario: Scenario, measurements: Measurements, prices: PriceBook) -> float:
    return sagemaker_front_door_cost(scenario, measurements, prices) + sagemaker_serverless_cost(
        scenario, measurements, prices
    )


def sagemaker_realtime_stack_cost(scenario: Scenario, measurements: Measurements, prices: PriceBook) -> float:
    return sagemaker_front_door_cost(scenario, measurements, prices) + sagemaker_realtime_cost(
        scenario, measurements, prices
    )


CostFunction = Callable[[Scenario, Measurements, PriceBook], float]

#: The compute tiers compared in the report, by label.
ALTERNATIVES: Final[dict[str, CostFunction]] = {
    "Lambda (this service)": lambda_compute_cost,
    "SageMaker Serverless": sagemaker_serverless_cost,
    "SageMaker real-time": sagemaker_realtime_cost,
}
#: The same three as whole stacks: each with Cognito, logs, metrics, traces and its API in front.
WHOLE_STACKS: Final[dict[str, CostFunction]] = {
    "Lambda (this service)": stack_cost,
    "SageMaker Serverless": sagemaker_serverless_stack_cost,
    "SageMaker real-time": sagemaker_realtime_stack_cost,
}


def at_volume(scenario: Scenario, requests: float) -> Scenario:
    return replace(scenario, requests_per_month=requests)


@dataclass(frozen=True)
class BreakEven:
    """Where ``first`` starts to cost at least ``second``: ``volume`` is None unless ``kind`` is "crosses"."""

    kind: Literal["crosses", "always", "never"]
    volume: float | None = None


#: The volumes break-even searches: 10 thousand to 10 billion requests a month, 20 points a decade.
SEARCH_VOLUMES: Final = tuple(10 ** (4 + i / 20) for i in range(121))


def break_even(
    first: CostFunction,
    second: CostFunction,
    scenario: Scenario,
    measurements: Measurements,
    prices: PriceBook,
    volumes: Sequence[float] = SEARCH_VOLUMES,
) -> BreakEven:
    """The lowest monthly volume from which ``first`` costs at least ``second``.

    Scans ``volumes`` and bisects the first bracket to the nearest thousand requests. Step functions
    (instance counts) are fine: only the sign of the difference is used.
    """

    def gap(volume: float) -> float:
        point = at_volume(scenario, volume)
        return first(point, measurements, prices) - second(point, measurements, prices)

    if gap(volumes[0]) >= 0:
        return BreakEven("always")
    previous = volumes[0]
    for volume in volumes[1:]:
        if gap(volume) >= 0:
            low, high = previous, volume
            while high - low > 1000:
                middle = (low + high) / 2
                low, high = (low, middle) if gap(middle) >= 0 else (middle, high)
            return BreakEven("crosses", float(math.ceil(high / 1000) * 1000))
        previous = volume
    return BreakEven("never")
