"""Writing a model directory: stage it beside the target, seal it with a manifest, then swap it in.

An interrupted export must never leave a half-written directory that a later ``publish`` would trust, so a
directory only appears under its name once every file and the manifest that pins them are written.

Sealing also writes model.optimized.onnx, the graph onnxruntime makes of model.onnx: here, not in ``publish``,
so that the manifest's sha256s (and so publish's content-addressed prefix and the deployment's
ManifestSha256) cover it, and ``make model``'s directories are exactly what ``publish`` uploads.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from onnx_lambda.manifest import MANIFEST_FILE, MODEL_FILE, Manifest, OptimizedModel, file_entry, verify_model_dir


@contextmanager
def staged_model_dir(target: Path) -> Iterator[Path]:
    """Yield an empty sibling directory; on success it replaces ``target``, on failure it is removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
    try:
        yield staging
        staging.chmod(0o755)
        if target.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            target.rename(retired / target.name)
            staging.rename(target)
            shutil.rmtree(retired)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    verify_model_dir(target)


def write_optimized(model_dir: Path) -> OptimizedModel:
    """Write model.onnx as onnxruntime optimizes it at ``extended`` beside it: a session built from that skips
    the optimizer's work at cold start (docs/performance.md, "Cold start in the function's container").

    ``extended``, not ``all``: ``all`` adds layout transforms for the CPU that runs them, which the function's
    may not be. The fused operators are this onnxruntime's, so the manifest records its version.
    """
    import onnxruntime as ort

    from onnx_lambda.model import session_options

    optimized = OptimizedModel(onnxruntime=ort.__version__, level="extended")
    options = session_options(1, optimized.level)
    options.optimized_model_filepath = str(model_dir / optimized.file)
    ort.InferenceSession(str(model_dir / MODEL_FILE), sess_options=options, providers=["CPUExecutionProvider"])
    return optimized


def write_manifest(model_dir: Path, fields: Mapping[str, Any]) -> Manifest:
    """Write the optimized model, pin every file in ``model_dir`` and write the validated manifest beside them."""
    optimized = write_optimized(model_dir)
    files = {
        path.name: file_entry(path)
        for path in sorted(model_dir.iterdir())
        if path.is_file() and path.name != MANIFEST_FILE
    }
    manifest = Manifest.model_validate({**fields, "files": files, "optimized": optimized})
    (model_dir / MANIFEST_FILE).write_text(dumps(manifest.model_dump(mode="json")) + "\n", encoding="utf-8")
    return manifest


def dumps(value: Any, indent: int = 0) -> str:
    """JSON indented for people, except that lists of numbers stay on one line: a golden embedding is 384
    floats, and one per line would bury the sha256s and the signature a reader opens the file for."""
    pad, inner = "  " * indent, "  " * (indent + 1)
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(key)}: {dumps(item, indent + 1)}" for key, item in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and any(isinstance(item, dict | list) for item in value):
        return "[\n" + ",\n".join(f"{inner}{dumps(item, indent + 1)}" for item in value) + f"\n{pad}]"
    return json.dumps(value, ensure_ascii=False)
