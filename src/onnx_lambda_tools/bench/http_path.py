"""The HTTP path: our local server (auth on) against a minimal FastAPI + uvicorn app, at concurrency 1 and 8.

Both servers run at once, each in its own process with the same uvicorn settings, and one client
alternates between them round by round. The client is a small asyncio HTTP/1.1 loop over keep-alive
connections (one per concurrent caller), so that it costs little and the same for both sides.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from onnx_lambda_tools.bench import session_grid, workloads
from onnx_lambda_tools.bench.report import comparison
from onnx_lambda_tools.bench.stats import progress, summarize
from onnx_lambda_tools.local.cloud import free_port
from onnx_lambda_tools.publish import models_variable

if TYPE_CHECKING:
    from onnx_lambda_tools.serve import LocalDeployment

CONCURRENCY = (1, 8)


class HttpError(Exception):
    pass


def request_bytes(port: int, body: bytes, token: str | None) -> bytes:
    headers = [
        "POST /v1/embeddings HTTP/1.1",
        f"host: 127.0.0.1:{port}",
        "content-type: application/json",
        f"content-length: {len(body)}",
    ]
    if token:
        headers.append(f"authorization: Bearer {token}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


async def _caller(port: int, request: bytes, count: int, samples: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    clock = time.perf_counter
    try:
        for _ in range(count):
            started = clock()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise HttpError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            samples.append(clock() - started)
    finally:
        writer.close()


async def _load(port: int, request: bytes, concurrency: int, per_caller: int) -> tuple[list[float], float]:
    samples: list[float] = []
    started = time.perf_counter()
    await asyncio.gather(*(_caller(port, request, per_caller, samples) for _ in range(concurrency)))
    return samples, time.perf_counter() - started


def load(port: int, request: bytes, concurrency: int, per_caller: int) -> tuple[list[float], float]:
    """Latencies (seconds) of ``concurrency * per_caller`` requests, and the wall time they took."""
    return asyncio.run(_load(port, request, concurrency, per_caller))


@contextmanager
def server(arguments: list[str], environment: dict[str, str], port: int, log: Path, ready_path: str) -> Iterator[str]:
    command = [sys.executable, "-m", "onnx_lambda_tools.bench.servers", *arguments, "--port", str(port)]
    with log.open("ab") as output:
        process = subprocess.Popen(command, env=environment, stdout=output, stderr=subprocess.STDOUT)  # noqa: S603
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the {arguments[0]} server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}{ready_path}", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {arguments[0]} server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def measure(
    deployment: LocalDeployment,
    token: str,
    models_dir: Path,
    model: str,
    scratch: Path,
    *,
    seconds: float,
    threads: int,
    optimization: str,
    reference: Mapping[str, Any] | None,
) -> list[dict[str, Any]]:
    """Our server (auth on, ``token`` from the local pool) against the raw one, at each concurrency.

    The raw server runs with onnxruntime's best session options for one sentence (``reference``, from
    the in-process grid; when that section didn't run, the grid runs here first); ours with its own.
    """
    if reference is None:
        reference = session_grid.grid(models_dir / model, max(0.3, seconds / 6))["best_one"]
    published = deployment.models[model]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ONNX_LAMBDA_", "POWERTOOLS_"))}
    ours_environment = {
        **base,
        **deployment.aws_environment(),
        **deployment.jwt_environment(),
        "ONNX_LAMBDA_MODELS": models_variable([published.source()]),
        "ONNX_LAMBDA_CACHE_DIR": str(scratch / "http-cache"),
        **({"ONNX_LAMBDA_INTRA_OP_THREADS": str(threads)} if threads else {}),
        **({"ONNX_LAMBDA_GRAPH_OPTIMIZATION": optimization} if optimization else {}),
    }
    raw_arguments = ["raw", "--model-dir", str(models_dir / model), "--threads", str(reference["threads"])]
    raw_arguments += ["--optimization", str(reference["level"]), "--spinning", "on" if reference["spinning"] else "off"]
    body = workloads.embeddings_body(model, workloads.SHORT_SENTENCE)
    raw_port, our_port = free_port(), free_port()
    log = scratch / "http-servers.log"
    results = []
    with (
        server(raw_arguments, base, raw_port, log, "/ready"),
        server(["ours"], ours_environment, our_port, log, "/v2/health/ready"),
    ):
        requests = {"raw": request_bytes(raw_port, body, None), "ours": request_bytes(our_port, body, token)}
        ports = {"raw": raw_port, "ours": our_port}
        for concurrency in CONCURRENCY:
            for side in ports:  # warm-up: connections, caches, the JWT verifier's key fetch
                load(ports[side], requests[side], concurrency, 30)
            probe, _ = load(our_port, requests["ours"], concurrency, 20)
            per_call = sorted(probe)[len(probe) // 2]
            rounds = 10
            # Each caller sends its requests one after another, so a round lasts about per_caller * per_call.
            per_caller = max(5, int(seconds / 2 / rounds / max(per_call, 1e-4)))
            samples: dict[str, list[float]] = {"raw": [], "ours": []}
            walls = {"raw": 0.0, "ours": 0.0}
            for round_number in range(rounds):
                for side in ("raw", "ours") if round_number % 2 == 0 else ("ours", "raw"):
                    latencies, wall = load(ports[side], requests[side], concurrency, per_caller)
                    samples[side].extend(latencies)
                    walls[side] += wall
            raw, ours = (summarize(samples[s], wall_seconds=walls[s]) for s in ("raw", "ours"))
            results.append(comparison("http", f"concurrency {concurrency}", 1, raw.as_dict(), ours.as_dict()))
            progress("http", f"concurrency {concurrency}", raw.p50_ms, ours.p50_ms)
    return results
