"""The custom metrics a deployment sends CloudWatch, and how many of them it is billed for.

CloudWatch bills each distinct (namespace, metric name, dimension set *with its values*) as one custom
metric, prorated by the hour and only while it is sent (``cloudwatch.custom_metric`` in prices.json).
So the count depends on what the code emits, with which dimensions: this catalogue lists every EMF
metric of the inference function (``onnx_lambda.observability``, ``registry``, ``inference`` and
Powertools' cold-start metric on ``handler``) and of the synthetic canary
(``functions/synthetic_canary``, through the helper layer's ``emf``). ``tests/infra/test_cost_metrics.py``
runs the real handler over ``events/`` and the real canary against the local stack, collects the EMF
lines they print, and checks that they emit exactly this catalogue and :func:`billed_metrics`'s count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from onnx_lambda.observability import (
    BATCH_SIZE,
    COLD_START,
    INFERENCE_TIME,
    MODEL_BYTES,
    MODEL_LOAD_FAILURE,
    MODEL_LOAD_TIME,
    NAMESPACE,
    TOKENS,
)

#: The canary's namespace (functions/synthetic_canary/synthetic_canary.py's NAMESPACE).
CANARY_NAMESPACE: Final = "OnnxLambda/Canary"

#: One per deployed function, per served model version, per served embeddings model version, or per stack.
Scope = Literal["function", "model version", "embeddings model version", "stack"]
#: "always": sent in any month the service is used; "on failure": only in the hours something fails.
When = Literal["always", "on failure"]


@dataclass(frozen=True)
class EmittedMetric:
    namespace: str
    name: str
    dimensions: tuple[str, ...]
    scope: Scope
    when: When
    emitted_by: str


CATALOGUE: Final = (
    EmittedMetric(NAMESPACE, COLD_START, ("function_name", "service"), "function", "always",
                  "Powertools' cold-start metric on the handler, each cold start"),
    EmittedMetric(NAMESPACE, MODEL_LOAD_FAILURE, ("service",), "function", "on failure",
                  "the registry, when a model fails to load"),
    EmittedMetric(NAMESPACE, MODEL_LOAD_TIME, ("model", "model_version", "service"), "model version", "always",
                  "the registry, each model loaded at init"),
    EmittedMetric(NAMESPACE, MODEL_BYTES, ("model", "model_version", "service"), "model version", "always",
                  "the registry, each model loaded at init"),
    EmittedMetric(NAMESPACE, INFERENCE_TIME, ("model", "model_version", "service"), "model version", "always",
                  "every inference"),
    EmittedMetric(NAMESPACE, BATCH_SIZE, ("model", "model_version", "service"), "model version", "always",
                  "every inference"),
    EmittedMetric(NAMESPACE, TOKENS, ("model", "model_version", "service"), "embeddings model version", "always",
                  "embeddings requests (models with a tokenizer)"),
    EmittedMetric(CANARY_NAMESPACE, "Availability", ("Stack",), "stack", "always", "the canary, every run"),
    EmittedMetric(CANARY_NAMESPACE, "Latency", ("Stack",), "stack", "always",
                  "the canary, every run the API answers"),
)  # fmt: skip


def billed_metrics(
    embedding_versions: int = 1, other_versions: int = 0, *, canary: bool = True, failures: bool = False
) -> int:
    """Custom metrics billed for a month: one stack whose function serves these model versions.

    A model version replaced during the month counts for both versions (each prorated by the hour).
    ``failures`` adds the metrics sent only when something fails: in a healthy month they cost nothing.
    """
    if embedding_versions < 0 or other_versions < 0:
        raise ValueError("model version counts must be >= 0")
    per_scope: dict[Scope, int] = {
        "function": 1,
        "model version": embedding_versions + other_versions,
        "embeddings model version": embedding_versions,
        "stack": 1 if canary else 0,
    }
    return sum(per_scope[metric.scope] for metric in CATALOGUE if failures or metric.when == "always")
