"""The helper layer agrees with the service's own code: golden comparison, events, model URIs, EMF."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from onnx_lambda.auth import principal_from_event
from onnx_lambda.manifest import read_manifest
from onnx_lambda_tools.export.golden import infer_response_difference
from tests.infra.conftest import load_module

golden = load_module("onnx_lambda_helpers.golden")
apigw_event = load_module("onnx_lambda_helpers.apigw_event")
model_ref = load_module("onnx_lambda_helpers.model_ref")
emf = load_module("onnx_lambda_helpers.emf")


@pytest.fixture(scope="module", params=["all-minilm-l6-v2", "breast-cancer-classifier"])
def manifest_golden(request: pytest.FixtureRequest, models_dir: Path) -> dict[str, Any]:
    return read_manifest(models_dir / request.param).golden.model_dump()


def _perturbed(response: dict[str, Any], delta: float) -> dict[str, Any]:
    changed = copy.deepcopy(response)
    for output in changed["outputs"]:
        if output["datatype"].startswith("FP"):
            output["data"][0] = output["data"][0] + delta
            return changed
    raise AssertionError("no float output to perturb")


@pytest.mark.parametrize("factor", [0.0, 0.5, 0.99, 1.5, 10.0, 1e6])
def test_the_golden_rule_is_the_services_rule(manifest_golden: dict[str, Any], factor: float) -> None:
    """The layer's stdlib comparison accepts exactly what the export code's numpy comparison accepts."""
    expected, atol = manifest_golden["infer_response"], manifest_golden["atol"]
    actual = _perturbed(expected, factor * atol)
    service_accepts = infer_response_difference(expected, actual) <= atol
    problems = golden.infer_mismatches(expected, actual, atol)
    assert (not problems) == service_accepts
    assert service_accepts == (factor <= 1.0)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda r: r["outputs"][0].update(name="other"), "outputs"),
        (lambda r: r["outputs"][0].update(shape=[*r["outputs"][0]["shape"], 1]), "shape"),
        (lambda r: r["outputs"][0].update(datatype="FP64"), "datatype"),
        (lambda r: r["outputs"][0].update(data=r["outputs"][0]["data"][:-1]), "values"),
        (lambda r: r.update(model_version="2"), "model_version"),
        (lambda r: r.update(id="someone-else"), "id"),
        (lambda r: r["outputs"][0]["data"].__setitem__(0, float("nan")), "expected"),
        (lambda r: r.pop("outputs"), "outputs"),
    ],
)
def test_every_kind_of_mismatch_is_named(manifest_golden: dict[str, Any], change: Any, named: str) -> None:
    expected = manifest_golden["infer_response"]
    actual = copy.deepcopy(expected)
    change(actual)
    problems = golden.infer_mismatches(expected, actual, manifest_golden["atol"])
    assert any(named in problem for problem in problems), problems


def test_nested_data_compares_as_row_major(manifest_golden: dict[str, Any]) -> None:
    expected = manifest_golden["infer_response"]
    nested = copy.deepcopy(expected)
    for output in nested["outputs"]:
        columns = output["shape"][-1]
        flat = output["data"]
        output["data"] = [flat[i : i + columns] for i in range(0, len(flat), columns)]
    assert golden.infer_mismatches(expected, nested, manifest_golden["atol"]) == []


def test_embeddings_comparison(models_dir: Path) -> None:
    manifest = read_manifest(models_dir / "all-minilm-l6-v2").golden
    assert manifest.embeddings_response is not None
    expected, atol = manifest.embeddings_response, manifest.atol
    assert golden.embeddings_mismatches(expected, copy.deepcopy(expected), atol) == []
    off = copy.deepcopy(expected)
    off["data"][1]["embedding"][5] += 10 * atol
    assert any("embedding 1" in p for p in golden.embeddings_mismatches(expected, off, atol))
    missing = copy.deepcopy(expected)
    missing["data"].pop()
    assert golden.embeddings_mismatches(expected, missing, atol)
    assert golden.embeddings_mismatches(expected, {"error": "nope"}, atol)


def test_the_hooks_event_is_one_the_service_trusts() -> None:
    claims = apigw_event.machine_claims(issuer="https://issuer", client_id="m2m", scopes=["inference/invoke"])
    event = apigw_event.http_event(
        method="POST",
        path="/v2/models/m/infer",
        route_key="POST /v2/models/{model_name}/infer",
        path_parameters={"model_name": "m"},
        body={"inputs": []},
        claims=claims,
        scopes=["inference/invoke"],
    )
    principal = principal_from_event(event)
    assert principal.scopes == frozenset({"inference/invoke"})
    assert all(isinstance(value, str) for value in event["requestContext"]["authorizer"]["jwt"]["claims"].values())
    assert json.loads(event["body"]) == {"inputs": []}
    assert event["version"] == "2.0"
    assert event["isBase64Encoded"] is False


def test_model_uri_and_manifest_key() -> None:
    ref = model_ref.parse_model_uri("s3://bucket/models/m/1-abc/model.onnx?versionId=v.1_x")
    assert (ref.bucket, ref.key, ref.version_id) == ("bucket", "models/m/1-abc/model.onnx", "v.1_x")
    assert ref.manifest_key == "models/m/1-abc/manifest.json"
    assert model_ref.parse_model_uri("s3://b/model.onnx").manifest_key == "manifest.json"
    for bad in ("file:///tmp/model.onnx", "s3://bucket", "s3:///key", "https://bucket/key"):
        with pytest.raises(ValueError, match="s3://bucket/key"):
            model_ref.parse_model_uri(bad)


def test_emf_line_is_an_embedded_metric_record() -> None:
    record = json.loads(
        emf.emf_line("NS", {"Stack": "s"}, {"Availability": (1.0, "Count"), "Latency": (12.5, "Milliseconds")})
    )
    directive = record["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "NS"
    assert directive["Dimensions"] == [["Stack"]]
    assert {m["Name"]: m["Unit"] for m in directive["Metrics"]} == {"Availability": "Count", "Latency": "Milliseconds"}
    assert record["Stack"] == "s"
    assert record["Availability"] == 1.0
    assert record["Latency"] == 12.5
    assert isinstance(record["_aws"]["Timestamp"], int)
