"""``manifest.json``: the contract published beside every model.

It pins the sha256 of every file, states the tensor signature, the tokenizer settings and a golden
request/response pair. The service refuses a model whose files disagree with it, ``publish`` refuses
to upload one, and the pre-traffic hook replays the golden request against a new Lambda version.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator, model_validator

MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
#: model.onnx with onnxruntime's portable graph optimizations already applied (see :class:`OptimizedModel`).
OPTIMIZED_MODEL_FILE = "model.optimized.onnx"
#: The levels a file may be optimized to ahead of time. ``all`` is not one: its layout transforms are
#: specific to the CPU that ran them, so its output could be slow or wrong on another one.
PortableOptimization = Literal["disable", "basic", "extended"]

Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]  # fmt: skip


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Strict):
    """One input or output, in Open Inference Protocol terms; ``-1`` marks a dynamic axis."""

    name: str
    datatype: Datatype
    shape: list[int]


class FileEntry(_Strict):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class TokenizerSettings(_Strict):
    file: str = TOKENIZER_FILE
    max_length: int = Field(default=256, gt=0)
    #: "longest" pads each batch to its longest item (not the fixed 128 of the shipped file).
    padding: Literal["longest"] = "longest"


class OptimizedModel(_Strict):
    """A copy of model.onnx that onnxruntime already optimized, so a session skips that work at cold start.

    Its fused operators are those of the onnxruntime that wrote it, so the service uses it only under that
    same version (and the portable model.onnx otherwise).
    """

    file: str = Field(default=OPTIMIZED_MODEL_FILE, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    #: ``onnxruntime.__version__`` of the process that wrote it.
    onnxruntime: str = Field(pattern=r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$")
    level: PortableOptimization = "extended"


class Golden(_Strict):
    """A request and the response it must produce, compared within ``atol``."""

    infer_request: dict[str, Any]
    infer_response: dict[str, Any]
    embeddings_request: dict[str, Any] | None = None
    embeddings_response: dict[str, Any] | None = None
    atol: float = Field(default=1e-4, gt=0)


class Manifest(_Strict):
    schema_version: Literal[1] = 1
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    version: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    platform: Literal["onnxruntime_onnx"] = "onnxruntime_onnx"
    description: str = ""
    files: dict[str, FileEntry]
    #: model.onnx optimized ahead of time, listed under ``files`` like the others; None for a model without.
    optimized: OptimizedModel | None = None
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    tokenizer: TokenizerSettings | None = None
    #: The sizes an embedding model was trained to be cut to (Matryoshka representation learning), e.g.
    #: ``[64, 128, 256]``. ``POST /v1/embeddings`` takes OpenAI's ``dimensions`` only for these (and the
    #: model's own size): the vector's first ``dimensions`` values, normalised again, as OpenAI answers.
    #: A model not trained that way must not declare any: its shortened vectors would mean little.
    matryoshka_dimensions: list[Annotated[int, Strict(), Field(gt=0)]] = Field(default_factory=list)
    golden: Golden
    #: Free-form provenance: source package and version, exporter, opset, quantization.
    source: dict[str, Any] = Field(default_factory=dict)

    @field_validator("matryoshka_dimensions")
    @classmethod
    def _distinct(cls, sizes: list[int]) -> list[int]:
        if len(set(sizes)) != len(sizes):
            raise ValueError(f"matryoshka_dimensions lists a size twice: {sizes}")
        return sizes

    @model_validator(mode="after")
    def _optimized_file_is_pinned(self) -> Manifest:
        if self.optimized is not None:
            name = self.optimized.file
            tokenizer = self.tokenizer.file if self.tokenizer is not None else TOKENIZER_FILE
            if name in (MODEL_FILE, MANIFEST_FILE, tokenizer):
                raise ValueError(
                    f"optimized.file {name!r} must name a file of its own, not the model, manifest or tokenizer"
                )
            if name not in self.files:
                raise ValueError(f"optimized.file {name!r} is not listed in files: its sha256 must be pinned")
        return self

    @property
    def model_sha256(self) -> str:
        return self.files[MODEL_FILE].sha256


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_entry(path: Path) -> FileEntry:
    data = path.read_bytes()
    return FileEntry(sha256=sha256_hex(data), bytes=len(data))


def read_manifest(model_dir: Path) -> Manifest:
    return Manifest.model_validate_json((model_dir / MANIFEST_FILE).read_bytes())


def verify_model_dir(model_dir: Path) -> Manifest:
    """Check every file the manifest lists against its sha256; raise ``ValueError`` naming the first mismatch."""
    manifest = read_manifest(model_dir)
    if MODEL_FILE not in manifest.files:
        raise ValueError(f"{model_dir / MANIFEST_FILE}: lists no {MODEL_FILE}")
    for name, expected in manifest.files.items():
        path = model_dir / name
        if not path.is_file():
            raise ValueError(f"{path}: listed in the manifest but missing")
        actual = sha256_hex(path.read_bytes())
        if actual != expected.sha256:
            raise ValueError(f"{path}: sha256 {actual} does not match the manifest's {expected.sha256}")
    return manifest
