"""What each part of the function's init costs, one stage after another, inside its image under the quota.

``python init_stages.py MODEL_DIR`` runs in the function's image (by path: the tools package isn't
installed there) and prints one JSON list of ``[stage, cpu_ms, rss_mib, shared]``. The stages follow the
handler's own order, each timed by the CPU the process has used (user + system), which under a CPU quota
is what Init Duration is made of. ``shared`` marks what the bare file-loading process pays too; the rest
is what the service adds, and so what stands between it and the bare process.

It runs in one thread and reads the model from a file, so the fetch's HTTP and its overlap with the
imports are not here (the ``cold-container`` section measures the whole init); the file read and sha256
stand for the fetch's CPU. The session is created from the file the function would load (the optimized copy when
this onnxruntime wrote it), with the function's own session options.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import sys
from pathlib import Path


def _cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (usage.ru_utime + usage.ru_stime) * 1000


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main(model_dir: Path) -> list[list[object]]:
    stages: list[list[object]] = []
    last = 0.0  # the first stage is the interpreter's start, up to here

    def stage(name: str, *, shared: bool) -> None:
        nonlocal last
        now = _cpu_ms()
        stages.append([name, round(now - last, 1), round(_rss_mib(), 1), shared])
        last = now

    stage("interpreter", shared=True)
    import awslambdaric.bootstrap  # noqa: F401

    stage("the runtime client (awslambdaric)", shared=False)
    import pydantic  # noqa: F401

    stage("pydantic", shared=False)
    os.environ.setdefault("ONNX_LAMBDA_MODELS", "[]")
    from onnx_lambda.config import get_settings

    settings = get_settings()
    stage("the settings: the first pydantic models, which load pydantic's schema machinery", shared=False)
    from onnx_lambda.manifest import read_manifest
    from onnx_lambda.model_store import ModelStore  # noqa: F401

    stage("the model store: the manifest's models, http.client, SigV4", shared=False)
    import numpy  # noqa: F401
    import onnxruntime

    stage("numpy and onnxruntime", shared=True)
    import tokenizers  # noqa: F401

    stage("tokenizers", shared=True)
    from aws_lambda_powertools import Logger, Metrics  # noqa: F401

    stage("Powertools: logger and metrics", shared=False)
    import aws_xray_sdk.core  # type: ignore[import-untyped]  # noqa: F401

    stage("the X-Ray SDK (Tracing: Active)", shared=False)
    from onnx_lambda import inference, registry  # noqa: F401

    stage("the routes: inference, protocol, schemas, auth, registry", shared=False)
    manifest = read_manifest(model_dir)
    stage("the manifest, validated", shared=False)
    # The file the function loads: the optimized copy when this onnxruntime wrote it (model_store._choose).
    optimized = manifest.optimized
    usable = optimized is not None and optimized.onnxruntime == onnxruntime.__version__
    model = (model_dir / (optimized.file if optimized is not None and usable else "model.onnx")).read_bytes()
    stage("the model's bytes (the fetch's copy)", shared=True)
    hashlib.sha256(model).hexdigest()
    stage("the model's sha256", shared=False)
    from onnx_lambda.model import OnnxModel

    plan = settings.threads
    OnnxModel.from_bytes(
        manifest, model, threads=plan.threads, spinning=plan.spinning, optimization=settings.graph_optimization
    )
    stage(f"the session, from {'the optimized copy' if usable else 'model.onnx'}", shared=True)
    return stages


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
