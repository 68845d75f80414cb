"""The local stack as tests run it: `onnx-lambda serve` (or `serve --lambda`) in a subprocess, with a real token."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from onnx_lambda_tools.serve import ServeError, background_serve

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
    """`onnx-lambda serve FLAGS` with its own state; yields url, a real token, its env and its log."""
    env = {
        **os.environ,
        "ONNX_LAMBDA_STATE_FILE": str(home / "local-stack.json"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "PYTHONUNBUFFERED": "1",
    }
    log_path = home / "serve.log"
    with log_path.open("wb") as log:
        try:
            with background_serve(env, log, *flags, ready_timeout=120) as url:
                token = subprocess.run(
                    [sys.executable, "-m", "onnx_lambda_tools.cli", "token"],
                    cwd=ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=60,
                ).stdout.strip()
                yield url, token, env, log_path
        except ServeError as error:
            pytest.fail(f"{error}:\n{log_path.read_text()}")


@dataclass(frozen=True)
class LambdaService(LocalService):
    """`onnx-lambda serve --lambda`: the same stack behind the API Gateway + Lambda emulator."""

    log: Path

    def report_lines(self) -> list[str]:
        """The emulator's Lambda REPORT lines so far, one per invocation."""
        return [line for line in self.log.read_text().splitlines() if line.startswith("REPORT RequestId:")]
