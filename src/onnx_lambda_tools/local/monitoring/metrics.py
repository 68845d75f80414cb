"""The local metric store: CloudWatch's data model, in memory, for the emulator's metrics and the function's EMF.

A metric is a namespace, a name and a set of dimensions, as in CloudWatch: the same value published under
two dimension sets is two metrics. Every datapoint keeps its own timestamp and value (nothing is pre-
aggregated), so any period can be asked for afterwards and percentiles are exact over what is stored. The
window is bounded: datapoints older than ``retention_seconds`` go, and so do the oldest of a metric past
``max_datapoints`` (a busy metric keeps a shorter history rather than growing without end).

Statistics are CloudWatch's: ``SampleCount``, ``Sum``, ``Average``, ``Minimum``, ``Maximum`` and percentiles
``pNN`` / ``pNN.N``. A percentile here is the nearest rank: the smallest stored value with at least NN % of
the period's values at or below it (numpy's ``method="inverted_cdf"``).

Time runs at a :class:`TimeScale`: with ``minute_seconds=60`` (the default) periods are CloudWatch's own;
with ``minute_seconds=2`` every period in the template lasts 1/30 as long (60 s -> 2 s, 300 s -> 10 s), so
tests and demos see minutes of CloudWatch behaviour in seconds. Periods are aligned as CloudWatch aligns
them: a period's datapoint covers ``[start, start + period)`` and starts are multiples of the period.
"""

from __future__ import annotations

import bisect
import math
import re
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d{1,10})?|100)$")
SIMPLE_STATISTICS: Final = ("SampleCount", "Sum", "Average", "Minimum", "Maximum")


@dataclass(frozen=True, slots=True, order=True)
class MetricId:
    """One CloudWatch metric: namespace, name and dimensions (sorted by name, as CloudWatch compares them)."""

    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, namespace: str, name: str, dimensions: Mapping[str, str] | None = None) -> MetricId:
        return cls(namespace, name, tuple(sorted((dimensions or {}).items())))

    @property
    def dimension_map(self) -> dict[str, str]:
        return dict(self.dimensions)

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "dimensions": [{"name": name, "value": value} for name, value in self.dimensions],
        }


@dataclass(frozen=True, slots=True)
class TimeScale:
    """How long a CloudWatch minute lasts here; every period in the template scales with it."""

    minute_seconds: float = 60.0

    def __post_init__(self) -> None:
        if not self.minute_seconds > 0:
            raise ValueError("a minute must last more than 0 seconds")

    def local(self, cloudwatch_seconds: float) -> float:
        """A CloudWatch duration (a period, a dashboard's range) in seconds of this clock."""
        return cloudwatch_seconds * self.minute_seconds / 60.0


@dataclass(frozen=True, slots=True)
class Statistic:
    """A statistic by its CloudWatch name: one of :data:`SIMPLE_STATISTICS`, or ``pNN``."""

    name: str
    percentile: float | None = None

    @classmethod
    def parse(cls, text: str) -> Statistic:
        if text in SIMPLE_STATISTICS:
            return cls(text)
        match = _PERCENTILE.match(text)
        if match is None:
            raise ValueError(
                f"unsupported statistic {text!r}: expected one of {', '.join(SIMPLE_STATISTICS)} or a percentile "
                "such as p50 or p99.9"
            )
        return cls(text, float(match.group(1)))

    def compute(self, values: np.ndarray[Any, np.dtype[np.float64]]) -> float:
        """The statistic over a period's values (at least one)."""
        if self.percentile is not None:
            return nearest_rank(np.sort(values), self.percentile)
        match self.name:
            case "SampleCount":
                return float(values.size)
            case "Sum":
                return float(values.sum())
            case "Average":
                return float(values.mean())
            case "Minimum":
                return float(values.min())
            case _:
                return float(values.max())


