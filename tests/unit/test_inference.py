"""The inference routes' work (``inference.py``) called directly, as both FastAPI and the Lambda handler call it.

Real models from ``models/`` and a real onnxruntime: every value a route returns is checked against a raw
``onnxruntime.InferenceSession`` (and ``tokenizers``) run here on the same file. Error bodies follow the
Open Inference Protocol (``{"error": "..."}``) and, on ``/v1/``, OpenAI's error object. Written to pin the
behaviours a mutation run (``make mutation``, docs/testing.md) found no test would notice losing.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson
import pytest
import tritonclient.http as triton
from tokenizers import Tokenizer

from onnx_lambda import inference
from onnx_lambda.config import ModelSource, Settings
from onnx_lambda.errors import BadRequest, Forbidden, PayloadTooLarge, Unauthorized, UnsupportedMediaType
from onnx_lambda.inference import (
    MAX_ERROR_BODY,
    InferenceRoutes,
    describe_validation_errors,
    error_reply,
    internal_error_reply,
    make_authenticator,
    require_json,
)
from onnx_lambda.observability import BATCH_SIZE, INFERENCE_TIME, TOKENS, logger, metrics
from onnx_lambda.protocol import encode_infer_request
from onnx_lambda.registry import ModelRegistry, load_registry
from onnx_lambda_tools.invoke import local_model_sources
from tests.unit.test_auth import CLIENT, ISSUER, JwksEndpoint, access_claims, jwk, token

TABULAR = "breast-cancer-classifier"
EMBEDDER = "all-minilm-l6-v2"
ROWS = np.array([[0.5] * 30, [1.5] * 30, [12.0] * 30], dtype=np.float32)
LIMIT = 500
CLAIMS = {"sub": "caller-7", "client_id": "app-3", "token_use": "access", "scope": "inference/invoke"}


def sources(models_dir: Path) -> list[ModelSource]:
    return [ModelSource(**source) for source in json.loads(local_model_sources(models_dir))]


@pytest.fixture(scope="module")
def registry(models_dir: Path) -> ModelRegistry:
    return load_registry(Settings(models=sources(models_dir)))


@pytest.fixture
def routes(registry: ModelRegistry, models_dir: Path) -> InferenceRoutes:
    return InferenceRoutes(registry, Settings(models=sources(models_dir), max_body_bytes=LIMIT))


@pytest.fixture
def fresh_metrics() -> Iterator[None]:
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


def event_with(claims: dict[str, Any] | None, scopes: list[str] | None = None) -> dict[str, Any]:
    authorizer = {"jwt": {"claims": claims, "scopes": scopes}} if claims is not None else {}
    return {"version": "2.0", "requestContext": {"requestId": "r", "authorizer": authorizer}}


def raw_session(models_dir: Path, name: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(models_dir / name / "model.onnx"), providers=["CPUExecutionProvider"])


def body_of(reply: inference.Reply) -> Any:
    return orjson.loads(reply.body)


# --- error bodies ----------------------------------------------------------------------------------


def test_protocol_errors_are_an_error_string() -> None:
    reply = error_reply(404, "model 'x' is not served", path="/v2/models/x/infer")
    assert (reply.status, reply.headers, body_of(reply)) == (
        404,
        {"content-type": "application/json"},
        {"error": "model 'x' is not served"},
    )


#: OpenAI's error object is {message, type, param, code}; the type by status is this API's choice (README).
OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    499: "invalid_request_error",
    500: "server_error",
    503: "server_error",
}


@pytest.mark.parametrize(("status", "kind"), sorted(OPENAI_TYPES.items()))
def test_v1_errors_are_openais_error_object(status: int, kind: str) -> None:
    reply = error_reply(status, "what went wrong", {"www-authenticate": "Bearer"}, path="/v1/embeddings")
    assert reply.status == status
    assert reply.headers == {"content-type": "application/json", "www-authenticate": "Bearer"}
    assert body_of(reply) == {"error": {"message": "what went wrong", "type": kind, "param": None, "code": None}}


@pytest.mark.parametrize("path", ["/v2/models/m/infer", "/v1/embeddings"])
def test_a_long_message_is_halved_until_the_body_fits(path: str) -> None:
    reply = error_reply(400, "a" * 1500, path=path)
    assert len(reply.body) <= MAX_ERROR_BODY
    document = body_of(reply)
    message = document["error"]["message"] if path.startswith("/v1/") else document["error"]
    assert message == "a" * 750 + "..."


def test_a_body_of_exactly_the_limit_is_not_cut() -> None:
    message = "b" * (MAX_ERROR_BODY - len(b'{"error":""}'))
    reply = error_reply(400, message, path="/v2/models/m/infer")
    assert len(reply.body) == MAX_ERROR_BODY
    assert body_of(reply) == {"error": message}


@pytest.mark.parametrize(("path", "kind"), [("/v2/models/m/infer", None), ("/v1/embeddings", "server_error")])
def test_the_500_quotes_the_request_id_and_nothing_else(path: str, kind: str | None) -> None:
    reply = internal_error_reply("req-42", path)
    assert reply.status == 500
    assert reply.headers == {"content-type": "application/json", "x-request-id": "req-42"}
    expected = "internal error; request id req-42"
    document = body_of(reply)
    if kind is None:
        assert document == {"error": expected}
    else:
        assert document == {"error": {"message": expected, "type": kind, "param": None, "code": None}}


# --- who is calling ------------------------------------------------------------------------------


def test_apigateway_mode_reads_the_events_claims(routes: InferenceRoutes) -> None:
    principal = routes.authorize({}, event_with(CLAIMS, ["inference/invoke"]))
    assert (principal.subject, principal.client_id) == ("caller-7", "app-3")
    with pytest.raises(Unauthorized, match="no verified token claims"):
        routes.authorize({"authorization": "Bearer x.y.z"}, None)


def test_a_token_without_an_accepted_scope_is_forbidden(routes: InferenceRoutes) -> None:
    with pytest.raises(Forbidden, match="none of the scopes this route accepts"):
        routes.authorize({}, event_with({**CLAIMS, "scope": "openid"}))


def test_the_callers_sub_and_client_id_go_into_every_log_line(routes: InferenceRoutes) -> None:
    logger.remove_keys(["sub", "client_id"])
    routes.authorize({}, event_with(CLAIMS, ["inference/invoke"]))
    keys = dict(logger.get_current_keys())  # a copy: the logger's own dict changes below
    logger.remove_keys(["sub", "client_id"])
    assert (keys.get("sub"), keys.get("client_id")) == ("caller-7", "app-3")


def jwt_settings(models_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "models": sources(models_dir),
        "auth_mode": "jwt",
        "jwt_issuer": ISSUER,
        "jwt_audience": [CLIENT],
        **overrides,
    }
    return Settings(**values)


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        ({"jwt_issuer": None}, "ONNX_LAMBDA_JWT_ISSUER"),
        ({"jwt_issuer": None, "jwt_jwks_url": "http://127.0.0.1:9/jwks.json"}, "ONNX_LAMBDA_JWT_ISSUER"),
        ({"jwt_audience": []}, "ONNX_LAMBDA_JWT_AUDIENCE"),
    ],
)
def test_jwt_mode_needs_an_issuer_and_an_audience(models_dir: Path, missing: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        make_authenticator(jwt_settings(models_dir, **missing))


def real_time_token(**claims: Any) -> str:
    now = int(time.time())
    return token(access_claims(**{"iat": now - 5, "auth_time": now - 5, "exp": now + 3600, **claims}))


def test_jwt_mode_verifies_the_bearer_token_against_the_issuers_keys(registry: ModelRegistry, models_dir: Path) -> None:
    endpoint = JwksEndpoint()
    try:
        endpoint.body = json.dumps({"keys": [jwk("k1", "k1")]}).encode()
        routes = InferenceRoutes(registry, jwt_settings(models_dir, jwt_jwks_url=endpoint.url))
        principal = routes.authorize({"authorization": f"Bearer {real_time_token()}"}, None)
        assert principal.subject == access_claims()["sub"]
        assert principal.client_id == CLIENT
        with pytest.raises(Unauthorized, match="missing Authorization header"):
            routes.authorize({}, event_with(CLAIMS))  # the event's claims count for nothing in jwt mode
    finally:
        endpoint.close()


def test_jwt_mode_applies_the_configured_leeway(registry: ModelRegistry, models_dir: Path) -> None:
    endpoint = JwksEndpoint()
    try:
        endpoint.body = json.dumps({"keys": [jwk("k1", "k1")]}).encode()
        settings = jwt_settings(models_dir, jwt_jwks_url=endpoint.url, jwt_leeway_seconds=0)
        routes = InferenceRoutes(registry, settings)
        expired = real_time_token(exp=int(time.time()) - 5)
        with pytest.raises(Unauthorized, match="expired"):
            routes.authorize({"authorization": f"Bearer {expired}"}, None)
    finally:
        endpoint.close()


# --- body limits -----------------------------------------------------------------------------------


@pytest.mark.parametrize("declared", [None, "", "0", "000", str(LIMIT), "0" * 20 + "1", "²", "12a", " 600"])
def test_declared_lengths_within_the_limit_or_not_digits_pass(routes: InferenceRoutes, declared: str | None) -> None:
    routes.check_declared_length(declared)


@pytest.mark.parametrize("declared", [str(LIMIT + 1), "1000", "0" * 20 + "600", "9" * 13])
def test_declared_lengths_over_the_limit_are_413(routes: InferenceRoutes, declared: str) -> None:
    with pytest.raises(PayloadTooLarge, match=f"the limit is {LIMIT}"):
        routes.check_declared_length(declared)


def test_a_body_of_the_limit_passes_and_one_byte_more_is_413(routes: InferenceRoutes) -> None:
    assert routes.check_body(b"x" * LIMIT) == b"x" * LIMIT
    with pytest.raises(PayloadTooLarge, match=f"body is {LIMIT + 1} bytes; the limit is {LIMIT}"):
        routes.check_body(b"x" * (LIMIT + 1))


@pytest.mark.parametrize(
    "content_type",
    [None, "application/json", "Application/JSON", "application/json; charset=utf-8", "application/problem+json"],
)
def test_json_content_types_are_accepted(content_type: str | None) -> None:
    require_json({} if content_type is None else {"content-type": content_type})


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/json-seq", "application/jsonx; charset=utf-8", "application/json charset=utf-8"],
)
def test_other_content_types_are_415(content_type: str) -> None:
    with pytest.raises(UnsupportedMediaType, match="content-type must be application/json"):
        require_json({"content-type": content_type})


def test_only_the_first_parameter_separator_splits_the_media_type() -> None:
    require_json({"content-type": "application/json; a=b; c=d"})


# --- infer ---------------------------------------------------------------------------------------


class FakeTime:
    """``time`` for the inference module: every perf_counter() is 0.125 s after the last."""

    def __init__(self) -> None:
        self.now = 1000.0

    def perf_counter(self) -> float:
        self.now += 0.125
        return self.now


def test_infer_answers_what_onnxruntime_computes_with_the_model_version_and_request_id(
    routes: InferenceRoutes, registry: ModelRegistry, models_dir: Path, fresh_metrics: None
) -> None:
    body, headers = encode_infer_request([("features", ROWS)], request_id="req-9")
    reply = routes.infer(registry.get(TABULAR), body, {k.lower(): v for k, v in headers.items()})
    label, probabilities = raw_session(models_dir, TABULAR).run(["label", "probabilities"], {"features": ROWS})
    document = body_of(reply)
    served = registry.get(TABULAR).model
    assert (reply.status, document["model_name"], document["model_version"], document["id"]) == (
        200,
        TABULAR,
        served.version,
        "req-9",
    )
    outputs = {output["name"]: output["data"] for output in document["outputs"]}
    assert outputs["label"] == label.tolist()
    np.testing.assert_array_equal(np.array(outputs["probabilities"], dtype=np.float32), probabilities.reshape(-1))


def test_infer_sends_the_outputs_asked_for_as_binary_as_binary(
    routes: InferenceRoutes, registry: ModelRegistry, models_dir: Path, fresh_metrics: None
) -> None:
    body, headers = encode_infer_request(
        [("features", ROWS)], outputs=["label", "probabilities"], binary_outputs=["probabilities"]
    )
    reply = routes.infer(registry.get(TABULAR), body, {k.lower(): v for k, v in headers.items()})
    assert reply.headers["content-type"] == "application/octet-stream"
    result = triton.InferenceServerClient.parse_response_body(
        reply.body, header_length=int(reply.headers["inference-header-content-length"])
    )
    label, probabilities = raw_session(models_dir, TABULAR).run(["label", "probabilities"], {"features": ROWS})
    assert result.get_output("probabilities")["parameters"]["binary_data_size"] == probabilities.nbytes
    assert "data" in result.get_output("label")
    np.testing.assert_array_equal(result.as_numpy("probabilities"), probabilities)
    np.testing.assert_array_equal(result.as_numpy("label"), label)


def emf(document: Mapping[str, Any]) -> dict[str, Any]:
    """An EMF document's dimensions, metric units and values."""
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    (dimensions,) = directive["Dimensions"]
    units = {metric["Name"]: metric["Unit"] for metric in directive["Metrics"]}
    return {
        "dimensions": {name: document[name] for name in dimensions},
        "units": units,
        "values": {name: document[name] for name in units},
    }


