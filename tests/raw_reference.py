"""What a model directory's files compute, with the upstream libraries used directly.

The independent reference for goldens and served answers: ``onnxruntime.InferenceSession`` on the model
file with its default options, and ``tokenizers`` on the tokenizer.json beside it. Nothing here comes
from ``onnx_lambda`` or ``onnx_lambda_tools`` (not the protocol decoder, not the Embedder, not the
exporter's golden helpers), so a bug there can't hide by agreeing with itself. Manifests are read as
plain JSON for the same reason.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Tokenizer

Array = npt.NDArray[Any]

#: The Open Inference Protocol's numeric datatypes (KServe's table), as numpy dtypes.
DTYPES: dict[str, type[np.generic]] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}

#: The Hugging Face names of a tokenizer's outputs, as transformer models name their inputs.
_ENCODING_FIELDS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}


def read_manifest_json(model_dir: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((model_dir / "manifest.json").read_text())
    return document


def session(model_file: Path) -> ort.InferenceSession:
    """onnxruntime with its default session options: not the service's threads or optimization level."""
    return ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])


def tensor_array(tensor: Mapping[str, Any]) -> Array:
    """A JSON tensor of the protocol (flat row-major ``data``) as a numpy array."""
    return np.asarray(tensor["data"], dtype=DTYPES[tensor["datatype"]]).reshape(tensor["shape"])


def run_infer_request(model_file: Path, request: Mapping[str, Any]) -> dict[str, Array]:
    """The requested outputs (every output when none is named), in the order requested."""
    runner = session(model_file)
    feeds = {tensor["name"]: tensor_array(tensor) for tensor in request["inputs"]}
    names = [output["name"] for output in request.get("outputs") or []] or [o.name for o in runner.get_outputs()]
    return dict(zip(names, runner.run(names, feeds), strict=True))


@dataclass(frozen=True)
class Embedded:
    feeds: dict[str, Array]  # the token tensors the model ran on
    vectors: Array
    token_counts: list[int]  # real tokens per text ([CLS] and [SEP] included, padding not)


def embed(model_dir: Path, texts: Sequence[str], max_length: int) -> Embedded:
    """``texts`` through the directory's tokenizer.json (truncated to ``max_length``, padded to the longest)
    and model.onnx."""
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding()
    encodings = tokenizer.encode_batch(list(texts))
    runner = session(model_dir / "model.onnx")
    feeds = {
        spec.name: np.asarray([getattr(e, _ENCODING_FIELDS[spec.name]) for e in encodings], dtype=np.int64)
        for spec in runner.get_inputs()
    }
    (output,) = runner.get_outputs()
    (vectors,) = runner.run([output.name], feeds)
    counts = [int(sum(e.attention_mask)) for e in encodings]
    return Embedded(feeds=feeds, vectors=np.asarray(vectors), token_counts=counts)
