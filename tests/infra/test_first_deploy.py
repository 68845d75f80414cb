"""The first deploy, before any model: the function starts, and nothing it answers is a 5xx.

The first deploy creates the bucket models are published to, so it runs with the model parameters empty.
That version keeps serving while the first model rolls out: in prod, CodeDeploy's canary sends it 90 % of
the traffic for five minutes, with `Api5xxAlarm` (any API 5xx) as a rollback alarm. A function that
failed its init without a model would answer every call, the unauthenticated health probes included,
with a 5xx and roll the first model back. So a function without a model starts and answers as a server
with no models: live, not ready with a 4xx (the Open Inference Protocol's "false"), 404 for a model.

Here the handler runs as the image's CMD under the real Lambda runtime (Runtime Interface Emulator +
awslambdaric), with the environment the template gives it for empty model parameters.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from onnx_lambda_tools.local.lambda_runtime import LambdaEnvironment
from tests.infra.conftest import LOCAL_CREDENTIALS, ROOT, Evaluator, load_module
from tests.infra.standins import CodeDeployRecorder, LambdaFront

Transform = Callable[[Mapping[str, Any] | None], dict[str, Any]]
EVENTS = sorted((ROOT / "events").glob("*.json"))
hook = load_module("pre_traffic_hook")
HOOK_EVENT = {"DeploymentId": "d-FIRST", "LifecycleEventHookExecutionId": "hook-execution-first"}


@pytest.fixture(scope="module")
def bare(sam_transform: Transform) -> dict[str, Any]:
    """The transformed template for the first deploy: every parameter at its default."""
    return sam_transform({})


def environment_of(bare: Mapping[str, Any], function: str, resources: Mapping[str, str]) -> dict[str, str]:
    variables = bare["Resources"][function]["Properties"]["Environment"]["Variables"]
    return {name: str(value) for name, value in Evaluator(bare, {}, resources).evaluate(variables).items()}


@pytest.fixture(scope="module")
def function_without_model(
    bare: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LambdaEnvironment]:
    home = tmp_path_factory.mktemp("first-deploy")
    environment = environment_of(bare, "InferenceFunction", {"ModelBucket": "first-deploy-bucket"})
    environment |= {**LOCAL_CREDENTIALS, "AWS_REGION": "us-east-1", "ONNX_LAMBDA_CACHE_DIR": str(home / "cache")}
    with LambdaEnvironment(environment, log_path=home / "function.log") as function:
        yield function


def answer(function: LambdaEnvironment, event: Mapping[str, Any]) -> tuple[int, Any]:
    result = function.invoke(event, timeout=120)
    assert not result.function_error, result.payload
    assert isinstance(result.payload, dict)
    body = result.payload.get("body") or ""
    if result.payload.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return int(result.payload["statusCode"]), json.loads(body) if body else None


def test_the_template_names_no_model(bare: dict[str, Any]) -> None:
    assert json.loads(environment_of(bare, "InferenceFunction", {"ModelBucket": "b"})["ONNX_LAMBDA_MODELS"]) == []
    resources = {"ModelBucket": "b", "UserPool": "p", "MachineClient": "c", "HttpApi": "a"}
    for helper in ("PreTrafficHookFunction", "SyntheticCanaryFunction"):
        assert environment_of(bare, helper, resources)["MODEL_URI"] == ""


@pytest.mark.parametrize("event_file", EVENTS, ids=[path.stem for path in EVENTS])
def test_no_route_answers_a_5xx_without_a_model(function_without_model: LambdaEnvironment, event_file: Path) -> None:
    status, body = answer(function_without_model, json.loads(event_file.read_text()))
    assert status < 500, body


def test_health_says_live_and_not_ready(function_without_model: LambdaEnvironment) -> None:
    events = {path.stem: json.loads(path.read_text()) for path in EVENTS}
    assert answer(function_without_model, events["health-live"]) == (200, {"name": "onnx-lambda", "ready": True})
    status, body = answer(function_without_model, events["health-ready"])
    assert status == 400
    assert "no model is deployed yet" in body["error"]
    status, body = answer(function_without_model, events["model-metadata"])
    assert status == 404
    assert "serves no model yet" in body["error"]
    assert answer(function_without_model, events["models-list"]) == (200, {"object": "list", "data": []})


def test_no_model_is_not_a_model_load_failure(function_without_model: LambdaEnvironment) -> None:
    """ModelLoadFailure is a rollback alarm too: a deployment without a model must not emit it."""
    assert function_without_model.log_path is not None
    log = function_without_model.log_path.read_text()
    assert "no model configured" in log
    assert "ModelLoadFailure" not in log


# ------------------------------------------------------------------------------------------------ the hook


@pytest.fixture
def hook_against(
    bare: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], CodeDeployRecorder]]:
    """Point the hook's environment (the template's, without a model) at a Lambda endpoint."""
    recorders: list[CodeDeployRecorder] = []

    def point(lambda_url: str) -> CodeDeployRecorder:
        recorder = CodeDeployRecorder().__enter__()
        recorders.append(recorder)
        (version,) = (name for name, r in bare["Resources"].items() if r["Type"] == "AWS::Lambda::Version")
        environment = environment_of(
            bare, "PreTrafficHookFunction", {version: "function", "UserPool": "p", "MachineClient": "c"}
        )
        for name, value in {
            **environment,
            **LOCAL_CREDENTIALS,
            "AWS_ENDPOINT_URL_LAMBDA": lambda_url,
            "AWS_ENDPOINT_URL_CODEDEPLOY": recorder.url,
        }.items():
            monkeypatch.setenv(name, value)
        for client in (hook._s3, hook._lambda, hook._codedeploy):
            client.cache_clear()
        return recorder

    yield point
    for recorder in recorders:
        recorder.__exit__()
    for client in (hook._s3, hook._lambda, hook._codedeploy):
        client.cache_clear()


def test_the_hook_passes_a_version_without_a_model_that_answers_health_honestly(
    function_without_model: LambdaEnvironment, hook_against: Callable[[str], CodeDeployRecorder]
) -> None:
    """A settings deploy before the first model publishes a version too: the hook must let it through."""
    with LambdaFront(function_without_model) as front:
        codedeploy = hook_against(front.url)
        assert hook.handler(HOOK_EVENT, None) == {"status": "Succeeded", "problems": []}
    assert [call["status"] for call in codedeploy.calls] == ["Succeeded"]


def test_the_hook_fails_a_version_without_a_model_that_answers_a_5xx(
    function_without_model: LambdaEnvironment, hook_against: Callable[[str], CodeDeployRecorder]
) -> None:
    with LambdaFront(function_without_model) as front:
        front.failing.add("GET /v2/health/ready")
        codedeploy = hook_against(front.url)
        result = hook.handler(HOOK_EVENT, None)
    assert result["status"] == "Failed"
    assert result["problems"] == [result["problems"][0]]
    assert result["problems"][0].startswith("GET /v2/health/ready answered 500")
    assert [call["status"] for call in codedeploy.calls] == ["Failed"]
