"""The image's CMD under the real Lambda runtime: the Runtime Interface Emulator in front of awslambdaric.

This is what Lambda runs, minus the container: the same handler string, the same runtime client, the
same Invoke API. Every committed event goes through it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from onnx_lambda_tools.invoke import function_environment
from onnx_lambda_tools.local.lambda_runtime import LambdaEnvironment, image_cmd
from tests.expected_events import EXPECTED, check_response, load_event

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def environment(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LambdaEnvironment]:
    log = tmp_path_factory.mktemp("rie") / "function.log"
    with LambdaEnvironment(function_environment(models_dir), log_path=log) as env:
        yield env


def test_image_cmd_is_the_handler() -> None:
    assert image_cmd(ROOT / "Dockerfile") == "onnx_lambda.handler.lambda_handler"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_event_through_the_runtime(name: str, environment: LambdaEnvironment, models_dir: Path) -> None:
    result = environment.invoke(load_event(name))
    assert result.status == 200
    assert not result.function_error, result.payload
    check_response(name, result.payload, models_dir)


def test_logs_and_metrics_reach_stdout(environment: LambdaEnvironment) -> None:
    """The handler's JSON logs and EMF metrics, as CloudWatch would receive them from the runtime."""
    environment.invoke(load_event("embeddings"))
    assert environment.log_path is not None
    lines = [json.loads(line) for line in environment.log_path.read_text().splitlines() if line.startswith("{")]
    emf = [line for line in lines if "_aws" in line]
    names = {m["Name"] for line in emf for d in line["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"ColdStart", "ModelLoadTime", "ModelBytes", "InferenceTime", "BatchSize", "Tokens"} <= names
    invocation = next(line for line in emf if "InferenceTime" in line)
    assert invocation["model"] == "all-minilm-l6-v2"
    logs = [line for line in lines if "level" in line and "message" in line]
    loaded = [line for line in logs if line["message"] == "model loaded"]
    assert {line["model"] for line in loaded} == {"all-minilm-l6-v2", "breast-cancer-classifier"}
