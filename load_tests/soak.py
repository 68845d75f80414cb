"""``make soak``: the local stack under steady load for 10 minutes, then the checks that catch slow leaks.

It starts ``onnx-lambda serve`` exactly as ``make load`` does (``run_local.local_stack``), drives it with
the load test's own users and request mix (``locustfile.py``, where an invalid request passes only when
it gets its expected 4xx), samples the API process's resident memory and open file descriptors every
few seconds, and records every request's latency by minute (``soak_recorder.py``). Then it checks:

* zero unexpected errors: no request failed (wrong status, bad body, connection error);
* memory: RSS in the last minute is under 5 % above RSS in the first minute after the warm-up;
* file descriptors: the last minute never holds more than the first minute after the warm-up did;
* latency: the p99 of the last minute is within 1.2 x the p99 of the first minute after the warm-up.

The first minute is the warm-up (caches, allocator arenas, the JWKS fetch) and is left out of every
comparison. The figures go to ``<reports>/soak.json`` and the terminal; the exit status is 0 when every
check passes, 1 when one fails, 2 when the stack or locust could not run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import psutil  # type: ignore[import-untyped]  # locust brings psutil, not its stubs
from run_local import HERE, ROOT, StackError, check_token, local_stack

RSS_GROWTH_LIMIT: Final = 0.05
P99_RATIO_LIMIT: Final = 1.2
SAMPLE_SECONDS: Final = 5.0


@dataclass(frozen=True)
class Sample:
    seconds: float
    rss_bytes: int
    open_fds: int


def api_process(url: str) -> psutil.Process:
    """The process listening on the API's port: the uvicorn server that ``serve`` runs in-process."""
    port = int(url.rsplit(":", 1)[1])
    for connection in psutil.net_connections(kind="tcp"):
        if connection.status == psutil.CONN_LISTEN and connection.laddr and connection.laddr.port == port:
            if connection.pid is None:
                break
            return psutil.Process(connection.pid)
    raise StackError(f"no process is listening on port {port}")


class Sampler(threading.Thread):
    """Samples RSS and open fds of one process until stopped."""

    def __init__(self, process: psutil.Process) -> None:
        super().__init__(name="soak-sampler", daemon=True)
        self.process = process
        self.samples: list[Sample] = []
        self._stopping = threading.Event()
        self._origin = time.monotonic()

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                with self.process.oneshot():
                    rss, fds = self.process.memory_info().rss, self.process.num_fds()
            except psutil.Error:  # the stack is stopping
                return
            self.samples.append(Sample(time.monotonic() - self._origin, rss, fds))
            self._stopping.wait(SAMPLE_SECONDS)

    def stop(self) -> None:
        self._stopping.set()
        self.join()


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: the value at or below which ``fraction`` of the values lie."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def median(values: Sequence[int]) -> float:
    return percentile(values, 0.5)


