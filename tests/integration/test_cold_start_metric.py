"""Powertools' ColdStart metric, as CloudWatch receives it from the real Lambda runtime.

The dashboard and the cost model count cold starts from it, so it must be 1 on an execution
environment's first invocation and absent from every later one.
"""

from __future__ import annotations

import json
from pathlib import Path

from onnx_lambda_tools.invoke import function_environment
from onnx_lambda_tools.local.lambda_runtime import LambdaEnvironment
from tests.expected_events import load_event


def cold_start_values(log_text: str) -> list[float]:
    values: list[float] = []
    for line in log_text.splitlines():
        if line.startswith("{") and '"ColdStart"' in line:
            values += json.loads(line)["ColdStart"]
    return values


def test_cold_start_is_one_on_the_first_invocation_and_absent_after(models_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "function.log"
    with LambdaEnvironment(function_environment(models_dir), log_path=log) as environment:
        first = environment.invoke(load_event("embeddings"))
        assert first.status == 200
        after_first = log.read_text()
        for name in ("embeddings", "health-live", "infer-tabular"):
            assert environment.invoke(load_event(name)).status == 200
        after_all = log.read_text()
    assert cold_start_values(after_first) == [1.0]
    assert cold_start_values(after_all[len(after_first) :]) == []
