"""Lambda's CPU as a function of memory, and the handler's time as a function of CPU.

Lambda allocates CPU in proportion to memory: 1,769 MB buys one vCPU, 3,538 MB two, up to six at
10,240 MB. We measure the handler at exactly 1 and 2 threads (the 1,769 MB and 3,538 MB points) and
fit Amdahl's law through them: ``t(n) = t1 * ((1 - p) + p / n)`` with ``p = 2 * (1 - t2 / t1)``.
Between the two points that is an interpolation; below one vCPU (a time share of one core: ``t1 / n``)
and above two it is an extrapolation, and every figure derived there is labelled *modelled*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

MB_PER_VCPU: Final = 1769
MAX_VCPUS: Final = 6.0
MIN_MEMORY_MB: Final = 128
MAX_MEMORY_MB: Final = 10240
#: The sizes the recommendation compares (1,769 and 3,538 are the measured points).
CANDIDATE_MEMORY_MB: Final = (512, 1024, 1536, 1769, 2048, 2560, 3008, 3538, 4096, 5120, 6144, 8192, 10240)

Basis = Literal["measured", "interpolated", "modelled"]


def vcpus(memory_mb: float) -> float:
    """The vCPU share Lambda gives ``memory_mb``."""
    if not MIN_MEMORY_MB <= memory_mb <= MAX_MEMORY_MB:
        raise ValueError(f"Lambda memory must be {MIN_MEMORY_MB}-{MAX_MEMORY_MB} MB, got {memory_mb}")
    return min(memory_mb / MB_PER_VCPU, MAX_VCPUS)


def basis(memory_mb: float) -> Basis:
    cpus = memory_mb / MB_PER_VCPU
    if cpus in (1.0, 2.0):
        return "measured"
    if 1.0 < cpus < 2.0:
        return "interpolated"
    return "modelled"


@dataclass(frozen=True)
class AmdahlFit:
    """Amdahl's law through the 1- and 2-thread measurements."""

    one_thread_ms: float
    two_threads_ms: float

    @property
    def parallel_fraction(self) -> float:
        """``p``; clamped to [0, 1] so a noisy 2-thread figure slower than 1 thread means "no speed-up"."""
        if self.one_thread_ms <= 0:
            return 0.0
        return min(1.0, max(0.0, 2.0 * (1.0 - self.two_threads_ms / self.one_thread_ms)))

    def at(self, cpus: float) -> float:
        """Milliseconds with ``cpus`` vCPUs (below one: the single thread gets that share of a core)."""
        if cpus <= 0:
            raise ValueError("cpus must be positive")
        if cpus < 1.0:
            return self.one_thread_ms / cpus
        p = self.parallel_fraction
        return self.one_thread_ms * ((1.0 - p) + p / cpus)

    def at_memory(self, memory_mb: float) -> float:
        return self.at(vcpus(memory_mb))


def billed_ms(duration_ms: float) -> int:
    """Lambda bills duration in whole milliseconds, rounded up, with at least 1 ms."""
    return max(1, math.ceil(duration_ms - 1e-9))


#: Standard normal quantiles of the percentiles the measurements report.
Z_P90: Final = 1.2815515655446004
Z_P99: Final = 2.3263478740408408


def spread_from(p50_ms: float, upper_ms: float, z: float) -> float:
    """The log-normal ``sigma`` through a median and an upper percentile (``z`` its normal quantile)."""
    if p50_ms <= 0 or upper_ms <= p50_ms:
        return 0.0
    return math.log(upper_ms / p50_ms) / z


@dataclass(frozen=True)
class Durations:
    """Per-invocation durations as a log-normal: each invocation is rounded up on its own, so the bill
    depends on the spread, not only on the mean (a 2.5 ms mean bills 3 ms only if every call is 2-3 ms).

    ``sigma`` 0 is a constant duration.
    """

    median_ms: float
    sigma: float = 0.0

    @classmethod
    def with_mean(cls, mean_ms: float, sigma: float) -> Durations:
        return cls(mean_ms * math.exp(-sigma * sigma / 2), sigma)

    @property
    def mean_ms(self) -> float:
        return self.median_ms * math.exp(self.sigma * self.sigma / 2)

    def scaled(self, factor: float) -> Durations:
        """The same shape, every invocation ``factor`` times as long (another CPU share)."""
        return Durations(self.median_ms * factor, self.sigma)

    def exceeds(self, ms: float) -> float:
        """P(duration > ``ms``)."""
        if ms <= 0:
            return 1.0
        if self.sigma == 0:
            return 1.0 if self.median_ms > ms else 0.0
        return 0.5 * math.erfc(math.log(ms / self.median_ms) / (self.sigma * math.sqrt(2)))

    def expected_billed_ms(self) -> float:
        """E[max(1, ceil(d))]: the mean of what Lambda bills, invocation by invocation.

        ``ceil(d) = sum over k >= 0 of [d > k]``, so its mean is ``1 + sum over k >= 1 of P(d > k)``.
        """
        if self.sigma == 0:
            return float(billed_ms(self.median_ms))
        total, k = 1.0, 1
        while True:
            tail = self.exceeds(k)
            if tail < 1e-12 and k > self.median_ms:
                return total
            total += tail
            k += 1
