"""``make load``: the local stack under load for a fixed time, then the SLO check; the stack stops either way.

It starts ``onnx-lambda serve`` on free loopback ports with a state file and token cache of its own
(so a ``make serve`` you have running is left alone), waits until the API is ready, checks that a
token from the local Cognito is accepted, runs locust headless, writes the HTML, CSV and JSON
reports under ``--reports``, and exits with ``check_slo``'s status (0 met, 1 breached, 2 no report).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Final

import check_slo

from onnx_lambda_tools.serve import ServeError, background_serve

HERE: Final = Path(__file__).resolve().parent
ROOT: Final = HERE.parent
READY_TIMEOUT_SECONDS: Final = 180.0


class StackError(Exception):
    """The local stack didn't come up or refused the token; the message says where to look."""


def _get(url: str, token: str | None = None, timeout: float = 2.0) -> int:
    request = urllib.request.Request(url, headers={"authorization": f"Bearer {token}"} if token else {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback only
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@contextmanager
def local_stack(env: dict[str, str], log: IO[bytes]) -> Iterator[str]:
    """``onnx-lambda serve`` on free ports; yields the API URL once it is ready, and stops it afterwards."""
    try:
        with background_serve(env, log, ready_timeout=READY_TIMEOUT_SECONDS) as url:
            yield url
    except ServeError as error:
        raise StackError(str(error)) from None


def check_token(url: str, env: dict[str, str]) -> None:
    """One token from the local Cognito, accepted by the API, before any load is sent."""
    result = subprocess.run(
        [sys.executable, "-m", "onnx_lambda_tools.cli", "token"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    token = result.stdout.strip()
    if result.returncode != 0 or not token:
        raise StackError(f"onnx-lambda token failed: {result.stderr.strip()}")
    status = _get(f"{url}/v2", token)
    if status != 200:
        raise StackError(f"the API answered GET /v2 with HTTP {status} for a fresh local token")


def run_locust(url: str, env: dict[str, str], prefix: Path, users: int, spawn_rate: float, run_time: str) -> int:
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(HERE / "locustfile.py"),
        "--headless",
        "--host",
        url,
        "--users",
        str(users),
        "--spawn-rate",
        str(spawn_rate),
        "--run-time",
        run_time,
        "--stop-timeout",
        "10",
        "--csv",
        str(prefix),
        "--html",
        f"{prefix}.html",
        "--json-file",
        str(prefix),
        "--only-summary",
    ]
    print("$", " ".join(command[1:]), flush=True)
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode  # noqa: S603


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--spawn-rate", type=float, default=16.0, help="users started per second")
    parser.add_argument("--run-time", default="60s", help="locust --run-time, e.g. 60s or 5m (default 60s)")
    parser.add_argument("--reports", type=Path, default=HERE / "reports", help="report directory")
    parser.add_argument("--name", default="load", help="report file prefix inside --reports (default: load)")
    parser.add_argument("--profile", default="local", help="SLO profile in slo.json (default: local)")
    parser.add_argument("--slo", type=Path, default=check_slo.DEFAULT_SLO)
    args = parser.parse_args(argv)

    args.reports.mkdir(parents=True, exist_ok=True)
    prefix = args.reports / args.name
    for stale in args.reports.glob(f"{args.name}*"):
        stale.unlink()
    with tempfile.TemporaryDirectory(prefix="onnx-lambda-load-") as home:
        env = {
            **os.environ,
            "ONNX_LAMBDA_STATE_FILE": str(Path(home) / "local-stack.json"),
            "XDG_CACHE_HOME": str(Path(home) / "cache"),
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("ONNX_LAMBDA_TOKEN", None)  # the users sign in to this run's own stack
        env.pop("ONNX_LAMBDA_TOKEN_URL", None)
        with open(args.reports / f"{args.name}-serve.log", "wb") as log:
            try:
                with local_stack(env, log) as url:
                    print(f"local stack ready at {url}", flush=True)
                    check_token(url, env)
                    locust_status = run_locust(url, env, prefix, args.users, args.spawn_rate, args.run_time)
            except StackError as error:
                print(f"make load: {error}", file=sys.stderr)
                return 2
    print(f"\nlocust exited with status {locust_status}; reports: {prefix}.html, {prefix}_stats.csv, {prefix}.json\n")
    return check_slo.main(
        ["--report", str(prefix), "--slo", str(args.slo), "--profile", args.profile, "--users", str(args.users)]
    )


if __name__ == "__main__":
    sys.exit(main())
