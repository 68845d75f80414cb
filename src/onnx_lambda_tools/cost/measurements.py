"""The measured inputs of the cost model: handler time per workload at 1 and 2 threads, init, cold start.

They come from the newest ``bench/thread-scaling/<date>.json`` (written by ``onnx-lambda cost
--measure-threads``) and, where it has them, the newest ``bench/results/<date>.json`` of ``make
bench``; without either, from :data:`FALLBACK`, figures measured on the development machine and
written down in ``docs/cost.md``. Every consumer reads them through :class:`Measurements`, which
says where each number came from.

The bench's ``container`` section is the closest thing to Lambda's own bill: the function's image under
the template's MemorySize and Lambda's CPU quota, its Runtime Interface Emulator reporting each cold
start's Init Duration and each invocation's Duration, as Lambda would. Tracing is on there as deployed
(``Tracing: Active``): the image sets ``LAMBDA_TASK_ROOT`` and nothing sets ``POWERTOOLS_TRACE_DISABLED``,
so the X-Ray SDK loads during init. When that section exists, INIT and the warm Duration of the request
it sent come from it (:class:`ContainerMeasurement`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from onnx_lambda_tools.cost.lambda_sizing import Z_P90, spread_from


class MeasurementError(Exception):
    """A measurement file that can't be read or lacks what the model needs; the message names it."""


@dataclass(frozen=True)
class WorkloadTiming:
    """Mean handler time of one invocation, in-process, at 1 and 2 intra-op threads."""

    one_thread_ms: float
    two_threads_ms: float
    request_bytes: int
    response_bytes: int
    #: The spread of single invocations (log-normal sigma, from p50 and p90) at 1 and 2 threads; 0 = unknown.
    one_thread_sigma: float = 0.0
    two_threads_sigma: float = 0.0


@dataclass(frozen=True)
class ContainerMeasurement:
    """The function's container under Lambda's limits at one memory size (``make bench``'s ``container``)."""

    memory_mb: int
    #: Init Duration of each fresh container, as the emulator's INIT REPORT gave it.
    init_ms: tuple[float, ...]
    #: Warm Duration percentiles (REPORT lines) of one request type, the workload named here.
    workload: str
    duration_p50_ms: float
    duration_p99_ms: float
    #: Whether the X-Ray SDK was loaded during init, and why the model says so.
    tracing: bool
    tracing_basis: str

    @property
    def init_mean_ms(self) -> float:
        return sum(self.init_ms) / len(self.init_ms)


@dataclass(frozen=True)
class Measurements:
    workloads: Mapping[str, WorkloadTiming]
    #: Process init (imports, model fetch and checks, sessions) at 1 and 2 threads.
    init_one_thread_ms: float
    init_two_threads_ms: float
    #: Where the numbers came from, for the report.
    source: str
    date: str
    machine: str
    #: Fresh process to first response from ``make bench`` (model from local S3), when available.
    cold_start_ms: float | None = None
    bench_source: str | None = None
    #: ``make bench``'s container section, when available: INIT and the warm Duration come from it.
    container: ContainerMeasurement | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def workload(self, name: str) -> WorkloadTiming:
        try:
            return self.workloads[name]
        except KeyError:
            raise MeasurementError(f"no measurement for workload {name!r}; known: {sorted(self.workloads)}") from None


WORKLOAD_LABELS: Final = {
    "embeddings-1": "embeddings, one short sentence (int8)",
    "embeddings-32": "embeddings, a batch of 32 short sentences (int8)",
    "oip-tabular-1": "OIP infer, tabular model, one row",
}

#: Used when no measurement file exists: the development machine (2-core AMD EPYC), 2026-11-27.
FALLBACK: Final = Measurements(
    workloads={
        "embeddings-1": WorkloadTiming(1.6, 1.4, 74, 8100),
        "embeddings-32": WorkloadTiming(80.0, 42.0, 1400, 257000),
        "oip-tabular-1": WorkloadTiming(0.5, 0.45, 320, 200),
    },
    init_one_thread_ms=1400.0,
    init_two_threads_ms=950.0,
    source="built-in fallback figures (no bench/thread-scaling/*.json found)",
    date="2026-11-27",
    machine="2-core AMD EPYC",
)


def newest_json(directory: Path) -> Path | None:
    """The newest ``<date>.json`` in ``directory`` (ISO dates sort by name), or None."""
    if not directory.is_dir():
        return None
    candidates = sorted(p for p in directory.glob("*.json") if p.stem[:4].isdigit())
    return candidates[-1] if candidates else None


