// The template's dashboard on the local metrics: fetches /api/dashboard (computed server-side from the
// template's DashboardBody) and draws each widget with Plotly, every few seconds. After each successful
// refresh every widget carries data-state ("rendered" or "unavailable") and data-series-with-data, and
// <body> data-ready="1" and data-refreshes, so a headless browser can tell when the page is drawn.
"use strict";

const UNIT_ROW_PX = 46;
const GAP_PX = 8;
let refreshes = 0;

function element(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

function clock(epochSeconds) {
  return new Date(epochSeconds * 1000).toLocaleTimeString();
}

function widgetNode(widget) {
  const id = `widget-${widget.index}`;
  let node = document.getElementById(id);
  if (!node) {
    node = element("section", { id, class: "widget", "data-index": String(widget.index) });
    node.style.gridColumn = `${widget.x + 1} / span ${widget.width}`;
    node.style.gridRow = `${widget.y + 1} / span ${widget.height}`;
    if (widget.type === "metric") {
      node.style.height = `${widget.height * UNIT_ROW_PX + (widget.height - 1) * GAP_PX}px`;
    }
    node.append(element("h2", {}, widget.title || "(untitled)"));
    document.getElementById("grid").append(node);
  }
  return node;
}

function replaceBody(node, body) {
  while (node.childNodes.length > 1) node.removeChild(node.lastChild);
  for (const child of body) node.append(child);
}

function renderUnavailable(node, reason) {
  node.classList.add("unavailable");
  node.dataset.state = "unavailable";
  node.dataset.seriesWithData = "0";
  replaceBody(node, [element("div", { class: "body" }, reason)]);
}

function renderMetric(node, widget, view) {
  if (widget.unavailable) {
    renderUnavailable(node, widget.unavailable);
    return;
  }
  node.classList.remove("unavailable");
  let plot = node.querySelector(".plot");
  let notes = node.querySelector(".notes");
  if (!plot) {
    plot = element("div", { class: "plot" });
    notes = element("div", { class: "notes" });
    replaceBody(node, [plot, notes]);
  }
  const drawable = widget.series.filter((series) => !series.unavailable);
  const traces = drawable.map((series) => ({
    type: "scatter",
    mode: series.values.length > 1 ? "lines+markers" : "markers",
    name: `${series.label} (${series.stat}, ${series.period / 60 >= 1 ? series.period / 60 + " min" : series.period + " s"})`,
    x: series.timestamps.map((t) => new Date(t * 1000)),
    y: series.values,
    yaxis: series.yAxis === "right" ? "y2" : "y",
    marker: { size: 5 },
  }));
  const pad = (view.now - view.start) / 50;  // so a point on the range's first or last second is whole
  const layout = {
    margin: { l: 48, r: drawable.some((s) => s.yAxis === "right") ? 48 : 12, t: 4, b: 24 },
    xaxis: { type: "date", range: [new Date((view.start - pad) * 1000), new Date((view.now + pad) * 1000)] },
    yaxis: { rangemode: "tozero", zeroline: true },
    legend: { orientation: "h", y: -0.18, font: { size: 11 } },
    showlegend: true,
    autosize: true,
  };
  if (drawable.some((s) => s.yAxis === "right")) {
    layout.yaxis2 = { overlaying: "y", side: "right", rangemode: "tozero", showgrid: false };
  }
  Plotly.react(plot, traces, layout, { displayModeBar: false, responsive: true, staticPlot: false });
  const lines = [];
  for (const series of widget.series) {
    if (series.unavailable) lines.push(`Not available locally: ${series.label}: ${series.unavailable}.`);
    else if (!series.values.length) lines.push(`${series.label}: no datapoints yet.`);
  }
  for (const problem of widget.problems || []) lines.push(problem);
  notes.replaceChildren(...lines.map((line) => element("p", {}, line)));
  node.dataset.state = "rendered";
  node.dataset.seriesDrawable = String(drawable.length);
  node.dataset.seriesWithData = String(drawable.filter((series) => series.values.length).length);
}

function stateBadge(state) {
  return element("span", { class: `state state-${state || "none"}` }, state ? state.replace("_", " ") : "not evaluated");
}

function renderAlarms(node, widget) {
  const table = element("table", { class: "alarms" });
  const head = element("tr");
  for (const title of ["Alarm", "State", "Since", "Why"]) head.append(element("th", {}, title));
  table.append(head);
  for (const alarm of widget.alarms) {
    const row = element("tr", { "data-alarm": alarm.logicalId || alarm.arn, "data-alarm-state": alarm.state || "" });
    row.append(element("td", { title: alarm.description || "" }, alarm.logicalId || alarm.arn));
    const state = element("td");
    state.append(stateBadge(alarm.state));
    row.append(state);
    row.append(element("td", {}, alarm.updated ? clock(alarm.updated) : ""));
    row.append(element("td", {}, [alarm.reason, alarm.note].filter(Boolean).join(" ")));
    table.append(row);
  }
  replaceBody(node, [table]);
  node.dataset.state = "rendered";
  node.dataset.alarms = String(widget.alarms.length);
}

function render(view) {
  document.getElementById("title").textContent = `${view.dashboard} (local)`;
  document.title = `${view.dashboard}: local dashboard`;
  const minute = view.minuteSeconds === 60 ? "CloudWatch's own periods" : `1 CloudWatch minute = ${view.minuteSeconds} s here`;
  document.getElementById("subtitle").textContent =
    `${minute} · from ${clock(view.start)} to ${clock(view.now)} · updated every few seconds`;
  const alarms = [];
  for (const widget of view.widgets) {
    const node = widgetNode(widget);
    if (widget.type === "metric") renderMetric(node, widget, view);
    else if (widget.type === "alarm") {
      renderAlarms(node, widget);
      alarms.push(...widget.alarms);
    } else if (widget.type === "text") {
      replaceBody(node, [element("div", { class: "notes" }, widget.markdown)]);
      node.dataset.state = "rendered";
    } else renderUnavailable(node, widget.unavailable);
  }
  const firing = alarms.filter((alarm) => alarm.state === "ALARM").map((alarm) => alarm.logicalId);
  document.getElementById("alarm-summary").textContent = firing.length
    ? `In ALARM: ${firing.join(", ")}`
    : `${alarms.length} alarms, none in ALARM`;
  const problems = document.getElementById("problems");
  problems.hidden = !(view.problems && view.problems.length);
  problems.textContent = (view.problems || []).join(" ");
}

async function refresh() {
  let wait = 5000;
  try {
    const response = await fetch("/api/dashboard", { cache: "no-store" });
    const view = await response.json();
    if (!response.ok) throw new Error(view.message || `HTTP ${response.status}`);
    render(view);
    wait = Math.min(10000, Math.max(1000, (view.minuteSeconds * 1000) / 6));
    refreshes += 1;
    document.body.dataset.refreshes = String(refreshes);
    document.body.dataset.ready = "1";
  } catch (error) {
    document.getElementById("subtitle").textContent = `Can't read the dashboard: ${error.message}`;
  }
  setTimeout(refresh, wait);
}

refresh();
