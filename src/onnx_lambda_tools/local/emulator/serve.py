"""``onnx-lambda serve --lambda``: the local stack's settings handed to the API Gateway + Lambda emulator.

The functions get what the deployed function gets from the template, with local values for what only
a deployed stack has: the published models' ``s3://`` URIs, the local S3 endpoint, and credentials for
it. The front verifies tokens against the local Cognito, as the HTTP API's JWT authorizer would. Unless
turned off, the local monitoring (:mod:`onnx_lambda_tools.local.monitoring`) records the stack's metrics
and serves the template's dashboard and alarms on a loopback port of its own.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from onnx_lambda.auth import verifier_from_settings
from onnx_lambda.config import Settings
from onnx_lambda_tools.local import emulator, monitoring
from onnx_lambda_tools.local.emulator.front import build_gateway, serve_gateway
from onnx_lambda_tools.local.lambda_runtime import rie_binary
from onnx_lambda_tools.publish import models_variable


def function_environment(settings: Settings) -> dict[str, str]:
    """The environment variables that stand in for the deployed stack's."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    environment = {
        "ONNX_LAMBDA_MODELS": models_variable(settings.models),
        "ONNX_LAMBDA_AUTH_MODE": "apigateway",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        # The local S3 accepts any credentials; these keep the runtime from looking for real ones.
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "local"),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "local"),
    }
    if settings.s3_endpoint_url:
        environment["ONNX_LAMBDA_S3_ENDPOINT_URL"] = settings.s3_endpoint_url
    return environment


def serve_lambda(
    settings: Settings,
    *,
    host: str,
    port: int,
    template: Path,
    max_concurrency: int,
    idle_seconds: float,
    log_dir: Path,
    parameters: Mapping[str, str] | None = None,
    monitoring_port: int | None = None,
    minute_seconds: float = 60.0,
) -> None:
    """Serve the template's HTTP API on ``host:port`` until interrupted; with ``monitoring_port``, the
    dashboard and alarms on ``127.0.0.1:monitoring_port`` (a CloudWatch minute lasting ``minute_seconds``)."""
    if not template.is_file():
        raise SystemExit(f"error: {template} not found: run from the repository root, or pass --template")
    try:
        rie_binary()
    except FileNotFoundError as error:
        raise SystemExit(f"error: {error}") from None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for package in (emulator, monitoring):  # their modules log under the package (REPORT lines, alarm changes)
        package_log = logging.getLogger(package.__name__)
        package_log.addHandler(handler)
        package_log.setLevel(logging.INFO)
    app = build_gateway(
        template,
        environment=function_environment(settings),
        verifier=verifier_from_settings(settings),
        max_concurrency=max_concurrency,
        idle_seconds=idle_seconds,
        log_dir=log_dir,
        parameters=parameters,
        region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
    )
    extra = None
    monitoring_line = ""
    if monitoring_port is not None:
        from onnx_lambda_tools.local.monitoring.metrics import TimeScale
        from onnx_lambda_tools.local.monitoring.server import LOOPBACK, attach_monitoring, monitoring_app

        watch = attach_monitoring(app, template, scale=TimeScale(minute_seconds), parameters=parameters)
        extra = (monitoring_app(watch), LOOPBACK, monitoring_port)
        scale = "CloudWatch's periods" if minute_seconds == 60 else f"1 CloudWatch minute = {minute_seconds:g} s"
        monitoring_line = (
            f"  Dashboard and alarms ({len(watch.template.alarms)} from the template, {scale}): "
            f"http://{LOOPBACK}:{monitoring_port}/\n"
        )
    routes = len(app.api.routes)
    print(
        f"API Gateway + Lambda emulator: {routes} routes from {template}, up to {max_concurrency} execution "
        f"environments, idle ones stopped after {idle_seconds:.0f} s.\n"
        f"  Only the template's routes are served (no /docs). Cold starts and invocations are logged below\n"
        f"  as Lambda REPORT lines; function logs: {log_dir}\n{monitoring_line}",
        flush=True,
    )
    serve_gateway(app, host=host, port=port, extra=extra)
