"""``onnx-lambda invoke``: the handler in-process on an API Gateway event file, like ``sam local invoke -e``."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from onnx_lambda.manifest import MODEL_FILE, read_manifest

#: What ``make model`` builds and the local stack serves.
DEFAULT_MODELS = ("all-minilm-l6-v2", "breast-cancer-classifier")
FUNCTION_NAME = "onnx-lambda-inference"


@dataclass
class LambdaContext:
    """The attributes of the runtime's context object that the handler and Powertools read."""

    function_name: str = FUNCTION_NAME
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1769
    timeout_seconds: float = 30.0
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = f"arn:aws:lambda:us-east-1:123456789012:function:{FUNCTION_NAME}"
    log_group_name: str = f"/aws/lambda/{FUNCTION_NAME}"
    log_stream_name: str = "local"
    _deadline: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def local_model_sources(models_dir: Path, names: tuple[str, ...] = DEFAULT_MODELS) -> str:
    """``ONNX_LAMBDA_MODELS`` for the built models on disk, pinned to their manifests' sha256."""
    sources = []
    for name in names:
        directory = (models_dir / name).resolve()
        manifest = read_manifest(directory)
        sources.append({"uri": (directory / MODEL_FILE).as_uri(), "sha256": manifest.model_sha256})
    return json.dumps(sources)


def function_environment(models_dir: Path) -> dict[str, str]:
    """The environment the deployed function gets, with local models standing in for S3."""
    return {
        "ONNX_LAMBDA_MODELS": local_model_sources(models_dir),
        "ONNX_LAMBDA_AUTH_MODE": "apigateway",
        "POWERTOOLS_SERVICE_NAME": "onnx-lambda",
        "POWERTOOLS_METRICS_NAMESPACE": "OnnxLambda",
        "AWS_LAMBDA_FUNCTION_NAME": FUNCTION_NAME,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769",
        "AWS_REGION": os.environ.get("AWS_REGION", "us-east-1"),
    }


def add_invoke_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("event", type=Path, help="an API Gateway HTTP API (v2) event, e.g. events/embeddings.json")
    parser.add_argument("--models-dir", type=Path, default=Path("models"), help="built models (default: models)")


def invoke_command(args: argparse.Namespace) -> int:
    event = json.loads(args.event.read_text())
    for key, value in function_environment(args.models_dir).items():
        os.environ.setdefault(key, value)
    # Like `sam local invoke`: the function's logs and metrics go to stderr, the response to stdout.
    with contextlib.redirect_stdout(sys.stderr):
        from onnx_lambda.observability import logger

        logger.registered_handler.setStream(sys.stderr)  # type: ignore[attr-defined]
        from onnx_lambda.handler import lambda_handler

        response = lambda_handler(event, LambdaContext())
    json.dump(response, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
