"""The model store on local files: file:// sources, every refusal, URI parsing and the S3 client's config.

Everything that needs a network (S3 sources, the cache, faults) is in
tests/integration/test_model_store_s3.py, against a real moto server.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

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
    TokenizerSettings,
)
from onnx_lambda.model_store import ModelStore, build_s3_client, parse_file_uri, parse_s3_uri
from onnx_lambda_tools.local.cloud import free_port
from tests.model_bundle import TOKENIZER_BYTES, Bundle, iris_model, make_bundle

SHA_OF_NOTHING_IN_PARTICULAR = "ab" * 32


def make_settings(tmp_path: Path, source: ModelSource, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "models": [source],
        "cache_dir": tmp_path / "cache",
        # Nothing listens here: a test that reaches the network by mistake fails loudly.
        "s3_endpoint_url": f"http://127.0.0.1:{free_port()}",
        "s3_max_attempts": 1,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


def fetch(tmp_path: Path, uri: str, sha256: str | None = None) -> object:
    source = ModelSource(uri=uri, sha256=sha256)
    return ModelStore(make_settings(tmp_path, source)).fetch(source)


@pytest.fixture
def bundle() -> Bundle:
    return make_bundle(tokenizer=TOKENIZER_BYTES)


@pytest.fixture
def model_path(tmp_path: Path, bundle: Bundle) -> Path:
    # A space in the directory makes the URI percent-encoded, as file URIs are.
    return bundle.write(tmp_path / "models dir" / "iris")


# --- parse_s3_uri ------------------------------------------------------------------------------


def test_parse_s3_uri_splits_bucket_key_and_version() -> None:
    assert parse_s3_uri("s3://my-bucket/models/iris/1-abc/model.onnx?versionId=3HL4kqtJ") == (
        "my-bucket",
        "models/iris/1-abc/model.onnx",
        "3HL4kqtJ",
    )
    assert parse_s3_uri("s3://my.bucket/model.onnx") == ("my.bucket", "model.onnx", None)


def test_parse_s3_uri_keeps_plus_in_version_ids_and_decodes_escapes() -> None:
    # Real S3 version ids contain '+' and '/'; form decoding would turn '+' into a space.
    assert parse_s3_uri("s3://bkt/k.onnx?versionId=a+b/c")[2] == "a+b/c"
    assert parse_s3_uri("s3://bkt/k.onnx?versionId=a%2Bb%2Fc")[2] == "a+b/c"


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("https://bkt/k.onnx", "not an s3:// uri"),
        ("s3://Bad_Bucket/k.onnx", "not a valid S3 bucket name"),
        ("s3://bkt", "names no object"),
        ("s3://bkt/models/", "names no object"),
        ("s3://bkt/k.onnx?version=1", "only query parameter allowed is versionId"),
        ("s3://bkt/k.onnx?versionId=", "only query parameter allowed is versionId"),
        ("s3://bkt/k.onnx?versionId=a&versionId=b", "versionId given twice"),
        ("s3://bkt/k.onnx#frag", "fragment"),
    ],
)
def test_parse_s3_uri_refuses_malformed_uris(uri: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_s3_uri(uri)


@pytest.mark.parametrize("uri", ["file://relative/model.onnx", "file:///", "file:///m.onnx?x=1", "s3://b/k"])
def test_parse_file_uri_wants_an_absolute_path(uri: str) -> None:
    with pytest.raises(ValueError, match=re.escape("expected file:///absolute/path/model.onnx")):
        parse_file_uri(uri)


# --- file:// happy path ---------------------------------------------------------------------------


def test_file_source_returns_verified_model_manifest_and_tokenizer(
    tmp_path: Path, model_path: Path, bundle: Bundle
) -> None:
    uri = model_path.as_uri()
    assert "%20" in uri
    source = ModelSource(uri=uri, sha256=bundle.sha256)
    settings = make_settings(tmp_path, source)

    artifacts = ModelStore(settings).fetch(source)

    assert artifacts.uri == uri
    assert artifacts.model == iris_model()
    assert artifacts.manifest == bundle.manifest
    assert artifacts.tokenizer == TOKENIZER_BYTES
    assert artifacts.from_cache is False
    assert {"fetch", "hash", "total"} <= set(artifacts.timings)
    # A local file is its own cache: nothing is copied to the cache dir.
    assert not settings.cache_dir.exists()


def test_file_source_without_pin_is_checked_against_its_manifest(tmp_path: Path, model_path: Path) -> None:
    artifacts = ModelStore(make_settings(tmp_path, ModelSource(uri=model_path.as_uri()))).fetch(
        ModelSource(uri=model_path.as_uri())
    )
    assert artifacts.model == iris_model()


def test_model_without_tokenizer_has_none(tmp_path: Path) -> None:
    path = make_bundle().write(tmp_path / "plain")
    source = ModelSource(uri=path.as_uri())
    assert ModelStore(make_settings(tmp_path, source)).fetch(source).tokenizer is None


# --- file:// refusals -------------------------------------------------------------------------


def test_pin_that_differs_from_the_manifest_is_refused(tmp_path: Path, model_path: Path, bundle: Bundle) -> None:
    with pytest.raises(ModelLoadError) as refused:
        fetch(tmp_path, model_path.as_uri(), SHA_OF_NOTHING_IN_PARTICULAR)
    message = str(refused.value)
    assert model_path.with_name(MANIFEST_FILE).as_uri() in message
    assert f"pinned to sha256 {SHA_OF_NOTHING_IN_PARTICULAR}" in message
    assert bundle.sha256 in message


def test_tampered_model_is_refused(tmp_path: Path, model_path: Path, bundle: Bundle) -> None:
    tampered = bytearray(bundle.model)
    tampered[100] ^= 0xFF
    model_path.write_bytes(bytes(tampered))
    with pytest.raises(ModelLoadError) as refused:
        fetch(tmp_path, model_path.as_uri(), bundle.sha256)
    message = str(refused.value)
    assert model_path.as_uri() in message
    assert f"does not match the expected {bundle.sha256}" in message


def test_manifest_of_another_model_is_refused(tmp_path: Path, model_path: Path) -> None:
    other = make_bundle(b"another model entirely", tokenizer=TOKENIZER_BYTES)
    model_path.with_name(MANIFEST_FILE).write_bytes(other.manifest_bytes)
    # Pinned to the model on disk: the manifest is the odd one out.
    with pytest.raises(ModelLoadError, match="the manifest belongs to a different model"):
        fetch(tmp_path, model_path.as_uri(), make_bundle().sha256)
    # Unpinned: the model disagrees with the manifest.
    with pytest.raises(ModelLoadError, match=f"is {len(iris_model())} bytes, expected {len(other.model)}"):
        fetch(tmp_path, model_path.as_uri())


def test_tampered_tokenizer_is_refused(tmp_path: Path, model_path: Path, bundle: Bundle) -> None:
    tokenizer_path = model_path.with_name(TOKENIZER_FILE)
    tokenizer_path.write_bytes(TOKENIZER_BYTES.replace(b"WordPiece", b"WordPieCE"))
    with pytest.raises(ModelLoadError) as refused:
        fetch(tmp_path, model_path.as_uri(), bundle.sha256)
    message = str(refused.value)
    assert tokenizer_path.as_uri() in message
    assert bundle.manifest.files[TOKENIZER_FILE].sha256 in message


def test_missing_tokenizer_is_refused(tmp_path: Path, model_path: Path, bundle: Bundle) -> None:
    model_path.with_name(TOKENIZER_FILE).unlink()
    with pytest.raises(ModelLoadError, match=f"{TOKENIZER_FILE} is missing"):
        fetch(tmp_path, model_path.as_uri(), bundle.sha256)


def test_missing_manifest_is_refused(tmp_path: Path, model_path: Path, bundle: Bundle) -> None:
    model_path.with_name(MANIFEST_FILE).unlink()
    with pytest.raises(ModelLoadError, match=f"{MANIFEST_FILE} is missing"):
        fetch(tmp_path, model_path.as_uri(), bundle.sha256)


def test_missing_model_is_refused(tmp_path: Path, model_path: Path, bundle: Bundle) -> None:
    model_path.unlink()
    with pytest.raises(ModelLoadError, match=f"{MODEL_FILE} is missing"):
        fetch(tmp_path, model_path.as_uri(), bundle.sha256)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"{not json", "is not a valid manifest: .*Invalid JSON"),
        (b'{"name": "iris", "version": "1", "files": {}}', "is not a valid manifest: inputs: Field required"),
        (b"", "is not a valid manifest"),
    ],
)
def test_invalid_manifest_is_refused(tmp_path: Path, model_path: Path, content: bytes, problem: str) -> None:
    model_path.with_name(MANIFEST_FILE).write_bytes(content)
    with pytest.raises(ModelLoadError, match=problem):
        fetch(tmp_path, model_path.as_uri())


def test_manifest_without_model_entry_is_refused(tmp_path: Path, model_path: Path, bundle: Bundle) -> None:
    files = {TOKENIZER_FILE: bundle.manifest.files[TOKENIZER_FILE]}
    manifest = bundle.manifest.model_copy(update={"files": files})
    model_path.with_name(MANIFEST_FILE).write_text(manifest.model_dump_json())
    with pytest.raises(ModelLoadError, match=f"lists no {MODEL_FILE}"):
        fetch(tmp_path, model_path.as_uri())


def test_manifest_naming_an_unpinned_tokenizer_is_refused(tmp_path: Path, model_path: Path, bundle: Bundle) -> None:
    manifest = bundle.manifest.model_copy(update={"tokenizer": TokenizerSettings(file="vocab.json")})
    model_path.with_name(MANIFEST_FILE).write_text(manifest.model_dump_json())
    with pytest.raises(ModelLoadError, match=re.escape("names tokenizer 'vocab.json' but pins no sha256")):
        fetch(tmp_path, model_path.as_uri())


def test_manifest_cannot_point_the_tokenizer_outside_the_model_dir(tmp_path: Path, model_path: Path) -> None:
    secret = tmp_path / "models dir" / "secret.json"
    secret.write_bytes(b"{}")
    entry = FileEntry(sha256="44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", bytes=2)
    bundle = make_bundle()
    manifest = bundle.manifest.model_copy(
        update={
            "tokenizer": TokenizerSettings(file="../secret.json"),
            "files": {**bundle.manifest.files, "../secret.json": entry},
        }
    )
    model_path.with_name(MANIFEST_FILE).write_text(manifest.model_dump_json())
    with pytest.raises(ModelLoadError, match="must be a plain file name"):
        fetch(tmp_path, model_path.as_uri())


@pytest.mark.parametrize("keep", [0, 1, 500])
def test_truncated_model_is_refused(tmp_path: Path, model_path: Path, bundle: Bundle, keep: int) -> None:
    model_path.write_bytes(bundle.model[:keep])
    with pytest.raises(ModelLoadError) as refused:
        fetch(tmp_path, model_path.as_uri(), bundle.sha256)
    assert f"{model_path.as_uri()} is {keep} bytes, expected {len(bundle.model)}" in str(refused.value)


# --- s3:// sources refused before any request -------------------------------------------------


def test_s3_source_without_version_id_is_refused(tmp_path: Path, bundle: Bundle) -> None:
    with pytest.raises(ModelLoadError, match="must pin its VersionId"):
        fetch(tmp_path, "s3://bkt/models/iris/model.onnx", bundle.sha256)


@pytest.mark.parametrize(
    "pins",
    [{}, {"manifest_version_id": "m1"}, {"manifest_sha256": SHA_OF_NOTHING_IN_PARTICULAR}],
    ids=["none", "no-sha256", "no-version"],
)
def test_s3_source_without_manifest_pins_is_refused(tmp_path: Path, pins: dict[str, str]) -> None:
    source = ModelSource(uri="s3://bkt/models/iris/model.onnx?versionId=v1", **pins)
    with pytest.raises(ModelLoadError, match=r"must pin its manifest\.json by VersionId and sha256"):
        ModelStore(make_settings(tmp_path, source)).fetch(source)


def test_manifest_pin_that_disagrees_with_the_prefix_digest_is_refused_before_any_request(tmp_path: Path) -> None:
    # publish's layout: <name>/<version>-<first 16 hex of the manifest's sha256>/. Nothing listens at the
    # endpoint, so reaching S3 would fail with a connection error instead.
    source = ModelSource(
        uri="s3://bkt/models/iris/1-0123456789abcdef/model.onnx?versionId=v1",
        manifest_version_id="m1",
        manifest_sha256="fedcba9876543210" + "0" * 48,
    )
    with pytest.raises(ModelLoadError) as refused:
        ModelStore(make_settings(tmp_path, source)).fetch(source)
    assert "starts with 0123456789abcdef" in str(refused.value)
    assert "come from different publishes" in str(refused.value)


def test_file_source_whose_manifest_differs_from_its_pin_is_refused(
    tmp_path: Path, model_path: Path, bundle: Bundle
) -> None:
    pinned = ModelSource(uri=model_path.as_uri(), manifest_sha256=bundle.manifest_sha256)
    assert ModelStore(make_settings(tmp_path, pinned)).fetch(pinned).manifest == bundle.manifest
    # A planted manifest that still lists the same model and tokenizer: only the pin can tell.
    edited = bundle.manifest.model_copy(update={"description": "not the published one"})
    (model_path.parent / MANIFEST_FILE).write_text(edited.model_dump_json())
    with pytest.raises(ModelLoadError, match="does not match the pinned manifest sha256"):
        ModelStore(make_settings(tmp_path, pinned)).fetch(pinned)


def test_file_source_in_a_published_prefix_must_hold_that_manifest(tmp_path: Path, bundle: Bundle) -> None:
    directory = tmp_path / "iris" / f"1-{'0' * 16}"
    path = bundle.write(directory)
    with pytest.raises(ModelLoadError, match="come from different publishes"):
        fetch(tmp_path, path.as_uri())
    renamed = directory.rename(tmp_path / "iris" / f"1-{bundle.manifest_sha256[:16]}")
    assert (
        ModelStore(make_settings(tmp_path, ModelSource(uri=(renamed / MODEL_FILE).as_uri())))
        .fetch(ModelSource(uri=(renamed / MODEL_FILE).as_uri()))
        .model
        == bundle.model
    )


def test_malformed_s3_uri_is_a_model_load_error(tmp_path: Path, bundle: Bundle) -> None:
    with pytest.raises(ModelLoadError, match="not a valid S3 bucket name"):
        fetch(tmp_path, "s3://B/model.onnx?versionId=v1", bundle.sha256)


# --- the S3 client ------------------------------------------------------------------------------


def test_s3_client_uses_the_configured_endpoint_timeout_and_attempts(tmp_path: Path) -> None:
    source = ModelSource(uri="s3://bkt/model.onnx?versionId=v1", sha256=SHA_OF_NOTHING_IN_PARTICULAR)
    settings = make_settings(
        tmp_path,
        source,
        s3_endpoint_url="http://127.0.0.1:9",
        s3_timeout_seconds=2.5,
        s3_max_attempts=5,
        s3_max_concurrency=32,
    )
    client = build_s3_client(settings)
    # How each is used is tested on the client itself, over real HTTP (tests/unit/test_s3_client.py).
    assert (client.endpoint_url, client.timeout_seconds, client.max_attempts) == ("http://127.0.0.1:9", 2.5, 5)


# --- the optimized model ------------------------------------------------------------------------------


def test_a_file_source_serves_model_onnx_even_beside_an_optimized_copy(tmp_path: Path) -> None:
    """Only an S3 deployment pins an optimized model; a directory on disk is served as it is exported."""
    bundle = make_bundle(tokenizer=TOKENIZER_BYTES, optimized=b"fused graph")
    path = bundle.write(tmp_path / "iris")
    source = ModelSource(uri=path.as_uri())
    artifacts = ModelStore(make_settings(tmp_path, source)).fetch(source)
    assert (artifacts.model, artifacts.optimized) == (bundle.model, None)


@pytest.mark.parametrize(
    ("optimized", "problem"),
    [
        ({"file": OPTIMIZED_MODEL_FILE, "onnxruntime": "1.32.0", "level": "all"}, "optimized.level"),
        ({"file": "unlisted.onnx", "onnxruntime": "1.32.0"}, "is not listed in files"),
        ({"file": MODEL_FILE, "onnxruntime": "1.32.0"}, "must name a file of its own"),
        ({"file": TOKENIZER_FILE, "onnxruntime": "1.32.0"}, "must name a file of its own"),
        ({"file": "../model.onnx", "onnxruntime": "1.32.0"}, "optimized.file"),
        ({"file": OPTIMIZED_MODEL_FILE}, "optimized.onnxruntime"),
        ({"file": OPTIMIZED_MODEL_FILE, "onnxruntime": "1.32.0", "fast": True}, "optimized.fast"),
    ],
    ids=["level-all", "unpinned", "the-model", "the-tokenizer", "a-path", "no-version", "unknown-field"],
)
def test_a_manifests_optimized_entry_is_strict(
    tmp_path: Path, bundle: Bundle, optimized: dict[str, object], problem: str
) -> None:
    """``all`` is specific to the CPU that ran it; the file must be one of its own and pinned like the others."""
    document = bundle.manifest.model_dump(mode="json")
    document["files"][OPTIMIZED_MODEL_FILE] = {"sha256": "cd" * 32, "bytes": 10}
    valid = Manifest.model_validate({**document, "optimized": {"file": OPTIMIZED_MODEL_FILE, "onnxruntime": "1.32.0"}})
    assert valid.optimized is not None
    assert valid.optimized.level == "extended"
    path = tmp_path / "iris" / MODEL_FILE
    bundle.write(path.parent)
    (path.parent / MANIFEST_FILE).write_text(json.dumps({**document, "optimized": optimized}))
    source = ModelSource(uri=path.as_uri())
    with pytest.raises(ModelLoadError, match="is not a valid manifest") as refused:
        ModelStore(make_settings(tmp_path, source)).fetch(source)
    assert problem in str(refused.value)


def test_the_onnxruntime_version_is_read_without_importing_it() -> None:
    """The store decides which file to fetch while init still imports: onnxruntime's import must not wait first."""
    code = (
        "import sys\n"
        "from onnx_lambda.model_store import onnxruntime_version\n"
        "found = onnxruntime_version()\n"
        "assert 'onnxruntime' not in sys.modules, 'imported'\n"
        "import onnxruntime\n"
        "print(found, onnxruntime.__version__, onnxruntime_version())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    found, imported, after = result.stdout.split()
    assert found == imported == after
