"""The Lambda entry point (the image's CMD): Powertools around ``Mangum(app)``.

The models load here, at init, outside the handler: init runs once per execution environment, with
the full CPU allocation (and free of charge on the first 10 s for on-demand functions), so no
request pays for it. If a model fails its checks, init fails and the environment never serves.
"""

from __future__ import annotations

import warnings
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from mangum import Mangum

from onnx_lambda.app import create_app
from onnx_lambda.config import get_settings
from onnx_lambda.observability import logger, metrics, tracer
from onnx_lambda.registry import load_registry

# An invocation that ends in a 4xx records no inference metrics; that's expected, not worth a warning.
warnings.filterwarnings("ignore", message="No application metrics to publish")

settings = get_settings()
registry = load_registry(settings)
app = create_app(registry, settings)
asgi = Mangum(app, lifespan="off")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return asgi(event, context)  # type: ignore[arg-type]  # Powertools' and Mangum's context types agree at runtime
