"""The models this deployment serves, loaded all at once at init.

Loading is all-or-nothing: either every configured model verified and loaded, or the registry is not
ready and serves nothing but health. A half-loaded deployment never answers an inference request.

With no model configured (a stack's first deploy, which creates the bucket models are published to),
the registry is empty and not ready, but nothing is broken: it answers as a server with no models (404
for a model), never as a failed one (503), so a deployment without a model raises no 5xx.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from onnx_lambda.config import ModelSource, Settings
from onnx_lambda.embeddings import Embedder
from onnx_lambda.errors import ModelLoadError, NotFound, ServiceUnavailable, echo
from onnx_lambda.manifest import MODEL_FILE
from onnx_lambda.model import OnnxModel
from onnx_lambda.model_store import ModelStore
from onnx_lambda.observability import (
    MODEL_BYTES,
    MODEL_LOAD_FAILURE,
    MODEL_LOAD_TIME,
    NAMESPACE,
    SERVICE,
    init_span,
    logger,
)

#: Why a deployment that names no model is not ready.
NO_MODEL = "no model is deployed yet: publish one and deploy it (docs/operations.md, step 2)"


@dataclass(frozen=True, slots=True)
class ServedModel:
    model: OnnxModel
    embedder: Embedder | None
    uri: str


@dataclass(slots=True)
class ModelRegistry:
    models: dict[str, ServedModel] = field(default_factory=dict)
    #: Why the registry is not ready; None once every model loaded.
    error: str | None = "models not loaded yet"
    #: False when the deployment names no model at all (see the module's docstring).
    configured: bool = True

    @property
    def ready(self) -> bool:
        return self.error is None

    def get(self, name: str, version: str | None = None) -> ServedModel:
        if not self.configured:
            raise NotFound(f"unknown model {echo(name)}; this deployment serves no model yet")
        if self.error is not None:
            raise ServiceUnavailable("models are not loaded; see /v2/health/ready")
        served = self.models.get(name)
        if served is None:
            raise NotFound(f"unknown model {echo(name)}; this deployment serves {sorted(self.models)}")
        if version is not None and version != served.model.version:
            raise NotFound(
                f"model {echo(name)} has no version {echo(version)}; it serves version {served.model.version!r}"
            )
        return served

    def embedders(self) -> Iterator[str]:
        return (name for name, served in self.models.items() if served.embedder is not None)


def load_registry(settings: Settings, store: ModelStore | None = None) -> ModelRegistry:
    """Fetch, verify and load every configured model; raise ModelLoadError naming the first that fails."""
    if not settings.models:
        logger.warning("no model configured: serving none until a deployment names one")
        return ModelRegistry(error=NO_MODEL, configured=False)
    store = store or ModelStore(settings)
    registry = ModelRegistry()
    try:
        for source in settings.models:
            served = _load_one(settings, store, source)
            if served.model.name in registry.models:
                raise ModelLoadError(f"two configured models are both named {served.model.name!r}")
            registry.models[served.model.name] = served
    except ModelLoadError as exc:
        registry.error = str(exc)
        logger.error("model load failed", extra={"reason": str(exc)})
        with single_metric(name=MODEL_LOAD_FAILURE, unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as m:
            m.add_dimension(name="service", value=SERVICE)
        raise
    registry.error = None
    return registry


def _load_one(settings: Settings, store: ModelStore, source: ModelSource) -> ServedModel:
    started = time.perf_counter()
    artifacts = store.fetch(source)
    manifest = artifacts.manifest
    file = artifacts.model_file
    try:
        with init_span("## session create") as session_span:
            session_span.annotations["model"] = manifest.name
            plan = settings.threads
            # The optimized file too is loaded at the configured level: re-running the optimizer over its
            # fused graph measured 1-3 ms of CPU, within noise, and `all`'s CPU-specific layout transforms
            # can only be applied here (docs/performance.md, "A model optimized at publish time").
            model = OnnxModel.from_bytes(
                manifest,
                artifacts.model,
                threads=plan.threads,
                spinning=plan.spinning,
                optimization=settings.graph_optimization,
            )
        embedder = None
        if manifest.tokenizer is not None:
            if artifacts.tokenizer is None:
                raise ModelLoadError(f"model {manifest.name!r}: manifest names a tokenizer but none was fetched")
            embedder = Embedder(model, artifacts.tokenizer, manifest.tokenizer)
    except ModelLoadError as error:
        # Bytes that passed their sha256 but don't load: say which object (and version) they came from.
        where = source.uri if file == MODEL_FILE else f"{source.uri} ({file})"
        raise ModelLoadError(f"{where}: {error}") from error
    elapsed_ms = (time.perf_counter() - started) * 1000
    logger.info(
        "model loaded",
        extra={
            "model": manifest.name,
            "model_version": manifest.version,
            "uri": source.uri,
            "file": file,
            "bytes": len(artifacts.model),
            "load_ms": round(elapsed_ms, 1),
            "from_cache": artifacts.from_cache,
            "timings": artifacts.timings,
            "intra_op_threads": plan.threads,
            "intra_op_spinning": plan.spinning,
        },
    )
    for name, value, unit in (
        (MODEL_LOAD_TIME, elapsed_ms, MetricUnit.Milliseconds),
        (MODEL_BYTES, float(len(artifacts.model)), MetricUnit.Bytes),
    ):
        with single_metric(name=name, unit=unit, value=value, namespace=NAMESPACE) as metric:
            metric.add_dimension(name="service", value=SERVICE)
            metric.add_dimension(name="model", value=manifest.name)
            metric.add_dimension(name="model_version", value=manifest.version)
    return ServedModel(model=model, embedder=embedder, uri=source.uri)
