"""A pool of Lambda execution environments: the real runtime, one invocation at a time each.

Each environment is a :class:`~onnx_lambda_tools.local.lambda_runtime.LambdaEnvironment` (the Runtime Interface
Emulator in front of ``python -m awslambdaric <CMD>``). The emulator serves one invocation at a time and
breaks on concurrent ones, so the pool never hands an environment to two requests. Like Lambda:

* a request takes the most recently used idle environment (warm), else starts a new one (cold start:
  the REPORT line carries its ``Init Duration``), up to ``max_concurrency``; past that it is throttled;
* an environment idle for ``idle_seconds`` is shut down;
* an environment whose invocation timed out or whose runtime died is discarded, so the next request
  gets a fresh one; an invocation the gateway gave up on (integration timeout) is stopped the same way.

The runtime initialises lazily, on the first invocation, so ``Init Duration`` is measured from the
environment's start until the runtime first asks for work (its first connection to the Runtime API,
seen in ``/proc/net/tcp``). Where ``/proc`` is missing the whole first invocation counts as init.

Every invocation, throttled ones included, is handed to the pool's ``listeners`` as an
:class:`InvocationRecord` once it is settled: the local monitoring turns those into Lambda's metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import itertools
import json
import logging
import math
import os
import select
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from onnx_lambda_tools.local.emulator.gateway import MAX_INVOKE_PAYLOAD_BYTES
from onnx_lambda_tools.local.lambda_runtime import INVOKE_PATH, LambdaEnvironment

log = logging.getLogger(__name__)

#: How often a cold invocation looks for the end of init.
_INIT_POLL_SECONDS: Final = 0.005
#: Past the function's timeout, how long to wait for the emulator's own timeout answer.
_INVOKE_GRACE_SECONDS: Final = 10.0
_TIMED_OUT_PREFIX: Final = b"Task timed out"
_PROC_NET_TCP: Final = Path("/proc/net/tcp")


@dataclass(frozen=True, slots=True)
class FunctionRuntime:
    """What every environment of one function is started with."""

    function_name: str
    environment: Mapping[str, str]
    memory_mb: int = 1769
    timeout_seconds: int = 30
    #: ``module.function``; ``None`` runs the Dockerfile's CMD, as the image does.
    handler: str | None = None
    #: One log file per environment here (like CloudWatch log streams); ``None`` discards function logs.
    log_dir: Path | None = None


class Outcome(StrEnum):
    SUCCESS = "success"  # the function returned a payload
    FUNCTION_ERROR = "function_error"  # unhandled exception, crash, function timeout, oversized response
    THROTTLED = "throttled"  # over max_concurrency
    INTEGRATION_TIMEOUT = "integration_timeout"  # the gateway stopped waiting


@dataclass(frozen=True, slots=True)
class Invocation:
    outcome: Outcome
    request_id: str
    payload: bytes = b""
    error_type: str | None = None
    cold: bool = False
    environment: int | None = None  # which environment served it (a serial number)


@dataclass(frozen=True, slots=True)
class InvocationRecord:
    """A settled invocation (or a throttled request), with what Lambda's metrics and REPORT line say of it."""

    function_name: str
    request_id: str
    outcome: Outcome
    timestamp: float  # epoch seconds, when it settled
    duration_ms: float | None = None  # None when throttled
    init_ms: float | None = None  # a cold start's Init Duration
    error_type: str | None = None
    concurrency: int = 0  # invocations in flight in this pool when it started, itself included
    memory_mb: int = 0
    max_memory_mb: int | None = None
    #: The log stream of the environment that served it (where its EMF lines are), if logs are kept.
    log_path: Path | None = None


InvocationListener = Callable[[InvocationRecord], None]


@dataclass
class PoolStats:
    cold_starts: int = 0
    invocations: int = 0
    throttles: int = 0
    function_errors: int = 0
    timeouts: int = 0
    #: Environments discarded after a timeout or a crash.
    replaced: int = 0
    reaped: int = 0


@dataclass(eq=False)
class _Environment:
    serial: int
    runtime: LambdaEnvironment
    directory: Path
    log_path: Path | None = None
    last_used: float = field(default_factory=time.monotonic)
    invocations: int = 0


