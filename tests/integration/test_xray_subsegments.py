"""The X-Ray subsegments the README promises, as the X-Ray daemon would receive them from the function.

The function runs as in Lambda with active tracing: the real runtime client, ``LAMBDA_TASK_ROOT`` set (so
the X-Ray SDK runs in Lambda mode, and ``observability.tracing_enabled()`` is true), no
``POWERTOOLS_TRACE_DISABLED``, and a trace header per invocation from which the SDK builds the facade
segment Lambda owns (``tests/integration/runtime_api.py``). The SDK's own UDP emitter sends to
``AWS_XRAY_DAEMON_ADDRESS``: here a UDP socket of the test, which reads the segment documents the daemon
would forward. Nothing is mocked; the SDK's global state lives in the function's process.
"""

from __future__ import annotations

import json
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from onnx_lambda_tools.invoke import function_environment
from tests.expected_events import load_event
from tests.integration.runtime_api import TracedFunction

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

#: X-Ray's UDP wire format: this header line, then one segment document.
DAEMON_HEADER = b'{"format":"json","version":1}\n'


@dataclass(frozen=True)
class TraceHeader:
    """What Lambda passes the runtime: the trace's root, the id of the function's segment, sampled."""

    root: str = field(default_factory=lambda: f"1-{int(time.time()):08x}-{secrets.token_hex(12)}")
    parent: str = field(default_factory=lambda: secrets.token_hex(8))

    def __str__(self) -> str:
        return f"Root={self.root};Parent={self.parent};Sampled=1"


@dataclass
class Daemon:
    """A UDP socket where the X-Ray daemon would listen; it keeps every (sub)segment it receives."""

    sock: socket.socket
    entities: list[dict[str, Any]] = field(default_factory=list)

    @property
    def address(self) -> str:
        host, port = self.sock.getsockname()
        return f"{host}:{port}"

    def drain(self) -> None:
        """Read what has arrived. The SDK sends before the handler returns, and loopback UDP is delivered at
        once, so after an invocation's response everything it traced is already here."""
        while True:
            try:
                datagram = self.sock.recv(65_536)
            except BlockingIOError:
                return
            assert datagram.startswith(DAEMON_HEADER), datagram[:100]
            self._add(json.loads(datagram[len(DAEMON_HEADER) :]), parent_id=None)

    def _add(self, entity: dict[str, Any], parent_id: str | None) -> None:
        # A streamed subsegment names its parent; one sent inside its parent's document doesn't.
        flat = {key: value for key, value in entity.items() if key != "subsegments"}
        flat.setdefault("parent_id", parent_id)
        self.entities.append(flat)
        for child in entity.get("subsegments", []):
            self._add({**child, "trace_id": entity.get("trace_id")}, parent_id=entity["id"])

    def trace(self, header: TraceHeader) -> list[dict[str, Any]]:
        return [entity for entity in self.entities if entity.get("trace_id") == header.root]


@dataclass(frozen=True)
class Traced:
    header: TraceHeader
    response: dict[str, Any]
    entities: list[dict[str, Any]]

    def named(self, name: str) -> list[dict[str, Any]]:
        return [entity for entity in self.entities if entity["name"] == name]


#: Invocations, in order: the first is the cold start. `infer-minilm-fastapi` is infer-minilm with an
#: escaped path, which the handler leaves to Mangum and FastAPI.
INVOCATIONS = ("embeddings", "infer-tabular", "infer-minilm", "infer-minilm-fastapi", "health-ready")
INFERENCE = ("embeddings", "infer-tabular", "infer-minilm", "infer-minilm-fastapi")


def event(name: str) -> dict[str, Any]:
    if name != "infer-minilm-fastapi":
        return load_event(name)
    escaped = load_event("infer-minilm")
    path = escaped["rawPath"].replace("-", "%2D")
    escaped["rawPath"] = escaped["requestContext"]["http"]["path"] = path
    return escaped


@pytest.fixture(scope="module")
def traces(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Traced]]:
    directory = tmp_path_factory.mktemp("xray")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        daemon = Daemon(sock)
        environment = {
            **function_environment(models_dir),
            "LAMBDA_TASK_ROOT": str(directory),
            "AWS_XRAY_DAEMON_ADDRESS": daemon.address,
        }
        traced: dict[str, Traced] = {}
        with TracedFunction(environment, directory / "function.log") as function:
            for name in INVOCATIONS:
                header = TraceHeader()
                response = function.invoke(event(name), str(header))
                daemon.drain()
                traced[name] = Traced(header, response, daemon.trace(header))
        daemon.drain()
        untraced = [entity for entity in daemon.entities if entity.get("trace_id") is None]
        assert not untraced, f"segments outside any invocation's trace: {untraced}"
        yield traced


def test_every_invocation_is_answered(traces: dict[str, Traced]) -> None:
    for name, traced in traces.items():
        assert traced.response["statusCode"] == 200, (name, traced.response)


@pytest.mark.parametrize("name", INVOCATIONS)
def test_the_handler_subsegment_hangs_from_lambdas_segment(traces: dict[str, Traced], name: str) -> None:
    """Powertools' ``## lambda_handler``, a child of the function segment Lambda owns (the header's Parent)."""
    traced = traces[name]
    (handler,) = traced.named("## lambda_handler")
    assert handler["parent_id"] == traced.header.parent
    assert handler["type"] == "subsegment"
    assert not handler.get("in_progress")
    assert handler["annotations"] == {"ColdStart": name == INVOCATIONS[0], "Service": "onnx-lambda"}


@pytest.mark.parametrize("name", INFERENCE)
def test_inference_is_a_subsegment_of_the_handler(traces: dict[str, Traced], name: str) -> None:
    traced = traces[name]
    (handler,) = traced.named("## lambda_handler")
    (inference,) = traced.named("## inference")
    assert inference["parent_id"] == handler["id"]
    assert handler["start_time"] <= inference["start_time"] <= inference["end_time"] <= handler["end_time"]


def test_a_request_without_inference_has_no_inference_subsegment(traces: dict[str, Traced]) -> None:
    assert [entity["name"] for entity in traces["health-ready"].entities] == ["## lambda_handler"]


@pytest.mark.parametrize("stage", ["## model fetch", "## session create"])
def test_init_stages_reach_xray_with_the_first_invocation(traces: dict[str, Traced], stage: str) -> None:
    """Init runs before Lambda hands the runtime a trace header, so X-Ray would discard subsegments begun
    then (aws/aws-xray-sdk-python#185): the stages are sent with the first invocation, at their own times,
    from Lambda's segment beside the handler's subsegment."""
    first = traces[INVOCATIONS[0]]
    stages = first.named(stage)
    assert {entity["annotations"]["model"] for entity in stages} == {"all-minilm-l6-v2", "breast-cancer-classifier"}
    (handler,) = first.named("## lambda_handler")
    for entity in stages:
        assert entity["parent_id"] == first.header.parent
        assert entity["start_time"] < entity["end_time"] <= handler["start_time"]
    for later in INVOCATIONS[1:]:
        assert not traces[later].named(stage), f"{later}: init's stages are sent once"
