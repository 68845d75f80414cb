"""Latency samples to p50/p90/p99 and throughput, and the interleaved loop that collects them.

Other processes share this machine, so a path and its raw reference are never measured one after the
other: :func:`interleave` alternates them in short rounds (and flips the order every round), so that
whatever load comes and goes lands on both sides alike and the ratio between them stays meaningful.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import numpy as np

Call = Callable[[], object]
#: A case as :func:`interleave` runs it: ``n`` calls, and each one's latency in seconds. Measured where the
#: calls run, which may be another process (:mod:`onnx_lambda_tools.bench.raw_side`).
Block = Callable[[int], list[float]]


@dataclass(frozen=True, slots=True)
class Summary:
    """One side of a comparison. Latencies in milliseconds; throughput in calls (and items) per second."""

    calls: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    #: Calls per second of wall time: for a sequential loop, calls / sum(latencies).
    throughput: float
    #: Items per call (texts in a batch, rows in a tensor) times ``throughput``.
    items_per_second: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(samples: Sequence[float], *, items_per_call: int = 1, wall_seconds: float | None = None) -> Summary:
    """Summarize per-call latencies in seconds. ``wall_seconds`` is for concurrent runs, where calls overlap."""
    if not samples:
        raise ValueError("no samples to summarize")
    array = np.asarray(samples, dtype=np.float64)
    p50, p90, p99 = np.percentile(array, [50, 90, 99])
    busy = wall_seconds if wall_seconds is not None else float(array.sum())
    throughput = len(array) / busy if busy > 0 else 0.0
    return Summary(
        calls=len(array),
        p50_ms=round(float(p50) * 1000, 4),
        p90_ms=round(float(p90) * 1000, 4),
        p99_ms=round(float(p99) * 1000, 4),
        mean_ms=round(float(array.mean()) * 1000, 4),
        throughput=round(throughput, 2),
        items_per_second=round(throughput * items_per_call, 2),
    )


def local(call: Call) -> Block:
    """A call made in this process, as a :data:`Block`."""
    return partial(time_calls, call)


def time_calls(call: Call, count: int) -> list[float]:
    samples = []
    clock = time.perf_counter
    for _ in range(count):
        started = clock()
        call()
        samples.append(clock() - started)
    return samples


def interleave(
    cases: Mapping[str, Block],
    *,
    seconds: float,
    rounds: int = 12,
    warmup_seconds: float = 0.3,
    min_calls: int = 20,
    max_calls: int = 20_000,
) -> dict[str, list[float]]:
    """Run every case for about ``seconds`` in total, alternating between them round by round.

    Each case first runs for ``warmup_seconds`` (at least 3 calls: caches, lazy initialisation, the
    allocator's first growth) and its per-call time sets how many calls it gets per round, so a 50 ms
    batch and a 1 ms sentence each get a fair share of the time.
    """
    per_call: dict[str, float] = {}
    for name, block in cases.items():
        warm = block(3)
        spent = sum(warm)
        while spent < warmup_seconds:
            more = block(max(1, len(warm)))
            warm.extend(more)
            spent += sum(more)
        per_call[name] = float(np.median(warm))
    budget = seconds / max(1, len(cases))
    calls_per_round = {
        name: max(1, int(min(max_calls, max(min_calls, budget / max(estimate, 1e-7))) / rounds))
        for name, estimate in per_call.items()
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    order = list(cases)
    for round_number in range(rounds):
        for name in order if round_number % 2 == 0 else reversed(order):
            samples[name].extend(cases[name](calls_per_round[name]))
    return samples


def progress(group: str, case: str, raw_p50_ms: float, ours_p50_ms: float) -> None:
    """One line per comparison on stderr, so a long run shows where it is."""
    print(f"  {group:<14} {case:<28} raw p50 {raw_p50_ms:9.3f} ms   ours p50 {ours_p50_ms:9.3f} ms", file=sys.stderr)
