"""The pre-traffic hook's real code against a local deployment.

S3 is moto's server; the new version is the inference function under the Runtime Interface Emulator
(boto3's Lambda client with ``endpoint_url``, FunctionName ``function``); CodeDeploy's status call goes
to a recording endpoint, because moto's CodeDeploy lacks PutLifecycleEventHookExecutionStatus. The
hook's environment is the one the template gives it. Endpoints reach boto3 through the standard
``AWS_ENDPOINT_URL_<SERVICE>`` variables, so the hook's code has no test switches.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from onnx_lambda_tools.local.cloud import free_port
from tests.infra.conftest import LOCAL_CREDENTIALS, LocalDeployment, load_module
from tests.infra.standins import CodeDeployRecorder, LambdaFront

hook = load_module("pre_traffic_hook")
EVENT = {"DeploymentId": "d-EXAMPLE123", "LifecycleEventHookExecutionId": "hook-execution-456"}


@pytest.fixture
def codedeploy() -> Iterator[CodeDeployRecorder]:
    with CodeDeployRecorder() as recorder:
        yield recorder


@pytest.fixture
def hook_environment(
    local_deployment: LocalDeployment, codedeploy: CodeDeployRecorder, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    resources = local_deployment.transformed["Resources"]
    (version,) = (name for name, resource in resources.items() if resource["Type"] == "AWS::Lambda::Version")
    environment = local_deployment.environment_of(
        "PreTrafficHookFunction", {version: "function", "UserPool": "us-east-1_local", "MachineClient": "m2mclient"}
    )
    assert environment["TARGET_FUNCTION_VERSION"] == "function"
    for name, value in {
        **environment,
        **LOCAL_CREDENTIALS,
        "AWS_ENDPOINT_URL_S3": local_deployment.endpoint_url,
        "AWS_ENDPOINT_URL_LAMBDA": local_deployment.lambda_endpoint,
        "AWS_ENDPOINT_URL_CODEDEPLOY": codedeploy.url,
    }.items():
        monkeypatch.setenv(name, value)
    _forget_clients()
    yield environment
    _forget_clients()


def _forget_clients() -> None:
    for client in (hook._s3, hook._lambda, hook._codedeploy):
        client.cache_clear()


def _reported(codedeploy: CodeDeployRecorder, status: str) -> None:
    assert codedeploy.calls == [
        {
            "deploymentId": EVENT["DeploymentId"],
            "lifecycleEventHookExecutionId": EVENT["LifecycleEventHookExecutionId"],
            "status": status,
        }
    ]


def test_a_version_that_answers_like_its_manifest_gets_traffic(
    hook_environment: dict[str, str], codedeploy: CodeDeployRecorder
) -> None:
    result = hook.handler(EVENT, None)
    assert result == {"status": "Succeeded", "problems": []}
    _reported(codedeploy, "Succeeded")


@pytest.mark.parametrize("golden_field", ["infer_response", "embeddings_response"])
def test_a_wrong_answer_fails_the_deployment(
    local_deployment: LocalDeployment,
    hook_environment: dict[str, str],
    codedeploy: CodeDeployRecorder,
    monkeypatch: pytest.MonkeyPatch,
    golden_field: str,
) -> None:
    """The new version answers as the model does, but not as the manifest says it must."""
    manifest = copy.deepcopy(local_deployment.manifest)
    response: dict[str, Any] = manifest["golden"][golden_field]
    if golden_field == "infer_response":
        response["outputs"][0]["data"][3] += 10 * manifest["golden"]["atol"]
    else:
        response["data"][0]["embedding"][3] += 10 * manifest["golden"]["atol"]
    for name, value in local_deployment.put_manifest_beside(f"wrong-{golden_field}", manifest).items():
        monkeypatch.setenv(name, value)
    result = hook.handler(EVENT, None)
    assert result["status"] == "Failed"
    assert any("[3]" in problem and "atol" in problem for problem in result["problems"]), result["problems"]
    _reported(codedeploy, "Failed")


def test_an_error_answer_fails_the_deployment(
    local_deployment: LocalDeployment,
    hook_environment: dict[str, str],
    codedeploy: CodeDeployRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A manifest naming a model the version doesn't serve: the function answers 404."""
    manifest = copy.deepcopy(local_deployment.manifest)
    manifest["name"] = "not-served-here"
    manifest["golden"].pop("embeddings_request")
    for name, value in local_deployment.put_manifest_beside("renamed", manifest).items():
        monkeypatch.setenv(name, value)
    result = hook.handler(EVENT, None)
    assert result["status"] == "Failed"
    assert any("answered 404" in problem for problem in result["problems"]), result["problems"]
    _reported(codedeploy, "Failed")


