"""``make demo``: the production stack on a laptop, with its dashboard and alarms, under a short load.

1. Starts ``onnx-lambda serve --lambda`` (API Gateway + Lambda emulation in front of real Lambda runtimes,
   with the local S3 and Cognito): the API on ``--port``, the template's dashboard and alarms on the port
   two above it, with a CloudWatch minute of ``--minute`` seconds so the
   one-minute periods pass quickly. Its log (REPORT lines, alarm changes) goes to ``build/demo/serve.log``.
2. Prints the request path, the dashboard's URL and a live API call to copy (a token from the local
   Cognito), and makes that call once itself.
3. Runs a short locust load (``load_tests/demo.py``): steady traffic, a burst of bad requests, and one
   function error injected by the emulator's fault switch, so ``Api5xxAlarm`` fires and recovers by its
   own rule from the template. Every alarm change is printed as it happens.
4. Leaves the stack running until Ctrl-C (``--exit`` stops it instead, for tests).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx

from onnx_lambda_tools.local.cloud import port_is_free
from onnx_lambda_tools.serve import ServeError, background_serve

EMBEDDER: Final = "all-minilm-l6-v2"
#: Minutes (of the demo's clock) into the load when the function error is injected: after the bad burst.
INJECT_AT: Final = 3.5
WATCHED: Final = "Api5xxAlarm"
ARCHITECTURE: Final = """\
  client --(Cognito JWT)--> API Gateway HTTP API: routes and JWT authorizer from template.yaml
         --> Lambda alias live: execution environments running the image's CMD under the real runtime
         --> the model from S3, pinned by VersionId and sha256 (local S3 and Cognito: moto on loopback)
  Metrics: API Gateway's and Lambda's, and the function's EMF, to the template's dashboard and alarms.
  The whole diagram, generated from template.yaml: docs/architecture.md"""


@dataclass
class AlarmWatch:
    """Prints each alarm change (after the initial evaluation) once, with the demo's elapsed time."""

    monitoring: str
    started: float
    seen: set[tuple[str, float]] = field(default_factory=set)
    fired: bool = False
    recovered: bool = False

    def poll(self) -> None:
        try:
            alarms = httpx.get(f"{self.monitoring}/api/alarms", timeout=10).json()["alarms"]
        except (httpx.HTTPError, ValueError, KeyError):
            return
        for alarm in alarms:
            for change in alarm["history"]:
                key = (alarm["logicalId"], change["timestamp"])
                if key in self.seen or change["old"] == "INSUFFICIENT_DATA":
                    continue
                self.seen.add(key)
                print(f"  {self.clock(change['timestamp'])} {alarm['logicalId']}: {change['old']} -> {change['new']}")
                print(f"           {change['reason']}", flush=True)
                if alarm["logicalId"] == WATCHED:
                    self.fired |= change["new"] == "ALARM"
                    self.recovered |= self.fired and change["new"] == "OK"

    def clock(self, at: float) -> str:
        elapsed = max(0, int(at - self.started))
        return f"[{elapsed // 60:02d}:{elapsed % 60:02d}]"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")), help="API port (8000)")
    parser.add_argument("--minute", type=float, default=10.0, help="seconds per CloudWatch minute (default 10)")
    parser.add_argument("--users", type=int, default=2, help="steady locust users (default 2)")
    parser.add_argument("--minutes", type=float, default=7.0, help="length of the load, in CloudWatch minutes")
    parser.add_argument("--out", type=Path, default=Path("build/demo"), help="logs and reports (build/demo)")
    parser.add_argument("--exit", action="store_true", help="stop the stack after the load instead of keeping it")
    args = parser.parse_args(argv)

    locustfile = Path("load_tests/demo.py")
    if not locustfile.is_file():
        print("error: run from the repository root (load_tests/demo.py not found)", file=sys.stderr)
        return 2
    ports = {"API": args.port, "dashboard": args.port + 2}  # the local AWS takes a free port
    taken = [f"{port} ({name})" for name, port in ports.items() if not port_is_free("127.0.0.1", port)]
    if taken:
        print(
            f"error: in use: {', '.join(taken)}; stop what runs there (`make serve`?) or choose another: "
            "PORT=8100 make demo",
            file=sys.stderr,
        )
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    monitoring = f"http://127.0.0.1:{ports['dashboard']}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    flags = ("--lambda", "--monitoring-port", str(ports["dashboard"]), "--monitoring-minute", f"{args.minute:g}")
    print(f"Starting the local stack (log: {args.out / 'serve.log'}); the first cold start takes a few seconds...")
    with (args.out / "serve.log").open("wb") as log:
        try:
            with background_serve(env, log, *flags, port=args.port, ready_timeout=300) as url:
                return _demo(args, url, monitoring, env, locustfile)
        except ServeError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\nStopped.")
            return 0


