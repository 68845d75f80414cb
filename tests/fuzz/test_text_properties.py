"""Tokenization and embeddings on arbitrary Unicode: never a crash, always a unit vector per text.

The real MiniLM models and their published tokenizer.json, in-process. Text reaches the embedder only
through JSON, which can't carry lone surrogates (both parsers refuse them: see the HTTP test at the end),
so "arbitrary Unicode" here is every Unicode scalar value: controls, NUL, combining marks, emoji
sequences, right-to-left scripts, unassigned and private-use code points, and runs long enough to be
truncated.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnx_lambda.embeddings import Embedder
from onnx_lambda.manifest import MODEL_FILE, TOKENIZER_FILE, verify_model_dir
from onnx_lambda.model import OnnxModel
from tests.servers import LocalService

INT8 = "all-minilm-l6-v2"
FP32 = "all-minilm-l6-v2-fp32"
CLS, SEP = 101, 102
MAX_TOKENS = 256
DIMENSIONS = 384

PROPERTY_SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _embedder(models_dir: Path, name: str) -> Embedder:
    directory = models_dir / name
    manifest = verify_model_dir(directory)
    assert manifest.tokenizer is not None
    model = OnnxModel.from_bytes(manifest, (directory / MODEL_FILE).read_bytes(), threads=1)
    return Embedder(model, (directory / TOKENIZER_FILE).read_bytes(), manifest.tokenizer)


@pytest.fixture(scope="module")
def int8(models_dir: Path) -> Embedder:
    return _embedder(models_dir, INT8)


@pytest.fixture(scope="module")
def fp32(models_dir: Path) -> Embedder:
    return _embedder(models_dir, FP32)


#: Code points that tokenizers and normalizers get wrong most often, weighted in beside plain st.text().
_AWKWARD = st.sampled_from(
    [
        "\x00", "\x07", "\t", "\n", "\r", "\x7f", "\x85", "\u00a0", "\u200b", "\u200d", "\u2028", "\ufeff",
        "\u0301", "\u0336", "e\u0301", "\u05d0", "\u0627", "\u202e", "\u0e01", "\u4e2d", "\u3042", "\uac00",
        "\U0001f44d\U0001f3fd", "\U0001f468\u200d\U0001f469\u200d\U0001f467", "\U0001f1fa\U0001f1f8", "\ufffd",
        "\ue000", "\U000f0000", "\U0010ffff", "\u0378", "\ufdd0", "\uffff", "ﬁ", "ß", "İ", "Σ", "[CLS]", "[PAD]",
        "[SEP]", "##", "...", "  ", "a", "token",
    ]
)  # fmt: skip
TEXT = st.one_of(
    st.text(max_size=200),
    st.lists(_AWKWARD, max_size=60).map("".join),
    st.builds(lambda word, count: " ".join([word] * count), st.text(min_size=1, max_size=12), st.integers(1, 400)),
)
BATCH = st.lists(TEXT, min_size=1, max_size=4)


@PROPERTY_SETTINGS
@given(BATCH)
def test_tokenization_of_arbitrary_unicode_is_well_formed(int8: Embedder, texts: list[str]) -> None:
    feeds = int8.tokenize(texts)
    ids, mask = feeds["input_ids"], feeds["attention_mask"]
    assert ids.dtype == np.int64
    assert ids.shape == mask.shape == feeds["token_type_ids"].shape
    rows, length = ids.shape
    assert rows == len(texts)
    assert 2 <= length <= MAX_TOKENS
    assert ((ids >= 0) & (ids < 30522)).all()
    assert not feeds["token_type_ids"].any()
    for row_ids, row_mask in zip(ids, mask, strict=True):
        real = int(row_mask.sum())
        # Padding only at the end, and every real sequence framed by [CLS] ... [SEP].
        assert (row_mask[:real] == 1).all()
        assert not row_mask[real:].any()
        assert row_ids[0] == CLS
        assert row_ids[real - 1] == SEP
    # What the tokenizer produces is exactly what the infer route accepts as raw token tensors.
    int8.check_token_inputs(feeds)


@PROPERTY_SETTINGS
@given(BATCH)
def test_embeddings_of_arbitrary_unicode_are_unit_vectors(int8: Embedder, texts: list[str]) -> None:
    result = int8.embed(texts)
    assert result.vectors.shape == (len(texts), DIMENSIONS)
    assert result.vectors.dtype == np.float32
    assert np.isfinite(result.vectors).all()
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-3)
    assert 2 * len(texts) <= result.prompt_tokens <= MAX_TOKENS * len(texts)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(TEXT, min_size=2, max_size=4))
def test_a_texts_fp32_vector_does_not_depend_on_its_batch(fp32: Embedder, texts: list[str]) -> None:
    """Padding to the longest item is masked out: alone or in a batch, the same vector."""
    batch = fp32.embed(texts).vectors
    for index, text in enumerate(texts):
        np.testing.assert_allclose(fp32.embed([text]).vectors[0], batch[index], atol=1e-4)


@pytest.mark.integration
@pytest.mark.parametrize(
    "escaped",
    ["\\ud800", "\\udfff", "a\\ud83d", "\\ude00b", "\\udc00\\ud800"],
)
def test_lone_surrogates_are_refused_as_bad_json(local_service: LocalService, escaped: str) -> None:
    """The tokenizer raises TypeError on a lone surrogate; JSON's escapes are the only way one could arrive."""
    headers = local_service.headers(**{"content-type": "application/json"})
    body = '{"model": "%s", "input": ["ok", "%s"]}' % (INT8, escaped)  # noqa: UP031 - the escape must stay raw
    response = httpx.post(f"{local_service.url}/v1/embeddings", content=body.encode(), headers=headers)
    assert response.status_code == 400, response.text
    assert "JSON" in response.json()["error"]["message"]
    tensor = {"name": "input_ids", "datatype": "BYTES", "shape": [1], "data": ["PLACEHOLDER"]}
    body = json.dumps({"inputs": [tensor]}).replace("PLACEHOLDER", escaped)
    response = httpx.post(f"{local_service.url}/v2/models/{INT8}/infer", content=body.encode(), headers=headers)
    assert response.status_code == 400, response.text