def test_a_failing_metadata_route_fails_the_deployment(
    local_deployment: LocalDeployment,
    hook_environment: dict[str, str],
    codedeploy: CodeDeployRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Inference right, model metadata a 500: the image of issue 10, whose FastAPI routes all failed."""
    with LambdaFront(local_deployment.function) as front:
        front.failing.add("GET /v2/models/{model_name}")
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", front.url)
        _forget_clients()
        result = hook.handler(EVENT, None)
    assert result["status"] == "Failed"
    name = local_deployment.manifest["name"]
    assert result["problems"] == [result["problems"][0]], "the inference routes answered right"
    assert result["problems"][0].startswith(f"GET /v2/models/{name} answered 500")
    _reported(codedeploy, "Failed")


def test_metadata_that_disagrees_with_the_manifest_fails_the_deployment(
    local_deployment: LocalDeployment,
    hook_environment: dict[str, str],
    codedeploy: CodeDeployRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manifest = copy.deepcopy(local_deployment.manifest)
    manifest["outputs"][0]["shape"] = [*manifest["outputs"][0]["shape"], 7]
    for name, value in local_deployment.put_manifest_beside("other-shape", manifest).items():
        monkeypatch.setenv(name, value)
    result = hook.handler(EVENT, None)
    assert result["status"] == "Failed"
    output, served = manifest["outputs"][0], local_deployment.manifest["outputs"][0]
    assert result["problems"] == [f"output {output['name']!r} shape: expected {output['shape']}, got {served['shape']}"]
    _reported(codedeploy, "Failed")


def test_a_manifest_other_than_the_pinned_one_fails_the_deployment(
    hook_environment: dict[str, str], codedeploy: CodeDeployRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MANIFEST_SHA256", "0" * 64)
    result = hook.handler(EVENT, None)
    assert result["status"] == "Failed"
    assert "the deployment pins " + "0" * 64 in result["problems"][0]
    _reported(codedeploy, "Failed")


def test_a_manifest_swapped_in_at_the_same_key_is_never_read(
    local_deployment: LocalDeployment, hook_environment: dict[str, str], codedeploy: CodeDeployRecorder
) -> None:
    """Finding 3 of issue 11: golden answers rewritten to approve a swapped model. The hook reads the version
    and bytes the deployment pins, not the key's latest version."""
    manifest = copy.deepcopy(local_deployment.manifest)
    manifest["golden"]["infer_response"]["outputs"][0]["data"][0] += 1.0
    prefix = local_deployment.model.key.rpartition("/")[0]
    swapped = local_deployment.put_manifest_beside(prefix, manifest)
    assert swapped["MANIFEST_VERSION_ID"] != hook_environment["MANIFEST_VERSION_ID"]
    result = hook.handler(EVENT, None)
    assert result == {"status": "Succeeded", "problems": []}
    _reported(codedeploy, "Succeeded")


@pytest.mark.parametrize("broken", ["lambda", "manifest"])
def test_a_check_that_cannot_run_fails_the_deployment_at_once(
    local_deployment: LocalDeployment,
    hook_environment: dict[str, str],
    codedeploy: CodeDeployRecorder,
    monkeypatch: pytest.MonkeyPatch,
    broken: str,
) -> None:
    """An unreachable version or a missing manifest: reported as Failed, never left to time out."""
    if broken == "lambda":
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", f"http://127.0.0.1:{free_port()}")
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    else:
        monkeypatch.setenv("MODEL_URI", f"s3://{local_deployment.bucket}/nothing/here/model.onnx?versionId=x")
    _forget_clients()
    result = hook.handler(EVENT, None)
    assert result["status"] == "Failed"
    assert result["problems"][0].startswith("the check could not run")
    _reported(codedeploy, "Failed")
