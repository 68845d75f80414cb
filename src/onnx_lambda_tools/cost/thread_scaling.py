"""How the handler's time depends on the CPUs it gets: the measurement behind the memory-size advice.

Lambda gives a function CPU in proportion to its memory (one vCPU at 1,769 MB), and onnxruntime
uses as many threads as the process may run on. This module runs the Lambda handler in-process on
API Gateway v2 events, in a fresh process per thread count (the session reads its thread count at
init), and records init time and per-invocation times at 1 and 2 intra-op threads. Everything the
cost model says about other memory sizes is fitted to these two points (see :mod:`.lambda_sizing`).

``onnx-lambda cost --measure-threads`` runs it and writes ``bench/thread-scaling/<date>.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

SCHEMA: Final = "onnx-lambda/thread-scaling/1"
THREAD_COUNTS: Final = (1, 2)
#: (name, warm-up invocations, measured invocations): enough for stable medians in a few seconds.
WORKLOADS: Final = (
    ("embeddings-1", 30, 300),
    ("embeddings-32", 3, 40),
    ("oip-tabular-1", 30, 300),
)
_SENTENCES: Final = (
    "Serverless inference on AWS Lambda",
    "How do I reset my password?",
    "The delivery arrived two days late.",
    "Which plan includes single sign-on?",
)


def workload_events(events_dir: Path) -> dict[str, dict[str, Any]]:
    """The events each workload sends, derived from the committed ``events/`` files."""
    single = json.loads((events_dir / "embeddings.json").read_text())
    batch = copy.deepcopy(single)
    texts = [f"{_SENTENCES[i % len(_SENTENCES)]} ({i})" for i in range(32)]
    batch["body"] = json.dumps({"model": "all-minilm-l6-v2", "input": texts})
    tabular = json.loads((events_dir / "infer-tabular.json").read_text())
    request = json.loads(tabular["body"])
    features = request["inputs"][0]
    features["data"] = features["data"][: features["shape"][1]]
    features["shape"] = [1, features["shape"][1]]
    tabular["body"] = json.dumps(request)
    return {"embeddings-1": single, "embeddings-32": batch, "oip-tabular-1": tabular}


def _summary(samples_ms: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {
        "p50_ms": round(statistics.median(ordered), 4),
        "mean_ms": round(statistics.fmean(ordered), 4),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 4),
        "n": len(ordered),
    }


def measure_in_this_process(models_dir: Path, events_dir: Path) -> dict[str, Any]:
    """Init and per-workload handler times in this process (its thread count is set by the caller)."""
    from onnx_lambda_tools.invoke import LambdaContext, function_environment

    for key, value in function_environment(models_dir).items():
        os.environ.setdefault(key, value)
    events = workload_events(events_dir)
    devnull = open(os.devnull, "w")  # noqa: SIM115 - Powertools writes logs and EMF to stdout
    real_stdout, sys.stdout = sys.stdout, devnull
    try:
        started = time.perf_counter()
        from onnx_lambda.handler import lambda_handler

        init_ms = (time.perf_counter() - started) * 1000
        results: dict[str, Any] = {"init_ms": round(init_ms, 2), "workloads": {}}
        for name, warmup, iterations in WORKLOADS:
            call = _invoker(lambda_handler, events[name], LambdaContext)
            first = time.perf_counter()
            response = call()
            first_ms = (time.perf_counter() - first) * 1000
            if response.get("statusCode") != 200:
                raise RuntimeError(f"{name}: the handler answered {response.get('statusCode')}: {response.get('body')}")
            for _ in range(warmup):
                call()
            samples = []
            for _ in range(iterations):
                began = time.perf_counter()
                call()
                samples.append((time.perf_counter() - began) * 1000)
            results["workloads"][name] = {
                **_summary(samples),
                "first_ms": round(first_ms, 3),
                "request_bytes": len(events[name]["body"].encode()),
                "response_bytes": len(str(response.get("body", "")).encode()),
            }
        return results
    finally:
        sys.stdout = real_stdout
        devnull.close()


def _invoker(
    handler: Callable[[dict[str, Any], Any], dict[str, Any]], event: dict[str, Any], context: Callable[[], Any]
) -> Callable[[], dict[str, Any]]:
    def call() -> dict[str, Any]:
        return handler(event, context())

    return call


def measure(models_dir: Path, events_dir: Path, python: str = sys.executable) -> dict[str, Any]:
    """Both thread counts, each in a fresh process, as one document."""
    by_threads: dict[str, Any] = {}
    for threads in THREAD_COUNTS:
        env = {**os.environ, "ONNX_LAMBDA_INTRA_OP_THREADS": str(threads), "POWERTOOLS_TRACE_DISABLED": "1"}
        completed = subprocess.run(  # noqa: S603 - this module, fixed arguments
            [python, "-m", "onnx_lambda_tools.cost.thread_scaling", str(models_dir), str(events_dir)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"the {threads}-thread measurement failed:\n{completed.stderr[-2000:]}")
        by_threads[str(threads)] = json.loads(completed.stdout)
    return {
        "schema": SCHEMA,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": _cpu_model(),
            "python": platform.python_version(),
            "onnxruntime": _version("onnxruntime"),
        },
        "note": "Lambda handler in-process on API Gateway v2 events; times are per invocation, milliseconds.",
        "threads": by_threads,
    }


def write(document: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{document['date']}.json"
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def _child(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description="one thread count's measurement (run by measure())")
    parser.add_argument("models_dir", type=Path)
    parser.add_argument("events_dir", type=Path)
    args = parser.parse_args(argv)
    result = measure_in_this_process(args.models_dir, args.events_dir)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
