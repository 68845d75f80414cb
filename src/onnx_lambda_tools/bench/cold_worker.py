"""One fresh process: from its first line to its first response, stage by stage, plus its memory.

``python -m onnx_lambda_tools.bench.cold_worker ours|raw SPEC OUT``. The parent notes ``time.monotonic()``
before it execs this process; every timestamp here is on the same clock, so the parent can add the
interpreter's own start-up. Nothing but the standard library is imported before ``STARTED``.

``ours`` imports the Lambda handler, which loads the model from (local) S3 exactly as at a Lambda
init, and then invokes it with an API Gateway event. The stages are timed by wrapping the functions
that do them (the store's fetch, the session, the tokenizer), which the handler's imports load anyway.
``raw`` is the minimal script: import onnxruntime, create the session from the file, tokenize, run.
"""

from __future__ import annotations

import time

STARTED = time.monotonic()

import importlib.abc  # noqa: E402
import importlib.machinery  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402 - after STARTED on purpose
import sys  # noqa: E402
import types  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402


def rss_mib() -> dict[str, float]:
    """Resident memory now and at its peak (VmHWM), in MiB, from /proc."""
    values: dict[str, float] = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = round(int(rest.split()[0]) / 1024, 1)
    return {"rss": values.get("VmRSS", 0.0), "peak": values.get("VmHWM", 0.0)}


class Timeline:
    """Start and end of each stage, from wrappers around the functions that do them."""

    def __init__(self) -> None:
        self.spans: dict[str, tuple[float, float]] = {}

    def timed(self, stage: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            try:
                return call(*args, **kwargs)
            finally:
                self.spans[stage] = (started, time.monotonic())

        return wrapper

    def seconds(self, stage: str) -> float:
        started, ended = self.spans[stage]
        return ended - started


class _Instrument(importlib.abc.MetaPathFinder):
    """Patches a module right after it executes, so the handler's imports keep their natural order."""

    def __init__(self, patches: dict[str, Callable[[types.ModuleType], None]]) -> None:
        self.patches = patches

    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name not in self.patches:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return None
        loader, patch = spec.loader, self.patches.pop(name)
        execute = loader.exec_module

        def exec_module(module: types.ModuleType) -> None:
            execute(module)
            patch(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def ours(spec: dict[str, Any]) -> dict[str, Any]:
    timeline = Timeline()
    store_timings: dict[str, float] = {}

    def patch_store(module: types.ModuleType) -> None:
        fetch = module.ModelStore.fetch_then_cache

        def fetch_keeping_timings(store: Any, source: Any) -> Any:
            artifacts, write_cache = fetch(store, source)
            store_timings.update(artifacts.timings)

            def write_keeping_timings() -> None:
                write_cache()
                store_timings.update(artifacts.timings)

            return artifacts, write_keeping_timings

        module.ModelStore.fetch_then_cache = timeline.timed("fetch", fetch_keeping_timings)

    def patch_model(module: types.ModuleType) -> None:
        module.OnnxModel.from_bytes = classmethod(timeline.timed("session", module.OnnxModel.from_bytes.__func__))

    def patch_embeddings(module: types.ModuleType) -> None:
        module.Embedder.__init__ = timeline.timed("tokenizer", module.Embedder.__init__)

    def patch_registry(module: types.ModuleType) -> None:
        setattr(module, "load_registry", timeline.timed("registry", module.load_registry))  # noqa: B010

    sys.meta_path.insert(
        0,
        _Instrument(
            {
                "onnx_lambda.model_store": patch_store,
                "onnx_lambda.model": patch_model,
                "onnx_lambda.embeddings": patch_embeddings,
                "onnx_lambda.registry": patch_registry,
            }
        ),
    )
    import onnx_lambda.handler as handler
    from onnx_lambda_tools.invoke import LambdaContext

    initialized = time.monotonic()
    memory_init = rss_mib()
    response = handler.lambda_handler(spec["event"], LambdaContext())
    first_response = time.monotonic()
    if response.get("statusCode") != 200:
        raise RuntimeError(f"the first response was {response.get('statusCode')}: {response.get('body')}")
    batch = handler.lambda_handler(spec["batch_event"], LambdaContext())
    if batch.get("statusCode") != 200:
        raise RuntimeError(f"the batch response was {batch.get('statusCode')}")
    memory_batch = rss_mib()
    fetch_start = timeline.spans["fetch"][0]
    registry_start = timeline.spans["registry"][0]
    # The critical path, in order (these add up to the total), then what ran beside it in the background.
    stages = {
        "imports": fetch_start - STARTED,
        "imports during fetch": registry_start - fetch_start,
        "waiting for fetch": timeline.spans["session"][0] - registry_start,
        "session": timeline.seconds("session"),
        "tokenizer": timeline.seconds("tokenizer"),
        "after load": initialized - timeline.spans["tokenizer"][1],
        "first_run": first_response - initialized,
        "fetch": store_timings.get("fetch", timeline.seconds("fetch")),
        "hash": store_timings.get("hash", 0.0),
        "cache_write": store_timings.get("cache_write", 0.0),
    }
    return {
        "started": STARTED,
        "first_response": first_response,
        "stages": stages,
        "memory": memory_init,
        "memory_batch": memory_batch,
    }


def raw(spec: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer

    imported = time.monotonic()
    model_dir = Path(spec["model_dir"])
    session = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    created = time.monotonic()
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=spec["max_length"])
    tokenizer.enable_padding()
    loaded = time.monotonic()
    memory_init = rss_mib()
    names = {i.name for i in session.get_inputs()}

    def run(texts: list[str]) -> Any:
        encodings = tokenizer.encode_batch(texts)
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        }
        if "token_type_ids" in names:
            feeds["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
        return session.run(None, feeds)[0]

    run([spec["text"]])
    first_response = time.monotonic()
    run(spec["batch"])
    memory_batch = rss_mib()
    stages = {
        "imports": imported - STARTED,
        "session": created - imported,
        "tokenizer": loaded - created,
        "first_run": first_response - loaded,
    }
    return {
        "started": STARTED,
        "first_response": first_response,
        "stages": stages,
        "memory": memory_init,
        "memory_batch": memory_batch,
    }


def main(argv: list[str]) -> int:
    side, spec_path, out_path = argv
    spec = json.loads(Path(spec_path).read_text())
    # Like the Lambda runtime, the function's logs go to stdout (which the parent discards).
    result = ours(spec) if side == "ours" else raw(spec)
    Path(out_path).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
