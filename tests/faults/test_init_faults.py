"""The real handler under the real Lambda runtime (the Runtime Interface Emulator) with S3 failing at init.

Lambda re-runs a failed init on the next invoke, and the emulator does the same, so every invoke here
is a fresh init against whatever the test has done to S3. The function must fail init with a message
that names the object and version, emit the ``ModelLoadFailure`` metric, stay inside the 10 s init
budget, and never answer a request (health included) with a half-loaded set of models.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from mangum import Mangum

from onnx_lambda.app import create_app
from onnx_lambda.config import ModelSource, Settings
from onnx_lambda.manifest import MANIFEST_FILE, MODEL_FILE, OPTIMIZED_MODEL_FILE
from onnx_lambda.registry import ModelRegistry
from onnx_lambda_tools.invoke import LambdaContext
from onnx_lambda_tools.local.events import build_event
from onnx_lambda_tools.local.lambda_runtime import LambdaEnvironment
from tests.faults.support import (
    TABULAR,
    Published,
    emf_metric_names,
    function_environment,
    health_event,
    infer_event,
    init_error,
    json_lines,
    publish_model,
    tabular_body,
)
from tests.integration.moto import Blackhole, FaultyProxy, ProxiedRequest, ResettingEndpoint, closed_port_url

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

#: Lambda stops an init that runs longer than this (on-demand functions).
LAMBDA_INIT_BUDGET_SECONDS = 10.0


@pytest.fixture
def published(s3: S3Client, bucket: str, models_dir: Path) -> Published:
    return publish_model(s3, bucket, models_dir)


def start(environment: dict[str, str], log: Path) -> LambdaEnvironment:
    return LambdaEnvironment(environment, log_path=log, function_name=f"faults-{uuid.uuid4().hex[:6]}")


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "function.log"


def test_the_default_s3_deadline_fits_inside_the_init_budget() -> None:
    settings = Settings(models=[ModelSource(uri="s3://b/k?versionId=v", sha256="0" * 64)])
    # The deadline covers every part and retry of one model; session creation takes 0.05-0.17 s after it.
    assert settings.s3_deadline_seconds + 1.0 < LAMBDA_INIT_BUDGET_SECONDS
    assert settings.s3_timeout_seconds < settings.s3_deadline_seconds


def test_s3_that_drops_every_connection_fails_init_after_bounded_retries(
    published: Published, tmp_path: Path, log: Path
) -> None:
    with (
        ResettingEndpoint() as s3,
        start(function_environment([published.source()], s3.endpoint_url, tmp_path), log) as fn,
    ):
        message = init_error(fn.invoke(health_event()))
        attempts_per_init = s3.connections
        message_again = init_error(fn.invoke(infer_event(TABULAR, tabular_body())))
        attempts_after_two_inits = s3.connections

    assert published.label(MANIFEST_FILE) in message
    assert message_again == message
    # botocore's standard retries, bounded by ONNX_LAMBDA_S3_MAX_ATTEMPTS (default 4), once per init.
    assert attempts_per_init == Settings.model_fields["s3_max_attempts"].default == 4
    assert attempts_after_two_inits == 2 * attempts_per_init
    lines = json_lines(log)
    failures = [line for line in lines if line.get("message") == "model load failed"]
    assert len(failures) == 2
    assert published.label(MANIFEST_FILE) in failures[0]["reason"]
    assert "ModelLoadFailure" in emf_metric_names(log)
    assert not [line for line in lines if line.get("message") == "model loaded"]


def test_s3_that_never_answers_fails_init_at_the_deadline(published: Published, tmp_path: Path, log: Path) -> None:
    """Connections succeed (the kernel's backlog) but no byte comes back: only the deadline ends the wait."""
    with Blackhole() as s3, start(function_environment([published.source()], s3.endpoint_url, tmp_path), log) as fn:
        result = fn.invoke(health_event())
    message = init_error(result)
    assert published.label(MANIFEST_FILE) in message
    assert "not fetched within the 7 s deadline (ONNX_LAMBDA_S3_DEADLINE_SECONDS)" in message, (result.seconds, message)
    assert "ModelLoadFailure" in emf_metric_names(log)


def test_no_half_loaded_set_of_models_ever_serves(
    s3: S3Client, bucket: str, published: Published, moto_server: str, tmp_path: Path, log: Path
) -> None:
    """The first model loads; the second is missing: the first is not served either, and health says no."""
    missing = Published(
        bucket, "models/gone/1", {MODEL_FILE: "v-missing", MANIFEST_FILE: "m-missing"}, "0" * 64, "1" * 64
    )
    sources = [published.source(), missing.source()]
    with start(function_environment(sources, moto_server, tmp_path), log) as fn:
        message = init_error(fn.invoke(infer_event(TABULAR, tabular_body())))
        init_error(fn.invoke(health_event()))
    assert f"s3://{bucket}/models/gone/1/{MANIFEST_FILE}" in message
    assert "does not exist" in message
    loaded = [line for line in json_lines(log) if line.get("message") == "model loaded"]
    assert loaded, "the first model should have loaded before the second failed"
    assert {line["model"] for line in loaded} == {TABULAR}


def test_slow_s3_fails_init_then_a_later_init_recovers(
    published: Published, moto_server: str, tmp_path: Path, log: Path
) -> None:
    """Every read stalls mid-body until S3 recovers; the next cold start (a re-init) then serves."""
    stalling = {"on": True}

    def stall(request: ProxiedRequest) -> bool:
        return stalling["on"] and request.method == "GET"

    with FaultyProxy(moto_server, stall=stall) as proxy:
        environment = function_environment(
            [published.source()],
            proxy.endpoint_url,
            tmp_path,
            ONNX_LAMBDA_S3_TIMEOUT_SECONDS="1",
            ONNX_LAMBDA_S3_DEADLINE_SECONDS="3",
        )
        with start(environment, log) as fn:
            message = init_error(fn.invoke(health_event()))
            stalled = sum(request.stalled for request in proxy.requests)
            stalling["on"] = False
            recovered = fn.invoke(infer_event(TABULAR, tabular_body(2)))
    assert "deadline" in message
    assert published.label(MANIFEST_FILE) in message
    assert stalled >= 2, "the stalled read should have been retried before the deadline"
    assert not recovered.function_error, recovered.payload
    assert recovered.payload["statusCode"] == 200


def test_an_app_whose_models_did_not_load_answers_only_health(tmp_path: Path) -> None:
    """The app's own gate, behind Mangum as in the handler: not ready, and 503 for every model route."""
    settings = Settings(models=[ModelSource(uri="s3://b/k?versionId=v", sha256="0" * 64)])
    handler = Mangum(create_app(ModelRegistry(), settings), lifespan="off")

    ready = handler(health_event(), LambdaContext())  # type: ignore[arg-type]
    assert ready["statusCode"] == 503
    assert "not ready" in json.loads(ready["body"])["error"]
    live = handler(build_event(method="GET", path="/v2/health/live", route_key="GET /v2/health/live"), LambdaContext())  # type: ignore[arg-type]
    assert live["statusCode"] == 200
    infer = handler(infer_event(TABULAR, tabular_body()), LambdaContext())  # type: ignore[arg-type]
    assert infer["statusCode"] == 503
    assert "not loaded" in json.loads(infer["body"])["error"]


def test_a_reinit_in_the_same_environment_loads_what_the_first_init_cached(
    published: Published, models_dir: Path, moto_server: str, tmp_path: Path, log: Path
) -> None:
    """The first init writes the model it downloaded to /tmp (while its session is built) before it ends; a
    re-init in the same environment, which keeps /tmp (Lambda's, after a crash or a timeout), loads it from
    there with S3 out of reach, and answers the same."""
    cache = tmp_path / "cache"
    with start(function_environment([published.source()], moto_server, cache), log) as fn:
        first = fn.invoke(infer_event(TABULAR, tabular_body()))
    assert not first.function_error, first.payload
    assert first.payload["statusCode"] == 200
    (entry,) = [path for path in cache.iterdir() if not path.name.startswith(".")]
    # The file the deployment loads: the optimized one, as publish pins it.
    assert (entry / OPTIMIZED_MODEL_FILE).read_bytes() == (models_dir / TABULAR / OPTIMIZED_MODEL_FILE).read_bytes()
    assert not (entry / MODEL_FILE).exists()
    with start(function_environment([published.source()], closed_port_url(), cache), log) as fn:
        again = fn.invoke(infer_event(TABULAR, tabular_body()))
    assert not again.function_error, again.payload
    assert json.loads(again.payload["body"]) == json.loads(first.payload["body"])
