"""The tokenizer.json shipped beside the MiniLM models: truncate at 256, pad each batch to its longest item."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from onnx_lambda.manifest import TOKENIZER_FILE, read_manifest
from onnx_lambda_tools.export import MINILM_FP32, MINILM_INT8
from onnx_lambda_tools.export.minilm import MAX_TOKENS, tokenize

pytestmark = pytest.mark.models

CLS, SEP, PAD = 101, 102, 0


def test_the_file_itself_says_truncate_at_256_and_pad_to_longest(models_dir: Path) -> None:
    """The service reads these settings from the file, so they must be in it, not only in our code."""
    shipped = [models_dir / name / TOKENIZER_FILE for name in (MINILM_INT8, MINILM_FP32)]
    assert shipped[0].read_bytes() == shipped[1].read_bytes()
    config = json.loads(shipped[0].read_text(encoding="utf-8"))
    assert config["truncation"]["max_length"] == MAX_TOKENS
    assert config["padding"]["strategy"] == "BatchLongest"  # the upstream file says {"Fixed": 128}
    assert config["padding"]["pad_id"] == PAD
    for name in (MINILM_INT8, MINILM_FP32):
        settings = read_manifest(models_dir / name).tokenizer
        assert settings is not None
        assert (settings.file, settings.max_length, settings.padding) == (TOKENIZER_FILE, MAX_TOKENS, "longest")


def test_truncates_at_256_tokens_keeping_cls_and_sep(serving_tokenizer: Tokenizer) -> None:
    encoding = serving_tokenizer.encode("word " * 1000)
    assert len(encoding.ids) == MAX_TOKENS
    assert encoding.ids[0] == CLS
    assert encoding.ids[-1] == SEP
    assert all(encoding.attention_mask)


def test_pads_a_batch_to_its_longest_item(serving_tokenizer: Tokenizer) -> None:
    feeds = tokenize(serving_tokenizer, ["hello", "a somewhat longer sentence with several more words", ""])
    longest = len(serving_tokenizer.encode("a somewhat longer sentence with several more words").ids)
    assert longest < 128  # not the shipped file's fixed 128
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        assert feeds[name].shape == (3, longest)
        assert feeds[name].dtype == np.int64
    assert feeds["input_ids"][0, :3].tolist() == [CLS, serving_tokenizer.token_to_id("hello"), SEP]
    assert feeds["input_ids"][0, 3:].tolist() == [PAD] * (longest - 3)
    assert feeds["attention_mask"].sum(axis=1).tolist() == [3, longest, 2]
    assert feeds["input_ids"][2, :2].tolist() == [CLS, SEP]  # the empty string is [CLS] [SEP]
    assert not feeds["token_type_ids"].any()


def test_a_single_text_is_not_padded(serving_tokenizer: Tokenizer) -> None:
    assert tokenize(serving_tokenizer, ["hello"])["input_ids"].shape == (1, 3)


def test_one_long_item_pads_its_batch_to_256(serving_tokenizer: Tokenizer) -> None:
    feeds = tokenize(serving_tokenizer, ["short", "long " * 500])
    assert feeds["input_ids"].shape == (2, MAX_TOKENS)
    assert feeds["attention_mask"].sum(axis=1).tolist() == [3, MAX_TOKENS]
