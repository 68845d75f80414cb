"""Token tensors sent straight to a text model's infer route are checked like the tokenizer's own output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onnx_lambda.embeddings import Embedder
from onnx_lambda.errors import BadRequest
from onnx_lambda.manifest import read_manifest
from onnx_lambda.model import OnnxModel


@pytest.fixture(scope="module")
def embedder(models_dir: Path) -> Embedder:
    directory = models_dir / "all-minilm-l6-v2"
    manifest = read_manifest(directory)
    model = OnnxModel.from_bytes(manifest, (directory / "model.onnx").read_bytes(), threads=1)
    assert manifest.tokenizer is not None
    return Embedder(model, (directory / "tokenizer.json").read_bytes(), manifest.tokenizer)


def feeds(ids: np.ndarray, mask: np.ndarray | None = None, types: np.ndarray | None = None) -> dict[str, np.ndarray]:
    return {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids) if mask is None else mask,
        "token_type_ids": np.zeros_like(ids) if types is None else types,
    }


def test_what_the_tokenizer_makes_passes(embedder: Embedder) -> None:
    embedder.check_token_inputs(embedder.tokenize(["a sentence", "another, longer sentence"]))


@pytest.mark.parametrize(
    ("bad", "phrase"),
    [
        # found by tests/fuzz/test_tensor_fuzz.py: a [1, 0] mask beside [1, 250] ids was a 500
        (feeds(np.zeros((1, 250), np.int64), mask=np.ones((1, 0), np.int64)), "attention_mask"),
        (feeds(np.zeros((1, 4), np.int64), types=np.full((1, 4), 7, np.int64)), "token_type_ids"),
        (feeds(np.full((1, 4), 10**9, np.int64)), "outside"),
        (feeds(np.zeros((1, 0), np.int64)), "tokens per row"),
        (feeds(np.zeros((1, 300), np.int64)), "tokens per row"),
    ],
)
def test_impossible_token_tensors_are_bad_requests(embedder: Embedder, bad: dict[str, np.ndarray], phrase: str) -> None:
    with pytest.raises(BadRequest, match=phrase):
        embedder.check_token_inputs(bad)
