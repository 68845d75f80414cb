"""``onnx-lambda tune``'s arithmetic, and the template's MemorySize against its latest recommendation.

The measuring itself runs the image under Docker (``make tune``); what is checked here is what it makes
of Durations: Lambda's per-invocation billing and the recommendation rule, against arithmetic written
out by hand from the published prices.
"""

from __future__ import annotations

import json
from decimal import ROUND_CEILING, Decimal
from typing import Any

from onnx_lambda_tools.cost.measurements import newest_json
from onnx_lambda_tools.cost.prices import load_prices
from onnx_lambda_tools.local.cloudformation import load_template
from onnx_lambda_tools.tune import per_million_usd, recommend
from tests.infra.conftest import ROOT


def test_each_invocation_is_billed_rounded_up_to_the_millisecond() -> None:
    prices = load_prices()
    durations = [2.01, 2.99, 3.0, 0.2]  # billed 3, 3, 3 and 1 ms (Lambda bills at least 1 ms)
    billed = [int(Decimal(str(d)).to_integral_value(ROUND_CEILING)) or 1 for d in durations]
    assert billed == [3, 3, 3, 1]
    gb_seconds = sum(billed) / len(billed) / 1000 * 2048 / 1024
    for architecture in ("x86_64", "arm64"):
        expected = (
            prices["lambda.request"].usd + gb_seconds * prices[f"lambda.duration.{architecture}"].usd
        ) * 1_000_000
        assert per_million_usd(durations, 2048, prices, architecture) == round(expected, 4)


def size(memory_mb: int, p50_ms: float, p99_ms: float, usd: float) -> dict[str, Any]:
    return {"memory_mb": memory_mb, "one": {"p50_ms": p50_ms, "p99_ms": p99_ms}, "usd_per_million": {"x86_64": usd}}


def test_the_recommendation_is_the_cheapest_size_near_the_best_median_and_tail() -> None:
    sizes = [
        size(1024, 4.0, 31.0, 0.28),  # fastest median, but throttled: its p99 rules it out
        size(1769, 4.4, 5.0, 0.31),
        size(2048, 4.1, 4.6, 0.33),
        size(3008, 4.2, 4.5, 0.45),
    ]
    # Within 10 %: p50 <= 4.4 and p99 <= 4.95, so 2048 and 3008; 2048 is the cheaper.
    assert recommend(sizes, tolerance=0.10) == {
        "memory_mb": 2048,
        "tolerance": 0.10,
        "fastest_p50_ms": 4.0,
        "best_p99_ms": 4.5,
    }
    # Within 12 %: 1769 (p99 5.0 <= 5.04) comes in, and is the cheapest.
    assert recommend(sizes, tolerance=0.12)["memory_mb"] == 1769


def test_the_templates_default_memory_size_follows_the_latest_tuning() -> None:
    latest = newest_json(ROOT / "bench" / "tune")
    assert latest is not None, "no bench/tune/<date>.json: run `make tune`"
    recommended = json.loads(latest.read_text())["recommended"]["memory_mb"]

    template = load_template(ROOT / "template.yaml")
    assert template["Parameters"]["MemorySize"]["Default"] == recommended, f"{latest.name} recommends {recommended} MB"