def test_infer_records_its_time_in_ms_and_its_batch_under_the_models_dimensions(
    routes: InferenceRoutes, registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch, fresh_metrics: None
) -> None:
    monkeypatch.setattr(inference, "time", FakeTime())
    body, headers = encode_infer_request([("features", ROWS)])
    routes.infer(registry.get(TABULAR), body, {k.lower(): v for k, v in headers.items()})
    recorded = emf(metrics.serialize_metric_set())
    served = registry.get(TABULAR).model
    assert recorded["dimensions"]["model"] == TABULAR
    assert recorded["dimensions"]["model_version"] == served.version
    assert recorded["units"] == {INFERENCE_TIME: "Milliseconds", BATCH_SIZE: "Count"}
    assert recorded["values"] == {INFERENCE_TIME: [125.0], BATCH_SIZE: [3.0]}


def test_the_same_model_again_adds_to_the_same_metric_set_without_a_flush(
    routes: InferenceRoutes, registry: ModelRegistry, capsys: pytest.CaptureFixture[str], fresh_metrics: None
) -> None:
    body, headers = encode_infer_request([("features", ROWS)])
    routes.infer(registry.get(TABULAR), body, {k.lower(): v for k, v in headers.items()})
    capsys.readouterr()
    routes.infer(registry.get(TABULAR), body, {k.lower(): v for k, v in headers.items()})
    assert '{"_aws"' not in capsys.readouterr().out
    assert emf(metrics.serialize_metric_set())["values"][BATCH_SIZE] == [3.0, 3.0]


