"""The HTTP front: API Gateway (HTTP API, payload format 2.0) in front of the environment pools.

A small raw ASGI app served by uvicorn. For each request it does what API Gateway does, in its order:
check the request size, match a route from ``template.yaml`` (404 if none), run the JWT authorizer on
routes that have one (401/403), build the v2 event with
:func:`~onnx_lambda_tools.local.events.build_event` (the same builder as ``events/``), check the Lambda
payload limit (413), invoke the route's function on its pool (429 when throttled, 503 past the
integration timeout), and map the function's response back to HTTP (500 on a function error).

Each answered request is handed to the app's ``listeners`` as a :class:`RequestRecord` (status, latency,
integration latency): the local monitoring turns those into API Gateway's metrics. ``faults`` is the
emulator's fault switch (:mod:`.faults`), armed from the local monitoring port, never from the API.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from onnx_lambda.auth import JwtVerifier
from onnx_lambda_tools.local.emulator import gateway
from onnx_lambda_tools.local.emulator.faults import INJECTED_FAULT_EVENT, FaultSwitch
from onnx_lambda_tools.local.emulator.gateway import Authorized, GatewayResponse, MalformedResponse, gateway_error
from onnx_lambda_tools.local.emulator.pool import EnvironmentPool, FunctionRuntime, Outcome
from onnx_lambda_tools.local.emulator.routes import HttpApi, RouteMatch, load_http_api
from onnx_lambda_tools.local.events import build_event
from onnx_lambda_tools.local.lambda_runtime import image_cmd

log = logging.getLogger(__name__)

#: Headers API Gateway sets itself; a client's own values never reach the function.
_GATEWAY_HEADERS = frozenset({"x-forwarded-for", "x-forwarded-proto", "x-forwarded-port"})


class _TooLarge(Exception):
    pass


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One answered request, as API Gateway's metrics see it."""

    request_id: str
    method: str
    path: str
    route_key: str | None  # None when no route matched
    status: int
    timestamp: float  # epoch seconds, when the answer was ready
    latency_ms: float  # from the request's arrival to its answer
    integration_latency_ms: float | None  # the function's part; None when no function was called


RequestListener = Callable[[RequestRecord], None]


@dataclass(slots=True)
class _Exchange:
    route_key: str | None = None
    integration_ms: float | None = None


