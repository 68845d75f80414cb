"""Lambda's Runtime API on loopback, in front of the real runtime client (awslambdaric), with trace headers.

The Runtime Interface Emulator (``onnx_lambda_tools.local.lambda_runtime``) is the usual stand-in for
Lambda, but it drops the ``X-Amzn-Trace-Id`` of an invoke: the runtime never gets a
``Lambda-Runtime-Trace-Id``, so the function runs untraced. This stand-in serves the same Runtime API
(``/next``, ``/response``, ``/error``, ``/init/error``) and hands each invocation the trace header a
test gives it, as Lambda does when X-Ray tracing is active. The runtime client is the image's own: it
imports the handler (init, with no trace header, as in Lambda), then for each invocation sets
``_X_AMZN_TRACE_ID`` from that header and calls the handler.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from onnx_lambda_tools.local.lambda_runtime import image_cmd

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_API = "/2018-06-01/runtime"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:onnx-lambda-inference"


@dataclass(frozen=True)
class _Invocation:
    request_id: str
    trace_header: str
    event: Mapping[str, Any]


class InitError(RuntimeError):
    """The function's init failed (the runtime posted to ``/init/error``)."""


class TracedFunction:
    """One execution environment: ``python -m awslambdaric <image CMD>`` against this Runtime API."""

    def __init__(self, environment: Mapping[str, str], log_path: Path, *, answer_seconds: float = 60.0) -> None:
        self._pending: queue.Queue[_Invocation] = queue.Queue()
        self._posted: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._answer_seconds = answer_seconds
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="runtime-api", daemon=True).start()
        env = {
            **{
                key: value
                for key, value in os.environ.items()
                if not key.startswith(("ONNX_LAMBDA_", "POWERTOOLS_", "AWS_XRAY_", "_X_AMZN_", "AWS_SAM_"))
            },
            "AWS_LAMBDA_FUNCTION_NAME": "onnx-lambda-inference",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_REGION": "us-east-1",
            "PYTHONUNBUFFERED": "1",
            **environment,
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{self._server.server_port}",
        }
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "awslambdaric", image_cmd(ROOT / "Dockerfile")],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        function = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path != f"{RUNTIME_API}/invocation/next":
                    self._reply(404, b'{"errorMessage": "unknown path"}')
                    return
                invocation = function._pending.get()
                self._reply(
                    200,
                    json.dumps(invocation.event).encode(),
                    {
                        "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                        "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 30_000),
                        "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
                        "Lambda-Runtime-Trace-Id": invocation.trace_header,
                    },
                )

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                function._posted.put((self.path, body))
                self._reply(202, b'{"status": "OK"}')

            def _reply(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def invoke(self, event: Mapping[str, Any], trace_header: str) -> dict[str, Any]:
        """One invocation under ``trace_header``; the handler's response (or :class:`InitError`)."""
        request_id = str(uuid.uuid4())
        self._pending.put(_Invocation(request_id, trace_header, event))
        try:
            path, body = self._posted.get(timeout=self._answer_seconds)
        except queue.Empty:
            raise AssertionError(f"the function did not answer within {self._answer_seconds:g} s") from None
        if path == f"{RUNTIME_API}/init/error":
            raise InitError(body.decode())
        assert path == f"{RUNTIME_API}/invocation/{request_id}/response", (path, body[:2000])
        response: dict[str, Any] = json.loads(body)
        return response

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # it waits in /next
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._server.shutdown()
        self._server.server_close()
        self._log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