def nearest_rank(ordered: np.ndarray[Any, np.dtype[np.float64]], percentile: float) -> float:
    """The smallest value with at least ``percentile`` % of ``ordered`` (sorted, not empty) at or below it."""
    # In integers, so p99 of 100 values is rank 99 (99.0 / 100 * 100 is 99.00000000000001 in floats).
    scaled = round(percentile * 1_000_000)
    rank = max(1, -(-scaled * ordered.size // 100_000_000))
    return float(ordered[rank - 1])


@dataclass(frozen=True, slots=True)
class Datapoint:
    """A period's statistic: ``timestamp`` is the period's start (epoch seconds)."""

    timestamp: float
    value: float


@dataclass(slots=True)
class _Series:
    times: array[float] = field(default_factory=lambda: array("d"))
    values: array[float] = field(default_factory=lambda: array("d"))
    unit: str | None = None

    def add(self, timestamp: float, value: float) -> None:
        if not self.times or timestamp >= self.times[-1]:
            self.times.append(timestamp)
            self.values.append(value)
        else:  # EMF lines carry their own timestamps, which may be a little out of order
            index = bisect.bisect_right(self.times, timestamp)
            self.times.insert(index, timestamp)
            self.values.insert(index, value)

    def drop_before(self, index: int) -> None:
        del self.times[:index]
        del self.values[:index]

    def between(self, start: float, end: float) -> np.ndarray[Any, np.dtype[np.float64]]:
        low = bisect.bisect_left(self.times, start)
        high = bisect.bisect_left(self.times, end, lo=low)
        return np.frombuffer(self.values, dtype=np.float64)[low:high].copy()


class MetricStore:
    """Datapoints by metric, in memory, within a bounded window; safe to use from several threads."""

    def __init__(
        self,
        *,
        retention_seconds: float = 3 * 3600.0,
        max_datapoints: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if retention_seconds <= 0 or max_datapoints < 1:
            raise ValueError("the window must hold something: retention_seconds > 0, max_datapoints >= 1")
        self.retention_seconds = retention_seconds
        self.max_datapoints = max_datapoints
        self._clock = clock
        self._series: dict[MetricId, _Series] = {}
        self._lock = threading.Lock()

    def put(self, metric: MetricId, value: float, *, timestamp: float | None = None, unit: str | None = None) -> None:
        """One datapoint (``timestamp`` in epoch seconds, now by default)."""
        self.put_many(metric, (value,), timestamp=timestamp, unit=unit)

    def put_many(
        self, metric: MetricId, values: Iterable[float], *, timestamp: float | None = None, unit: str | None = None
    ) -> None:
        """Several datapoints at one time, as an EMF line with a list of values publishes them."""
        now = self._clock()
        at = now if timestamp is None else timestamp
        with self._lock:
            series = self._series.setdefault(metric, _Series())
            if unit and unit != "None":
                series.unit = unit
            for value in values:
                if math.isfinite(value):
                    series.add(at, float(value))
            self._trim(series, now)

    def _trim(self, series: _Series, now: float) -> None:
        # Amortised: arrays shift only when a tenth of them goes, so a busy metric doesn't move on every put.
        # Queries clamp to the window themselves, so what lingers until then is never read.
        excess = len(series.times) - self.max_datapoints
        if excess > 0:
            series.drop_before(excess + self.max_datapoints // 10)
        stale = bisect.bisect_left(series.times, now - self.retention_seconds)
        if stale and (stale * 10 >= len(series.times) or len(series.times) <= 1000):
            series.drop_before(stale)

    def metrics(self) -> list[MetricId]:
        """Every metric with datapoints in the window, sorted."""
        cutoff = self._clock() - self.retention_seconds
        with self._lock:
            live = (metric for metric, series in self._series.items() if series.times and series.times[-1] >= cutoff)
            return sorted(live)

    def unit(self, metric: MetricId) -> str | None:
        with self._lock:
            series = self._series.get(metric)
            return series.unit if series else None

    def values(self, metric: MetricId, start: float, end: float) -> np.ndarray[Any, np.dtype[np.float64]]:
        """The raw values in ``[start, end)``, in time order."""
        start = max(start, self._clock() - self.retention_seconds)
        with self._lock:
            series = self._series.get(metric)
            if series is None:
                return np.empty(0)
            return series.between(start, end)

    def datapoints(
        self, metric: MetricId, statistic: Statistic, period: float, start: float, end: float, *, align: bool = True
    ) -> list[Datapoint]:
        """``statistic`` for each period from ``start`` to ``end``; a period without values has no datapoint
        (CloudWatch's missing data). ``align``: the first period starts at ``start`` rounded down to a multiple
        of ``period`` (as dashboards and alarms see them), else at ``start`` itself (as GetMetricData does)."""
        if period <= 0:
            raise ValueError("period must be positive")
        first = math.floor(start / period) * period if align else start
        points: list[Datapoint] = []
        with self._lock:
            series = self._series.get(metric)
            if series is None:
                return points
            cutoff = self._clock() - self.retention_seconds
            count = math.ceil((end - first) / period)
            for index in range(max(0, count)):
                low = first + index * period
                values = series.between(max(low, cutoff), min(low + period, end))
                if values.size:
                    points.append(Datapoint(low, statistic.compute(values)))
        return points
