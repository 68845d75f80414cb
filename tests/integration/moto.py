"""The local AWS stand-in for tests, and the faults tests inject into it.

:func:`start_moto_server` runs the same moto server ``make serve`` runs, on a free loopback port.
The fault endpoints are real sockets on loopback that misbehave the way a network does:

- :class:`FaultyProxy` forwards to moto and can stall a response mid-body (a slow S3); it also
  counts what it forwarded, so a test can see ranged GETs and retries without mocking anything;
- :class:`Blackhole` accepts TCP connections (the kernel's backlog does) but never answers;
- :class:`ResettingEndpoint` accepts each connection and closes it at once, and counts them;
- :func:`closed_port_url` is a loopback URL where nothing listens.

This module is named after what it stands in for; it never imports the ``moto`` package itself.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

import boto3

from onnx_lambda_tools.local.cloud import LocalCloudError, MotoServer, free_port, start_moto

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REGION = "us-east-1"
#: moto ignores credentials; this keeps any real ones from ever being used.
ACCESS_KEY = "testing"
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"})


def start_moto_server(log_path: Path | None = None, attempts: int = 3) -> MotoServer:
    """A moto server on a free 127.0.0.1 port (retrying if another process takes the port first)."""
    for attempt in range(1, attempts + 1):
        try:
            return start_moto("127.0.0.1", free_port(), log_path=log_path)
        except LocalCloudError:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


def s3_client(endpoint_url: str) -> S3Client:
    """An S3 client for arranging test state on the local server (not the code under test's client)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=ACCESS_KEY,
    )


def closed_port_url() -> str:
    """A loopback URL where nothing listens: connections are refused at once."""
    return f"http://127.0.0.1:{free_port()}"


@dataclass
class ProxiedRequest:
    method: str
    path: str
    headers: dict[str, str]
    stalled: bool = False


@dataclass
class FaultyProxy:
    """An HTTP proxy on loopback in front of ``upstream`` that can stall chosen responses mid-body.

    ``stall`` sees each request and says whether to stall it: the proxy then sends the headers and
    half the body and goes silent until it is closed, which is what a read timeout mid-body looks
    like to a client. Every connection is closed after one response, so each request is visible.
    """

    upstream: str
    stall: Callable[[ProxiedRequest], bool] = lambda request: False
    requests: list[ProxiedRequest] = field(default_factory=list)
    _release: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def __enter__(self) -> Self:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy._forward(self)

            do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="faulty-proxy", daemon=True).start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def endpoint_url(self) -> str:
        assert self._server is not None, "use FaultyProxy as a context manager"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        request = ProxiedRequest(handler.command, handler.path, {k.lower(): v for k, v in handler.headers.items()})
        with self._lock:
            request.stalled = self.stall(request)
            self.requests.append(request)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        target = urlsplit(self.upstream)
        upstream = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=30)
        try:
            upstream.request(handler.command, handler.path, body=body, headers=dict(handler.headers.items()))
            response = upstream.getresponse()
            payload = response.read()
        finally:
            upstream.close()
        handler.close_connection = True
        handler.send_response(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in _HOP_BY_HOP:
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.send_header("Connection", "close")
        handler.end_headers()
        if handler.command == "HEAD":
            return
        if request.stalled:
            handler.wfile.write(payload[: len(payload) // 2])
            handler.wfile.flush()
            self._release.wait(timeout=60)  # silent until the test ends; the client times out first
            return
        handler.wfile.write(payload)


class Blackhole:
    """A TCP listener that never accepts: connects succeed (the kernel's backlog), replies never come."""

    def __enter__(self) -> Self:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._socket.close()

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}"


class ResettingEndpoint:
    """Accepts every connection and closes it at once; :attr:`connections` counts them."""

    def __enter__(self) -> Self:
        self.connections = 0
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self._socket.settimeout(0.2)
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="resetting-endpoint", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._closing.set()
        self._thread.join()
        self._socket.close()

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._closing.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            self.connections += 1
            # Read the request first, so the client sees its reply cut off, not its send refused.
            connection.settimeout(1.0)
            with contextlib.suppress(OSError):
                connection.recv(65536)
            connection.close()
