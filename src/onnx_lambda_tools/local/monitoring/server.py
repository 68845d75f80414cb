"""The monitoring port: the dashboard page, the metrics and alarms as JSON, and the emulator's fault switch.

It listens on loopback only, on a port of its own, never on the API's: nothing here is reachable through
the emulated API Gateway. Everything is read-only (GET) except the fault switch, ``POST
/faults/function-error``, which a web page in a browser can't call: it needs a JSON content type (so a
cross-site request is preflighted, and no preflight is ever allowed), and every request must name a
loopback host (so a DNS-rebinding page can't reach it either).

* ``GET /``: the dashboard (Plotly, served from the ``plotly`` wheel, so it works offline);
* ``GET /api/dashboard``: every widget of the template's dashboard with its series (``?range=`` seconds);
* ``GET /api/alarms``: every alarm of the template, its rule, state, reason and history;
* ``GET /api/metrics``: every metric in the store; ``GET /api/metric-data``: one metric's datapoints
  (``namespace``, ``metric``, ``dim.<Name>=<Value>``, ``stat``, ``period`` and ``start``/``end`` in epoch
  seconds of this clock: the first period starts at ``start`` rounded down to the (scaled) minute, as
  GetMetricData rounds it);
* ``POST /faults/function-error`` (``{"count": 1}``): the next invocations fail in the function itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Final

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from onnx_lambda_tools.local.emulator.faults import MAX_ARMED
from onnx_lambda_tools.local.emulator.front import GatewayApp
from onnx_lambda_tools.local.monitoring.alarms import AlarmEvaluator
from onnx_lambda_tools.local.monitoring.dashboard import DEFAULT_RANGE_SECONDS, DashboardView
from onnx_lambda_tools.local.monitoring.metrics import MetricId, MetricStore, Statistic, TimeScale
from onnx_lambda_tools.local.monitoring.recorder import Recorder, local_availability
from onnx_lambda_tools.local.monitoring.template import MonitoringTemplate, load_monitoring

LOOPBACK: Final = "127.0.0.1"
_STATIC: Final = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}


@dataclass(frozen=True, slots=True)
class Monitoring:
    """The local CloudWatch of one emulated stack: the store, what feeds it, and what reads it."""

    template: MonitoringTemplate
    scale: TimeScale
    store: MetricStore
    recorder: Recorder
    alarms: AlarmEvaluator
    dashboard: DashboardView | None
    gateway: GatewayApp


def attach_monitoring(
    gateway: GatewayApp,
    template_path: Path,
    *,
    scale: TimeScale,
    parameters: Mapping[str, str] | None = None,
    retention_seconds: float = DEFAULT_RANGE_SECONDS,
    max_datapoints: int = 100_000,
) -> Monitoring:
    """Start recording ``gateway``'s requests and invocations; the dashboard and alarms of ``template_path``.

    The store keeps ``retention_seconds`` (real seconds, whatever the scale: by default 3 h, the dashboard's
    range at CloudWatch's pace) and at most ``max_datapoints`` per metric.
    """
    template = load_monitoring(template_path, gateway.api, parameters)
    store = MetricStore(retention_seconds=retention_seconds, max_datapoints=max_datapoints)
    recorder = Recorder(store, api_id=template.api_id, stage=template.stage, functions=template.functions)
    gateway.listeners.append(recorder.on_request)
    for pool in gateway.pools.values():
        pool.listeners.append(recorder.on_invocation)
    why_not_local = local_availability(template.emf_namespaces)
    alarms = AlarmEvaluator(store, template.alarms, scale, why_not_local=why_not_local)
    dashboard = None
    if template.dashboard is not None:
        dashboard = DashboardView(
            template.dashboard_name or "dashboard",
            template.dashboard,
            store,
            scale,
            why_not_local=why_not_local,
            alarms=alarms.to_json,
            started=time.time(),
        )
    return Monitoring(template, scale, store, recorder, alarms, dashboard, gateway)


def monitoring_app(monitoring: Monitoring) -> Starlette:
    """The monitoring port's ASGI app; its lifespan runs the alarm evaluation."""

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        monitoring.alarms.evaluate_all()
        task = asyncio.create_task(monitoring.alarms.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def page(_: Request) -> Response:
        return Response(_asset("dashboard.html"), media_type="text/html; charset=utf-8", headers=_NO_STORE)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name == "plotly.min.js":
            script = _plotly()
            if script is None:
                return _problem(404, "plotly is not installed: pip install -e '.[local]'")
            return Response(script, media_type="text/javascript", headers={"cache-control": "max-age=3600"})
        if name not in _STATIC:
            return _problem(404, f"no such file: {name}")
        return Response(_asset(name), media_type=_STATIC[name], headers=_NO_STORE)

    async def dashboard(request: Request) -> Response:
        if monitoring.dashboard is None:
            return _problem(
                404, "the template has no AWS::CloudWatch::Dashboard: " + "; ".join(monitoring.template.problems)
            )
        span = request.query_params.get("range")
        try:
            override = float(span) if span else None
        except ValueError:
            return _problem(400, f"range must be a number of seconds, got {span!r}")
        if override is not None and not 60 <= override <= 15 * 86400:
            return _problem(400, "range must be between 60 seconds and 15 days")
        view = monitoring.dashboard.render(time.time(), override)
        view["problems"] = list(monitoring.template.problems)
        return _json(view)

    async def alarms(_: Request) -> Response:
        return _json({"minuteSeconds": monitoring.scale.minute_seconds, "alarms": monitoring.alarms.to_json()})

    async def metrics(_: Request) -> Response:
        found = monitoring.store.metrics()
        return _json({"metrics": [{**metric.to_json(), "unit": monitoring.store.unit(metric)} for metric in found]})

    async def metric_data(request: Request) -> Response:
        query = request.query_params
        namespace, name = query.get("namespace"), query.get("metric")
        if not namespace or not name:
            return _problem(400, "namespace and metric are required (and dim.<Name>=<Value> for each dimension)")
        dimensions = {key[4:]: value for key, value in query.multi_items() if key.startswith("dim.")}
        try:
            statistic = Statistic.parse(query.get("stat", "Average"))
            minute = monitoring.scale.minute_seconds
            period = float(query.get("period", minute))
            end = float(query.get("end", time.time()))
            start = float(query.get("start", end - monitoring.scale.local(DEFAULT_RANGE_SECONDS)))
        except ValueError as error:
            return _problem(400, f"bad query: {error}")
        if not (math.isfinite(period) and period > 0 and math.isfinite(start) and math.isfinite(end) and start < end):
            return _problem(400, "period must be positive and start earlier than end")
        if (end - start) / period > 100_800:
            return _problem(
                400, "that asks for more than 100,800 datapoints (GetMetricData's limit); use a longer period"
            )
        metric = MetricId.of(namespace, name, dimensions)
        first = math.floor(start / minute) * minute
        points = monitoring.store.datapoints(metric, statistic, period, first, end, align=False)
        return _json(
            {
                "metric": metric.to_json(),
                "stat": statistic.name,
                "period": period,
                "start": first,
                "end": end,
                "datapoints": [{"timestamp": point.timestamp, "value": point.value} for point in points],
            }
        )

    async def faults(_: Request) -> Response:
        switch = monitoring.gateway.faults
        return _json({"pendingFunctionErrors": switch.pending, "injectedFunctionErrors": switch.injected})

    async def function_error(request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _problem(415, 'send content-type: application/json (with {} or {"count": n})')
        raw = await request.body()
        try:
            document = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return _problem(400, 'the body must be JSON: {} or {"count": n}')
        count = document.get("count", 1) if isinstance(document, dict) else None
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_ARMED:
            return _problem(400, f"count must be a whole number from 1 to {MAX_ARMED}")
        pending = monitoring.gateway.faults.arm_function_errors(count)
        return _json({"pendingFunctionErrors": pending, "injectedFunctionErrors": monitoring.gateway.faults.injected})

    return Starlette(
        routes=[
            Route("/", page),
            Route("/static/{name}", static),
            Route("/api/dashboard", dashboard),
            Route("/api/alarms", alarms),
            Route("/api/metrics", metrics),
            Route("/api/metric-data", metric_data),
            Route("/faults", faults),
            Route("/faults/function-error", function_error, methods=["POST"]),
        ],
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=[LOOPBACK, "localhost", "[::1]"])],
        lifespan=lifespan,
    )


_NO_STORE: Final = {"cache-control": "no-store"}


def _json(document: Any) -> Response:
    return JSONResponse(document, headers=_NO_STORE)


def _problem(status: int, message: str) -> Response:
    return JSONResponse({"message": message}, status_code=status, headers=_NO_STORE)


@cache
def _asset(name: str) -> bytes:
    return (resources.files("onnx_lambda_tools.local.monitoring") / "static" / name).read_bytes()


@cache
def _plotly() -> bytes | None:
    """The plotly.js bundle inside the ``plotly`` wheel (``local`` extra): the page works offline."""
    try:
        return (resources.files("plotly") / "package_data" / "plotly.min.js").read_bytes()
    except (ModuleNotFoundError, FileNotFoundError):
        return None
