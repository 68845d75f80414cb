"""The real Lambda runtime on a laptop: the Runtime Interface Emulator in front of awslambdaric.

The emulator ships in the aws-sam-cli wheel (``samcli/local/rapid/aws-lambda-rie-<arch>``). It runs the
same command the image runs (``python -m awslambdaric <CMD>``), serves the Lambda Invoke API, and, like
a Lambda execution environment, takes one invocation at a time: callers that want concurrency start
several.
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onnx_lambda_tools.local.cloud import free_port

INVOKE_PATH = "/2015-03-31/functions/function/invocations"
DEFAULT_CMD = "onnx_lambda.handler.lambda_handler"


def rie_binary() -> Path:
    """``ONNX_LAMBDA_RIE``, else the emulator inside the project's ``.venv-sam``."""
    configured = os.environ.get("ONNX_LAMBDA_RIE")
    if configured:
        return Path(configured)
    arch = "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"
    for root in (Path.cwd(), *Path(__file__).resolve().parents):
        matches = sorted(root.glob(f".venv-sam/lib/python3*/site-packages/samcli/local/rapid/aws-lambda-rie-{arch}"))
        if matches:
            return matches[0]
    raise FileNotFoundError(
        "the Runtime Interface Emulator was not found: run `make sam-venv` (it ships in aws-sam-cli), "
        "or set ONNX_LAMBDA_RIE to its path"
    )


def image_cmd(dockerfile: Path = Path("Dockerfile")) -> str:
    """The handler the image's CMD names, so the emulator runs exactly what Lambda runs."""
    if dockerfile.is_file():
        match = re.search(r"^CMD\s+(\[.*\])\s*$", dockerfile.read_text(), flags=re.MULTILINE)
        if match:
            command = json.loads(match.group(1))
            if isinstance(command, list) and len(command) == 1 and isinstance(command[0], str):
                return command[0]
    return DEFAULT_CMD


@dataclass(frozen=True, slots=True)
class InvokeResult:
    status: int  # the Invoke API's HTTP status (200 even for function errors, as in Lambda)
    payload: Any  # the function's response, or the runtime's error object
    function_error: bool
    seconds: float


class LambdaEnvironment:
    """One execution environment: one emulator process, one invocation at a time."""

    def __init__(
        self,
        environment: Mapping[str, str],
        *,
        handler: str | None = None,
        memory_mb: int = 1769,
        timeout_seconds: int = 30,
        function_name: str = "onnx-lambda-inference",
        log_path: Path | None = None,
    ) -> None:
        self.port = free_port()
        self.runtime_api_port = free_port()
        self.timeout_seconds = timeout_seconds
        self.log_path = log_path
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("ONNX_LAMBDA_", "POWERTOOLS_"))},
            **environment,
            "AWS_LAMBDA_FUNCTION_NAME": function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(timeout_seconds),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_REGION": environment.get("AWS_REGION", "us-east-1"),
            "PYTHONUNBUFFERED": "1",
        }
        command = [
            str(rie_binary()),
            "--log-level",
            "error",
            "--runtime-interface-emulator-address",
            f"127.0.0.1:{self.port}",
            "--runtime-api-address",
            f"127.0.0.1:{self.runtime_api_port}",
            sys.executable,
            "-m",
            "awslambdaric",
            handler or image_cmd(),
        ]
        self._log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT)  # noqa: S603 - fixed argv, no shell
        self._wait_listening()

    def _wait_listening(self, deadline_seconds: float = 10.0) -> None:
        deadline = time.monotonic() + deadline_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the emulator exited with status {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise TimeoutError("the emulator did not start listening")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{INVOKE_PATH}"

    def invoke(self, event: Mapping[str, Any], *, timeout: float | None = None) -> InvokeResult:
        request = urllib.request.Request(  # noqa: S310 - loopback http only
            self.url, data=json.dumps(event).encode(), method="POST", headers={"content-type": "application/json"}
        )
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout_seconds + 15) as response:  # noqa: S310  # nosec B310  # loopback http only
                status, body, headers = response.status, response.read(), response.headers
        except urllib.error.HTTPError as error:
            status, body, headers = error.code, error.read(), error.headers
        seconds = time.perf_counter() - started
        payload = json.loads(body) if body else None
        function_error = headers.get("X-Amz-Function-Error") is not None or (
            isinstance(payload, dict) and "errorType" in payload and "statusCode" not in payload
        )
        return InvokeResult(status=status, payload=payload, function_error=function_error, seconds=seconds)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not subprocess.DEVNULL:
            self._log.close()  # type: ignore[union-attr]

    def __enter__(self) -> LambdaEnvironment:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
