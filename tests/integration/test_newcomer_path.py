"""The README's first section as a newcomer runs it: `make serve`, then the commands it prints.

The commands are read from what `make serve` prints and run as printed, so the README, the banner and
the service can't drift apart. Then Ctrl-C, and a second `make serve` must start cleanly again.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from onnx_lambda_tools.local.cloud import port_is_free

ROOT = Path(__file__).resolve().parents[2]


class Serve:
    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.log = log
        self.port = port
        self.handle = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            ["make", "-s", "serve", f"PORT={port}"],
            cwd=ROOT,
            env=env,
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_for_banner(self, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text()
            if "Ctrl-C stops everything" in text:
                return text
            if self.process.poll() is not None:
                pytest.fail(f"make serve exited with {self.process.returncode}:\n{text}")
            time.sleep(0.2)
        pytest.fail(f"make serve printed no banner:\n{self.log.read_text()}")

    def stop(self) -> int:
        """Ctrl-C to the whole process group, as a terminal sends it; then wait until its ports are free."""
        try:
            os.killpg(self.process.pid, signal.SIGINT)
            code = self.process.wait(timeout=20)
        finally:
            self.handle.close()
        deadline = time.monotonic() + 20
        while not all(port_is_free("127.0.0.1", port) for port in (self.port, self.port + 1)):
            assert time.monotonic() < deadline, "make serve left a port bound after Ctrl-C"
            time.sleep(0.1)
        return code


@pytest.fixture
def newcomer_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "ONNX_LAMBDA_STATE_FILE": str(tmp_path / "local-stack.json"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }


@pytest.fixture
def port() -> int:
    """A port for the API with the next one (make serve's local AWS) free too, below the kernel's ephemeral
    range, so no outgoing connection of this machine can be holding either when serve binds them."""
    rng = random.Random()
    while True:
        candidate = rng.randrange(20_000, 32_000)
        if port_is_free("127.0.0.1", candidate) and port_is_free("127.0.0.1", candidate + 1):
            return candidate


@pytest.fixture
def serve(newcomer_env: dict[str, str], port: int, tmp_path: Path) -> Iterator[Serve]:
    server = Serve(newcomer_env, port, tmp_path / "serve.log")
    yield server
    if server.process.poll() is None:
        server.stop()


def printed_commands(banner: str) -> str:
    """The shell lines of the banner: the TOKEN= line and the curl commands (with their continuations)."""
    lines = banner.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("TOKEN="))
    script: list[str] = []
    for line in lines[start:]:
        stripped = line.strip()
        if not stripped or not (stripped.startswith(("TOKEN=", "curl")) or (script and script[-1].endswith("\\"))):
            if script and not script[-1].endswith("\\"):
                break
            continue
        script.append(stripped)
    return "\n".join(script)


def test_make_serve_then_the_printed_commands(
    serve: Serve, newcomer_env: dict[str, str], port: int, tmp_path: Path
) -> None:
    banner = serve.wait_for_banner()
    script = printed_commands(banner)
    assert "/v1/embeddings" in script
    assert "/infer" in script
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        env=newcomer_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    documents = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    embeddings = next(d for d in documents if d.get("object") == "list")
    assert len(embeddings["data"][0]["embedding"]) == 384
    infer = next(d for d in documents if "outputs" in d)
    assert {o["name"] for o in infer["outputs"]} == {"label", "probabilities"}

    # A second `make serve` on the same port gets a clear message, not a traceback.
    second = subprocess.run(
        ["make", "-s", "serve", f"PORT={port}"], cwd=ROOT, env=newcomer_env, capture_output=True, text=True, timeout=60
    )
    assert second.returncode != 0
    assert f"port {port}" in second.stdout + second.stderr
    assert "in use" in second.stdout + second.stderr
    assert "Traceback" not in second.stdout + second.stderr

    serve.stop()
    assert re.search(r"Traceback", serve.log.read_text()) is None

    # ...and once stopped, a fresh `make serve` on the same ports comes up again.
    again = Serve(newcomer_env, port, tmp_path / "again.log")
    try:
        again.wait_for_banner()
    finally:
        if again.process.poll() is None:
            again.stop()
