"""The in-process paths: embeddings, OIP infer, the Lambda runtime, and session options.

Runs as its own process (``python -m onnx_lambda_tools.bench.inprocess CONFIG OUT``) so that the handler's
environment, its ``max_batch_size`` and its memory are the bench's alone. The Lambda handler runs here;
the raw reference runs in a process of its own (:mod:`.raw_side`) on the same model files, and the two
are timed in alternating blocks (see :mod:`onnx_lambda_tools.bench.stats`). The raw reference is
onnxruntime at its best here: the session options that won :mod:`.session_grid` in this run (for one
sentence, and for a batch), never the service's own choice; the handler runs with the options its own
rule picks. Before timing, each comparison checks that both sides computed the same answer, so the
ratio compares equal work.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from onnx_lambda.manifest import MODEL_FILE, TOKENIZER_FILE, read_manifest
from onnx_lambda_tools.bench import workloads
from onnx_lambda_tools.bench.raw_side import RawSide
from onnx_lambda_tools.bench.report import comparison
from onnx_lambda_tools.bench.stats import Block, interleave, local, progress, summarize

EMBEDDING_MODELS = {"int8": "all-minilm-l6-v2", "fp32": "all-minilm-l6-v2-fp32"}
TABULAR_MODEL = "breast-cancer-classifier"

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    models_dir: Path
    seconds: float
    sections: tuple[str, ...]
    threads: int
    optimization: str

    @classmethod
    def load(cls, path: Path) -> WorkerConfig:
        raw = json.loads(path.read_text())
        return cls(
            models_dir=Path(raw["models_dir"]),
            seconds=float(raw["seconds"]),
            sections=tuple(raw["sections"]),
            threads=int(raw["threads"]),
            optimization=str(raw["optimization"]),
        )


def host_memory_mb() -> int:
    """The MemorySize whose CPU share (MemorySize/1769 vCPU) is this machine's CPUs, with no quota.

    The function's template size (2,048 MB, 1.16 vCPU) would have the handler plan for a quota this host
    doesn't enforce, and compare one thread against a reference given two. Lambda's own quota is measured
    in the function's container (``cold-container``, ``make tune``).
    """
    from onnx_lambda.config import LAMBDA_MB_PER_VCPU, available_cpus

    return available_cpus() * LAMBDA_MB_PER_VCPU


def handler_environment(
    models_dir: Path, names: tuple[str, ...], max_batch_size: int, threads: int, optimization: str
) -> dict[str, str]:
    """The deployed function's environment, with the models read from disk and the bench's batch limit.

    ``threads`` 0 and ``optimization`` "" leave the session options to the service, as deployed. The
    memory size is the one whose Lambda share is this machine's CPUs (:func:`host_memory_mb`): the raw
    reference's grid runs on all of them, unthrottled, and so must the handler's rule choose.
    """
    from onnx_lambda_tools.invoke import function_environment, local_model_sources

    environment = function_environment(models_dir)
    environment["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = str(host_memory_mb())
    environment["ONNX_LAMBDA_MODELS"] = local_model_sources(models_dir, names)
    environment["ONNX_LAMBDA_MAX_BATCH_SIZE"] = str(max_batch_size)
    if threads:
        environment["ONNX_LAMBDA_INTRA_OP_THREADS"] = str(threads)
    if optimization:
        environment["ONNX_LAMBDA_GRAPH_OPTIMIZATION"] = optimization
    return environment


class InProcessBench:
    def __init__(self, config: WorkerConfig, handler: Handler, context: Any, raw: RawSide) -> None:
        self.config = config
        self.handler = handler
        self.context = context
        self.raw = raw
        #: onnxruntime's best session options here, measured first: the raw reference of every comparison.
        self.grid = raw.grid(config.models_dir / EMBEDDING_MODELS["int8"], max(0.3, config.seconds / 6))
        self.best_one: dict[str, Any] = self.grid["best_one"]
        self.best_batch: dict[str, Any] = self.grid["best_batch32"]
        self.results: list[dict[str, Any]] = []

    # --- helpers ----------------------------------------------------------------------------------

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        response = self.handler(event, self.context)
        if response.get("statusCode") != 200:
            raise RuntimeError(f"the handler answered {response.get('statusCode')}: {str(response.get('body'))[:300]}")
        return response

    def compare(
        self, group: str, case: str, cases: Mapping[str, Block], items: int, seconds: float | None = None
    ) -> None:
        samples = interleave(cases, seconds=seconds or self.config.seconds)
        raw, ours = (summarize(samples[name], items_per_call=items) for name in cases)
        self.results.append(comparison(group, case, items, raw.as_dict(), ours.as_dict()))
        progress(group, case, raw.p50_ms, ours.p50_ms)

    # --- sections ---------------------------------------------------------------------------------

    def embeddings(self) -> None:
        for precision, name in EMBEDDING_MODELS.items():
            model_dir = self.config.models_dir / name
            manifest = read_manifest(model_dir)
            max_length = manifest.tokenizer.max_length if manifest.tokenizer else 256
            tokenizer = Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
            inputs = {
                "short sentence": [workloads.SHORT_SENTENCE],
                f"{workloads.LONG_TOKENS}-token text": [workloads.long_text(tokenizer)],
                f"batch of {workloads.BATCH_SIZE}": list(workloads.BATCH_TEXTS),
            }
            for case, texts in inputs.items():
                label = f"{precision} {case}"
                best = self.best_batch if len(texts) > 1 else self.best_one
                self.raw.embed(label, model_dir, best, max_length, texts)
                event = workloads.embeddings_event(name, texts if len(texts) > 1 else texts[0])
                _check_embeddings(self.invoke(event), self.raw.result(label))
                self.compare(
                    "embeddings",
                    label,
                    {"raw": self.raw.block(label), "ours": local(partial(self.invoke, event))},
                    items=len(texts),
                )

    def oip(self) -> None:
        from onnx_lambda import protocol

        model_dir = self.config.models_dir / TABULAR_MODEL
        manifest = read_manifest(model_dir)
        input_name = manifest.inputs[0].name
        outputs = [o.name for o in manifest.outputs]
        for rows, binary in ((1, False), (1000, False), (1000, True)):
            array = workloads.tabular_rows(manifest.golden.infer_request, rows)
            body, headers = workloads.infer_body(input_name, array, outputs, binary=binary)
            event = workloads.infer_event(TABULAR_MODEL, body, headers)
            response = self.invoke(event)
            length = response["headers"].get(protocol.BINARY_HEADER.lower())
            decoded = protocol.decode_infer_response(_body(response), int(length) if length else None)
            label = f"{rows} row{'s' if rows > 1 else ''}{' (binary)' if binary else ''}"
            self.raw.run(label, model_dir / MODEL_FILE, self.best_one, outputs, {input_name: array})
            expected = self.raw.result(label)
            for output, want in zip(outputs, expected, strict=True):
                if not np.allclose(decoded.outputs[output], want, atol=1e-5):
                    raise RuntimeError(f"the handler's {output} differs from the raw session's")
            self.compare(
                "oip-infer",
                label,
                {"raw": self.raw.block(label), "ours": local(partial(self.invoke, event))},
                items=rows,
            )

    def runtime(self) -> None:
        """A warm invoke through the Runtime Interface Emulator + awslambdaric, against this process's handler."""
        from onnx_lambda_tools.local.lambda_runtime import LambdaEnvironment

        event = workloads.embeddings_event(EMBEDDING_MODELS["int8"], workloads.SHORT_SENTENCE)
        config = self.config
        names = (EMBEDDING_MODELS["int8"], TABULAR_MODEL)
        environment = handler_environment(config.models_dir, names, 64, config.threads, config.optimization)
        with (
            tempfile.TemporaryDirectory(prefix="onnx-lambda-bench-") as scratch,
            LambdaEnvironment(
                environment, memory_mb=host_memory_mb(), log_path=Path(scratch) / "function.log"
            ) as lambda_env,
        ):

            def through_runtime() -> None:
                result = lambda_env.invoke(event)
                if result.function_error or result.payload.get("statusCode") != 200:
                    raise RuntimeError(f"the runtime answered {result.payload}")

            through_runtime()  # the first invoke is the environment's cold start
            self.compare(
                "lambda-runtime",
                "int8 short sentence",
                {"raw": local(partial(self.invoke, event)), "ours": local(through_runtime)},
                items=1,
            )

    def session_options(self) -> dict[str, Any]:
        """The grid the reference came from, and session creation time per optimization level."""
        from onnx_lambda.model import session_options

        model_dir = self.config.models_dir / EMBEDDING_MODELS["int8"]
        table: dict[str, Any] = {"grid": self.grid, "create_seconds": {}}
        model_bytes = (model_dir / MODEL_FILE).read_bytes()
        threads = int(self.best_one["threads"])
        for level in ("disable", "basic", "extended", "all"):
            options = session_options(threads, level)
            table["create_seconds"][level] = _median_seconds(
                partial(ort.InferenceSession, model_bytes, options, providers=["CPUExecutionProvider"]), 3
            )
        # A model optimized once at publish time and loaded with optimizations off: what cold start saves.
        with tempfile.TemporaryDirectory(prefix="onnx-lambda-bench-") as scratch:
            optimized = Path(scratch) / "optimized.onnx"
            options = session_options(threads, "all")
            options.optimized_model_filepath = str(optimized)
            ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
            optimized_bytes = optimized.read_bytes()
            disabled = session_options(threads, "disable")
            table["create_seconds"]["pre-optimized, disable"] = _median_seconds(
                lambda: ort.InferenceSession(optimized_bytes, disabled, providers=["CPUExecutionProvider"]), 3
            )
        return table


