"""The dashboard page, in headless chromium, after known traffic: every widget of the template's dashboard
is drawn with data where its metrics can exist locally (points inside the plotting area, not off the
axis), and says plainly why not where they can't.

The expectation is read from template.yaml here (a plain YAML load, ``${...}`` blanked out), not from the
page's own JSON: a widget whose every metric is one no local process can publish (the synthetic canary's,
provisioned concurrency's) must say so; every other must draw data. The screenshot is kept under
build/dashboard/ for a human to look at.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
import yaml

from tests.dashboard.browser import headless_page
from tests.dashboard.conftest import MINUTE, TEMPLATE, MonitoredStack, next_minute
from tests.servers import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.models, pytest.mark.timeout(600)]

SCREENSHOT = ROOT / "build" / "dashboard" / "dashboard.png"

WIDGETS_JS = """
[...document.querySelectorAll("section.widget")].map((widget) => ({
  index: Number(widget.dataset.index),
  title: widget.querySelector("h2").textContent,
  state: widget.dataset.state || "",
  seriesWithData: Number(widget.dataset.seriesWithData || 0),
  drawnTraces: [...widget.querySelectorAll(".js-plotly-plot .scatterlayer .trace")].filter((trace) => {
    const area = widget.querySelector(".js-plotly-plot .nsewdrag").getBoundingClientRect();
    return [...trace.querySelectorAll("path")].some((path) => {
      if ((path.getAttribute("d") || "").length <= 2) return false;
      const box = path.getBoundingClientRect();  // a point or line inside the plotting area, not off the axis
      return box.width + box.height > 0 && box.right >= area.left && box.left <= area.right
        && box.bottom >= area.top && box.top <= area.bottom;
    });
  }).length,
  text: widget.innerText,
  alarms: [...widget.querySelectorAll("tr[data-alarm]")].map((row) => [row.dataset.alarm, row.dataset.alarmState]),
}))
"""


def _local_only_tags(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    return loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else None


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_multi_constructor("!", _local_only_tags)


def template_dashboard() -> tuple[list[dict[str, Any]], list[str]]:
    """The template's widgets (``${...}`` blanked) and its alarms' logical ids."""
    resources = yaml.load(TEMPLATE.read_text(), Loader=_Loader)["Resources"]
    body = resources["Dashboard"]["Properties"]["DashboardBody"]
    widgets = json.loads(re.sub(r"\$\{[^}]*\}", "x", body))["widgets"]
    alarms = [name for name, resource in resources.items() if resource.get("Type") == "AWS::CloudWatch::Alarm"]
    return widgets, alarms


def can_exist_locally(namespace: str, name: str) -> bool:
    """What this test knows of the laptop: the canary runs only in AWS, provisioned concurrency isn't emulated."""
    return namespace != "OnnxLambda/Canary" and not name.startswith("ProvisionedConcurrency")


def widget_metrics(widget: dict[str, Any]) -> list[tuple[str, str]]:
    """(namespace, name) of each row; "." repeats the item above, "..." the row above; a SEARCH gives its namespace."""
    found: list[tuple[str, str]] = []
    previous: list[str] = []
    for row in widget["properties"].get("metrics", []):
        items = [item for item in row if not isinstance(item, dict)]
        if not items:
            expression = row[0]["expression"]
            namespace = re.search(r'\{([^,}]+)|Namespace="([^"]+)"', expression)
            assert namespace, expression
            found.append((namespace.group(1) or namespace.group(2), "(search)"))
            continue
        current = (
            previous if items[0] == "..." else [previous[k] if item == "." else item for k, item in enumerate(items)]
        )
        previous = current
        found.append((current[0], current[1]))
    return found


def send_known_traffic(stack: MonitoredStack) -> None:
    with httpx.Client(base_url=stack.url, timeout=60, headers=stack.headers()) as client:
        for count in (1, 2, 4):
            body = {"model": "all-minilm-l6-v2", "input": ["a sentence to embed"] * count}
            assert client.post("/v1/embeddings", json=body).status_code == 200
        features = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 30], "data": [0.5] * 30}]}
        assert client.post("/v2/models/breast-cancer-classifier/infer", json=features).status_code == 200
        assert client.post("/v1/embeddings", headers={"authorization": ""}, json={}).status_code == 401
        stack.inject_function_errors(1)
        assert client.get("/v2/models/all-minilm-l6-v2").status_code == 500


def test_every_widget_draws_its_data_or_says_why_not(monitored_stack: MonitoredStack) -> None:
    stack = monitored_stack
    widgets, alarm_ids = template_dashboard()
    send_known_traffic(stack)
    next_minute()  # the traffic's period is complete
    with headless_page() as page:
        page.send("Page.navigate", url=f"{stack.monitoring}/")
        page.wait_for("document.body && Number(document.body.dataset.refreshes) >= 1", within=60)
        shown = page.evaluate(WIDGETS_JS)
        subtitle = page.evaluate("document.getElementById('subtitle').textContent")
        page.screenshot(SCREENSHOT)
        requested = [
            e["params"]["request"]["url"] for e in page.events if e.get("method") == "Network.requestWillBeSent"
        ]
    assert SCREENSHOT.stat().st_size > 10_000
    assert requested, "the page made no requests"
    assert all(url.startswith(stack.monitoring) for url in requested), f"the page reached outside: {requested}"
    assert [w["index"] for w in shown] == list(range(len(widgets)))
    for expected, widget in zip(widgets, shown, strict=True):
        title = expected["properties"].get("title")
        assert widget["title"] == title
        if expected["type"] == "alarm":
            assert widget["state"] == "rendered"
            assert [alarm for alarm, _ in widget["alarms"]] == alarm_ids
            assert {state for _, state in widget["alarms"]} <= {"OK", "ALARM", "INSUFFICIENT_DATA"}
        elif any(can_exist_locally(namespace, name) for namespace, name in widget_metrics(expected)):
            assert widget["state"] == "rendered", f"{title}: {widget['text']}"
            assert widget["seriesWithData"] >= 1, f"{title}: no series with data: {widget['text']}"
            assert widget["drawnTraces"] == widget["seriesWithData"], f"{title}: not every series was drawn"
        else:
            assert widget["state"] == "unavailable", f"{title}: {widget['text']}"
            assert "Not available locally" in widget["text"]
            assert widget["drawnTraces"] == 0
    by_title = {widget["title"]: widget for widget in shown}
    assert by_title["Requests"]["drawnTraces"] == 2  # API requests and invocations
    assert by_title["API latency (ms)"]["drawnTraces"] == 3
    assert "Not available locally: provisioned utilisation" in by_title["Concurrency"]["text"]
    assert f"1 CloudWatch minute = {MINUTE:g} s here" in subtitle
