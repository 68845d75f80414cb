"""Which memory size to give the function: the cheapest one that is nearly as fast as the fastest.

Each candidate size gets a modelled warm time (:mod:`.lambda_sizing`) and the compute-tier cost of a
million requests at it. The advice is the cheapest size whose warm time is within ``tolerance`` of
the fastest candidate's, among sizes whose modelled INIT stays within half of Lambda's 10-second
INIT limit (a slower init risks timing out on a busy host). Sizes other than the measured points (1,769 MB
and 3,538 MB in-process, or the container's size for the request it sent) are interpolated or modelled,
and the report says so next to every figure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from onnx_lambda_tools.cost.lambda_sizing import CANDIDATE_MEMORY_MB, Basis, vcpus
from onnx_lambda_tools.cost.measurements import Measurements
from onnx_lambda_tools.cost.model import Scenario, lambda_compute_cost, resolve
from onnx_lambda_tools.cost.prices import PriceBook

DEFAULT_TOLERANCE = 0.25
#: Half of Lambda's 10 s INIT limit: a size whose modelled INIT exceeds it is never advised.
MAX_INIT_MS = 5_000.0


@dataclass(frozen=True)
class SizeOption:
    memory_mb: int
    vcpus: float
    warm_ms: float
    init_ms: float
    basis: Basis
    #: Lambda requests + warm and INIT duration for one million requests at the scenario's cold-start rate.
    per_million: float


@dataclass(frozen=True)
class MemoryAdvice:
    workload: str
    options: tuple[SizeOption, ...]
    recommended: SizeOption
    tolerance: float


def advise(
    scenario: Scenario, measurements: Measurements, prices: PriceBook, tolerance: float = DEFAULT_TOLERANCE
) -> MemoryAdvice:
    options = []
    for memory_mb in CANDIDATE_MEMORY_MB:
        sized = replace(
            scenario,
            memory_mb=memory_mb,
            requests_per_month=1_000_000,
            duration_ms=None,
            init_ms=None,
            provisioned_concurrency=0,
            free_tier=False,
            canary=False,
        )
        resolved = resolve(sized, measurements)
        options.append(
            SizeOption(
                memory_mb=memory_mb,
                vcpus=vcpus(memory_mb),
                warm_ms=resolved.warm_ms,
                init_ms=resolved.init_ms,
                basis=resolved.warm_basis,
                per_million=lambda_compute_cost(sized, measurements, prices),
            )
        )
    fastest = min(option.warm_ms for option in options)
    eligible = [o for o in options if o.warm_ms <= fastest * (1 + tolerance) and o.init_ms <= MAX_INIT_MS]
    if not eligible:
        raise ValueError(f"no memory size keeps the modelled INIT under {MAX_INIT_MS:,.0f} ms")
    recommended = min(eligible, key=lambda option: (round(option.per_million, 6), option.memory_mb))
    return MemoryAdvice(scenario.workload, tuple(options), recommended, tolerance)