@dataclass(eq=False)
class _Call:
    """One invocation in flight, shared between the event loop and the worker thread."""

    request_id: str
    event: bytes
    environment: _Environment | None
    cold: bool = False
    abandoned: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.perf_counter)
    init_ms: float | None = None
    duration_ms: float = 0.0
    max_memory_mb: int | None = None
    status: int = 0
    payload: bytes = b""
    error_type: str | None = None
    discard: bool = False
    concurrency: int = 0


StartEnvironment = Callable[[FunctionRuntime, Path, Path | None], LambdaEnvironment]


def start_environment(runtime: FunctionRuntime, directory: Path, log_path: Path | None) -> LambdaEnvironment:
    """One environment with its own ``/tmp`` (``TMPDIR``) and model cache, as each Lambda sandbox has."""
    environment = {
        **runtime.environment,
        "TMPDIR": str(directory),
        "ONNX_LAMBDA_CACHE_DIR": str(directory / "onnx-lambda-cache"),
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{runtime.function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": log_path.name if log_path else "local",
    }
    return LambdaEnvironment(
        environment,
        handler=runtime.handler,
        memory_mb=runtime.memory_mb,
        timeout_seconds=runtime.timeout_seconds,
        function_name=runtime.function_name,
        log_path=log_path,
    )


class EnvironmentPool:
    """Execution environments of one function, started on demand up to ``max_concurrency``."""

    def __init__(
        self,
        runtime: FunctionRuntime,
        *,
        max_concurrency: int = 4,
        idle_seconds: float = 300.0,
        start: StartEnvironment = start_environment,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.runtime = runtime
        self.max_concurrency = max_concurrency
        self.idle_seconds = idle_seconds
        self.stats = PoolStats()
        self.listeners: list[InvocationListener] = []
        self._start = start
        self._idle: list[_Environment] = []  # most recently used last
        self._in_flight: set[_Call] = set()  # invocations holding (or starting) an environment
        self._serials = itertools.count(1)
        self._started = time.strftime("%Y-%m-%dT%H-%M-%S")  # names this run's log files
        self._closed = False
        self._scratch = tempfile.TemporaryDirectory(prefix="onnx-lambda-envs-")
        # Each in-flight invocation blocks one thread; a few more stop environments meanwhile.
        self._executor = ThreadPoolExecutor(max_workers=max_concurrency + 4, thread_name_prefix="lambda-env")

    @property
    def environments(self) -> int:
        """Environments alive or starting (idle and busy)."""
        return len(self._idle) + len(self._in_flight)

    @property
    def busy(self) -> int:
        return len(self._in_flight)

    async def invoke(self, event: bytes, *, integration_timeout: float) -> Invocation:
        """Run one invocation on an environment of its own; throttled when none is free and none may start."""
        request_id = str(uuid.uuid4())
        if self._closed:
            raise RuntimeError("the pool is closed")
        environment = self._idle.pop() if self._idle else None
        if environment is None and self.environments >= self.max_concurrency:
            self.stats.throttles += 1
            log.info("Throttled %s: all %d environments are busy", request_id, self.max_concurrency)
            self._tell(InvocationRecord(self.runtime.function_name, request_id, Outcome.THROTTLED, time.time()))
            return Invocation(Outcome.THROTTLED, request_id)
        self.stats.invocations += 1
        call = _Call(request_id, event, environment)
        self._in_flight.add(call)
        call.concurrency = len(self._in_flight)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._run, call)
        done, _ = await asyncio.wait({future}, timeout=integration_timeout)
        if done:
            return self._settle(call)
        # The gateway stops waiting; the environment is stopped, which ends the blocked call.
        self.stats.timeouts += 1
        self._abandon(call)
        future.add_done_callback(lambda _: self._settle(call))
        log.warning("%s: no response within the %.1f s integration timeout", request_id, integration_timeout)
        serial = call.environment.serial if call.environment else None
        return Invocation(Outcome.INTEGRATION_TIMEOUT, request_id, cold=call.cold, environment=serial)

    async def reap_idle(self) -> int:
        """Shut down environments idle for longer than ``idle_seconds``; how many were."""
        cutoff = time.monotonic() - self.idle_seconds
        stale = [environment for environment in self._idle if environment.last_used <= cutoff]
        for environment in stale:
            self._idle.remove(environment)
            log.info("Shutting down environment %d after %.0f s idle", environment.serial, self.idle_seconds)
        self.stats.reaped += len(stale)
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self._executor, _stop, e) for e in stale))
        return len(stale)

    async def reap_forever(self) -> None:
        interval = max(0.2, min(self.idle_seconds / 4, 30.0))
        while True:
            await asyncio.sleep(interval)
            await self.reap_idle()

    async def close(self) -> None:
        """Stop every environment; invocations still running are stopped as they finish."""
        self._closed = True
        for call in list(self._in_flight):
            self._abandon(call)
        idle, self._idle = self._idle, []
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self._executor, _stop, e) for e in idle))
        self._executor.shutdown(wait=True)
        self._scratch.cleanup()

    # --- the worker thread -----------------------------------------------------------------------

    def _run(self, call: _Call) -> None:
        try:
            if call.environment is None:
                call.cold = True
                call.environment = self._new_environment()
                if call.abandoned.is_set():
                    _stop(call.environment)
                    return
            self._invoke(call, call.environment)
        except Exception as error:  # the runtime died, or never started: a crash, as Lambda reports it
            call.status, call.error_type, call.discard = 0, "Runtime.ExitError", True
            if not call.abandoned.is_set():
                log.warning(
                    "%s: the execution environment failed: %s: %s", call.request_id, type(error).__name__, error
                )

    def _new_environment(self) -> _Environment:
        serial = next(self._serials)
        directory = Path(self._scratch.name) / f"env-{serial}"
        directory.mkdir(parents=True)
        log_path = None
        if self.runtime.log_dir is not None:
            self.runtime.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.runtime.log_dir / f"{self._started}-environment-{serial:04d}.log"
        return _Environment(serial, self._start(self.runtime, directory, log_path), directory, log_path)

    def _invoke(self, call: _Call, environment: _Environment) -> None:
        runtime = environment.runtime
        connection = http.client.HTTPConnection(
            "127.0.0.1", runtime.port, timeout=self.runtime.timeout_seconds + _INVOKE_GRACE_SECONDS
        )
        try:
            earlier = _connections_to(runtime.runtime_api_port) if call.cold else set()
            sent = time.perf_counter()
            connection.request("POST", INVOKE_PATH, body=call.event, headers={"content-type": "application/json"})
            if call.cold:
                init_done = _wait_for_init(connection, runtime.runtime_api_port, earlier)
                call.init_ms = ((init_done or time.perf_counter()) - call.started) * 1000
                sent = init_done or time.perf_counter()
            response = connection.getresponse()
            body = response.read()
            call.duration_ms = (time.perf_counter() - sent) * 1000
            call.status = response.status
            call.max_memory_mb = _max_memory_mb(runtime.process.pid)
            self._classify(
                call, response.getheader("content-type", ""), response.getheader("x-amz-function-error"), body
            )
        finally:
            connection.close()
        environment.invocations += 1

    def _classify(self, call: _Call, content_type: str, function_error: str | None, body: bytes) -> None:
        if call.status == 200 and content_type.startswith("text/plain") and body.startswith(_TIMED_OUT_PREFIX):
            call.error_type, call.discard = "Sandbox.Timedout", True
            return
        document: Any = None
        with contextlib.suppress(ValueError):
            document = json.loads(body)
        error_type = document.get("errorType") if isinstance(document, dict) else None
        if call.status != 200:
            call.error_type, call.discard = str(error_type or f"Runtime.InvokeStatus{call.status}"), True
        elif function_error is not None or (error_type and "statusCode" not in document):
            call.error_type = str(error_type or function_error)
        elif len(body) > MAX_INVOKE_PAYLOAD_BYTES:
            call.error_type = "Function.ResponseSizeTooLarge"
        else:
            call.payload = body

    # --- back on the event loop ------------------------------------------------------------------

    def _settle(self, call: _Call) -> Invocation:
        self._in_flight.discard(call)
        environment = call.environment
        abandoned = call.abandoned.is_set()
        if call.cold and environment is not None:
            self.stats.cold_starts += 1
        if environment is not None:
            if abandoned or call.discard or self._closed:
                if not abandoned:  # an abandoned one is being stopped already
                    self._stop_later(environment)
                if (abandoned or call.discard) and not self._closed:
                    self.stats.replaced += 1
            else:
                environment.last_used = time.monotonic()
                self._idle.append(environment)
        if call.error_type is not None and not abandoned:
            self.stats.function_errors += 1
            if call.error_type == "Sandbox.Timedout":
                self.stats.timeouts += 1
        duration = self._report(call, abandoned)
        if abandoned:
            outcome = Outcome.INTEGRATION_TIMEOUT
        else:
            outcome = Outcome.SUCCESS if call.error_type is None else Outcome.FUNCTION_ERROR
        self._tell(
            InvocationRecord(
                self.runtime.function_name,
                call.request_id,
                outcome,
                time.time(),
                duration_ms=duration,
                init_ms=call.init_ms,
                error_type=call.error_type or ("Sandbox.Timedout" if abandoned else None),
                concurrency=call.concurrency,
                memory_mb=self.runtime.memory_mb,
                max_memory_mb=call.max_memory_mb,
                log_path=environment.log_path if environment else None,
            )
        )
        serial = environment.serial if environment else None
        if outcome is Outcome.SUCCESS:
            return Invocation(Outcome.SUCCESS, call.request_id, call.payload, cold=call.cold, environment=serial)
        return Invocation(outcome, call.request_id, error_type=call.error_type, cold=call.cold, environment=serial)

    def _tell(self, record: InvocationRecord) -> None:
        for listener in self.listeners:
            try:
                listener(record)
            except Exception:  # monitoring must never fail an invocation
                log.exception("%s: an invocation listener failed", record.request_id)

    def _report(self, call: _Call, abandoned: bool) -> float:
        """Lambda's REPORT line: one per invocation; a cold start's carries ``Init Duration``. The duration."""
        if abandoned:
            duration = (time.perf_counter() - call.started) * 1000 - (call.init_ms or 0.0)
        else:
            duration = call.duration_ms
        parts = [
            f"REPORT RequestId: {call.request_id}",
            f"Duration: {duration:.2f} ms",
            f"Billed Duration: {max(1, math.ceil(duration))} ms",
            f"Memory Size: {self.runtime.memory_mb} MB",
        ]
        if call.max_memory_mb is not None:
            parts.append(f"Max Memory Used: {call.max_memory_mb} MB")
        if call.init_ms is not None:
            parts.append(f"Init Duration: {call.init_ms:.2f} ms")
        if abandoned or call.error_type == "Sandbox.Timedout":
            parts.append("Status: timeout")
        elif call.error_type is not None:
            parts.append(f"Status: error\tError Type: {call.error_type}")
        log.info("\t".join(parts))
        return duration

    def _abandon(self, call: _Call) -> None:
        call.abandoned.set()
        if call.environment is not None:  # else _run stops it as soon as it has started
            self._stop_later(call.environment)

    def _stop_later(self, environment: _Environment) -> None:
        self._executor.submit(_stop, environment)