class GatewayApp:
    """API Gateway's request path, as an ASGI app (lifespan starts the reapers and stops the pools)."""

    def __init__(
        self,
        api: HttpApi,
        pools: Mapping[str, EnvironmentPool],
        verifier: JwtVerifier | None,
        *,
        region: str = "us-east-1",
        integration_timeout_seconds: float | None = None,
    ) -> None:
        if verifier is None and any(route.authorizer for route in api.routes):
            raise ValueError("the template's routes use a JWT authorizer: a verifier is required")
        self.api = api
        self.pools = dict(pools)
        self._verifier = verifier
        self._region = region
        self._integration_timeout = integration_timeout_seconds
        self._reapers: list[asyncio.Task[None]] = []
        self.listeners: list[RequestListener] = []
        self.faults = FaultSwitch()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            response = await self._handle(scope, receive)
            headers = [*response.headers, ("content-length", str(len(response.body)))]
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers],
                }
            )
            await send({"type": "http.response.body", "body": response.body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._reapers = [asyncio.create_task(pool.reap_forever()) for pool in self.pools.values()]
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def close(self) -> None:
        for reaper in self._reapers:
            reaper.cancel()
        await asyncio.gather(*self._reapers, return_exceptions=True)
        await asyncio.gather(*(pool.close() for pool in self.pools.values()))

    async def _handle(self, scope: Scope, receive: Receive) -> GatewayResponse:
        started = time.perf_counter()
        request_id = base64.b64encode(secrets.token_bytes(11)).decode()
        exchange = _Exchange()
        try:
            response = await self._respond(scope, receive, request_id, exchange)
        except Exception:  # a bug here must look like API Gateway's 500, not leak a trace
            log.exception("%s: the emulator failed", request_id)
            response = gateway_error(gateway.FUNCTION_ERROR)
        response.headers.append(("apigw-requestid", request_id))
        record = RequestRecord(
            request_id=request_id,
            method=scope["method"],
            path=scope["path"],
            route_key=exchange.route_key,
            status=response.status,
            timestamp=time.time(),
            latency_ms=(time.perf_counter() - started) * 1000,
            integration_latency_ms=exchange.integration_ms,
        )
        for listener in self.listeners:
            try:
                listener(record)
            except Exception:  # monitoring must never fail a request
                log.exception("%s: a request listener failed", request_id)
        return response

    async def _respond(self, scope: Scope, receive: Receive, request_id: str, exchange: _Exchange) -> GatewayResponse:
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]]
        declared = next((value for name, value in headers if name == "content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > gateway.MAX_REQUEST_BYTES:
            return gateway_error(gateway.PAYLOAD_TOO_LARGE)
        method: str = scope["method"]
        matched = self.api.match(method, scope["path"])
        if matched is None:
            return gateway_error(gateway.NOT_FOUND)
        exchange.route_key = matched.route.key
        try:
            body = await _read_body(receive, gateway.MAX_REQUEST_BYTES)
        except _TooLarge:
            return gateway_error(gateway.PAYLOAD_TOO_LARGE)
        authorized: Authorized | None = None
        if matched.route.authorizer is not None:
            assert self._verifier is not None
            authorization = next((value for name, value in headers if name == "authorization"), None)
            outcome = await asyncio.to_thread(gateway.authorize, self._verifier, authorization, matched.route.scopes)
            if isinstance(outcome, GatewayResponse):
                return outcome
            authorized = outcome
        event = self._event(scope, headers, body, matched, authorized, request_id)
        payload = json.dumps(event, separators=(",", ":")).encode()
        if len(payload) > gateway.MAX_INVOKE_PAYLOAD_BYTES:
            return gateway_error(gateway.PAYLOAD_TOO_LARGE)
        return await self._integrate(matched, payload, exchange)

    def _event(
        self,
        scope: Scope,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        matched: RouteMatch,
        authorized: Authorized | None,
        request_id: str,
    ) -> dict[str, Any]:
        client_ip = (scope.get("client") or ("127.0.0.1", 0))[0]
        server_port = (scope.get("server") or ("127.0.0.1", 80))[1]
        forwarded = [
            ("x-forwarded-for", client_ip),
            ("x-forwarded-proto", scope.get("scheme", "http")),
            ("x-forwarded-port", str(server_port)),
        ]
        event = build_event(
            method=scope["method"],
            path=scope["path"],
            route_key=matched.route.key,
            headers=[*(h for h in headers if h[0] not in _GATEWAY_HEADERS), *forwarded],
            query_string=scope["query_string"].decode("latin-1"),
            body=body,
            path_parameters=matched.path_parameters,
            claims=authorized.claims if authorized else None,
            scopes=authorized.scopes if authorized else None,
            source_ip=client_ip,
            request_id=request_id,
            region=self._region,
        )
        raw_path = scope.get("raw_path")
        if raw_path:
            event["rawPath"] = raw_path.decode("latin-1")
        return event

    async def _integrate(self, matched: RouteMatch, payload: bytes, exchange: _Exchange) -> GatewayResponse:
        pool = self.pools.get(matched.route.function)
        if pool is None:
            log.error("%s: no local runtime for function %s", matched.route.key, matched.route.function)
            return gateway_error(gateway.FUNCTION_ERROR)
        timeout = matched.route.integration_timeout_seconds
        if self._integration_timeout is not None:
            timeout = min(timeout, self._integration_timeout)
        if self.faults.take_function_error():
            log.warning("%s: injecting a function error (the emulator's fault switch)", matched.route.key)
            payload = INJECTED_FAULT_EVENT
        started = time.perf_counter()
        invocation = await pool.invoke(payload, integration_timeout=timeout)
        exchange.integration_ms = (time.perf_counter() - started) * 1000
        if invocation.outcome is Outcome.THROTTLED:
            return gateway_error(gateway.THROTTLED)
        if invocation.outcome is Outcome.INTEGRATION_TIMEOUT:
            return gateway_error(gateway.INTEGRATION_TIMEOUT)
        if invocation.outcome is Outcome.FUNCTION_ERROR:
            log.warning("%s: function error %s", invocation.request_id, invocation.error_type)
            return gateway_error(gateway.FUNCTION_ERROR)
        try:
            return gateway.http_response(invocation.payload)
        except MalformedResponse as error:
            log.warning("%s: the function's response is malformed: %s", invocation.request_id, error)
            return gateway_error(gateway.FUNCTION_ERROR)


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def build_gateway(
    template: Path,
    *,
    environment: Mapping[str, str],
    verifier: JwtVerifier | None,
    max_concurrency: int = 4,
    idle_seconds: float = 300.0,
    log_dir: Path | None = None,
    handler: str | None = None,
    parameters: Mapping[str, str] | None = None,
    region: str = "us-east-1",
    integration_timeout_seconds: float | None = None,
    function_timeout_seconds: int | None = None,
) -> GatewayApp:
    """The local API for ``template``: one pool per function behind its HttpApi routes.

    ``environment`` adds to (and overrides) each function's template environment, e.g. the model URIs
    and the local S3 endpoint; ``handler`` and ``function_timeout_seconds`` override the template's
    (for tests). Image functions run their Dockerfile's CMD; zip functions need ``handler``.
    """
    api = load_http_api(template, parameters)
    pools: dict[str, EnvironmentPool] = {}
    for spec in api.functions.values():
        missing = [name for name in spec.unresolved_environment if name not in environment]
        if missing:
            log.warning("%s: no local value for %s (set only when deployed)", spec.logical_id, ", ".join(missing))
        command = handler
        if command is None and spec.dockerfile is not None:
            command = image_cmd(template.parent / spec.dockerfile)
        if command is None:
            log.warning("%s: a zip function's code is not run locally; its routes answer 500", spec.logical_id)
            continue
        runtime = FunctionRuntime(
            function_name=spec.function_name,
            environment={**spec.environment, **environment},
            memory_mb=spec.memory_mb,
            timeout_seconds=function_timeout_seconds or spec.timeout_seconds,
            handler=command,
            log_dir=log_dir / spec.logical_id if log_dir else None,
        )
        limit = min(max_concurrency, spec.reserved_concurrency or max_concurrency)
        pools[spec.logical_id] = EnvironmentPool(runtime, max_concurrency=limit, idle_seconds=idle_seconds)
    return GatewayApp(api, pools, verifier, region=region, integration_timeout_seconds=integration_timeout_seconds)


def serve_gateway(app: GatewayApp, *, host: str, port: int, extra: tuple[ASGIApp, str, int] | None = None) -> None:
    """Serve until interrupted; the environments are stopped on the way out. ``extra``: another app (the
    monitoring port), served by the same process on ``(host, port)`` until the API stops."""
    import uvicorn

    def config(served: ASGIApp, bind: str, on: int) -> uvicorn.Config:
        return uvicorn.Config(
            served, host=bind, port=on, log_level="warning", access_log=False, server_header=False, lifespan="on"
        )

    if extra is None:
        uvicorn.Server(config(app, host, port)).run()
        return

    class _Quiet(uvicorn.Server):
        """Leaves the signals to ``both``, which stops the two servers together."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    servers = (_Quiet(config(app, host, port)), _Quiet(config(*extra)))

    async def both() -> None:
        def stop() -> None:
            for server in servers:
                server.should_exit = True

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        tasks = [asyncio.create_task(server.serve()) for server in servers]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        stop()  # one stopped (or failed to start): so does the other
        await asyncio.gather(*tasks)

    asyncio.run(both())
