"""The template's ``DashboardBody``, computed on the local store: each widget's series, ready to plot.

A metric widget's ``metrics`` rows are read as CloudWatch reads them: ``[Namespace, MetricName,
DimensionName, DimensionValue, ..., {options}]``, where ``"."`` repeats the previous row's item in that
position and ``"..."`` repeats the rest of the previous row; ``[{"expression": "SEARCH(...)"}]`` rows are
searches (:mod:`.search`). The widget's ``stat`` (default ``Average``) and ``period`` (default 300) apply
unless a row's options say otherwise. Periods run on the :class:`~.metrics.TimeScale`.

A series whose metric no local process can publish (provisioned concurrency, the synthetic canary, ...)
is not drawn as a flat line: it is listed with the reason, and a widget with nothing else says only that.
The time axis covers the dashboard's range, or less while the stack is younger than that (from a minute
before it started), so a fresh stack's first minutes fill the charts; it starts on a boundary of the
dashboard's longest period, so every period it shows is whole and its datapoint (dated at the period's
start) is on the chart.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from onnx_lambda_tools.local.monitoring.metrics import MetricId, MetricStore, Statistic, TimeScale
from onnx_lambda_tools.local.monitoring.search import SearchError, parse_search

#: CloudWatch's defaults for a metric widget, and for a dashboard's time range.
DEFAULT_STAT: Final = "Average"
DEFAULT_PERIOD: Final = 300
DEFAULT_RANGE_SECONDS: Final = 3 * 3600
_RELATIVE_START = re.compile(r"^-P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?$")


@dataclass(frozen=True, slots=True)
class MetricRow:
    """One row of a widget's ``metrics``: a metric, or an expression, with its options."""

    metric: MetricId | None
    expression: str | None
    options: Mapping[str, Any]


def expand_rows(rows: Sequence[Sequence[Any]]) -> list[MetricRow]:
    """The rows with ``"."`` and ``"..."`` written out, as CloudWatch reads them."""
    expanded: list[MetricRow] = []
    previous: list[str] = []
    for row in rows:
        items = list(row)
        options: Mapping[str, Any] = items.pop() if items and isinstance(items[-1], dict) else {}
        if not items and "expression" in options:
            expanded.append(MetricRow(None, str(options["expression"]), options))
            continue
        current: list[str] = []
        for position, item in enumerate(items):
            if item == "...":
                current.extend(previous[len(current) :])
            elif item == ".":
                if position >= len(previous):
                    raise ValueError(f"'.' at position {position} has nothing above it: {row!r}")
                current.append(previous[position])
            else:
                current.append(str(item))
        if len(current) < 2 or len(current) % 2:
            raise ValueError(f"a metric row is [Namespace, MetricName, (Name, Value)...]: {row!r}")
        previous = current
        dimensions = dict(zip(current[2::2], current[3::2], strict=True))
        expanded.append(MetricRow(MetricId.of(current[0], current[1], dimensions), None, options))
    return expanded


def range_seconds(body: Mapping[str, Any]) -> float:
    """The dashboard's time range: its relative ``start`` (``-PT3H``), else CloudWatch's 3 hours."""
    match = _RELATIVE_START.match(str(body.get("start", "")))
    if not match or not any(match.groupdict().values()):
        return DEFAULT_RANGE_SECONDS
    parts = {key: int(value or 0) for key, value in match.groupdict().items()}
    return parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]


