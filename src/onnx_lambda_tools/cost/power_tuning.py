"""docs/cost.md's "Power tuning" section and its chart, from the newest ``bench/tune/<date>.json``.

``onnx-lambda tune`` (:mod:`onnx_lambda_tools.tune`) measures; this only lays the measurements out, so
``make cost`` stays deterministic for the same inputs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from onnx_lambda_tools.cost.measurements import newest_json

CHART_FILE: Final = "power-tuning.png"


def load_tuning(root: Path) -> tuple[Path, dict[str, Any]] | None:
    path = newest_json(root / "bench" / "tune")
    if path is None:
        return None
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return path, document


def section(source: str, document: Mapping[str, Any], chart: str) -> str:
    chosen = document["recommended"]
    rows = [
        "## Power tuning, measured\n",
        "`make tune` ran the function's image at each memory size under the limits Lambda would give it (the memory",
        "as its cap, MemorySize/1769 vCPU as a CFS quota, a read-only root but /tmp, an unprivileged user), its",
        "model fetched from the local S3, and read Init Duration and each Duration from the Runtime Interface",
        "Emulator's reports, as Lambda reports them. Each Duration is billed rounded up to the millisecond. Only",
        f"{document['architecture_measured']} was measured: arm64 runs under QEMU here, so its price is at the same",
        "Durations (Graviton's own speed would move it). The last column is onnxruntime's fastest session options",
        "for one sentence under the same quota, measured in the same container (`bench/session_grid.py`): what the",
        "service's own choice is held against.",
        "",
        f"Source: `{source}` ({document['date']}, model `{document['model']}`).",
        "",
        "| memory | vCPU | Init | one sentence p50 / p99 | batch of 32 p50 / p99 | $ per 1M, x86_64 | $ per 1M, arm64 "
        "| onnxruntime's best |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    capped = False
    for size in document["sizes"]:
        mark = "**" if size["memory_mb"] == chosen["memory_mb"] else ""
        best = size["grid"]["best_one"]
        share = size["memory_mb"] / 1769
        cpus = f"{size['cpus']:.2f}"
        if round(share, 2) != round(size["cpus"], 2):
            cpus, capped = f"{cpus} (of {share:.2f})", True
        rows.append(
            f"| {mark}{size['memory_mb']:,} MB{mark} | {cpus} | {size['init_ms']:,.0f} ms | "
            f"{size['one']['p50_ms']:.2f} / {size['one']['p99_ms']:.2f} ms | "
            f"{size['batch32']['p50_ms']:.1f} / {size['batch32']['p99_ms']:.1f} ms | "
            f"{mark}${size['usd_per_million']['x86_64']:.3f}{mark} | ${size['usd_per_million']['arm64']:.3f} | "
            f"{best['name']}, `{best['level']}` |"
        )
    if capped:
        rows += ["", "A share over this machine's CPUs ran at all of them (Docker refuses a larger quota)."]
    rows += [
        "",
        f"Recommended: **{chosen['memory_mb']:,} MB**, the cheapest size whose one-sentence p50 and p99 are within "
        f"{chosen['tolerance']:.0%} of the best ({chosen['fastest_p50_ms']:.2f} ms and {chosen['best_p99_ms']:.2f} ms;"
        " the p99 rules out a size whose quota throttles requests). The template's default `MemorySize` follows"
        " it (`tests/unit/test_tune.py` checks that they agree).",
        "",
        f"![Warm Duration and price per million requests by memory size]({chart})",
        "",
    ]
    return "\n".join(rows)


def write_chart(path: Path, document: Mapping[str, Any]) -> None:
    """p50/p99 of one sentence and dollars per million, against memory size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9})
    sizes = document["sizes"]
    memory = [size["memory_mb"] for size in sizes]
    figure, latency = plt.subplots(figsize=(8, 3.6), dpi=100)
    latency.plot(memory, [s["one"]["p50_ms"] for s in sizes], "o-", color="tab:blue", label="one sentence p50")
    latency.plot(memory, [s["one"]["p99_ms"] for s in sizes], "o--", color="tab:blue", label="one sentence p99")
    latency.set_xlabel("MemorySize (MB)")
    latency.set_ylabel("Duration (ms)")
    latency.set_ylim(bottom=0)
    price = latency.twinx()
    for architecture, style in (("x86_64", "s-"), ("arm64", "s--")):
        dollars = [s["usd_per_million"][architecture] for s in sizes]
        price.plot(memory, dollars, style, color="tab:orange", label=f"$ / 1M, {architecture}")
    price.set_ylabel("USD per million requests")
    price.set_ylim(bottom=0)
    chosen = document["recommended"]["memory_mb"]
    latency.axvline(chosen, color="grey", linewidth=0.8, linestyle=":")
    handles = latency.get_legend_handles_labels()[0] + price.get_legend_handles_labels()[0]
    labels = latency.get_legend_handles_labels()[1] + price.get_legend_handles_labels()[1]
    latency.legend(handles, labels, loc="upper right", frameon=False, fontsize=8)
    latency.set_title(f"The function's container under Lambda's CPU quota (recommended: {chosen:,} MB)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", metadata={"Software": None})
    plt.close(figure)
