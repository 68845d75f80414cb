"""onnxruntime at its best for a CPU budget: a grid of session options, measured interleaved in one process.

The reference the bench's ratios are stated against must be the best onnxruntime can do here, never the
service's own choice. This script tries, on the int8 embedder:

1. every graph optimization level, at the visible core count with spinning on;
2. then, at the fastest level, intra-op threads 1..visible cores, each with spinning on and off.

Each phase's variants live in one process and are timed round-robin (so a noisy neighbour hits them all
alike): a one-sentence ``session.run`` (p50, p99) and a batch of 32 (throughput). It imports only
numpy, onnxruntime and tokenizers, because it also runs inside the function's image under Lambda's CPU
quota (``python session_grid.py MODEL_DIR SECONDS``, by path), where the tools package isn't installed.
It prints one JSON document.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

SENTENCE = "Serverless inference on AWS Lambda keeps the bill proportional to traffic."
BATCH = [f"Sentence number {i} of a batch, about shipping, billing and single sign-on." for i in range(32)]
LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def visible_cores() -> int:
    return len(os.sched_getaffinity(0))


def cpu_quota() -> float | None:
    """The cgroup's CPU quota in CPUs (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``), None when unlimited."""
    v2 = Path("/sys/fs/cgroup/cpu.max")
    if v2.exists():
        quota, period = v2.read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    v1 = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
    if v1.exists():
        quota_us = int(v1.read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if quota_us < 0 else quota_us / period_us
    return None


def options(threads: int, spinning: bool, level: str) -> ort.SessionOptions:
    chosen = ort.SessionOptions()
    chosen.intra_op_num_threads = threads
    chosen.inter_op_num_threads = 1
    chosen.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    chosen.graph_optimization_level = LEVELS[level]
    chosen.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    chosen.log_severity_level = 3
    return chosen


def feeds(tokenizer: Tokenizer, texts: list[str], type_ids: bool) -> dict[str, np.ndarray]:
    encodings = tokenizer.encode_batch(texts)
    fed = {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
    }
    if type_ids:
        fed["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
    return fed


def choice(threads: int, spinning: bool, level: str) -> dict[str, Any]:
    return {"threads": threads, "spinning": spinning, "level": level}


def options_of(chosen: dict[str, Any]) -> ort.SessionOptions:
    """The session options a :func:`grid` entry (``best_one``, ``best_batch32``) stands for."""
    return options(int(chosen["threads"]), bool(chosen["spinning"]), str(chosen["level"]))


#: A pause between single requests, as sparse traffic gives one execution environment: under a CPU quota
#: it lets the quota refill, so each request runs at the pool's full speed.
SPARSE_GAP_SECONDS = 0.02
#: Rounds of blocks: each variant runs a block in turn (never call by call, so one variant's spinning
#: threads don't spend the quota of the next one's calls).
ROUNDS = 6


def measure(model_dir: Path, variants: dict[str, dict[str, Any]], seconds: float) -> dict[str, Any]:
    """Every variant in blocks taking turns; ``seconds`` per variant and case, spread over the rounds.

    Three figures per variant: a single sentence's p50/p99 with a pause before each (sparse traffic), the
    mean of back-to-back single sentences (sustained load: under a quota, throttling stalls count), and a
    batch of 32's sustained throughput (items over the blocks' wall time).
    """
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=256)
    tokenizer.enable_padding()
    model = (model_dir / "model.onnx").read_bytes()
    sessions = {
        name: ort.InferenceSession(model, options_of(chosen), providers=["CPUExecutionProvider"])
        for name, chosen in variants.items()
    }
    type_ids = any(i.name == "token_type_ids" for i in next(iter(sessions.values())).get_inputs())
    one, batch = feeds(tokenizer, [SENTENCE], type_ids), feeds(tokenizer, BATCH, type_ids)
    sparse: dict[str, list[float]] = {name: [] for name in sessions}
    walls: dict[str, dict[str, list[float]]] = {"one": {n: [] for n in sessions}, "batch32": {n: [] for n in sessions}}
    counts: dict[str, dict[str, int]] = {"one": dict.fromkeys(sessions, 0), "batch32": dict.fromkeys(sessions, 0)}
    for session in sessions.values():  # warm-up: allocate the arenas, start the pools
        for _ in range(3):
            session.run(None, one)
            session.run(None, batch)
    block = seconds / ROUNDS / 3
    for _ in range(ROUNDS):
        for name, session in sessions.items():
            until = time.perf_counter() + block
            while time.perf_counter() < until:
                time.sleep(SPARSE_GAP_SECONDS)
                started = time.perf_counter()
                session.run(None, one)
                sparse[name].append(time.perf_counter() - started)
            for case, fed in (("one", one), ("batch32", batch)):
                started = time.perf_counter()
                while time.perf_counter() < started + block:
                    session.run(None, fed)
                    counts[case][name] += 1
                walls[case][name].append(time.perf_counter() - started)
    result: dict[str, Any] = {}
    for name in sessions:
        latencies = np.asarray(sparse[name]) * 1000
        result[name] = {
            **variants[name],
            "one_p50_ms": round(float(np.percentile(latencies, 50)), 3),
            "one_p99_ms": round(float(np.percentile(latencies, 99)), 3),
            "one_sustained_mean_ms": round(1000 * sum(walls["one"][name]) / counts["one"][name], 3),
            "batch32_per_second": round(len(BATCH) * counts["batch32"][name] / sum(walls["batch32"][name]), 1),
            "samples": [len(latencies), counts["one"][name], counts["batch32"][name]],
        }
    return result


def grid(model_dir: Path, seconds: float) -> dict[str, Any]:
    cores = visible_cores()
    levels = measure(model_dir, {level: choice(cores, True, level) for level in LEVELS}, seconds)
    level = min(levels, key=lambda name: levels[name]["one_p50_ms"])
    variants = {
        f"{threads} thread{'s' if threads > 1 else ''}, spinning {'on' if spinning else 'off'}": choice(
            threads, spinning, level
        )
        for threads in range(1, cores + 1)
        for spinning in (True, False)
    }
    threads = measure(model_dir, variants, seconds)
    return {
        "visible_cores": cores,
        "cpu_quota": cpu_quota(),
        "onnxruntime": ort.__version__,
        "levels": levels,
        "best_level": level,
        "threads": threads,
        "best_one": _best(threads, lambda entry: -entry["one_p50_ms"]),
        "best_batch32": _best(threads, lambda entry: entry["batch32_per_second"]),
    }


def _best(entries: dict[str, dict[str, Any]], score: Callable[[dict[str, Any]], float]) -> dict[str, Any]:
    name = max(entries, key=lambda key: score(entries[key]))
    return {"name": name, **{key: entries[name][key] for key in ("threads", "spinning", "level")}}


if __name__ == "__main__":
    print(json.dumps(grid(Path(sys.argv[1]), float(sys.argv[2]))))
