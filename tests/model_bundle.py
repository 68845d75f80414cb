"""Tiny model bundles (model + manifest [+ tokenizer]) for the model store's tests.

The store knows nothing of ONNX, so a bundle's model may be any bytes; the default is the real
``logreg_iris.onnx`` that ships inside onnxruntime.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from onnxruntime.datasets import get_example

from onnx_lambda.manifest import (
    MANIFEST_FILE,
    MODEL_FILE,
    OPTIMIZED_MODEL_FILE,
    TOKENIZER_FILE,
    FileEntry,
    Golden,
    Manifest,
    OptimizedModel,
    TensorSpec,
    TokenizerSettings,
    sha256_hex,
)

#: Stands in for a tokenizer.json: the store only checks that its bytes match the manifest.
TOKENIZER_BYTES = json.dumps({"version": "1.0", "model": {"type": "WordPiece", "vocab": {"[UNK]": 0}}}).encode()


@cache
def iris_model() -> bytes:
    return Path(get_example("logreg_iris.onnx")).read_bytes()


@dataclass(frozen=True, slots=True)
class Bundle:
    manifest: Manifest
    model: bytes
    tokenizer: bytes | None
    #: model.optimized.onnx, when the manifest lists one.
    optimized: bytes | None = None

    @property
    def sha256(self) -> str:
        return self.manifest.model_sha256

    @property
    def manifest_bytes(self) -> bytes:
        return self.manifest.model_dump_json(indent=2).encode()

    @property
    def manifest_sha256(self) -> str:
        return sha256_hex(self.manifest_bytes)

    def files(self) -> dict[str, bytes]:
        """Every file as it is published beside the model."""
        files = {MODEL_FILE: self.model, MANIFEST_FILE: self.manifest_bytes}
        if self.tokenizer is not None:
            files[TOKENIZER_FILE] = self.tokenizer
        if self.optimized is not None:
            files[OPTIMIZED_MODEL_FILE] = self.optimized
        return files

    def write(self, directory: Path) -> Path:
        """Write the bundle into ``directory``; return the model's path."""
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in self.files().items():
            (directory / name).write_bytes(data)
        return directory / MODEL_FILE


def make_bundle(
    model: bytes | None = None,
    *,
    tokenizer: bytes | None = None,
    name: str = "iris",
    version: str = "1",
    optimized: bytes | None = None,
    optimized_by: str = "1.0.0",
) -> Bundle:
    """A bundle whose manifest validates and pins the sha256 and size of every file.

    ``optimized`` is listed as model.optimized.onnx, written by onnxruntime ``optimized_by``.
    """
    model = iris_model() if model is None else model
    files = {MODEL_FILE: FileEntry(sha256=sha256_hex(model), bytes=len(model))}
    if tokenizer is not None:
        files[TOKENIZER_FILE] = FileEntry(sha256=sha256_hex(tokenizer), bytes=len(tokenizer))
    if optimized is not None:
        files[OPTIMIZED_MODEL_FILE] = FileEntry(sha256=sha256_hex(optimized), bytes=len(optimized))
    manifest = Manifest(
        name=name,
        version=version,
        files=files,
        # logreg_iris.onnx's real signature, golden pair and output (label 0 for these three rows).
        inputs=[TensorSpec(name="float_input", datatype="FP32", shape=[3, 2])],
        outputs=[TensorSpec(name="label", datatype="INT64", shape=[3])],
        tokenizer=TokenizerSettings() if tokenizer is not None else None,
        optimized=OptimizedModel(onnxruntime=optimized_by) if optimized is not None else None,
        golden=Golden(
            infer_request={
                "inputs": [
                    {
                        "name": "float_input",
                        "datatype": "FP32",
                        "shape": [3, 2],
                        "data": [5.1, 3.5, 6.2, 2.9, 7.7, 3.0],
                    }
                ],
                "outputs": [{"name": "label"}],
            },
            infer_response={
                "model_name": name,
                "model_version": version,
                "outputs": [{"name": "label", "datatype": "INT64", "shape": [3], "data": [0, 0, 0]}],
            },
        ),
        source={"test": "model_store"},
    )
    return Bundle(manifest=manifest, model=model, tokenizer=tokenizer, optimized=optimized)
