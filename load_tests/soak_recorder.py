"""A locust plugin for ``make soak``: every request's latency and outcome, bucketed by minute of the run.

Loaded beside the locustfile (``locust -f locustfile.py,soak_recorder.py``). locust's own CSV history
holds percentiles over a sliding window; the soak compares whole minutes, so it keeps the raw response
times per minute and writes them, with the failures, to ``$SOAK_RECORD`` when the run ends.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from locust import events
from locust.env import Environment

_started = time.monotonic()
_latencies: defaultdict[int, list[float]] = defaultdict(list)
_failures: defaultdict[int, list[str]] = defaultdict(list)


def _on_start(environment: Environment, **_: object) -> None:
    global _started
    _started = time.monotonic()


def _on_request(request_type: str, name: str, response_time: float, exception: BaseException | None, **_: Any) -> None:
    if request_type == "TOKEN":  # the users' sign-ins, not the service's answers
        return
    minute = int((time.monotonic() - _started) // 60)
    _latencies[minute].append(response_time)
    if exception is not None:
        _failures[minute].append(f"{request_type} {name}: {exception}"[:300])


def _on_quit(environment: Environment, **_: object) -> None:
    path = os.environ.get("SOAK_RECORD")
    if not path:
        return
    minutes = sorted(set(_latencies) | set(_failures))
    document = {
        "minutes": [
            {"minute": minute, "latencies_ms": _latencies.get(minute, []), "failures": _failures.get(minute, [])}
            for minute in minutes
        ]
    }
    Path(path).write_text(json.dumps(document))


events.test_start.add_listener(_on_start)  # type: ignore[no-untyped-call]
events.request.add_listener(_on_request)  # type: ignore[no-untyped-call]
events.quitting.add_listener(_on_quit)  # type: ignore[no-untyped-call]
