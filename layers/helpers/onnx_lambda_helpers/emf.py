"""CloudWatch Embedded Metric Format, and JSON log lines, written to stdout.

A hand-written EMF line is a few lines of code; the Powertools layer would add megabytes and a
version to keep in step with for the two metrics the canary emits.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from typing import Any


def emf_line(
    namespace: str,
    dimensions: Mapping[str, str],
    metrics: Mapping[str, tuple[float, str]],
    properties: Mapping[str, Any] | None = None,
) -> str:
    """One EMF record; ``metrics`` maps a name to ``(value, unit)``, units as CloudWatch spells them."""
    record: dict[str, Any] = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [sorted(dimensions)],
                    "Metrics": [{"Name": name, "Unit": unit} for name, (_, unit) in metrics.items()],
                }
            ],
        },
        **(properties or {}),
        **dimensions,
        **{name: value for name, (value, _) in metrics.items()},
    }
    return json.dumps(record, separators=(",", ":"), default=str)


def put_metrics(
    namespace: str,
    dimensions: Mapping[str, str],
    metrics: Mapping[str, tuple[float, str]],
    properties: Mapping[str, Any] | None = None,
) -> None:
    print(emf_line(namespace, dimensions, metrics, properties), file=sys.stdout, flush=True)


def log(level: str, message: str, **fields: Any) -> None:
    """A JSON log line; never pass a secret or a token in ``fields``."""
    line = {"level": level, "message": message, "timestamp": int(time.time() * 1000), **fields}
    print(json.dumps(line, separators=(",", ":"), default=str), file=sys.stdout, flush=True)
