"""A deployed stack can never switch the function to local-only behaviour.

`sam local invoke/start-api --env-vars` passes only the variables a template declares, so the function
declares the local-only settings (a local S3 endpoint, verifying tokens itself against a local issuer)
with empty values, which the function reads as unset. Whatever the parameters, after the transform the
function must authenticate through API Gateway (``ONNX_LAMBDA_AUTH_MODE`` is the literal ``apigateway``),
the local-only settings must be literal empty strings, and no parameter may add a variable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from tests.infra.conftest import ALL_ON
from tests.infra.parameter_values import BASE, CHANGED

Transform = Callable[[Mapping[str, Any] | None], dict[str, Any]]

LOCAL_ONLY = (
    "ONNX_LAMBDA_S3_ENDPOINT_URL",
    "ONNX_LAMBDA_JWT_ISSUER",
    "ONNX_LAMBDA_JWT_JWKS_URL",
    "ONNX_LAMBDA_JWT_AUDIENCE",
)
#: Every variable the function gets; nothing else may appear, whatever the parameters.
VARIABLES = {
    "ONNX_LAMBDA_MODELS",
    "ONNX_LAMBDA_AUTH_MODE",
    "ONNX_LAMBDA_JWT_SCOPES",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
    *LOCAL_ONLY,
}
#: Every parameter changed alone, every parameter changed at once, no model, everything on.
PARAMETER_SETS = {
    "no-model": {},
    "all-on": ALL_ON,
    "all-changed": {**BASE, **CHANGED},
    **{f"{name}-changed": {**BASE, name: value} for name, value in CHANGED.items()},
}


def intrinsics_in(value: Any) -> list[str]:
    """The intrinsic functions (and conditions) anywhere in a value."""
    if isinstance(value, list):
        return [name for item in value for name in intrinsics_in(item)]
    if isinstance(value, dict):
        found = [key for key in value if key == "Ref" or key.startswith("Fn::") or key == "Condition"]
        return found + [name for inner in value.values() for name in intrinsics_in(inner)]
    return []


@pytest.mark.parametrize("parameters", PARAMETER_SETS.values(), ids=PARAMETER_SETS.keys())
def test_no_parameter_reaches_the_local_only_settings(sam_transform: Transform, parameters: dict[str, Any]) -> None:
    function = sam_transform(parameters)["Resources"]["InferenceFunction"]["Properties"]
    environment = function["Environment"]
    # The variable names are literal keys of literal mappings: no Fn::If can add or drop one.
    assert not intrinsics_in({key: value for key, value in environment.items() if key != "Variables"})
    assert set(environment) == {"Variables"}
    variables = environment["Variables"]
    assert isinstance(variables, dict)
    assert set(variables) == VARIABLES
    assert variables["ONNX_LAMBDA_AUTH_MODE"] == "apigateway"
    for name in LOCAL_ONLY:
        assert variables[name] == "", f"{name} must be a literal empty string, got {variables[name]!r}"


def test_the_source_declares_them_literally_and_globals_add_none(template: dict[str, Any]) -> None:
    """The same in the source: `sam local` reads template.yaml, and Globals would merge variables in."""
    assert "Environment" not in template.get("Globals", {}).get("Function", {})
    variables = template["Resources"]["InferenceFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["ONNX_LAMBDA_AUTH_MODE"] == "apigateway"
    assert {name: variables[name] for name in LOCAL_ONLY} == dict.fromkeys(LOCAL_ONLY, "")


def test_the_function_reads_empty_local_only_settings_as_unset(
    template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the deployed function makes of them: the real S3, and API Gateway's verified claims."""
    from onnx_lambda.config import Settings

    variables = template["Resources"]["InferenceFunction"]["Properties"]["Environment"]["Variables"]
    for name in ("ONNX_LAMBDA_AUTH_MODE", *LOCAL_ONLY):
        monkeypatch.setenv(name, variables[name])
    monkeypatch.setenv("ONNX_LAMBDA_MODELS", "[]")
    settings = Settings()  # type: ignore[call-arg]  # from the environment
    assert settings.auth_mode == "apigateway"
    assert settings.s3_endpoint_url is None
    assert settings.jwt_issuer is None
    assert settings.jwks_url is None
    assert settings.jwt_audience == []