def _demo(args: argparse.Namespace, url: str, monitoring: str, env: dict[str, str], locustfile: Path) -> int:
    call = (
        f"  TOKEN=$(.venv/bin/onnx-lambda token)\n"
        f"  curl -s {url}/v1/embeddings -H \"Authorization: Bearer $TOKEN\" -H 'content-type: application/json' \\\n"
        f'       -d \'{{"model": "{EMBEDDER}", "input": "Serverless inference on Lambda"}}\' | head -c 200; echo'
    )
    print(
        f"\nonnx-lambda demo: the template's stack on this laptop\n\n{ARCHITECTURE}\n\n"
        f"  API:        {url}\n"
        f"  Dashboard:  {monitoring}/   (the template's dashboard and alarms)\n"
        f"  Time:       1 CloudWatch minute = {args.minute:g} s here, so the one-minute periods pass quickly\n"
        f"\nA live call, to copy into another terminal:\n\n{call}\n",
        flush=True,
    )
    _live_call(url, env)
    minute = args.minute
    print(
        f"\nLoad: {args.users} locust users for {args.minutes * minute:.0f} s; bad requests from "
        f"{2 * minute:.0f} to {3 * minute:.0f} s; one function error at {INJECT_AT * minute:.0f} s "
        f"(locust's log: {args.out / 'locust.log'}). Alarm changes:",
        flush=True,
    )
    started = time.time()
    watch = AlarmWatch(monitoring, started)
    report = args.out / "locust"
    command = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "--host", url]
    command += ["--only-summary", "--json-file", str(report), "--stop-timeout", "5"]
    load_env = {**env, "DEMO_MINUTE": f"{minute:g}", "DEMO_USERS": str(args.users), "DEMO_MINUTES": f"{args.minutes:g}"}
    with (args.out / "locust.log").open("wb") as locust_log:
        locust = subprocess.Popen(command, env=load_env, stdout=locust_log, stderr=subprocess.STDOUT)  # noqa: S603 - fixed argv
        injected = False
        while locust.poll() is None:
            if not injected and time.time() - started >= INJECT_AT * minute:
                injected = _inject(monitoring)
                if injected:
                    where = f"POST {monitoring}/faults/function-error"
                    print(f"  {watch.clock(time.time())} injected one function error ({where})", flush=True)
            watch.poll()
            time.sleep(0.5)
    # Without traffic, the alarm recovers once the error's period leaves its evaluation range.
    deadline = time.time() + 8 * minute
    while watch.fired and not watch.recovered and time.time() < deadline:
        watch.poll()
        time.sleep(0.5)
    watch.poll()
    print(_summary(report.with_suffix(".json")))
    ok = watch.fired and watch.recovered
    if not ok:
        print(f"warning: {WATCHED} did not fire and recover as expected; see {args.out / 'serve.log'}", file=sys.stderr)
    if args.exit:
        return 0 if ok else 1
    print(
        f"\nThe stack keeps running: the dashboard at {monitoring}/ and the API at {url}"
        f" (the call above works). Ctrl-C stops it.",
        flush=True,
    )
    while True:
        time.sleep(5)
        try:
            httpx.get(f"{url}/v2/health/live", timeout=30)
        except httpx.HTTPError:
            print(f"The stack stopped; see {args.out / 'serve.log'}", file=sys.stderr)
            return 1


def _live_call(url: str, env: dict[str, str]) -> None:
    """The printed call, made once: a token from the local Cognito, then the API."""
    token = subprocess.run(
        [sys.executable, "-m", "onnx_lambda_tools.cli", "token"], env=env, capture_output=True, text=True, check=False
    )
    if token.returncode != 0:
        print(f"  (onnx-lambda token failed: {token.stderr.strip()})")
        return
    response = httpx.post(
        f"{url}/v1/embeddings",
        headers={"authorization": f"Bearer {token.stdout.strip()}"},
        json={"model": EMBEDDER, "input": "Serverless inference on Lambda"},
        timeout=60,
    )
    print(f"Made just now: HTTP {response.status_code}, apigw-requestid {response.headers.get('apigw-requestid')}:")
    print(f"  {response.text[:200]}...", flush=True)


def _inject(monitoring: str) -> bool:
    try:
        response = httpx.post(f"{monitoring}/faults/function-error", json={"count": 1}, timeout=10)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def _summary(path: Path) -> str:
    try:
        entries: list[dict[str, Any]] = json.loads(path.read_text())
    except (OSError, ValueError):
        return f"Load done (no report at {path})."
    requests = [entry for entry in entries if entry.get("method") != "TOKEN"]
    total = sum(int(entry["num_requests"]) for entry in requests)
    bad = sum(int(entry["num_requests"]) for entry in requests if str(entry["name"]).startswith("invalid: "))
    failures = sum(int(entry["num_failures"]) for entry in requests)
    return (
        f"Load done: {total} requests, {bad} of them bad requests answered with their 4xx, {failures} failed "
        f"(the injected function error is one: HTTP 500)."
    )


if __name__ == "__main__":
    sys.exit(main())
