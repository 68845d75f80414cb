"""The process-wide Powertools Logger, Tracer and Metrics.

One instance each, shared by the app and the handler, so log keys appended in a route (the caller's
identity) land in the same JSON lines the handler's context injection writes. Metric names are
documented here because alarms and the dashboard in template.yaml depend on them.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "onnx-lambda"
NAMESPACE = "OnnxLambda"

#: EMF metric names (CloudWatch alarms and the dashboard refer to these).
COLD_START = "ColdStart"
MODEL_LOAD_TIME = "ModelLoadTime"
MODEL_BYTES = "ModelBytes"
MODEL_LOAD_FAILURE = "ModelLoadFailure"
INFERENCE_TIME = "InferenceTime"
BATCH_SIZE = "BatchSize"
TOKENS = "Tokens"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