def _median_seconds(call: Callable[[], object], count: int) -> float:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return round(float(np.median(samples)), 4)


def _body(response: Mapping[str, Any]) -> bytes:
    import base64

    body = response.get("body") or ""
    return base64.b64decode(body) if response.get("isBase64Encoded") else str(body).encode()


def _check_embeddings(response: Mapping[str, Any], expected: np.ndarray) -> None:
    """Same work: the same vectors, up to what another graph optimization level changes in an int8 graph.

    The reference may run at another level than the service (whichever measured fastest), and at
    ``basic`` onnxruntime doesn't fuse the int8 MatMuls with their scales, which moves values by up to
    about 1e-2 (cosine down to 0.9987 measured); a cosine of 0.99 still tells a wrong or truncated input apart.
    """
    document = json.loads(_body(response))
    got = np.asarray([item["embedding"] for item in document["data"]], dtype=np.float32)
    if got.shape != expected.shape:
        raise RuntimeError(f"the handler answered {got.shape} vectors, the raw reference {expected.shape}")
    cosines = np.sum(got * expected, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1))
    if float(cosines.min()) < 0.99:
        raise RuntimeError(f"the handler's embeddings differ from the raw reference's (cosine {cosines.min():.5f})")


def main(argv: list[str]) -> int:
    config_path, out_path = Path(argv[0]), Path(argv[1])
    config = WorkerConfig.load(config_path)
    names = (*EMBEDDING_MODELS.values(), TABULAR_MODEL)
    os.environ.update(
        handler_environment(config.models_dir, names, max(workloads.TABULAR_ROWS), config.threads, config.optimization)
    )
    # The handler's JSON logs and EMF metrics go to stdout, as in Lambda; here they go nowhere, at the same cost.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    from onnx_lambda.handler import lambda_handler, settings
    from onnx_lambda_tools.invoke import LambdaContext

    with RawSide() as raw:
        bench = InProcessBench(config, lambda_handler, LambdaContext(timeout_seconds=900), raw)
        plan, level = settings.threads, settings.graph_optimization
        document: dict[str, Any] = {
            "comparisons": bench.results,
            "reference": bench.grid,
            "handler_session": {"threads": plan.threads, "spinning": plan.spinning, "level": level},
        }
        if "embeddings" in config.sections:
            bench.embeddings()
        if "oip" in config.sections:
            bench.oip()
        if "runtime" in config.sections:
            bench.runtime()
        if "options" in config.sections:
            document["session_options"] = bench.session_options()
    out_path.write_text(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