def _stop(environment: _Environment) -> None:
    """Stop the emulator and make sure its runtime process went with it."""
    runtime_pids = _runtime_pids(environment.runtime.process.pid)
    environment.runtime.stop()
    for pid in runtime_pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _wait_for_init(connection: http.client.HTTPConnection, runtime_api_port: int, earlier: set[str]) -> float | None:
    """When the runtime, started by this first invocation, first connected to the Runtime API.

    ``earlier``: connections to that port that existed before (another process's, a closed one's).
    """
    sock = connection.sock
    if sock is None or not _PROC_NET_TCP.exists():
        return None
    while True:
        readable, _, _ = select.select([sock], [], [], _INIT_POLL_SECONDS)
        if _connections_to(runtime_api_port) - earlier:
            return time.perf_counter()
        if readable:  # answered (or failed) before init was seen: count it all as init
            return None


def _connections_to(port: int) -> set[str]:
    """The local ends of the TCP connections to ``127.0.0.1:port``, in any state."""
    suffix = f":{port:04X}"
    ends: set[str] = set()
    with contextlib.suppress(OSError):
        for line in _PROC_NET_TCP.read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 2 and fields[2].endswith(suffix):
                ends.add(fields[1])
    return ends


def _runtime_pids(emulator_pid: int) -> list[int]:
    pids: list[int] = []
    with contextlib.suppress(OSError):
        for children in Path(f"/proc/{emulator_pid}/task").glob("*/children"):
            pids.extend(int(pid) for pid in children.read_text().split())
    return pids


def _max_memory_mb(emulator_pid: int) -> int | None:
    """The runtime's peak resident memory (``VmHWM``), which is what Lambda reports as Max Memory Used."""
    peak_kb = 0
    for pid in _runtime_pids(emulator_pid):
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kb = max(peak_kb, int(line.split()[1]))
    return math.ceil(peak_kb / 1024) if peak_kb else None