def read_thread_scaling(path: Path) -> Measurements:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        one, two = document["threads"]["1"], document["threads"]["2"]
        workloads = {
            name: WorkloadTiming(
                one_thread_ms=float(timing["mean_ms"]),
                two_threads_ms=float(two["workloads"][name]["mean_ms"]),
                request_bytes=int(timing["request_bytes"]),
                response_bytes=int(timing["response_bytes"]),
                one_thread_sigma=_sigma(timing),
                two_threads_sigma=_sigma(two["workloads"][name]),
            )
            for name, timing in one["workloads"].items()
        }
        machine = document.get("machine", {})
        return Measurements(
            workloads=workloads,
            init_one_thread_ms=float(one["init_ms"]),
            init_two_threads_ms=float(two["init_ms"]),
            source=f"{path.parent.name}/{path.name}",
            date=str(document["date"]),
            machine=f"{machine.get('cpus', '?')}-core {machine.get('cpu', 'unknown CPU')}",
        )
    except (OSError, ValueError) as error:
        raise MeasurementError(f"cannot read {path}: {error}") from None
    except (KeyError, TypeError, AttributeError) as error:
        raise MeasurementError(f"{path} is not a thread-scaling file: missing {error}") from None


def _sigma(timing: Mapping[str, Any]) -> float:
    """The log-normal spread through a workload's p50 and p90, 0 when the file has no percentiles."""
    if "p50_ms" not in timing or "p90_ms" not in timing:
        return 0.0
    return spread_from(float(timing["p50_ms"]), float(timing["p90_ms"]), Z_P90)


#: The request the bench's container section sends (events/embeddings.json, one short sentence).
CONTAINER_WORKLOAD: Final = "embeddings-1"


def container_from_bench(document: Any, source: str) -> ContainerMeasurement | None:
    """The ``container`` section of a ``make bench`` report, if it ran.

    The section records no tracing flag of its own: it runs the image's own entrypoint with the
    template's variables, so the image's ``LAMBDA_TASK_ROOT`` is set and ``POWERTOOLS_TRACE_DISABLED``
    is not, and the handler loads the X-Ray SDK as it does in Lambda (``tests/unit/test_cost.py``
    checks that environment against :func:`onnx_lambda.observability.tracing_enabled`). A section
    that does say (``"tracing"``) is taken at its word.
    """
    section = document.get("container") if isinstance(document, Mapping) else None
    if not isinstance(section, Mapping) or "init_duration_ms" not in section:
        return None
    try:
        inits = section.get("init_duration_all_ms") or [section["init_duration_ms"]]
        stated = section.get("tracing")
        tracing = stated is None or stated is True or str(stated).lower().startswith(("active", "on"))
        basis = (
            f"stated by {source}"
            if stated is not None
            else "the image's own entrypoint and environment: LAMBDA_TASK_ROOT set, POWERTOOLS_TRACE_DISABLED unset"
        )
        return ContainerMeasurement(
            memory_mb=int(section["memory_mb"]),
            init_ms=tuple(float(value) for value in inits),
            workload=CONTAINER_WORKLOAD,
            duration_p50_ms=float(section["duration_p50_ms"]),
            duration_p99_ms=float(section["duration_p99_ms"]),
            tracing=tracing,
            tracing_basis=basis,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise MeasurementError(f"{source}: the container section lacks {error}") from None


def cold_start_from_bench(document: Any) -> float | None:
    """Our cold start (exec to first response, ms) from a ``make bench`` report, if it has one.

    The bench's report is read defensively: a ``total_ms`` under a key naming the cold start, on our
    side (not the ``raw`` reference) and not for the fp32 model, is taken; the largest if several.
    """
    found: list[float] = []

    def walk(node: Any, path: tuple[str, ...]) -> None:
        if isinstance(node, Mapping):
            if "fp32" in str(node.get("model", "")):
                return
            for key, value in node.items():
                walk(value, (*path, str(key).lower()))
        elif isinstance(node, list):
            for item in node:
                walk(item, path)
        elif (
            isinstance(node, int | float)
            and not isinstance(node, bool)
            and path
            and path[-1] == "total_ms"
            and any("cold" in part for part in path)
            and not any("raw" in part or "fp32" in part for part in path)
        ):
            found.append(float(node))

    walk(document, ())
    return max(found) if found else None


def load_measurements(root: Path) -> Measurements:
    """The newest measurements under ``root`` (the repository), or :data:`FALLBACK`."""
    scaling = newest_json(root / "bench" / "thread-scaling")
    measurements = read_thread_scaling(scaling) if scaling else FALLBACK
    bench = newest_json(root / "bench" / "results")
    if bench is None:
        return replace(measurements, notes=(*measurements.notes, "no make bench results found"))
    source = f"bench/results/{bench.name}"
    try:
        document = json.loads(bench.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise MeasurementError(f"cannot read {bench}: {error}") from None
    return replace(
        measurements,
        cold_start_ms=cold_start_from_bench(document),
        bench_source=source,
        container=container_from_bench(document, source),
    )
