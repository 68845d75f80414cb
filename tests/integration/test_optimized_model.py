"""The optimized model (model.optimized.onnx) through the init path, from the real local S3: it answers like
raw onnxruntime + tokenizers on the portable model.onnx, a manifest that mis-pins it is refused, and one
written by another onnxruntime gets model.onnx instead.

The deployment is pinned as ``onnx-lambda publish`` prints it (every file, the optimized one included).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort
import pytest

from onnx_lambda.config import ModelSource, Settings
from onnx_lambda.errors import ModelLoadError
from onnx_lambda.manifest import MANIFEST_FILE, MODEL_FILE, OPTIMIZED_MODEL_FILE, FileEntry, Manifest, read_manifest
from onnx_lambda.registry import ModelRegistry, load_registry
from tests import raw_reference
from tests.faults.support import Published, model_files, publish_files, publish_model

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120), pytest.mark.usefixtures("aws_environment")]

EMBEDDER = "all-minilm-l6-v2"
#: Lengths from one token to the tokenizer's limit, so padding and truncation are both in the batch.
TEXTS = [
    "a",
    "The quick brown fox jumps over the lazy dog.",
    "Serverless inference on AWS Lambda, with a model optimized once when it was built.",
    "Sentences of different lengths are padded to the longest in the batch. " * 40,
]


def load(published: Published, moto_server: str, tmp_path: Path) -> ModelRegistry:
    settings = Settings(
        models=[ModelSource.model_validate(published.source())],
        s3_endpoint_url=moto_server,
        cache_dir=tmp_path / "cache",
        s3_deadline_seconds=30,
    )
    return load_registry(settings)


def loaded_file(caplog: pytest.LogCaptureFixture) -> str:
    """The file the registry built its session from, as its "model loaded" line says."""
    (record,) = [record for record in caplog.records if record.getMessage() == "model loaded"]
    return str(record.__dict__["file"])


def assert_same_vectors(registry: ModelRegistry, models_dir: Path) -> None:
    embedder = registry.get(EMBEDDER).embedder
    assert embedder is not None
    served = embedder.embed(TEXTS).vectors
    # Raw onnxruntime (default options) + tokenizers on the portable model.onnx.
    manifest = read_manifest(models_dir / EMBEDDER)
    assert manifest.tokenizer is not None
    expected = raw_reference.embed(models_dir / EMBEDDER, TEXTS, manifest.tokenizer.max_length).vectors
    atol = manifest.golden.atol
    np.testing.assert_allclose(served, expected, atol=atol)
    cosines = np.sum(served * expected, axis=1) / (np.linalg.norm(served, axis=1) * np.linalg.norm(expected, axis=1))
    assert float(cosines.min()) >= 0.9999, cosines


def with_optimized(files: dict[str, bytes], **changes: object) -> dict[str, bytes]:
    """The files with a manifest whose ``optimized`` entry (or its pin in ``files``) is changed."""
    manifest = Manifest.model_validate_json(files[MANIFEST_FILE])
    assert manifest.optimized is not None
    entry = changes.pop("entry", None)
    updated = manifest.model_copy(
        update={
            "optimized": manifest.optimized.model_copy(update=changes),
            "files": {**manifest.files, **({OPTIMIZED_MODEL_FILE: entry} if entry is not None else {})},
        }
    )
    return {**files, MANIFEST_FILE: updated.model_dump_json(indent=2).encode()}


def test_the_optimized_file_answers_like_raw_onnxruntime_on_the_portable_model(
    s3: S3Client, bucket: str, models_dir: Path, moto_server: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    published = publish_model(s3, bucket, models_dir, EMBEDDER)
    assert published.source()["optimized_version_id"] == published.versions[OPTIMIZED_MODEL_FILE]
    caplog.set_level(logging.INFO)
    registry = load(published, moto_server, tmp_path)
    assert loaded_file(caplog) == OPTIMIZED_MODEL_FILE
    assert_same_vectors(registry, models_dir)


def test_a_manifest_whose_optimized_sha256_does_not_match_is_refused(
    s3: S3Client, bucket: str, models_dir: Path, moto_server: str, tmp_path: Path
) -> None:
    files = model_files(models_dir, EMBEDDER)
    optimized = files[OPTIMIZED_MODEL_FILE]
    wrong = FileEntry(sha256="0" * 64, bytes=len(optimized))
    published = publish_files(
        s3,
        bucket,
        f"models/{EMBEDDER}/mispinned",
        with_optimized(files, entry=wrong),
        read_manifest(models_dir / EMBEDDER).model_sha256,
    )
    with pytest.raises(ModelLoadError) as refused:
        load(published, moto_server, tmp_path)
    message = str(refused.value)
    assert published.label(OPTIMIZED_MODEL_FILE) in message
    assert f"does not match the expected {'0' * 64} (manifest.json)" in message
    assert not list(tmp_path.glob("cache/*")), "bytes that failed their check must not be cached"


def test_an_optimized_file_from_another_onnxruntime_falls_back_to_the_portable_model(
    s3: S3Client, bucket: str, models_dir: Path, moto_server: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = with_optimized(model_files(models_dir, EMBEDDER), onnxruntime="0.0.1")
    published = publish_files(
        s3, bucket, f"models/{EMBEDDER}/other-ort", files, read_manifest(models_dir / EMBEDDER).model_sha256
    )
    caplog.set_level(logging.INFO)
    registry = load(published, moto_server, tmp_path)
    assert loaded_file(caplog) == MODEL_FILE
    (said,) = [r for r in caplog.records if r.getMessage().startswith("serving the portable model.onnx")]
    assert f"written by onnxruntime 0.0.1 and this is {ort.__version__}" in said.__dict__["reason"]
    assert_same_vectors(registry, models_dir)
