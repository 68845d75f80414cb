"""The local stack as tests run it: `onnx-lambda serve` (or `serve --lambda`) in a subprocess, with a real token."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from onnx_lambda.local_cloud import free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class LocalService:
    """`onnx-lambda serve` running as a newcomer runs it, and a real user token from its Cognito."""

    url: str
    token: str
    env: dict[str, str]
    state_file: Path

    def headers(self, **extra: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}", **extra}


@contextmanager
def running_serve(home: Path, *flags: str) -> Iterator[tuple[str, str, dict[str, str], Path]]:
    """`onnx-lambda serve FLAGS` in its own session with its own state; yields url, token, env and log."""
    port = free_port()
    env = {
        **os.environ,
        "ONNX_LAMBDA_STATE_FILE": str(home / "local-stack.json"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "PYTHONUNBUFFERED": "1",
    }
    log_path = home / "serve.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    command = [sys.executable, "-m", "onnx_lambda.cli", "serve", *flags, "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--moto-port", str(free_port())],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"serve {flags} exited with {process.returncode}:\n{log_path.read_text()}")
            try:  # behind the emulator, the first request is the first environment's cold start
                if httpx.get(f"{url}/v2/health/ready", timeout=30).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"serve {flags} did not become ready:\n{log_path.read_text()}")
            time.sleep(0.2)
        token = subprocess.run(
            [sys.executable, "-m", "onnx_lambda.cli", "token"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        yield url, token, env, log_path
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@dataclass(frozen=True)
class LambdaService(LocalService):
    """`onnx-lambda serve --lambda`: the same stack behind the API Gateway + Lambda emulator."""

    log: Path

    def report_lines(self) -> list[str]:
        """The emulator's Lambda REPORT lines so far, one per invocation."""
        return [line for line in self.log.read_text().splitlines() if line.startswith("REPORT RequestId:")]
