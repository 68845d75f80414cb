"""``onnx-lambda cost``: the monthly bill for a volume, the SageMaker comparison, and docs/cost.md.

onnx-lambda cost                          # 10M requests a month, template.yaml's defaults
onnx-lambda cost --requests 250M --memory 3008 --architecture arm64 --cold-start-rate 0.002
onnx-lambda cost --duration-ms 40 --response-kb 300   # your own measured figures
onnx-lambda cost --measure-threads        # re-measure the handler at 1 and 2 threads first
onnx-lambda cost --write-docs docs        # regenerate docs/cost.md and docs/cost.png (make cost)
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from onnx_lambda_tools.cost.lambda_sizing import MAX_MEMORY_MB, MIN_MEMORY_MB
from onnx_lambda_tools.cost.measurements import WORKLOAD_LABELS, MeasurementError, Measurements, load_measurements
from onnx_lambda_tools.cost.memory_advice import DEFAULT_TOLERANCE, advise
from onnx_lambda_tools.cost.model import (
    ALTERNATIVES,
    Breakdown,
    Scenario,
    break_even,
    lambda_compute_cost,
    sagemaker_realtime_cost,
    sagemaker_serverless_cost,
    stack_breakdown,
)
from onnx_lambda_tools.cost.prices import PriceBook, PriceBookError, load_prices
from onnx_lambda_tools.cost.report import break_even_text, money, quantity, volume

_SUFFIXES = {"k": 1e3, "m": 1e6, "b": 1e9}


def request_volume(text: str) -> float:
    """``250000``, ``250k``, ``10M`` or ``1.5B`` requests a month."""
    cleaned = text.strip().replace(",", "").replace("_", "")
    multiplier = _SUFFIXES.get(cleaned[-1:].lower(), 1.0)
    number = cleaned[:-1] if cleaned[-1:].lower() in _SUFFIXES else cleaned
    try:
        value = float(number) * multiplier
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a request volume: {text!r} (e.g. 250000, 250k, 10M, 1.5B)") from None
    if value < 0:
        raise argparse.ArgumentTypeError("the request volume must be >= 0")
    return value


def _memory(text: str) -> int:
    value = int(text)
    if not MIN_MEMORY_MB <= value <= MAX_MEMORY_MB:
        raise argparse.ArgumentTypeError(f"Lambda memory is {MIN_MEMORY_MB}-{MAX_MEMORY_MB} MB")
    return value


def add_cost_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Scenario()
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--requests",
        type=request_volume,
        default=defaults.requests_per_month,
        help="requests a month: 250000, 250k, 10M, 1.5B (default 10M)",
    )
    parser.add_argument(
        "--workload",
        choices=sorted(WORKLOAD_LABELS),
        default=defaults.workload,
        help="the measured request type the duration comes from (default %(default)s)",
    )
    parser.add_argument("--memory", type=_memory, default=defaults.memory_mb, help="MB (default %(default)s)")
    parser.add_argument(
        "--architecture",
        choices=("x86_64", "arm64"),
        default=defaults.architecture,
        help="arm64 is priced lower; its speed is assumed equal (measured on x86_64)",
    )
    parser.add_argument(
        "--duration-ms",
        type=float,
        help="mean warm invocation time at this memory, billed per invocation with the measured spread "
        "(default: modelled)",
    )
    parser.add_argument("--init-ms", type=float, help="INIT time at this memory (default: modelled)")
    parser.add_argument(
        "--cold-start-rate",
        type=float,
        default=defaults.cold_start_rate,
        help="share of invocations that are cold starts (default %(default)s)",
    )
    parser.add_argument("--request-kb", type=float, help="request body size (default: the workload's)")
    parser.add_argument("--response-kb", type=float, help="response body size (default: the workload's)")
    parser.add_argument("--provisioned-concurrency", type=int, default=defaults.provisioned_concurrency)
    parser.add_argument("--peak-to-average", type=float, default=defaults.peak_to_average)
    parser.add_argument("--user-maus", type=int, default=defaults.user_maus, help="Cognito monthly active users")
    parser.add_argument(
        "--m2m-callers",
        type=int,
        default=defaults.m2m_callers,
        help="processes calling with a cached machine token (default %(default)s)",
    )
    parser.add_argument("--m2m-app-clients", type=int, default=defaults.m2m_app_clients)
    parser.add_argument("--token-validity-minutes", type=int, default=defaults.token_validity_minutes)
    parser.add_argument("--log-bytes-per-request", type=int, default=defaults.log_bytes_per_request)
    parser.add_argument("--log-retention-days", type=int, default=defaults.log_retention_days)
    parser.add_argument(
        "--embedding-model-versions",
        type=int,
        default=defaults.embedding_model_versions,
        help="embeddings model versions served in the month; each adds its own custom metrics (default %(default)s)",
    )
    parser.add_argument("--other-model-versions", type=int, default=defaults.other_model_versions)
    parser.add_argument("--custom-metrics", type=int, help="billed custom metrics (default: what the code emits)")
    parser.add_argument("--no-canary", action="store_true", help="leave out the synthetic canary")
    parser.add_argument(
        "--canary-tokens-per-month",
        type=float,
        help="the canary's token requests (default: one per token lifetime, its environment kept warm; "
        "8760 if every run starts a new environment)",
    )
    parser.add_argument("--free-tier", action="store_true", help="apply the always-free tiers")
    parser.add_argument(
        "--sagemaker-instance",
        default=defaults.sagemaker_instance,
        help="real-time instance type in the price file (default %(default)s)",
    )
    parser.add_argument("--sagemaker-min-instances", type=int, default=defaults.sagemaker_min_instances)
    parser.add_argument("--prices", type=Path, help="a price file (default: the packaged prices.json)")
    parser.add_argument("--root", type=Path, default=Path(), help="the repository, for bench/ (default: .)")
    parser.add_argument(
        "--measure-threads",
        action="store_true",
        help="measure the handler at 1 and 2 threads first (needs models/ and events/)",
    )
    parser.add_argument("--write-docs", type=Path, metavar="DIR", help="write DIR/cost.md and DIR/cost.png")
    parser.add_argument("--json", action="store_true", help="print the breakdown as JSON")


def scenario_from(args: argparse.Namespace) -> Scenario:
    return Scenario(
        requests_per_month=args.requests,
        workload=args.workload,
        memory_mb=args.memory,
        architecture=args.architecture,
        duration_ms=args.duration_ms,
        init_ms=args.init_ms,
        cold_start_rate=args.cold_start_rate,
        request_kb=args.request_kb,
        response_kb=args.response_kb,
        provisioned_concurrency=args.provisioned_concurrency,
        peak_to_average=args.peak_to_average,
        user_maus=args.user_maus,
        m2m_app_clients=args.m2m_app_clients,
        m2m_callers=args.m2m_callers,
        token_validity_minutes=args.token_validity_minutes,
        log_bytes_per_request=args.log_bytes_per_request,
        log_retention_days=args.log_retention_days,
        embedding_model_versions=args.embedding_model_versions,
        other_model_versions=args.other_model_versions,
        custom_metrics=args.custom_metrics,
        canary=not args.no_canary,
        canary_tokens_per_month=args.canary_tokens_per_month,
        free_tier=args.free_tier,
        sagemaker_instance=args.sagemaker_instance,
        sagemaker_min_instances=args.sagemaker_min_instances,
    )


def cost_command(args: argparse.Namespace) -> int:
    try:
        prices = load_prices(args.prices)
        if f"sagemaker.{args.sagemaker_instance}" not in prices.prices:
            known = ", ".join(prices.sagemaker_instances())
            raise PriceBookError(f"no price for SageMaker instance {args.sagemaker_instance!r}; known: {known}")
        scenario = scenario_from(args)
        if args.measure_threads:
            from onnx_lambda_tools.cost.thread_scaling import measure, write

            written = write(measure(args.root / "models", args.root / "events"), args.root / "bench" / "thread-scaling")
            print(f"measured the handler at 1 and 2 threads: {written}", file=sys.stderr)
        measurements = load_measurements(args.root)
        if args.write_docs is not None:
            from onnx_lambda_tools.cost.power_tuning import load_tuning
            from onnx_lambda_tools.cost.report import write_docs

            for path in write_docs(args.write_docs, scenario, measurements, prices, load_tuning(args.root)):
                print(f"wrote {path}", file=sys.stderr)
            return 0
        breakdown = stack_breakdown(scenario, measurements, prices)
    except (PriceBookError, MeasurementError, ValueError, RuntimeError) as error:
        print(f"onnx-lambda cost: {error}", file=sys.stderr)
        return 1
    if args.json:
        document = {
            "scenario": asdict(scenario),
            "resolved": asdict(breakdown.resolved),
            "items": [asdict(item) for item in breakdown.items],
            "total_usd": breakdown.total,
            "per_million_usd": breakdown.per_million,
            "compute_tier_usd": {label: cost(scenario, measurements, prices) for label, cost in ALTERNATIVES.items()},
            "measurements": measurements.source,
        }
        print(json.dumps(document, indent=2))
        return 0
    print(_text_report(scenario, breakdown, measurements, prices))
    return 0


def _text_report(scenario: Scenario, breakdown: Breakdown, measurements: Measurements, prices: PriceBook) -> str:
    resolved = breakdown.resolved
    lines = [
        f"{volume(scenario.requests_per_month)} requests/month of {WORKLOAD_LABELS.get(scenario.workload)} at "
        f"{scenario.memory_mb} MB {scenario.architecture}: warm {resolved.warm_ms:.2f} ms ({resolved.warm_basis}), "
        f"INIT {resolved.init_ms:,.0f} ms, {scenario.cold_start_rate:.2%} cold starts",
        f"measurements: {measurements.source}"
        + (f", {measurements.bench_source} (the function's container)" if measurements.container else "")
        + f"; prices: {prices.region}, see docs/cost.md for sources",
        "",
    ]
    width = max(len(item.item) for item in breakdown.items)
    for item in breakdown.items:
        lines.append(f"  {item.item:<{width}}  {quantity(item.quantity):>16} {item.unit:<10} {money(item.usd):>11}")
    lines += [
        f"  {'total':<{width}}  {'':>16} {'':<10} {money(breakdown.total):>11}",
        f"  {'per million requests':<{width}}  {'':>16} {'':<10} {money(breakdown.per_million):>11}",
        "",
        "compute tier: "
        + ", ".join(f"{label} {money(cost(scenario, measurements, prices))}" for label, cost in ALTERNATIVES.items()),
        "break-even: "
        + break_even_text(
            break_even(lambda_compute_cost, sagemaker_realtime_cost, scenario, measurements, prices),
            "Lambda",
            "SageMaker real-time",
        )
        + "; "
        + break_even_text(
            break_even(lambda_compute_cost, sagemaker_serverless_cost, scenario, measurements, prices),
            "Lambda",
            "SageMaker Serverless",
        ),
    ]
    advice = advise(scenario, measurements, prices, DEFAULT_TOLERANCE)
    pick = advice.recommended
    lines.append(f"memory advice for this workload: {pick.memory_mb} MB ({pick.basis}), see docs/cost.md")
    return "\n".join(lines).replace("**", "")