class DashboardView:
    """Computes the widgets of one dashboard body on a store, at a time scale."""

    def __init__(
        self,
        name: str,
        body: Mapping[str, Any],
        store: MetricStore,
        scale: TimeScale,
        *,
        why_not_local: Callable[[MetricId], str | None],
        alarms: Callable[[], Sequence[Mapping[str, Any]]] = list,
        started: float | None = None,
    ) -> None:
        self.name = name
        self.body = body
        self.store = store
        self.scale = scale
        self._why_not_local = why_not_local
        self._alarms = alarms
        self._started = started

    def render(self, now: float, range_override: float | None = None) -> dict[str, Any]:
        """Every widget with its series over the dashboard's range (CloudWatch seconds), ending ``now``."""
        span = self.scale.local(range_override or range_seconds(self.body))
        start = now - span
        if self._started is not None and range_override is None:
            start = max(start, self._started - self.scale.minute_seconds)
        longest = self.scale.local(self._longest_period())
        start = math.floor(start / longest) * longest
        widgets = [self._widget(index, widget, start, now) for index, widget in enumerate(self.body.get("widgets", []))]
        return {
            "dashboard": self.name,
            "minuteSeconds": self.scale.minute_seconds,
            "now": now,
            "start": start,
            "widgets": widgets,
        }

    def _longest_period(self) -> int:
        periods = [DEFAULT_PERIOD]
        for widget in self.body.get("widgets", []):
            properties = widget.get("properties") or {}
            periods.append(int(properties.get("period", DEFAULT_PERIOD)))
            for row in properties.get("metrics", []):
                options = row[-1] if row and isinstance(row[-1], dict) else {}
                periods.append(int(options.get("period", 0)))
                with contextlib.suppress(SearchError):
                    if "expression" in options:
                        periods.append(parse_search(str(options["expression"])).period or 0)
        return max(periods)

    def _widget(self, index: int, widget: Mapping[str, Any], start: float, end: float) -> dict[str, Any]:
        properties: Mapping[str, Any] = widget.get("properties") or {}
        view: dict[str, Any] = {
            "index": index,
            "type": widget.get("type", "metric"),
            "title": properties.get("title", ""),
            "x": widget.get("x", 0),
            "y": widget.get("y", 0),
            "width": widget.get("width", 6),
            "height": widget.get("height", 6),
        }
        if view["type"] == "metric":
            view.update(self._metric_widget(properties, start, end))
        elif view["type"] == "alarm":
            wanted = [str(arn) for arn in properties.get("alarms", [])]
            known = {alarm["arn"]: alarm for alarm in self._alarms()}
            view["alarms"] = [
                known.get(arn) or {"arn": arn, "state": None, "reason": "not in the template"} for arn in wanted
            ]
        elif view["type"] == "text":
            view["markdown"] = str(properties.get("markdown", ""))
        else:
            view["unavailable"] = f"{view['type']} widgets are not drawn locally"
        return view

    def _metric_widget(self, properties: Mapping[str, Any], start: float, end: float) -> dict[str, Any]:
        view = str(properties.get("view", "timeSeries"))
        widget_stat = str(properties.get("stat", DEFAULT_STAT))
        widget_period = int(properties.get("period", DEFAULT_PERIOD))
        series: list[dict[str, Any]] = []
        problems: list[str] = []
        try:
            rows = expand_rows(properties.get("metrics", []))
        except ValueError as error:
            return {"view": view, "series": [], "unavailable": f"its metrics can't be read: {error}"}
        for row in rows:
            if row.options.get("visible") is False:
                continue
            if row.expression is not None:
                try:
                    series.extend(self._search(row, widget_period, start, end))
                except SearchError as error:
                    problems.append(f"{row.options.get('label') or row.expression}: {error}")
                continue
            assert row.metric is not None
            series.append(
                self._series(
                    row.metric,
                    str(row.options.get("stat", widget_stat)),
                    int(row.options.get("period", widget_period)),
                    str(row.options.get("label") or row.metric.name),
                    row.options,
                    start,
                    end,
                )
            )
        drawable = [s for s in series if s["unavailable"] is None]
        result: dict[str, Any] = {"view": view, "series": series, "problems": problems, "unavailable": None}
        if series and not drawable and not problems:
            reasons = sorted({s["unavailable"] for s in series})
            result["unavailable"] = "Not available locally: " + "; ".join(reasons) + "."
        return result

    def _series(
        self,
        metric: MetricId,
        stat: str,
        period: int,
        label: str,
        options: Mapping[str, Any],
        start: float,
        end: float,
        search: str | None = None,
    ) -> dict[str, Any]:
        local_period = self.scale.local(period)
        absent = self._why_not_local(metric)
        points = [] if absent else self.store.datapoints(metric, Statistic.parse(stat), local_period, start, end)
        return {
            "label": label,
            "metric": metric.to_json(),
            "stat": stat,
            "period": period,
            "periodSeconds": local_period,
            "yAxis": "right" if options.get("yAxis") == "right" else "left",
            "unit": self.store.unit(metric),
            "search": search,
            "unavailable": absent,
            "timestamps": [point.timestamp for point in points],
            "values": [point.value for point in points],
        }

    def _search(self, row: MetricRow, widget_period: int, start: float, end: float) -> list[dict[str, Any]]:
        assert row.expression is not None
        search = parse_search(row.expression)
        matches = search.select(self.store.metrics())
        label = str(row.options.get("label") or row.options.get("id") or "search")
        found = []
        for metric in matches:
            name = label if len(matches) == 1 else f"{label} {' '.join(value for _, value in metric.dimensions)}"
            found.append(
                self._series(
                    metric,
                    search.statistic.name,
                    search.period or widget_period,
                    name,
                    row.options,
                    start,
                    end,
                    search=row.expression,
                )
            )
        if not found:
            found.append(
                {
                    "label": label,
                    "metric": None,
                    "stat": search.statistic.name,
                    "period": search.period or widget_period,
                    "periodSeconds": self.scale.local(search.period or widget_period),
                    "yAxis": "right" if row.options.get("yAxis") == "right" else "left",
                    "unit": None,
                    "search": row.expression,
                    "unavailable": self._search_absent(search.namespace),
                    "timestamps": [],
                    "values": [],
                }
            )
        return found

    def _search_absent(self, namespace: str | None) -> str | None:
        """A search that finds nothing yet: unavailable only if its namespace can't exist locally."""
        if namespace is None:
            return None
        return self._why_not_local(MetricId(namespace, ""))
