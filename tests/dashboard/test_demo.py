"""`make demo`, as it runs, at a faster pace and stopping after the load (``--exit``): it prints the URLs and a
live call that works, and the load's one injected function error makes Api5xxAlarm fire and then recover."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from onnx_lambda_tools.local.cloud import free_port, port_is_free
from tests.servers import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.models, pytest.mark.timeout(400)]


def _ports() -> int:
    """A free API port whose dashboard port (two above) is free too."""
    while True:
        port = free_port()
        if port_is_free("127.0.0.1", port + 2):
            return port


def test_the_demo_prints_its_call_and_an_alarm_fires_and_recovers(tmp_path: Path) -> None:
    port = _ports()
    env = {
        **os.environ,
        "ONNX_LAMBDA_STATE_FILE": str(tmp_path / "local-stack.json"),  # not the developer's own stack
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    command = [sys.executable, "-m", "onnx_lambda_tools.demo", "--port", str(port), "--minute", "3", "--exit"]
    run = subprocess.run(
        [*command, "--out", str(tmp_path / "demo")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=380
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output + (tmp_path / "demo" / "serve.log").read_text()[-3000:]
    assert f"Dashboard:  http://127.0.0.1:{port + 2}/" in output
    assert "TOKEN=$(.venv/bin/onnx-lambda token)" in output
    assert f"curl -s http://127.0.0.1:{port}/v1/embeddings" in output
    assert "Made just now: HTTP 200" in output
    assert "docs/architecture.md" in output
    fired = re.search(r"\[(\d\d):(\d\d)\] Api5xxAlarm: OK -> ALARM", output)
    recovered = re.search(r"\[(\d\d):(\d\d)\] Api5xxAlarm: ALARM -> OK", output)
    injected = output.find("injected one function error")
    assert injected >= 0, output
    assert fired, output
    assert recovered, output
    assert injected < fired.start() < recovered.start()
    summary = re.search(
        r"Load done: (\d+) requests, (\d+) of them bad requests answered with their 4xx, (\d+) failed", output
    )
    assert summary, output
    assert int(summary.group(2)) > 0
    assert int(summary.group(3)) == 1  # the injected error, and nothing else
