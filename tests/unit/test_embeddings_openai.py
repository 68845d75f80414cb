"""OpenAI's embeddings request, model-side: token-id arrays, the context length, ``dimensions``, the four forms.

The reference is the ``tokenizers`` library on the published tokenizer.json (and numpy), never the embedder
itself: token-id arrays must give exactly the tensors the tokenizer gives for the same text, and a too-long
text is counted as the tokenizer counts it without truncation.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import orjson
import pytest
from pydantic import ValidationError
from tokenizers import Tokenizer

from onnx_lambda.embeddings import Embedder
from onnx_lambda.errors import BadRequest, ModelLoadError
from onnx_lambda.manifest import MANIFEST_FILE, Manifest, read_manifest
from onnx_lambda.model import OnnxModel
from onnx_lambda.schemas import OPENAI_MAX_INPUTS, EmbeddingsRequest

EMBEDDER = "all-minilm-l6-v2"
TEXTS = ["Serverless inference on AWS Lambda", "短い", "emoji 🚀 and numbers 42 with a longer tail of words"]


def embedder_for(directory: Path) -> Embedder:
    manifest = read_manifest(directory)
    model = OnnxModel.from_bytes(manifest, (directory / "model.onnx").read_bytes(), threads=1)
    assert manifest.tokenizer is not None
    return Embedder(model, (directory / "tokenizer.json").read_bytes(), manifest.tokenizer)


@pytest.fixture(scope="module")
def embedder(models_dir: Path) -> Embedder:
    return embedder_for(models_dir / EMBEDDER)


@pytest.fixture(scope="module")
def reference(models_dir: Path) -> Tokenizer:
    """The published tokenizer.json as the library reads it: the file's own settings, no truncation."""
    tokenizer = Tokenizer.from_file(str(models_dir / EMBEDDER / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def with_matryoshka(models_dir: Path, tmp_path: Path, sizes: list[int]) -> Path:
    directory = tmp_path / EMBEDDER
    shutil.copytree(models_dir / EMBEDDER, directory)
    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    (directory / MANIFEST_FILE).write_text(json.dumps({**manifest, "matryoshka_dimensions": sizes}))
    return directory


# --- token-id arrays -------------------------------------------------------------------------------


def test_the_ids_of_a_text_give_the_tensors_of_that_text(embedder: Embedder, reference: Tokenizer) -> None:
    """OpenAI takes ids as the exact sequence: the tokenizer's ids (with [CLS]/[SEP]) are the text's tensors."""
    padded = Tokenizer.from_str(reference.to_str())
    padded.enable_padding()
    expected = padded.encode_batch(TEXTS)
    feeds = embedder.id_feeds([reference.encode(text).ids for text in TEXTS])
    np.testing.assert_array_equal(feeds["input_ids"], [e.ids for e in expected])
    np.testing.assert_array_equal(feeds["attention_mask"], [e.attention_mask for e in expected])
    np.testing.assert_array_equal(feeds["token_type_ids"], [e.type_ids for e in expected])
    for name, array in embedder.text_feeds(TEXTS).items():
        np.testing.assert_array_equal(feeds[name], array)


def test_ids_go_in_unchanged_without_added_special_tokens(embedder: Embedder, reference: Tokenizer) -> None:
    bare = reference.encode(TEXTS[0], add_special_tokens=False).ids
    assert bare[0] != 101
    feeds = embedder.id_feeds([bare])
    assert feeds["input_ids"].tolist() == [bare]
    assert feeds["attention_mask"].tolist() == [[1] * len(bare)]


def test_the_longest_token_array_fits_and_one_more_is_over_the_context_length(embedder: Embedder) -> None:
    assert embedder.max_length == 256
    assert embedder.id_feeds([[101] * 256])["input_ids"].shape == (1, 256)
    with pytest.raises(BadRequest) as refused:
        embedder.id_feeds([[101, 102], [101] * 257])
    assert refused.value.message.startswith("input[1] is 257 tokens;")
    assert "maximum context length of 256 tokens" in refused.value.message
    assert (refused.value.param, refused.value.code) == ("input", "context_length_exceeded")


@pytest.mark.parametrize(
    ("rows", "phrase"),
    [
        ([], "input is an empty list"),
        ([[101, 102], []], "input[1] is an empty token array"),
        ([[101, -1, 102]], "input[0][1] is not a token id"),
        ([[101, 102], [101, 30522]], "input[1][1] is not a token id"),
        ([[2**70]], "input[0][0] is not a token id"),
        ([[10**5000]], "input[0][0] is not a token id"),  # quoted by position: str() of it would raise
    ],
)
def test_impossible_token_arrays_are_named(embedder: Embedder, rows: list[list[int]], phrase: str) -> None:
    with pytest.raises(BadRequest) as refused:
        embedder.id_feeds(rows)
    assert refused.value.message.startswith(phrase)
    assert refused.value.param == "input"
    assert len(refused.value.message) < 200


def test_the_last_id_of_the_vocabulary_is_a_token(embedder: Embedder, reference: Tokenizer) -> None:
    last = reference.get_vocab_size() - 1
    assert embedder.id_feeds([[0, last]])["input_ids"].tolist() == [[0, last]]


# --- text over the context length ------------------------------------------------------------------


def test_a_text_over_the_context_length_is_refused_with_its_true_count(
    embedder: Embedder, reference: Tokenizer
) -> None:
    text = "serverless inference " * 200
    count = len(reference.encode(text).ids)
    assert count > 256
    with pytest.raises(BadRequest) as refused:
        embedder.text_feeds(["fine", text])
    assert refused.value.message.startswith(f"input[1] is {count} tokens;")
    assert refused.value.code == "context_length_exceeded"


def test_a_text_of_exactly_the_context_length_passes(embedder: Embedder, reference: Tokenizer) -> None:
    text = " ".join(["word"] * 254)
    assert len(reference.encode(text).ids) == 256
    assert embedder.text_feeds([text])["input_ids"].shape == (1, 256)
    assert len(reference.encode(text + " word").ids) == 257
    with pytest.raises(BadRequest, match="is 257 tokens"):
        embedder.text_feeds([text + " word"])


def test_embed_itself_still_truncates(embedder: Embedder) -> None:
    """The library call keeps sentence-transformers' truncation; only the OpenAI route refuses."""
    assert embedder.embed(["word " * 400]).prompt_tokens == 256


# --- dimensions ------------------------------------------------------------------------------------


def test_without_declared_sizes_only_the_models_own_size_is_taken(embedder: Embedder) -> None:
    embedder.check_dimensions(384)
    with pytest.raises(BadRequest) as refused:
        embedder.check_dimensions(128)
    assert refused.value.param == "dimensions"
    assert "declares no matryoshka_dimensions" in refused.value.message


def test_declared_sizes_are_taken_and_others_refused(models_dir: Path, tmp_path: Path) -> None:
    embedder = embedder_for(with_matryoshka(models_dir, tmp_path, [256, 64, 128]))
    for size in (64, 128, 256, 384):
        embedder.check_dimensions(size)
    with pytest.raises(BadRequest) as refused:
        embedder.check_dimensions(100)
    assert refused.value.message.startswith("dimensions must be one of [64, 128, 256, 384]")
    assert refused.value.param == "dimensions"


def test_shortened_vectors_are_the_head_normalised_again(embedder: Embedder) -> None:
    vectors = np.random.default_rng(7).standard_normal((3, 384)).astype(np.float32)
    shortened = embedder.shorten(vectors, 64)
    head = vectors[:, :64].astype(np.float64)
    np.testing.assert_allclose(shortened, head / np.linalg.norm(head, axis=1, keepdims=True), rtol=1e-6)
    assert shortened.dtype == np.float32
    assert embedder.shorten(vectors, None) is vectors
    assert embedder.shorten(vectors, 384) is vectors
    zero_head = np.concatenate([np.zeros((1, 64), np.float32), np.ones((1, 320), np.float32)], axis=1)
    assert np.isfinite(embedder.shorten(zero_head, 64)).all()


def test_a_declared_size_past_the_models_is_refused_at_load(models_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"matryoshka_dimensions \[128, 512\] go past its 384"):
        embedder_for(with_matryoshka(models_dir, tmp_path, [128, 512]))


@pytest.mark.parametrize("sizes", [[0], [-8], [64, 64], ["64"], [64.5]])
def test_the_manifest_refuses_impossible_sizes(models_dir: Path, sizes: list[object]) -> None:
    document = json.loads((models_dir / EMBEDDER / MANIFEST_FILE).read_text())
    with pytest.raises(ValidationError, match="matryoshka_dimensions"):
        Manifest.model_validate({**document, "matryoshka_dimensions": sizes})


def test_the_published_manifests_declare_no_sizes(models_dir: Path) -> None:
    """all-MiniLM-L6-v2 was not trained with Matryoshka loss: its shortened vectors would mean little."""
    assert read_manifest(models_dir / EMBEDDER).matryoshka_dimensions == []


# --- the request's four forms of input -------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["text", ["one", "two"], [101, 7592, 102], [[101, 102], [101, 7592, 2088, 102]], [], [[]], [2**70]],
)
def test_openais_four_forms_parse_as_sent(value: object) -> None:
    parsed = EmbeddingsRequest.model_validate_json(json.dumps({"model": "m", "input": value}))
    assert parsed.input == value


@pytest.mark.parametrize(
    ("value", "phrase"),
    [
        (["one", 2], "input[1] is not a string"),
        ([101, "two"], "input[1] is not a token id"),
        ([101, True], "input[1] is not a token id"),
        ([101, 1.0], "input[1] is not a token id"),
        ([[101], 102], "input[1] is not a token array"),
        ([[101], [102, None]], "input[1][1] is not a token id"),
        ([None] * 1000, "input[0] is neither"),
        ([{"text": "x"}], "input[0] is neither"),
        (["x"] * (OPENAI_MAX_INPUTS + 1), f"input has {OPENAI_MAX_INPUTS + 1} items; OpenAI's limit is 2048"),
        ([[101]] * (OPENAI_MAX_INPUTS + 1), "OpenAI's limit is 2048"),
    ],
)
def test_a_mixed_or_foreign_input_is_one_short_error(value: object, phrase: str) -> None:
    with pytest.raises(ValidationError) as refused:
        EmbeddingsRequest.model_validate_json(orjson.dumps({"model": "m", "input": value}))
    errors = refused.value.errors()
    assert len(errors) == 1
    assert errors[0]["loc"] == ("input",)
    assert phrase in errors[0]["msg"]


def test_a_full_batch_of_the_limit_parses(models_dir: Path) -> None:
    parsed = EmbeddingsRequest.model_validate_json(orjson.dumps({"model": "m", "input": ["x"] * OPENAI_MAX_INPUTS}))
    assert len(parsed.input) == OPENAI_MAX_INPUTS
