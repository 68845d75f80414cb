"""Settings from ``ONNX_LAMBDA_*`` variables, read by config.py itself (no pydantic-settings at init).

The expected values are written out here from the variables' documented forms: the template's JSON list of
models, CloudFormation's ``a,b`` lists, the empty strings the template declares for local-only settings.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from onnx_lambda.config import COMMA_LIST_FIELDS, JSON_FIELDS, ModelSource, Settings, environment_values

SHA = "a" * 64
MODELS = [
    {
        "uri": "s3://models-bucket/models/m/1-0123456789abcdef/model.onnx?versionId=v1",
        "manifest_version_id": "m1",
        "manifest_sha256": SHA,
        "tokenizer_version_id": "",
        "optimized_version_id": "",
    }
]


@pytest.fixture(autouse=True)
def no_inherited_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("ONNX_LAMBDA_"):
            monkeypatch.delenv(name)


def test_a_deployed_functions_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """What template.yaml sets: the models as JSON, the scopes as a comma list, local-only settings empty."""
    for name, value in {
        "ONNX_LAMBDA_MODELS": json.dumps(MODELS),
        "ONNX_LAMBDA_AUTH_MODE": "apigateway",
        "ONNX_LAMBDA_JWT_SCOPES": "inference/invoke,aws.cognito.signin.user.admin",
        "ONNX_LAMBDA_S3_ENDPOINT_URL": "",
        "ONNX_LAMBDA_JWT_ISSUER": "",
        "ONNX_LAMBDA_JWT_JWKS_URL": "",
        "ONNX_LAMBDA_JWT_AUDIENCE": "",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings()  # type: ignore[call-arg]  # from the environment
    assert settings.models == [
        ModelSource(
            uri="s3://models-bucket/models/m/1-0123456789abcdef/model.onnx?versionId=v1",
            manifest_version_id="m1",
            manifest_sha256=SHA,
        )
    ]
    assert settings.models[0].tokenizer_version_id is None
    assert settings.models[0].optimized_version_id is None
    assert settings.auth_mode == "apigateway"
    assert settings.jwt_scopes == ["inference/invoke", "aws.cognito.signin.user.admin"]
    assert (settings.s3_endpoint_url, settings.jwt_issuer, settings.jwt_jwks_url) == (None, None, None)
    assert settings.jwt_audience == []


def test_numbers_paths_and_literals_come_from_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONNX_LAMBDA_MODELS", "[]")
    monkeypatch.setenv("ONNX_LAMBDA_MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("ONNX_LAMBDA_S3_TIMEOUT_SECONDS", "1.5")
    monkeypatch.setenv("ONNX_LAMBDA_CACHE_DIR", "/tmp/elsewhere")
    monkeypatch.setenv("ONNX_LAMBDA_GRAPH_OPTIMIZATION", "basic")
    settings = Settings()  # type: ignore[call-arg]  # from the environment
    assert settings.max_batch_size == 7
    assert settings.s3_timeout_seconds == 1.5
    assert settings.cache_dir == Path("/tmp/elsewhere")
    assert settings.graph_optimization == "basic"


def test_names_match_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("onnx_lambda_models", "[]")
    monkeypatch.setenv("Onnx_Lambda_Max_Batch_Size", "3")
    assert Settings().max_batch_size == 3  # type: ignore[call-arg]


@pytest.mark.parametrize("value", ["a, b", " a,b ,", '["a", "b"]'])
def test_name_lists_take_commas_or_json(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("ONNX_LAMBDA_MODELS", "[]")
    monkeypatch.setenv("ONNX_LAMBDA_JWT_AUDIENCE", value)
    assert Settings().jwt_audience == ["a", "b"]  # type: ignore[call-arg]


def test_values_passed_explicitly_win_over_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONNX_LAMBDA_MODELS", json.dumps(MODELS))
    monkeypatch.setenv("ONNX_LAMBDA_MAX_BATCH_SIZE", "7")
    settings = Settings(models=[], max_text_chars=10)
    assert settings.models == []
    assert settings.max_text_chars == 10
    assert settings.max_batch_size == 7  # the variable fills what isn't passed


def test_variables_that_name_no_setting_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONNX_LAMBDA_MODELS", "[]")
    monkeypatch.setenv("ONNX_LAMBDA_RIE", "/somewhere/aws-lambda-rie")  # a developer tool's own variable
    monkeypatch.setenv("ONNX_LAMBDA_BENCH_REFERENCE_OPTIONS", "{not json")
    assert environment_values() == {"models": []}


def test_models_that_are_not_json_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONNX_LAMBDA_MODELS", "[{uri: s3://b/k}]")
    with pytest.raises(ValidationError, match="ONNX_LAMBDA_MODELS is not valid JSON"):
        Settings()  # type: ignore[call-arg]


def test_no_models_variable_is_a_missing_setting() -> None:
    with pytest.raises(ValidationError, match="models"):
        Settings()  # type: ignore[call-arg]


def test_an_empty_number_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONNX_LAMBDA_MODELS", "[]")
    monkeypatch.setenv("ONNX_LAMBDA_MAX_BATCH_SIZE", "")
    with pytest.raises(ValidationError, match="max_batch_size"):
        Settings()  # type: ignore[call-arg]


def test_every_structured_setting_says_how_its_variable_is_written() -> None:
    """A list or model setting whose variable nobody decodes would only ever fail: name it in JSON_FIELDS."""
    structured = set()
    for name, field in Settings.model_fields.items():
        for kind in (field.annotation, *typing.get_args(field.annotation)):
            origin = typing.get_origin(kind) or kind
            if origin in (list, dict) or (isinstance(origin, type) and issubclass(origin, BaseModel)):
                structured.add(name)
    assert structured == JSON_FIELDS | COMMA_LIST_FIELDS
