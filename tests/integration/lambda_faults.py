"""A Lambda handler that misbehaves on request, for the emulator tests (``?fault=...`` picks how).

It runs under the real runtime, in the emulator's execution environments, in place of the service's
handler. Every answer carries ``x-pid`` so a test can tell which environment served it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def handler(event: dict[str, Any], context: Any) -> Any:
    query = event.get("queryStringParameters") or {}
    fault = query.get("fault", "echo")
    if fault == "sleep":
        time.sleep(float(query["seconds"]))
    elif fault == "raise":
        raise RuntimeError("the handler failed on purpose")
    elif fault == "exit":
        os._exit(3)
    elif fault == "barrier":  # returns once `n` invocations are running at the same time
        directory = Path(query["dir"])
        (directory / context.aws_request_id).touch()
        _wait_for(lambda: len(list(directory.iterdir())) >= int(query["n"]))
    elif fault == "hold":  # returns once the test creates the file
        _wait_for(Path(query["until"]).exists)
    elif fault == "respond":  # the request body is the response, verbatim
        return json.loads(event["body"])
    elif fault == "big":
        return {"statusCode": 200, "body": "x" * int(query["bytes"])}
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json", "x-pid": str(os.getpid())},
        "body": json.dumps(event),
    }


def _wait_for(condition: Any, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the test never released this invocation")
        time.sleep(0.01)