def test_metrics_of_another_model_flush_the_first_models_under_its_own_dimensions(
    routes: InferenceRoutes,
    registry: ModelRegistry,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    fresh_metrics: None,
) -> None:
    monkeypatch.setattr(inference, "time", FakeTime())
    body, headers = encode_infer_request([("features", ROWS)])
    routes.infer(registry.get(TABULAR), body, {k.lower(): v for k, v in headers.items()})
    capsys.readouterr()
    routes.embeddings(orjson.dumps({"model": EMBEDDER, "input": ["one", "two"]}), {"content-type": "application/json"})
    flushed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert [emf(document)["dimensions"]["model"] for document in flushed] == [TABULAR]
    assert emf(flushed[0])["values"][BATCH_SIZE] == [3.0]
    current = emf(metrics.serialize_metric_set())
    assert current["dimensions"]["model"] == EMBEDDER
    assert current["dimensions"]["model_version"] == registry.get(EMBEDDER).model.version
    assert current["values"][BATCH_SIZE] == [2.0]
    assert current["values"][INFERENCE_TIME] == [125.0]
    assert current["units"][TOKENS] == "Count"


# --- embeddings ------------------------------------------------------------------------------------


def raw_embeddings(models_dir: Path, texts: list[str]) -> tuple[np.ndarray, int]:
    """tokenizers + onnxruntime on the published files, as the model card prescribes (pad to the longest)."""
    tokenizer = Tokenizer.from_file(str(models_dir / EMBEDDER / "tokenizer.json"))
    tokenizer.enable_truncation(256)
    tokenizer.enable_padding()
    encodings = tokenizer.encode_batch(texts)
    feeds = {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }
    (vectors,) = raw_session(models_dir, EMBEDDER).run(["sentence_embedding"], feeds)
    return vectors, int(feeds["attention_mask"].sum())


