"""Shared by the parity tests: the corpus, and what the exported models make of it, computed once per run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from tokenizers import Tokenizer

from onnx_lambda.config import available_cpus
from onnx_lambda.manifest import MODEL_FILE, TOKENIZER_FILE
from onnx_lambda.model import session_options
from onnx_lambda_tools.export import MINILM_FP32, MINILM_INT8
from onnx_lambda_tools.export.minilm import OUTPUT_NAME, tokenize

CORPUS_FILE = Path(__file__).with_name("corpus.jsonl")
#: The service's batches: up to 32 texts, padded to the longest.
BATCH_SIZE = 32


def load_corpus() -> list[str]:
    """One JSON string per line (JSON, so empty strings, tabs and newlines survive)."""
    with CORPUS_FILE.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def open_session(model: Path) -> ort.InferenceSession:
    """A session with the service's options (all graph optimizations, intra-op threads = CPUs, inter-op 1)."""
    return ort.InferenceSession(
        str(model), sess_options=session_options(available_cpus(), "all"), providers=["CPUExecutionProvider"]
    )


def embed(model_dir: Path, batches: list[list[str]]) -> np.ndarray:
    """Embed every batch the way the service does: the model's own tokenizer.json, padded per batch."""
    tokenizer = Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
    session = open_session(model_dir / MODEL_FILE)
    return np.concatenate([session.run([OUTPUT_NAME], dict(tokenize(tokenizer, batch)))[0] for batch in batches])


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    return load_corpus()


@pytest.fixture(scope="session")
def corpus_batches(corpus: list[str]) -> list[list[str]]:
    return [corpus[start : start + BATCH_SIZE] for start in range(0, len(corpus), BATCH_SIZE)]


@pytest.fixture(scope="session")
def serving_tokenizer(models_dir: Path) -> Tokenizer:
    """The tokenizer.json shipped beside the default model."""
    return Tokenizer.from_file(str(models_dir / MINILM_INT8 / TOKENIZER_FILE))


@pytest.fixture(scope="session")
def fp32_embeddings(models_dir: Path, corpus_batches: list[list[str]]) -> np.ndarray:
    return embed(models_dir / MINILM_FP32, corpus_batches)


@pytest.fixture(scope="session")
def int8_embeddings(models_dir: Path, corpus_batches: list[list[str]]) -> np.ndarray:
    return embed(models_dir / MINILM_INT8, corpus_batches)
