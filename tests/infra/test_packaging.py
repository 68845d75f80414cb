"""The Dockerfile, samconfig.toml and the generated architecture diagram."""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.infra.conftest import ROOT
from tests.infra.parameter_values import MODEL_PARAMETERS


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_image_is_aws_python313_by_default_with_the_handler_as_cmd() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    # The first line is a comment, not a `# syntax=` directive: BuildKit would try to pull that frontend.
    assert not dockerfile.splitlines()[0].lower().startswith("# syntax")
    instructions = _instructions(ROOT / "Dockerfile")
    # AWS's image unless a build argument names another (only the local tests' stand-in does).
    assert instructions[0] == ("ARG", "BASE_IMAGE=public.ecr.aws/lambda/python:3.13")
    assert instructions[1] == ("FROM", "${BASE_IMAGE}")
    assert instructions[-1] == ("CMD", '["onnx_lambda.handler.lambda_handler"]')


def test_dependencies_install_in_their_own_layer_before_the_code() -> None:
    instructions = _instructions(ROOT / "Dockerfile")
    steps = [f"{op} {arg}" for op, arg in instructions]
    install = next(i for i, step in enumerate(steps) if "pip install" in step)
    code = next(i for i, step in enumerate(steps) if step.startswith("COPY src/onnx_lambda"))
    assert install < code
    # Only the lock is in the build context when dependencies install, so code edits keep that layer.
    copies_before = [step for step in steps[:install] if step.startswith("COPY")]
    assert copies_before == ["COPY requirements/runtime.txt /tmp/build/requirements.txt"]
    # The runtime dependencies only, every wheel pinned by hash (torch is export-time, never here).
    assert "--require-hashes" in steps[install]
    assert "--only-binary=:all:" in steps[install]
    assert "--no-cache-dir" in steps[install]
    assert not re.search(r"\.\[|optional-dependencies", steps[install])


def test_dockerignore_sends_only_the_lock_and_the_package() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*"
    # Everything else, the developer tools in src/onnx_lambda_tools included, stays out of the image.
    assert {rule for rule in rules if rule.startswith("!")} == {"!requirements/runtime.txt", "!src/onnx_lambda/"}


def test_the_lock_holds_no_torch_and_no_test_tools() -> None:
    pins = (ROOT / "requirements" / "runtime.txt").read_text()
    for package in ("torch", "moto", "pytest", "aws-sam-cli", "locust", "uvicorn"):
        assert not re.search(rf"^{package}==", pins, flags=re.MULTILINE), package


# ------------------------------------------------------------------------------------------------ samconfig


def _overrides(config: dict[str, Any], env: str) -> dict[str, str]:
    pairs = config[env]["deploy"]["parameters"]["parameter_overrides"]
    return dict(pair.split("=", 1) for pair in pairs)


def _valid(definition: dict[str, Any], value: str) -> bool:
    if "AllowedValues" in definition and value not in [str(v) for v in definition["AllowedValues"]]:
        return False
    if "AllowedPattern" in definition and not re.fullmatch(definition["AllowedPattern"], value):
        return False
    if definition.get("Type") == "Number":
        number = float(value)
        return bool(definition.get("MinValue", number) <= number <= definition.get("MaxValue", number))
    return True


@pytest.fixture(scope="module")
def samconfig() -> dict[str, Any]:
    with (ROOT / "samconfig.toml").open("rb") as handle:
        return tomllib.load(handle)


def test_samconfig_environments(samconfig: dict[str, Any], template: dict[str, Any]) -> None:
    dev, prod, secondary = (_overrides(samconfig, env) for env in ("dev", "prod", "prod-secondary"))
    assert dev["DeploymentType"] == "AllAtOnce"
    assert dev["ProvisionedConcurrency"] == "0"
    assert prod["DeploymentType"].startswith("Canary")
    assert 0 < int(prod["ProvisionedConcurrency"]) < int(prod["ProvisionedConcurrencyMax"])
    assert secondary["DeploymentType"].startswith("Canary")
    assert (
        samconfig["prod-secondary"]["global"]["parameters"]["region"]
        != samconfig["prod"]["global"]["parameters"]["region"]
    )
    # The second region trusts the primary's pool: it names it, and the primary region as the issuer's.
    assert secondary["IssuerRegion"] == samconfig["prod"]["global"]["parameters"]["region"]
    for name in ("IssuerUserPoolId", "IssuerUserClientId", "IssuerMachineClientId", "IssuerDomainPrefix"):
        assert name in secondary
    # Model parameters never live here: a config-only deploy must keep the deployed model.
    for overrides in (dev, prod, secondary):
        assert not set(MODEL_PARAMETERS) & set(overrides)


def test_samconfig_values_satisfy_the_template(samconfig: dict[str, Any], template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    for env in ("dev", "prod", "prod-secondary"):
        for name, value in _overrides(samconfig, env).items():
            assert name in parameters, f"{env}: {name} is not a template parameter"
            if value.startswith("FILL-IN"):
                # Placeholders must fail the parameter's pattern, so a deploy can't go ahead with them.
                assert not _valid(parameters[name], value), f"{env}: placeholder {name} would be accepted"
            else:
                assert _valid(parameters[name], value), f"{env}: {name}={value} breaks the parameter's constraints"
        build = samconfig[env]["build"]["parameters"]["parameter_overrides"]
        assert build == [f"Architecture={_overrides(samconfig, env)['Architecture']}"], env


# ------------------------------------------------------------------------------------------------ diagram


def test_the_architecture_diagram_is_current(diagram_script: ModuleType) -> None:
    assert diagram_script.main(["--check"]) == 0, "docs/architecture.md is stale: run `make diagram`"


def test_the_diagram_check_fails_when_the_template_changes(
    diagram_script: ModuleType, template: dict[str, Any]
) -> None:
    document = (ROOT / "docs" / "architecture.md").read_text()
    current = diagram_script.render_block(template)
    assert diagram_script.replace_block(document, current) == document
    changed = copy.deepcopy(template)
    changed["Resources"]["ExtraQueue"] = {"Type": "AWS::SQS::Queue", "Properties": {}}
    assert diagram_script.replace_block(document, diagram_script.render_block(changed)) != document


def test_the_diagram_draws_the_request_path(diagram_script: ModuleType, template: dict[str, Any]) -> None:
    source = diagram_script.mermaid(template)
    assert source.startswith("flowchart LR\n")
    assert "client -->|HTTPS| HttpApi" in source
    assert "HttpApi -->|10 JWT routes, 2 open health routes| InferenceFunction" in source
    assert "InferenceFunctionCodeDeploy -->|pre-traffic hook| PreTrafficHookFunction" in source
    assert "InferenceFunction -.-> ModelBucket" in source
