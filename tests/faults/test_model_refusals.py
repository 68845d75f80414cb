"""Models that must not be served, from the real local S3 through the init path (``load_registry``).

Each refusal is a ModelLoadError whose message names the object and its S3 version, logged and counted
with the ``ModelLoadFailure`` metric; no registry comes back, so nothing is served.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from onnx_lambda.config import ModelSource, Settings
from onnx_lambda.errors import ModelLoadError
from onnx_lambda.manifest import (
    MANIFEST_FILE,
    MODEL_FILE,
    OPTIMIZED_MODEL_FILE,
    TOKENIZER_FILE,
    FileEntry,
    Manifest,
    sha256_hex,
)
from onnx_lambda.registry import load_registry
from tests.faults.support import Published, model_files, publish_files, publish_model

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

EMBEDDER = "all-minilm-l6-v2"
TABULAR = "breast-cancer-classifier"


def refusal(published: Published, moto_server: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> str:
    """Load the deployment as init does; return the refusal, after checking it was counted (EMF on stdout)."""
    settings = Settings(
        models=[ModelSource.model_validate(published.source())],
        s3_endpoint_url=moto_server,
        cache_dir=tmp_path / "cache",
        s3_deadline_seconds=20,
    )
    capfd.readouterr()
    with pytest.raises(ModelLoadError) as refused:
        load_registry(settings)
    output = capfd.readouterr().out
    metrics = [json.loads(line) for line in output.splitlines() if line.startswith('{"_aws"')]
    assert [line["ModelLoadFailure"] for line in metrics] == [[1.0]], output
    return str(refused.value)


def republish(s3: S3Client, published: Published, name: str, data: bytes) -> Published:
    """Replace one file with a new version, as a careless (or hostile) upload would."""
    version = s3.put_object(Bucket=published.bucket, Key=f"{published.prefix}/{name}", Body=data)["VersionId"]
    return published.republished(name, version, data)


def with_manifest(manifest: Manifest, **files: bytes) -> bytes:
    """The manifest re-pinned to these files' bytes, so every sha256 check passes."""
    entries = dict(manifest.files)
    for name, data in files.items():
        entries[name.replace("_", ".")] = FileEntry(sha256=sha256_hex(data), bytes=len(data))
    return manifest.model_copy(update={"files": entries}).model_dump_json(indent=2).encode()


@pytest.fixture(autouse=True)
def the_refusal_is_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    yield
    failed = [record for record in caplog.get_records("call") if record.getMessage() == "model load failed"]
    assert len(failed) == 1, caplog.text


@pytest.fixture
def tabular(s3: S3Client, bucket: str, models_dir: Path) -> Published:
    return publish_model(s3, bucket, models_dir, TABULAR)


def pinned_for(tabular: Published, name: str) -> Published:
    """The deployment that loads ``name``: model.onnx's drops the optimized pin, the optimized file's keeps it."""
    return tabular if name == OPTIMIZED_MODEL_FILE else tabular.portable()


@pytest.mark.parametrize("name", [MODEL_FILE, OPTIMIZED_MODEL_FILE])
def test_model_bytes_that_differ_from_the_pinned_sha256(
    s3: S3Client, tabular: Published, moto_server: str, tmp_path: Path, capfd: pytest.CaptureFixture[str], name: str
) -> None:
    model = s3.get_object(Bucket=tabular.bucket, Key=f"{tabular.prefix}/{name}")["Body"].read()
    tampered = republish(s3, pinned_for(tabular, name), name, model[:-1] + bytes([model[-1] ^ 0x01]))
    message = refusal(tampered, moto_server, tmp_path, capfd)
    assert tampered.label(name) in message
    assert f"does not match the expected {sha256_hex(model)} (manifest.json)" in message
    assert not list(tmp_path.glob("cache/*")), "bytes that failed their check must not be cached"


@pytest.mark.parametrize("name", [MODEL_FILE, OPTIMIZED_MODEL_FILE])
def test_a_truncated_model(
    s3: S3Client, tabular: Published, moto_server: str, tmp_path: Path, capfd: pytest.CaptureFixture[str], name: str
) -> None:
    model = s3.get_object(Bucket=tabular.bucket, Key=f"{tabular.prefix}/{name}")["Body"].read()
    truncated = republish(s3, pinned_for(tabular, name), name, model[: len(model) // 2])
    message = refusal(truncated, moto_server, tmp_path, capfd)
    assert f"{truncated.label(name)} is {len(model) // 2} bytes, expected {len(model)}" in message
    assert not list(tmp_path.glob("cache/*")), "bytes that failed their check must not be cached"


@pytest.mark.parametrize("name", [MODEL_FILE, OPTIMIZED_MODEL_FILE])
def test_a_model_that_is_not_onnx(
    s3: S3Client,
    bucket: str,
    models_dir: Path,
    moto_server: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    name: str,
) -> None:
    """Published with a manifest that vouches for it, so only onnxruntime can tell: the message still names it."""
    files = model_files(models_dir, TABULAR)
    not_onnx = b"PK\x03\x04 this is a zip file, not an ONNX protobuf"
    manifest = Manifest.model_validate_json(files[MANIFEST_FILE])
    files.update({name: not_onnx, MANIFEST_FILE: with_manifest(manifest, **{name.replace(".", "_"): not_onnx})})
    published = publish_files(s3, bucket, f"models/{TABULAR}/not-onnx", files, sha256_hex(files[MODEL_FILE]))
    message = refusal(pinned_for(published, name), moto_server, tmp_path, capfd)
    assert published.uri in message  # s3://bucket/key?versionId=...
    assert "not a loadable ONNX model" in message
    assert (OPTIMIZED_MODEL_FILE in message) == (name == OPTIMIZED_MODEL_FILE)


@pytest.mark.parametrize("missing", [MANIFEST_FILE, TOKENIZER_FILE])
def test_a_missing_manifest_or_tokenizer(
    s3: S3Client,
    bucket: str,
    models_dir: Path,
    moto_server: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    missing: str,
) -> None:
    published = publish_model(s3, bucket, models_dir, EMBEDDER)
    s3.delete_object(Bucket=bucket, Key=f"{published.prefix}/{missing}", VersionId=published.versions[missing])
    message = refusal(published, moto_server, tmp_path, capfd)
    assert f"{missing}: {published.label(missing)} does not exist (NoSuchVersion)" in message


def test_a_tokenizer_that_is_not_a_tokenizer(
    s3: S3Client, bucket: str, models_dir: Path, moto_server: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Its sha256 matches the manifest (so the store passes it on), but it doesn't load."""
    files = model_files(models_dir, EMBEDDER)
    broken = b'{"version": "1.0", "model": "not a tokenizer"}'
    manifest = Manifest.model_validate_json(files[MANIFEST_FILE])
    files.update({TOKENIZER_FILE: broken, MANIFEST_FILE: with_manifest(manifest, tokenizer_json=broken)})
    published = publish_files(s3, bucket, f"models/{EMBEDDER}/bad-tokenizer", files, manifest.model_sha256)
    message = refusal(published, moto_server, tmp_path, capfd)
    assert published.uri in message
    assert "tokenizer.json does not load" in message


def test_a_manifest_that_is_not_a_manifest(
    s3: S3Client, tabular: Published, moto_server: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    replaced = republish(s3, tabular, MANIFEST_FILE, b"<html>Access Denied</html>")
    message = refusal(replaced, moto_server, tmp_path, capfd)
    assert replaced.label(MANIFEST_FILE) in message
