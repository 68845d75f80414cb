"""Percentiles by their definition, in exact arithmetic: the reference the store's percentiles must match.

Nearest rank: the smallest value with at least p % of the values at or below it, i.e. the value of rank
ceil(p / 100 * n). numpy's ``method="inverted_cdf"`` is the same rule, but it forms p / 100 * n in floats,
so at exact ranks it can land one off (p99.9 of 1000 values: 0.999 * 1000 > 999 in floats, so rank 1000).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction


def nearest_rank(values: Iterable[float], percentile: str) -> float:
    ordered = sorted(values)
    assert ordered, "no values"
    rank = math.ceil(Fraction(percentile) * len(ordered) / 100)
    return ordered[max(rank, 1) - 1]
