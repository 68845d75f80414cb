"""``onnx-lambda tune``: AWS Lambda Power Tuning, offline, before the first deploy.

Power Tuning runs a deployed function at each memory size. This runs the function's image at each size
under the limits Lambda would give it (a MemorySize memory cap and a MemorySize/1769 vCPU CFS quota,
read-only but /tmp, an unprivileged user; :class:`~onnx_lambda_tools.local.containers.LambdaLimits`),
fetching its models from the local S3, and reads what Lambda would report: the Runtime Interface
Emulator's ``INIT REPORT`` (Init Duration) and each invocation's ``REPORT`` (Duration). Per size:

- Init Duration, over fresh containers;
- warm Duration p50/p99 for one sentence and for a batch of 32;
- dollars per million one-sentence requests, on x86_64 and arm64, billed per invocation (each Duration
  rounded up to the millisecond) from ``cost/prices.json``;
- onnxruntime's own grid under the same quota (threads x spinning, :mod:`.bench.session_grid`): what the
  session options the service picks are measured against.

The recommendation is the cheapest size whose one-sentence p50 and p99 are within ``--tolerance`` of the
best.
Only x86_64 is measured: arm64 runs under QEMU here, whose speed says nothing about Graviton, so arm64's
price is at x86_64's Durations and says so.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np

from onnx_lambda_tools.bench import session_grid, workloads
from onnx_lambda_tools.bench.container import DURATION_REPORT, INIT_REPORT
from onnx_lambda_tools.cost.prices import PriceBook, load_prices
from onnx_lambda_tools.local import containers, sam_local

SCHEMA: Final = "onnx-lambda/tune/1"
MEMORY_SIZES: Final = (1024, 1769, 2048, 3008, 4096)
MODEL: Final = "all-minilm-l6-v2"
DEFAULT_TOLERANCE: Final = 0.25
RESULTS_DIR: Final = containers.ROOT / "bench" / "tune"


@dataclass(frozen=True)
class Plan:
    models_dir: Path
    sizes: tuple[int, ...]
    cold_starts: int
    warm_requests: int
    batch_requests: int
    grid_seconds: float


def _invoke(url: str, event: bytes) -> None:
    request = urllib.request.Request(url, data=event, method="POST")  # noqa: S310 - loopback
    with urllib.request.urlopen(request, timeout=300) as response:  # noqa: S310  # nosec B310  # loopback
        document = json.loads(response.read())
    if document.get("statusCode") != 200:
        raise RuntimeError(f"the function answered {document.get('statusCode')}: {document.get('body')!r:.300}")


def _durations(logs: str) -> list[float]:
    return [float(value) for value in DURATION_REPORT.findall(logs)]


def _percentiles(values: list[float]) -> dict[str, float]:
    array = np.asarray(values)
    return {"p50_ms": round(float(np.percentile(array, 50)), 2), "p99_ms": round(float(np.percentile(array, 99)), 2)}


def per_million_usd(durations_ms: list[float], memory_mb: int, prices: PriceBook, architecture: str) -> float:
    """A million requests with these Durations: each billed rounded up to the ms, as Lambda bills."""
    billed_ms = float(np.mean([max(1, math.ceil(value - 1e-9)) for value in durations_ms]))
    gb_seconds = billed_ms / 1000 * memory_mb / 1024
    each = prices["lambda.request"].usd + gb_seconds * prices[f"lambda.duration.{architecture}"].usd
    return round(each * 1_000_000, 4)


def _grid_in_container(image: str, plan: Plan, limits: containers.LambdaLimits) -> dict[str, Any]:
    """onnxruntime's session-option grid, by the image's own Python, under the same limits."""
    script = Path(session_grid.__file__)
    model_dir = plan.models_dir / MODEL
    output = containers.docker(
        "run", "--rm", *limits.docker_arguments(),
        "-v", f"{script}:/opt/tune/session_grid.py:ro",
        "-v", f"{model_dir.resolve()}:/opt/tune/model:ro",
        "--entrypoint", "/var/lang/bin/python", image,
        "/opt/tune/session_grid.py", "/opt/tune/model", str(plan.grid_seconds),
    )  # fmt: skip
    document: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return document


def measure_size(image: str, environment: dict[str, str], plan: Plan, memory_mb: int) -> dict[str, Any]:
    limits = containers.LambdaLimits(memory_mb)
    one = json.dumps(workloads.embeddings_event(MODEL, workloads.SHORT_SENTENCE)).encode()
    batch = json.dumps(workloads.embeddings_event(MODEL, list(workloads.BATCH_TEXTS))).encode()
    inits: list[float] = []
    one_durations: list[float] = []
    batch_durations: list[float] = []
    for attempt in range(plan.cold_starts):
        name = f"onnx-lambda-tune-{memory_mb}"
        with containers.function_container(
            image, containers.function_environment(environment, memory_mb), limits, name=name
        ) as url:
            _invoke(url, one)  # the cold start
            if attempt == plan.cold_starts - 1:
                for _ in range(plan.warm_requests):
                    _invoke(url, one)
                counted = len(_durations(containers.container_logs(name)))
                for _ in range(plan.batch_requests):
                    _invoke(url, batch)
            logs = containers.container_logs(name)
        init = INIT_REPORT.search(logs)
        if init is None:
            raise RuntimeError(f"no INIT REPORT in the emulator's log:\n{logs[-2000:]}")
        inits.append(float(init.group(1)))
        if attempt == plan.cold_starts - 1:
            durations = _durations(logs)
            one_durations, batch_durations = durations[1:counted], durations[counted:]
    return {
        "memory_mb": memory_mb,
        "cpus": limits.cpus,
        "init_ms": round(float(np.median(inits)), 1),
        "init_all_ms": [round(value, 1) for value in inits],
        "one": _percentiles(one_durations),
        "batch32": _percentiles(batch_durations),
        "one_durations_ms": one_durations,
        "grid": _grid_in_container(image, plan, limits),
    }


def recommend(sizes: list[dict[str, Any]], tolerance: float) -> dict[str, Any]:
    """The cheapest size (x86_64) whose one-sentence p50 and p99 are both within ``tolerance`` of the best.

    The p99 keeps a size whose CPU quota throttles requests (a CFS stall is up to 100 ms) out, however
    good its median.
    """
    fastest = min(size["one"]["p50_ms"] for size in sizes)
    steadiest = min(size["one"]["p99_ms"] for size in sizes)
    eligible = [
        size
        for size in sizes
        if size["one"]["p50_ms"] <= fastest * (1 + tolerance) and size["one"]["p99_ms"] <= steadiest * (1 + tolerance)
    ]
    chosen = min(eligible, key=lambda size: (size["usd_per_million"]["x86_64"], size["memory_mb"]))
    return {
        "memory_mb": chosen["memory_mb"],
        "tolerance": tolerance,
        "fastest_p50_ms": fastest,
        "best_p99_ms": steadiest,
    }


def run(plan: Plan, tolerance: float) -> dict[str, Any]:
    image = containers.build_image()
    _, env_file = sam_local.prepare(plan.models_dir, containers.DEFAULT_MOTO_HOST_PORT, verify_tokens=False)
    environment = json.loads(env_file.read_text())[sam_local.FUNCTION]
    prices = load_prices()
    sizes = []
    for memory_mb in plan.sizes:
        started = time.perf_counter()
        size = measure_size(image, environment, plan, memory_mb)
        size["usd_per_million"] = {
            architecture: per_million_usd(size["one_durations_ms"], memory_mb, prices, architecture)
            for architecture in ("x86_64", "arm64")
        }
        sizes.append(size)
        print(
            f"{memory_mb:>5} MB  init {size['init_ms']:7.1f} ms  one p50 {size['one']['p50_ms']:6.2f} "
            f"p99 {size['one']['p99_ms']:6.2f} ms  batch32 p50 {size['batch32']['p50_ms']:7.2f} ms  "
            f"${size['usd_per_million']['x86_64']:.3f}/M x86_64  ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    return {
        "schema": SCHEMA,
        "date": datetime.now(UTC).date().isoformat(),
        "model": MODEL,
        "architecture_measured": containers.host_architecture(),
        "sizes": sizes,
        "recommended": recommend(sizes, tolerance),
    }


def template_memory_size() -> int:
    return sam_local.template_memory_size()


def add_tune_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--sizes", type=int, nargs="+", default=list(MEMORY_SIZES), help="memory sizes in MB")
    parser.add_argument("--cold-starts", type=int, default=3)
    parser.add_argument("--warm-requests", type=int, default=200)
    parser.add_argument("--batch-requests", type=int, default=30)
    parser.add_argument("--grid-seconds", type=float, default=1.5, help="per session-option variant and case")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for <date>.json")


def tune_command(args: argparse.Namespace) -> int:
    containers.ensure_docker()
    plan = Plan(
        args.models_dir, tuple(args.sizes), args.cold_starts, args.warm_requests, args.batch_requests, args.grid_seconds
    )
    document = run(plan, args.tolerance)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{document['date']}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    chosen = document["recommended"]["memory_mb"]
    print(f"recommended MemorySize: {chosen} MB (template default: {template_memory_size()} MB); wrote {path}")
    return 0
