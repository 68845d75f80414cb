"""The exported MiniLM models against the PyTorch reference, and the int8 model against the fp32 one."""

from __future__ import annotations

import os
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from tokenizers import Tokenizer

from onnx_lambda.manifest import MODEL_FILE
from onnx_lambda_tools.export import MINILM_FP32, MINILM_INT8
from onnx_lambda_tools.export.minilm import EMBEDDING_DIM, MAX_TOKENS, source_dir, tokenize

pytestmark = pytest.mark.models

#: fp32 ONNX vs PyTorch, max |difference| per component (measured: ~3e-7).
FP32_ATOL = 1e-5
#: int8 vs fp32 cosine similarity (measured on the corpus with static int8: mean 0.9936, min 0.9771).
INT8_MEAN_COSINE = 0.99
INT8_MIN_COSINE = 0.97


@pytest.fixture(scope="module")
def reference() -> Any:
    """sentence-transformers on the package's own weights: the numbers the export must reproduce."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(source_dir()), device="cpu")


def untruncated_lengths(tokenizer: Tokenizer, texts: list[str]) -> list[int]:
    unlimited = Tokenizer.from_str(tokenizer.to_str())
    unlimited.no_truncation()
    unlimited.no_padding()
    return [len(encoding.ids) for encoding in unlimited.encode_batch(texts)]


def describe(texts: list[str], index: int) -> str:
    return f"item {index} {texts[index][:60]!r}"


def test_the_corpus_covers_the_hard_cases(corpus: list[str], serving_tokenizer: Tokenizer) -> None:
    def has(pattern: str) -> bool:
        return any(re.search(pattern, text) for text in corpus)

    assert len(corpus) >= 500
    assert "" in corpus
    assert any(text and text.isspace() for text in corpus), "whitespace-only"
    assert sum(length > MAX_TOKENS for length in untruncated_lengths(serving_tokenizer, corpus)) >= 10, "truncated"
    for script, pattern in {
        "Chinese": r"[\u4e00-\u9fff]",
        "Japanese kana": r"[\u3040-\u30ff]",
        "Korean": r"[\uac00-\ud7af]",
        "Arabic": r"[\u0600-\u06ff]",
        "Hebrew": r"[\u0590-\u05ff]",
        "Cyrillic": r"[\u0400-\u04ff]",
        "Devanagari": r"[\u0900-\u097f]",
    }.items():
        assert has(pattern), script
    assert has(r"[\U0001f300-\U0001faff]"), "emoji"
    assert has(r"[A-Za-z].*[\u4e00-\u9fff\u0400-\u04ff]|[\u4e00-\u9fff\u0400-\u04ff].*[A-Za-z]"), "mixed scripts"
    assert has(r"^\d[\d\s.,+-]*$"), "numbers only"
    punctuation_only = [t for t in corpus if t and all(unicodedata.category(c)[0] in "PS" for c in t)]
    assert len(punctuation_only) >= 10, "punctuation only"


def test_the_tokenizer_matches_sentence_transformers(
    reference: Any, corpus_batches: list[list[str]], serving_tokenizer: Tokenizer
) -> None:
    for number, batch in enumerate(corpus_batches):
        expected = reference.preprocess(batch)
        actual = tokenize(serving_tokenizer, batch)
        for name in ("input_ids", "attention_mask", "token_type_ids"):
            assert np.array_equal(actual[name], expected[name].numpy()), f"batch {number}: {name} differs"


def test_fp32_matches_sentence_transformers(
    reference: Any, corpus: list[str], corpus_batches: list[list[str]], fp32_embeddings: np.ndarray
) -> None:
    # Batch by batch, so both sides see the same padding.
    expected = np.concatenate(
        [reference.encode(batch, batch_size=len(batch), convert_to_numpy=True) for batch in corpus_batches]
    )
    assert fp32_embeddings.shape == expected.shape == (len(corpus), EMBEDDING_DIM)
    difference = np.abs(fp32_embeddings - expected).max(axis=1)
    worst = int(difference.argmax())
    assert difference[worst] <= FP32_ATOL, f"max |diff| {difference[worst]:.2e} at {describe(corpus, worst)}"


def test_int8_stays_close_to_fp32(corpus: list[str], int8_embeddings: np.ndarray, fp32_embeddings: np.ndarray) -> None:
    cosine = (int8_embeddings * fp32_embeddings).sum(axis=1) / (
        np.linalg.norm(int8_embeddings, axis=1) * np.linalg.norm(fp32_embeddings, axis=1)
    )
    worst = int(cosine.argmin())
    assert cosine.mean() >= INT8_MEAN_COSINE, f"mean cosine {cosine.mean():.4f}"
    assert cosine[worst] >= INT8_MIN_COSINE, f"cosine {cosine[worst]:.4f} at {describe(corpus, worst)}"


@pytest.mark.parametrize("embeddings", ["fp32_embeddings", "int8_embeddings"])
def test_embeddings_are_unit_length(embeddings: str, request: pytest.FixtureRequest) -> None:
    vectors: np.ndarray = request.getfixturevalue(embeddings)
    assert np.all(np.isfinite(vectors))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_the_int8_model_really_is_quantized(models_dir: Path) -> None:
    fp32 = onnx.load(str(models_dir / MINILM_FP32 / MODEL_FILE))
    weights = {init.name for init in fp32.graph.initializer if len(init.dims) == 2}
    weight_matmuls = [node for node in fp32.graph.node if node.op_type == "MatMul" and node.input[1] in weights]
    int8 = onnx.load(str(models_dir / MINILM_INT8 / MODEL_FILE))
    operators = Counter(node.op_type for node in int8.graph.node)
    # Every MatMul with a weight runs on int8, and no activation is quantized with a scale measured per batch
    # (DynamicQuantizeLinear): that would make a text's vector depend on its batch-mates.
    assert operators["MatMulIntegerToFloat"] == len(weight_matmuls) == 36
    assert operators["QuantizeLinear"] > 0
    assert "DynamicQuantizeLinear" not in operators
    fp32_bytes = (models_dir / MINILM_FP32 / MODEL_FILE).stat().st_size
    assert (models_dir / MINILM_INT8 / MODEL_FILE).stat().st_size < fp32_bytes / 3
