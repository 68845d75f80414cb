"""Helpers of the fault-injection tests: real models published to the real local S3, API Gateway events,
and what the Lambda runtime and the function's logs say."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from onnx_lambda.manifest import (
    MANIFEST_FILE,
    MODEL_FILE,
    OPTIMIZED_MODEL_FILE,
    TOKENIZER_FILE,
    read_manifest,
    sha256_hex,
)
from onnx_lambda_tools.local.cloud import free_port
from onnx_lambda_tools.local.events import build_event
from onnx_lambda_tools.local.lambda_runtime import InvokeResult
from tests.integration.moto import ACCESS_KEY, REGION

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

TABULAR = "breast-cancer-classifier"
ROW = [0.5] * 30
#: What API Gateway's JWT authorizer hands the function for a machine client's access token.
CLAIMS = {"sub": "fault-tests", "client_id": "fault-tests", "token_use": "access", "scope": "inference/invoke"}


@dataclass(frozen=True)
class Published:
    """One model's files in the local S3: each file's version, and the sha256 of the model and the manifest."""

    bucket: str
    prefix: str
    versions: dict[str, str]
    sha256: str
    manifest_sha256: str

    @property
    def model_key(self) -> str:
        return f"{self.prefix}/{MODEL_FILE}"

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.model_key}?versionId={self.versions[MODEL_FILE]}"

    def source(self) -> dict[str, str]:
        """What the deployment pins, as ``onnx-lambda publish`` prints it."""
        return {
            "uri": self.uri,
            "manifest_version_id": self.versions[MANIFEST_FILE],
            "manifest_sha256": self.manifest_sha256,
            "tokenizer_version_id": self.versions.get(TOKENIZER_FILE, ""),
            "optimized_version_id": self.versions.get(OPTIMIZED_MODEL_FILE, ""),
        }

    def portable(self) -> Published:
        """These pins without the optimized model's: a deployment that loads model.onnx."""
        return replace(self, versions={name: v for name, v in self.versions.items() if name != OPTIMIZED_MODEL_FILE})

    def republished(self, name: str, version: str, data: bytes) -> Published:
        """These pins with one file's version replaced (and, for the manifest, its sha256)."""
        manifest_sha256 = sha256_hex(data) if name == MANIFEST_FILE else self.manifest_sha256
        return replace(self, versions={**self.versions, name: version}, manifest_sha256=manifest_sha256)

    def label(self, name: str = MODEL_FILE) -> str:
        """How the service names one of these objects in its messages."""
        return f"s3://{self.bucket}/{self.prefix}/{name} (versionId {self.versions[name]})"


def publish_files(s3: S3Client, bucket: str, prefix: str, files: Mapping[str, bytes], sha256: str) -> Published:
    versions = {
        name: s3.put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=data)["VersionId"]
        for name, data in files.items()
    }
    return Published(bucket, prefix, versions, sha256, sha256_hex(files[MANIFEST_FILE]))


def model_files(models_dir: Path, name: str) -> dict[str, bytes]:
    """Every file `make model` wrote for ``name``, as `publish` uploads them."""
    directory = models_dir / name
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir()) if path.is_file()}


def publish_model(s3: S3Client, bucket: str, models_dir: Path, name: str = TABULAR) -> Published:
    sha256 = read_manifest(models_dir / name).model_sha256
    return publish_files(s3, bucket, f"models/{name}/{uuid.uuid4().hex[:8]}", model_files(models_dir, name), sha256)


def function_environment(
    sources: list[dict[str, str]], s3_endpoint: str | None, cache_dir: Path, **extra: str
) -> dict[str, str]:
    """The deployed function's environment (see template.yaml), pointed at a local S3."""
    environment = {
        "ONNX_LAMBDA_MODELS": json.dumps(sources),
        "ONNX_LAMBDA_CACHE_DIR": str(cache_dir),
        "ONNX_LAMBDA_AUTH_MODE": "apigateway",
        "POWERTOOLS_SERVICE_NAME": "onnx-lambda",
        "POWERTOOLS_METRICS_NAMESPACE": "OnnxLambda",
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": ACCESS_KEY,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        **extra,
    }
    if s3_endpoint is not None:
        environment["ONNX_LAMBDA_S3_ENDPOINT_URL"] = s3_endpoint
    return environment


def infer_event(model: str, body: Mapping[str, Any], request_id: str | None = None) -> dict[str, Any]:
    path = f"/v2/models/{model}/infer"
    return build_event(
        method="POST",
        path=path,
        route_key="POST /v2/models/{model_name}/infer",
        headers=[("content-type", "application/json")],
        body=json.dumps(body).encode(),
        path_parameters={"model_name": model},
        claims={**CLAIMS, "iat": int(time.time()), "exp": int(time.time()) + 3600},
        scopes=["inference/invoke"],
        request_id=request_id,
    )


def health_event() -> dict[str, Any]:
    return build_event(method="GET", path="/v2/health/ready", route_key="GET /v2/health/ready")


def tabular_body(rows: int = 1) -> dict[str, Any]:
    return {"inputs": [{"name": "features", "datatype": "FP32", "shape": [rows, 30], "data": ROW * rows}]}


def init_error(result: InvokeResult) -> str:
    """The message of the runtime's init error; fails the test if the invocation was served instead."""
    assert result.function_error, f"the function served a request after a failed init: {result.payload}"
    assert isinstance(result.payload, dict)
    assert result.payload.get("errorType") == "ModelLoadError", result.payload
    return str(result.payload["errorMessage"])


def json_lines(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def emf_metric_names(log: Path) -> set[str]:
    return {
        metric["Name"]
        for line in json_lines(log)
        if "_aws" in line
        for directive in line["_aws"]["CloudWatchMetrics"]
        for metric in directive["Metrics"]
    }


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """The app behind uvicorn on a free loopback port, in a thread of this process; yields its URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", access_log=False))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "uvicorn exited before it started"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def file_source(models_dir: Path, name: str = TABULAR) -> dict[str, str]:
    directory = (models_dir / name).resolve()
    return {"uri": (directory / MODEL_FILE).as_uri(), "sha256": read_manifest(directory).model_sha256}
