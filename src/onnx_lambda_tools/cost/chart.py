"""The PNG in docs/cost.md: monthly cost against monthly volume, this service against SageMaker.

matplotlib is imported here only (the ``cost`` extra); the image is written without a timestamp or
version in its metadata, so the same inputs give the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path


def write_chart(
    path: Path,
    volumes: Sequence[float],
    series: Mapping[str, Sequence[float]],
    title: str,
    marks: Sequence[tuple[float, float, str]] = (),
) -> None:
    """A log-log line chart of ``series`` (label -> monthly USD at each volume), with labelled ``marks``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    plt.rcParams.update({"svg.hashsalt": "onnx-lambda", "font.size": 9})
    figure, axes = plt.subplots(figsize=(10, 4.8), dpi=100)
    colours = ("tab:blue", "tab:orange", "tab:green", "tab:red")
    for index, (label, costs) in enumerate(series.items()):
        # Series come in pairs (whole stack, compute tier): one colour per option, dashed for the tier.
        style = "-" if index % 2 == 0 else "--"
        axes.plot(volumes, costs, style, color=colours[(index // 2) % len(colours)], linewidth=1.6, label=label)
    for volume, cost, label in marks:
        axes.plot([volume], [cost], "o", color="black", markersize=4)
        axes.annotate(label, (volume, cost), textcoords="offset points", xytext=(-8, 6), ha="right", fontsize=8)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("requests per month")
    axes.set_ylabel("USD per month")
    axes.set_title(title)
    axes.xaxis.set_major_formatter(FuncFormatter(_volume_label))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"${value:,.2f}" if value < 1 else f"${value:,.0f}"))
    axes.grid(True, which="major", linewidth=0.5, alpha=0.6)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", metadata={"Software": None})
    plt.close(figure)


def _volume_label(value: float, _: object) -> str:
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"
