"""Fixtures shared by the integration tests: the real local servers they run against."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from onnx_lambda.local_cloud import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class LocalService:
    """`onnx-lambda serve` running as a newcomer runs it, and a real user token from its Cognito."""

    url: str
    token: str
    env: dict[str, str]
    state_file: Path

    def headers(self, **extra: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}", **extra}


@pytest.fixture(scope="session")
def local_service(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalService]:
    home = tmp_path_factory.mktemp("serve")
    port = free_port()
    env = {
        **os.environ,
        "ONNX_LAMBDA_STATE_FILE": str(home / "local-stack.json"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "PYTHONUNBUFFERED": "1",
    }
    log = open(home / "serve.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "onnx_lambda.cli", "serve", "--port", str(port), "--moto-port", str(free_port())],
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
                pytest.fail(f"serve exited with {process.returncode}:\n{(home / 'serve.log').read_text()}")
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"serve did not become ready:\n{(home / 'serve.log').read_text()}")
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
        yield LocalService(url=url, token=token, env=env, state_file=home / "local-stack.json")
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=15)
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


@pytest.fixture(scope="session")
def lambda_service(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LambdaService]:
    home = tmp_path_factory.mktemp("serve-lambda")
    port = free_port()
    env = {
        **os.environ,
        "ONNX_LAMBDA_STATE_FILE": str(home / "local-stack.json"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "PYTHONUNBUFFERED": "1",
    }
    log_path = home / "serve.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "onnx_lambda.cli", "serve", "--lambda", "--lambda-concurrency", "2"),
            *("--port", str(port), "--moto-port", str(free_port())),
        ],
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
                pytest.fail(f"serve --lambda exited with {process.returncode}:\n{log_path.read_text()}")
            try:  # the first request is the first environment's cold start
                if httpx.get(f"{url}/v2/health/ready", timeout=30).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"serve --lambda did not become ready:\n{log_path.read_text()}")
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
        yield LambdaService(url=url, token=token, env=env, state_file=home / "local-stack.json", log=log_path)
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
