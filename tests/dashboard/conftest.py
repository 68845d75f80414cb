"""One monitored stack for the dashboard tests: `onnx-lambda serve --lambda` with its monitoring port.

A CloudWatch minute lasts :data:`MINUTE` seconds here, so the template's 60 s periods are 2 s and its alarms
move in seconds. ``ApiLatencyP99ThresholdMs`` is a template parameter; it is set low (as `sam deploy
--parameter-overrides` could) so a batch of long texts crosses it while the rule stays the template's.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from onnx_lambda_tools.local.cloud import free_port
from tests.servers import ROOT, running_serve

#: Seconds per CloudWatch minute on the test stack.
MINUTE = 2.0
LATENCY_THRESHOLD_MS = 50
#: The names the local stack gives the template's resources (docs/emulator.md): the stack is
#: onnx-lambda-local, the function has no FunctionName, and the API's id is the one its events carry.
FUNCTION = "onnx-lambda-local-InferenceFunction"
ALIAS_RESOURCE = f"{FUNCTION}:live"
API_ID = "a1b2c3d4e5"
TEMPLATE = ROOT / "template.yaml"


@dataclass(frozen=True)
class MonitoredStack:
    url: str
    token: str
    monitoring: str
    home: Path
    log: Path

    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.monitoring}{path}", params=params, timeout=30)
        response.raise_for_status()
        return response.json()

    def inject_function_errors(self, count: int = 1) -> None:
        response = httpx.post(f"{self.monitoring}/faults/function-error", json={"count": count}, timeout=30)
        assert response.status_code == 200, response.text

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def report_lines(self) -> list[str]:
        return [line for line in self.log_text().splitlines() if line.startswith("REPORT RequestId:")]

    @property
    def function_logs(self) -> Path:
        return self.home / "lambda-logs"

    def alarm(self, logical_id: str) -> dict[str, Any]:
        alarms = self.get("/api/alarms")["alarms"]
        return next(alarm for alarm in alarms if alarm["logicalId"] == logical_id)

    def wait_for_alarm(self, logical_id: str, state: str, *, within: float, poke: Any = None) -> dict[str, Any]:
        """The alarm once it is in ``state``; ``poke()`` is called between looks (e.g. to send traffic)."""
        deadline = time.monotonic() + within
        while True:
            alarm = self.alarm(logical_id)
            if alarm["state"] == state:
                return alarm
            if time.monotonic() > deadline:
                pytest.fail(f"{logical_id} is {alarm['state']}, not {state}, after {within} s: {alarm['reason']}")
            if poke is not None:
                poke()
            time.sleep(MINUTE / 4)

    def metric(
        self, namespace: str, name: str, dimensions: dict[str, str], stat: str, start: float, end: float
    ) -> float:
        """One statistic over ``[start, end)`` (start on a minute boundary): one period that covers it all."""
        period = math.ceil((end - start) / MINUTE) * MINUTE
        params = {"namespace": namespace, "metric": name, "stat": stat, "period": period, "start": start, "end": end}
        params.update({f"dim.{key}": value for key, value in dimensions.items()})
        points = self.get("/api/metric-data", **params)["datapoints"]
        assert len(points) == 1, f"{namespace} {name} {stat}: expected one datapoint, got {points}"
        return float(points[0]["value"])


def next_minute() -> float:
    """Sleep to the start of the next (scaled) minute, so a test's traffic has periods of its own."""
    boundary = math.ceil(time.time() / MINUTE) * MINUTE
    time.sleep(max(0.0, boundary - time.time()) + 0.01)
    return boundary


REPORT_DURATION = re.compile(r"\tDuration: ([0-9.]+) ms")


@pytest.fixture(scope="session")
def monitored_stack(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MonitoredStack]:
    home = tmp_path_factory.mktemp("monitored")
    port = free_port()
    flags = (
        "--lambda",
        "--lambda-concurrency",
        "2",
        "--monitoring-port",
        str(port),
        "--monitoring-minute",
        str(MINUTE),
        "--parameter-overrides",
        f"ApiLatencyP99ThresholdMs={LATENCY_THRESHOLD_MS}",
    )
    with running_serve(home, *flags) as (url, token, _, log):
        yield MonitoredStack(url=url, token=token, monitoring=f"http://127.0.0.1:{port}", home=home, log=log)
