"""Cold start and memory: fresh processes, ours against raw, alternating, each timed from exec.

``ours`` is the Lambda handler's init with the model fetched from the local S3 into an empty cache
(a new execution environment has an empty /tmp), then its first response to an API Gateway event.
``raw`` imports onnxruntime, creates the session from the model file, tokenizes and runs once. Both
report resident memory after init and after a batch of 32.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from onnx_lambda.manifest import read_manifest
from onnx_lambda_tools.bench import workloads
from onnx_lambda_tools.publish import models_variable

if TYPE_CHECKING:
    from onnx_lambda_tools.serve import LocalDeployment

#: The variables of this process that must not leak into the measured ones.
_OWN_PREFIXES = ("ONNX_LAMBDA_", "POWERTOOLS_", "AWS_")


def _clean_environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith(_OWN_PREFIXES)}


def _run(
    side: str, spec: dict[str, Any], environment: dict[str, str], scratch: Path, profile: Path | None = None
) -> dict[str, Any]:
    spec_path = scratch / f"{side}-spec.json"
    out_path = scratch / f"{side}-out.json"
    spec_path.write_text(json.dumps(spec))
    out_path.unlink(missing_ok=True)
    command = [sys.executable, "-m", "onnx_lambda_tools.bench.cold_worker", side, str(spec_path), str(out_path)]
    if profile is not None:
        # pyinstrument samples the main thread: the critical path, including its waits for the prefetch.
        command[1:3] = ["-m", "pyinstrument", "-r", "text", "-i", "0.0005", "-o", str(profile), "-m", command[2]]
    started = time.monotonic()
    completed = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120, check=False
    )
    if completed.returncode != 0 or not out_path.exists():
        raise RuntimeError(f"the {side} cold-start process failed: {completed.stderr.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(out_path.read_text())
    result["total"] = result["first_response"] - started
    result["stages"] = {"interpreter": result["started"] - started, **result["stages"]}
    return result


def measure(
    deployment: LocalDeployment, models_dir: Path, model: str, repetitions: int, profile_dir: Path | None = None
) -> dict[str, Any]:
    """Median cold start and memory of ``repetitions`` fresh processes per side.

    With ``profile_dir``, one more process per side runs under pyinstrument (not counted in the medians).
    """
    published = deployment.models[model]
    manifest = read_manifest(models_dir / model)
    max_length = manifest.tokenizer.max_length if manifest.tokenizer else 256
    texts = list(workloads.BATCH_TEXTS)
    ours_spec = {
        "event": workloads.embeddings_event(model, workloads.SHORT_SENTENCE),
        "batch_event": workloads.embeddings_event(model, texts),
    }
    raw_spec = {
        "model_dir": str((models_dir / model).resolve()),
        "max_length": max_length,
        "text": workloads.SHORT_SENTENCE,
        "batch": texts,
    }
    base = _clean_environment()
    runs: dict[str, list[dict[str, Any]]] = {"raw": [], "ours": []}
    with tempfile.TemporaryDirectory(prefix="onnx-lambda-bench-cold-") as scratch_name:
        scratch = Path(scratch_name)
        for repetition in range(repetitions):
            cache = scratch / f"cache-{repetition}"  # empty: a new execution environment's /tmp
            ours_environment = {
                **base,
                **deployment.aws_environment(),
                "ONNX_LAMBDA_MODELS": models_variable([published.source()]),
                "ONNX_LAMBDA_AUTH_MODE": "apigateway",
                "ONNX_LAMBDA_CACHE_DIR": str(cache),
                "POWERTOOLS_SERVICE_NAME": "onnx-lambda",
                "POWERTOOLS_METRICS_NAMESPACE": "OnnxLambda",
                "AWS_LAMBDA_FUNCTION_NAME": "onnx-lambda-inference",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769",
            }
            order = ("raw", "ours") if repetition % 2 == 0 else ("ours", "raw")
            for side in order:
                if side == "ours":
                    runs["ours"].append(_run("ours", ours_spec, ours_environment, scratch))
                else:
                    runs["raw"].append(_run("raw", raw_spec, dict(base), scratch))
            print(
                f"  cold start   #{repetition + 1}: raw {runs['raw'][-1]['total'] * 1000:6.0f} ms   "
                f"ours {runs['ours'][-1]['total'] * 1000:6.0f} ms",
                file=sys.stderr,
            )
        if profile_dir is not None:
            profile_dir.mkdir(parents=True, exist_ok=True)
            ours_environment["ONNX_LAMBDA_CACHE_DIR"] = str(scratch / "cache-profile")
            _run("ours", ours_spec, ours_environment, scratch, profile_dir / "cold-start-ours.txt")
            _run("raw", raw_spec, dict(base), scratch, profile_dir / "cold-start-raw.txt")
    return {"model": model, "repetitions": repetitions, "raw": _medians(runs["raw"]), "ours": _medians(runs["ours"])}


def _medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median total, median of each stage, and median memory, in milliseconds and MiB."""
    stages = {name: round(float(np.median([r["stages"][name] for r in runs])) * 1000, 1) for name in runs[0]["stages"]}
    return {
        "total_ms": round(float(np.median([r["total"] for r in runs])) * 1000, 1),
        "totals_ms": [round(r["total"] * 1000, 1) for r in runs],
        "stages_ms": stages,
        "rss_after_init_mib": float(np.median([r["memory"]["rss"] for r in runs])),
        "rss_after_batch_mib": float(np.median([r["memory_batch"]["rss"] for r in runs])),
        "peak_rss_mib": float(np.median([r["memory_batch"]["peak"] for r in runs])),
    }