def test_embeddings_as_floats_and_as_base64_are_the_same_vectors(
    routes: InferenceRoutes, models_dir: Path, fresh_metrics: None
) -> None:
    texts = ["The quick brown fox.", "Lambda runs the model."]
    expected, tokens = raw_embeddings(models_dir, texts)
    headers = {"content-type": "application/json"}
    floats = body_of(routes.embeddings(orjson.dumps({"model": EMBEDDER, "input": texts}), headers))
    packed = body_of(
        routes.embeddings(orjson.dumps({"model": EMBEDDER, "input": texts, "encoding_format": "base64"}), headers)
    )
    for document in (floats, packed):
        assert document["object"] == "list"
        assert document["model"] == EMBEDDER
        assert document["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
        assert [(item["object"], item["index"]) for item in document["data"]] == [("embedding", 0), ("embedding", 1)]
    from_floats = np.array([item["embedding"] for item in floats["data"]], dtype=np.float32)
    from_base64 = np.stack([np.frombuffer(base64.b64decode(item["embedding"]), "<f4") for item in packed["data"]])
    np.testing.assert_allclose(from_floats, expected, atol=1e-5)
    np.testing.assert_array_equal(from_base64, from_floats)


# --- pydantic's errors as one line -------------------------------------------------------------------


def test_validation_errors_name_their_field_without_fastapis_body_prefix() -> None:
    errors = [
        {"loc": ("body", "input", 0), "msg": "Input should be a valid string"},
        {"loc": ("model",), "msg": "Field required"},
        {"loc": ("body",), "msg": "JSON decode error"},
        {"msg": "no location"},
    ]
    assert describe_validation_errors(errors) == (
        "input.0: Input should be a valid string; model: Field required; body: JSON decode error; body: no location"
    )


def test_validation_errors_list_five_and_count_the_rest() -> None:
    five = [{"loc": ("input", n), "msg": "bad"} for n in range(5)]
    assert describe_validation_errors(five) == "; ".join(f"input.{n}: bad" for n in range(5))
    seven = [{"loc": ("input", n), "msg": "bad"} for n in range(7)]
    assert describe_validation_errors(seven) == "; ".join(f"input.{n}: bad" for n in range(5)) + "; and 2 more"
    assert describe_validation_errors([]) == "invalid request"


def test_a_body_that_is_not_an_embeddings_request_is_a_400_naming_the_fields(routes: InferenceRoutes) -> None:
    with pytest.raises(BadRequest) as caught:
        routes.embeddings(b'{"model": 5}', {"content-type": "application/json"})
    assert caught.value.message.startswith("model: ")
    assert "input: Field required" in caught.value.message