def evaluate(
    record: dict[str, Any], samples: list[Sample], total_seconds: float, warmup_seconds: float
) -> dict[str, Any]:
    """The soak's figures and verdicts from the per-minute record and the process samples."""
    minutes = {entry["minute"]: entry for entry in record["minutes"]}
    first, last = int(warmup_seconds // 60), int(total_seconds // 60) - 1
    failures = [failure for entry in record["minutes"] for failure in entry["failures"]]
    requests = sum(len(entry["latencies_ms"]) for entry in record["minutes"])
    p99_first = percentile(minutes.get(first, {}).get("latencies_ms", []), 0.99)
    p99_last = percentile(minutes.get(last, {}).get("latencies_ms", []), 0.99)
    early = [s for s in samples if warmup_seconds <= s.seconds < warmup_seconds + 60]
    late = [s for s in samples if s.seconds >= total_seconds - 60]
    rss_early, rss_late = median([s.rss_bytes for s in early]), median([s.rss_bytes for s in late])
    fds_early, fds_late = max((s.open_fds for s in early), default=0), max((s.open_fds for s in late), default=0)
    checks = {
        "zero unexpected errors": not failures,
        f"RSS growth after warm-up < {RSS_GROWTH_LIMIT:.0%}": rss_late < rss_early * (1 + RSS_GROWTH_LIMIT),
        "no file-descriptor growth": fds_late <= fds_early,
        f"last-minute p99 <= {P99_RATIO_LIMIT} x first minute": p99_last <= P99_RATIO_LIMIT * p99_first,
    }
    return {
        "requests": requests,
        "failures": len(failures),
        "failure_examples": failures[:10],
        "requests_per_minute": {str(m): len(minutes[m]["latencies_ms"]) for m in sorted(minutes)},
        "p50_ms_per_minute": {str(m): round(percentile(minutes[m]["latencies_ms"], 0.5), 2) for m in sorted(minutes)},
        "p99_ms_per_minute": {str(m): round(percentile(minutes[m]["latencies_ms"], 0.99), 2) for m in sorted(minutes)},
        "p99_first_minute_ms": round(p99_first, 2),
        "p99_last_minute_ms": round(p99_last, 2),
        "p99_ratio": round(p99_last / p99_first, 3) if p99_first else math.nan,
        "rss_first_minute_mib": round(rss_early / 2**20, 1),
        "rss_last_minute_mib": round(rss_late / 2**20, 1),
        "rss_growth": round(rss_late / rss_early - 1, 4) if rss_early else math.nan,
        "fds_first_minute": fds_early,
        "fds_last_minute": fds_late,
        "checks": checks,
        "samples": [asdict(sample) for sample in samples],
    }


def run_locust(url: str, env: dict[str, str], users: int, seconds: int) -> int:
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        f"{HERE / 'locustfile.py'},{HERE / 'soak_recorder.py'}",
        "--headless",
        "--host",
        url,
        "--users",
        str(users),
        "--spawn-rate",
        str(users),
        "--run-time",
        f"{seconds}s",
        "--stop-timeout",
        "10",
        "--only-summary",
        "--loglevel",
        "WARNING",
    ]
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode  # noqa: S603 - locust, fixed arguments


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the run, warm-up included (default 10)")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds left out of the comparisons (default 60)")
    parser.add_argument("--users", type=int, default=16, help="locust users (default 16)")
    parser.add_argument("--reports", type=Path, default=HERE / "reports", help="where soak.json goes")
    args = parser.parse_args(argv)
    total_seconds = int(args.minutes * 60)
    if total_seconds < args.warmup + 120:
        parser.error("the run must last at least the warm-up plus two minutes")

    args.reports.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="onnx-lambda-soak-") as home:
        record_path = Path(home) / "record.json"
        env = {
            **os.environ,
            "ONNX_LAMBDA_STATE_FILE": str(Path(home) / "local-stack.json"),
            "XDG_CACHE_HOME": str(Path(home) / "cache"),
            "PYTHONUNBUFFERED": "1",
            "SOAK_RECORD": str(record_path),
        }
        env.pop("ONNX_LAMBDA_TOKEN", None)
        env.pop("ONNX_LAMBDA_TOKEN_URL", None)
        with open(args.reports / "soak-serve.log", "wb") as log:
            try:
                with local_stack(env, log) as url:
                    check_token(url, env)
                    sampler = Sampler(api_process(url))
                    sampler.start()
                    print(f"soak: {args.users} users for {total_seconds} s against {url}", flush=True)
                    status = run_locust(url, env, args.users, total_seconds)
                    sampler.stop()
            except StackError as error:
                print(f"make soak: {error}", file=sys.stderr)
                return 2
        if not record_path.exists():
            print(f"make soak: locust exited with status {status} and wrote no record", file=sys.stderr)
            return 2
        record = json.loads(record_path.read_text())
    result = evaluate(record, sampler.samples, total_seconds, args.warmup)
    (args.reports / "soak.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({key: value for key, value in result.items() if key != "samples"}, indent=2))
    for name, passed in result["checks"].items():
        print(f"  {'PASS' if passed else 'FAIL'}  {name}")
    return 0 if all(result["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
