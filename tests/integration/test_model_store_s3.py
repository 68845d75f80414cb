"""The model store against a real moto S3 over HTTP: pinned versions, ranged GETs, the cache, and faults.

Faults are real sockets (see tests/integration/moto.py): a proxy that stalls a body mid-way, a port
where nothing listens, a listener that never answers, one that drops every connection.
"""

from __future__ import annotations

import os
import random
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from onnx_lambda.config import ModelSource, Settings
from onnx_lambda.errors import ModelLoadError
from onnx_lambda.manifest import MANIFEST_FILE, MODEL_FILE, OPTIMIZED_MODEL_FILE, TOKENIZER_FILE, sha256_hex
from onnx_lambda.model_store import ModelStore, cache_key, onnxruntime_version
from tests.integration.moto import (
    Blackhole,
    FaultyProxy,
    ProxiedRequest,
    ResettingEndpoint,
    closed_port_url,
)
from tests.model_bundle import TOKENIZER_BYTES, Bundle, make_bundle

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60), pytest.mark.usefixtures("aws_environment")]

PREFIX = "models/iris/1"
MODEL_KEY = f"{PREFIX}/{MODEL_FILE}"
MiB = 1024 * 1024


@pytest.fixture
def bundle() -> Bundle:
    return make_bundle(tokenizer=TOKENIZER_BYTES)


def publish(s3: S3Client, bucket: str, bundle: Bundle, prefix: str = PREFIX) -> dict[str, str]:
    """Put every file of the bundle under ``prefix``; return each file's VersionId."""
    return {
        name: s3.put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=data)["VersionId"]
        for name, data in bundle.files().items()
    }


def put(s3: S3Client, bucket: str, key: str, data: bytes) -> str:
    return s3.put_object(Bucket=bucket, Key=key, Body=data)["VersionId"]


def settings_for(tmp_path: Path, endpoint_url: str, source: ModelSource, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "models": [source],
        "cache_dir": tmp_path / "cache",
        "s3_endpoint_url": endpoint_url,
        "s3_timeout_seconds": 5.0,
        "s3_deadline_seconds": 30.0,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


def source_for(bucket: str, versions: dict[str, str], bundle: Bundle, **pins: str | None) -> ModelSource:
    """What ``onnx-lambda publish`` prints for these versions: every file pinned; ``pins`` overrides some."""
    values = {
        "uri": f"s3://{bucket}/{MODEL_KEY}?versionId={versions[MODEL_FILE]}",
        "manifest_version_id": versions[MANIFEST_FILE],
        "manifest_sha256": bundle.manifest_sha256,
        "tokenizer_version_id": versions.get(TOKENIZER_FILE),
        "optimized_version_id": versions.get(OPTIMIZED_MODEL_FILE),
        **pins,
    }
    return ModelSource.model_validate(values)


def uri(bucket: str, version_id: str) -> str:
    return f"s3://{bucket}/{MODEL_KEY}?versionId={version_id}"


def refusal(tmp_path: Path, endpoint_url: str, source: ModelSource, **overrides: object) -> str:
    with pytest.raises(ModelLoadError) as refused:
        ModelStore(settings_for(tmp_path, endpoint_url, source, **overrides)).fetch(source)
    return str(refused.value)


# --- happy paths ---------------------------------------------------------------------------------


def test_pinned_older_version_is_served_while_a_newer_one_exists(
    tmp_path: Path, moto_server: str, s3: S3Client, bucket: str, bundle: Bundle
) -> None:
    versions = publish(s3, bucket, bundle)
    newer = make_bundle(b"a newer model, overwritten in place")
    newer_version = put(s3, bucket, MODEL_KEY, newer.model)
    source = source_for(bucket, versions, bundle)

    artifacts = ModelStore(settings_for(tmp_path, moto_server, source)).fetch(source)

    assert artifacts.model == bundle.model
    assert artifacts.manifest == bundle.manifest
    assert artifacts.tokenizer == TOKENIZER_BYTES
    assert artifacts.from_cache is False
    assert {"fetch", "hash", "cache_write", "total"} <= set(artifacts.timings)
    # The newer version is not what the pinned manifest vouches for.
    message = refusal(tmp_path, moto_server, source_for(bucket, versions, bundle, uri=uri(bucket, newer_version)))
    assert f"s3://{bucket}/{MODEL_KEY} (versionId {newer_version})" in message
    assert f"is {len(newer.model)} bytes, expected {len(bundle.model)} (manifest.json)" in message


def test_a_swapped_tokenizer_with_a_matching_manifest_is_never_served(
    tmp_path: Path, moto_server: str, s3: S3Client, bucket: str, bundle: Bundle
) -> None:
    """Finding 3 of issue 11: whoever may write to the bucket swaps the tokenizer and writes a manifest that
    lists it (and the same model). The deployment's pins still read the published versions."""
    versions = publish(s3, bucket, bundle)
    swapped = make_bundle(bundle.model, tokenizer=TOKENIZER_BYTES.replace(b"[UNK]", b"[XXX]"))
    assert swapped.sha256 == bundle.sha256
    swapped_versions = publish(s3, bucket, swapped)
    source = source_for(bucket, versions, bundle)

    artifacts = ModelStore(settings_for(tmp_path, moto_server, source)).fetch(source)

    assert (artifacts.tokenizer, artifacts.manifest) == (TOKENIZER_BYTES, bundle.manifest)
    # Pinning the swapped versions without their manifest's sha256 is refused, naming the pin it broke.
    tampered = source_for(
        bucket,
        versions,
        bundle,
        manifest_version_id=swapped_versions[MANIFEST_FILE],
        tokenizer_version_id=swapped_versions[TOKENIZER_FILE],
    )
    message = refusal(tmp_path, moto_server, tampered)
    assert f"s3://{bucket}/{PREFIX}/{MANIFEST_FILE} (versionId {swapped_versions[MANIFEST_FILE]})" in message
    assert f"sha256 {swapped.manifest_sha256} does not match the pinned manifest sha256 {bundle.manifest_sha256}" in (
        message
    )


def test_large_object_is_fetched_with_ranged_parallel_gets_of_the_pinned_version(
    tmp_path: Path, moto_server: str, s3: S3Client, bucket: str
) -> None:
    # The store knows nothing of ONNX: any bytes the manifest pins will do.
    payload = random.Random(7).randbytes(3 * MiB + 12345)
    bundle = make_bundle(payload)
    versions = publish(s3, bucket, bundle)
    put(s3, bucket, MODEL_KEY, b"newer bytes that must not be mixed in")
    source = source_for(bucket, versions, bundle)

    with FaultyProxy(moto_server) as proxy:
        settings = settings_for(tmp_path, proxy.endpoint_url, source, s3_part_size=MiB, s3_max_concurrency=4)
        artifacts = ModelStore(settings).fetch(source)

    assert artifacts.model == payload
    ranged = [request for request in proxy.requests if "range" in request.headers]
    assert sorted(request.headers["range"] for request in ranged) == sorted(
        f"bytes={start}-{min(start + MiB, len(payload)) - 1}" for start in range(0, len(payload), MiB)
    )
    assert all(f"versionId={versions[MODEL_FILE]}" in request.path for request in ranged)


def test_a_read_that_stalls_mid_body_is_retried(tmp_path: Path, moto_server: str, s3: S3Client, bucket: str) -> None:
    payload = random.Random(11).randbytes(2 * MiB + 1)
    bundle = make_bundle(payload)
    versions = publish(s3, bucket, bundle)
    source = source_for(bucket, versions, bundle)

    def stall_first_part(request: ProxiedRequest) -> bool:
        return request.headers.get("range") == "bytes=0-1048575" and not any(
            earlier.stalled for earlier in proxy.requests
        )

    with FaultyProxy(moto_server, stall=stall_first_part) as proxy:
        settings = settings_for(tmp_path, proxy.endpoint_url, source, s3_part_size=MiB, s3_timeout_seconds=1.0)
        artifacts = ModelStore(settings).fetch(source)

    assert artifacts.model == payload
    first_part = [request for request in proxy.requests if request.headers.get("range") == "bytes=0-1048575"]
    assert [request.stalled for request in first_part] == [True, False]


# --- refusals --------------------------------------------------------------------------------------


def test_model_bytes_that_differ_from_the_pin_are_refused(
    tmp_path: Path, moto_server: str, s3: S3Client, bucket: str, bundle: Bundle
) -> None:
    versions = publish(s3, bucket, bundle)
    tampered = bytearray(bundle.model)
    tampered[-1] ^= 0xFF
    tampered_version = put(s3, bucket, MODEL_KEY, bytes(tampered))
    message = refusal(tmp_path, moto_server, source_for(bucket, versions, bundle, uri=uri(bucket, tampered_version)))
    assert f"s3://{bucket}/{MODEL_KEY} (versionId {tampered_version})" in message
    assert f"sha256 {sha256_hex(bytes(tampered))} does not match the expected {bundle.sha256}" in message


def test_manifest_that_disagrees_with_the_pinned_model_is_refused(
    tmp_path: Path, moto_server: str, s3: S3Client, bucket: str, bundle: Bundle
) -> None:
    # A source may also pin the model's sha256 (the manifest pins it anyway); a manifest of another model,
    # pinned with its own sha256, is refused before the model is downloaded.
    versions = publish(s3, bucket, bundle)
    foreign = make_bundle(b"some other model", tokenizer=TOKENIZER_BYTES)
    manifest_version = put(s3, bucket, f"{PREFIX}/{MANIFEST_FILE}", foreign.manifest_bytes)
    source = source_for(
        bucket,
        versions,
        bundle,
        sha256=bundle.sha256,
        manifest_version_id=manifest_version,
        manifest_sha256=foreign.manifest_sha256,
    )
    message = refusal(tmp_path, moto_server, source)
    assert f"s3://{bucket}/{PREFIX}/{MANIFEST_FILE} (versionId {manifest_version})" in message
    assert f"lists {MODEL_FILE} with sha256 {foreign.sha256}" in message
    assert f"pinned to sha256 {bundle.sha256}" in message


def test_tampered_tokenizer_is_refused(
    tmp_path: Path, moto_server: str, s3: S3Client, bucket: str, bundle: Bundle
) -> None:
    versions = publish(s3, bucket, bundle)
    tokenizer_version = put(s3, bucket, f"{PREFIX}/{TOKENIZER_FILE}", TOKENIZER_BYTES.upper())
    message = refusal(
        tmp_path, moto_server, source_for(bucket, versions, bundle, tokenizer_version_id=tokenizer_version)
    )
    assert f"s3://{bucket}/{PREFIX}/{TOKENIZER_FILE} (versionId {tokenizer_version})" in message
    assert f"does not match the expected {bundle.manifest.files[TOKENIZER_FILE].sha256}" in message


@pytest.mark.parametrize("missing", [MANIFEST_FILE, TOKENIZER_FILE])
def test_a_deleted_pinned_version_is_refused_and_a_delete_marker_changes_nothing(
    tmp_path: Path, moto_server: str, s3: S3Client, bucket: str, bundle: Bundle, missing: str
) -> None:
    versions = publish(s3, bucket, bundle)
    source = source_for(bucket, versions, bundle)
    s3.delete_object(Bucket=bucket, Key=f"{PREFIX}/{missing}")  # a delete marker: the pinned version stays
    assert ModelStore(settings_for(tmp_path, moto_server, source, cache_dir=tmp_path / "a")).fetch(source).manifest
    s3.delete_object(Bucket=bucket, Key=f"{PREFIX}/{missing}", VersionId=versions[missing])
    message = refusal(tmp_path, moto_server, source, cache_dir=tmp_path / "b")
    assert f"{missing}: s3://{bucket}/{PREFIX}/{missing} (versionId {versions[missing]}) does not exist" in message


@pytest.mark.parametrize("pin", ["tokenizer_version_id", "no_tokenizer"])
def test_a_tokenizer_pin_that_disagrees_with_the_manifest_is_refused(
    tmp_path: Path, moto_server: str, s3: S3Client, bucket: str, pin: str
) -> None:
    with_tokenizer = pin == "tokenizer_version_id"
    bundle = make_bundle(tokenizer=TOKENIZER_BYTES if with_tokenizer else None)
    versions = publish(s3, bucket, bundle)
    wrong = None if with_tokenizer else versions[MANIFEST_FILE]
    message = refusal(tmp_path, moto_server, source_for(bucket, versions, bundle, tokenizer_version_id=wrong))
    expected = "pins no VersionId for it" if with_tokenizer else "lists no tokenizer, but the deployment pins"
    assert expected in message


def test_a_model_larger_than_the_functions_memory_is_refused_before_allocating(
    tmp_path: Path, moto_server: str, s3: S3Client, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = make_bundle(random.Random(3).randbytes(2 * MiB))
    versions = publish(s3, bucket, bundle)
    source = source_for(bucket, versions, bundle)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1")  # MB, as Lambda sets it
    message = refusal(tmp_path, moto_server, source)
    assert f"gives it {2 * MiB} bytes, more than this function's {MiB} bytes of memory" in message


@pytest.mark.parametrize("keep", [0, 500])
def test_truncated_object_is_refused(
    tmp_path: Path, moto_server: str, s3: S3Client, bucket: str, bundle: Bundle, keep: int
) -> None:
    versions = publish(s3, bucket, bundle)
    truncated_version = put(s3, bucket, MODEL_KEY, bundle.model[:keep])
    message = refusal(tmp_path, moto_server, source_for(bucket, versions, bundle, uri=uri(bucket, truncated_version)))
    assert f"s3://{bucket}/{MODEL_KEY} (versionId {truncated_version}) is {keep} bytes" in message
    assert f"expected {len(bundle.model)}" in message


def test_unknown_version_is_refused(
    tmp_path: Path, moto_server: str, s3: S3Client, bucket: str, bundle: Bundle
) -> None:
    versions = publish(s3, bucket, bundle)
    message = refusal(tmp_path, moto_server, source_for(bucket, versions, bundle, uri=uri(bucket, "no-such-version")))
    assert f"s3://{bucket}/{MODEL_KEY} (versionId no-such-version) does not exist" in message


# --- an unreachable or unresponsive S3 ------------------------------------------------------------


OFFLINE_VERSIONS = {MODEL_FILE: "v1", MANIFEST_FILE: "m1", TOKENIZER_FILE: "t1"}


def test_unreachable_endpoint_is_a_model_load_error(tmp_path: Path, bundle: Bundle) -> None:
    source = source_for("models", OFFLINE_VERSIONS, bundle)
    endpoint = closed_port_url()
    message = refusal(tmp_path, endpoint, source, s3_max_attempts=2)
    assert f"s3://models/{PREFIX}/{MANIFEST_FILE} (versionId m1) could not be fetched" in message
    assert "Could not connect to the endpoint URL" in message


def test_retries_are_bounded_by_s3_max_attempts(tmp_path: Path, bundle: Bundle) -> None:
    source = source_for("models", OFFLINE_VERSIONS, bundle)
    with ResettingEndpoint() as endpoint:
        refusal(tmp_path, endpoint.endpoint_url, source, s3_max_attempts=3)
        assert endpoint.connections == 3


def test_fetch_gives_up_at_the_deadline(tmp_path: Path, bundle: Bundle) -> None:
    source = source_for("models", OFFLINE_VERSIONS, bundle)
    with Blackhole() as endpoint:
        message = refusal(
            tmp_path,
            endpoint.endpoint_url,
            source,
            s3_timeout_seconds=1.0,
            s3_max_attempts=50,
            s3_deadline_seconds=1.5,
        )
    assert "not fetched within the 1.5 s deadline (ONNX_LAMBDA_S3_DEADLINE_SECONDS)" in message


# --- the /tmp cache ---------------------------------------------------------------------------------


@pytest.fixture
def published(s3: S3Client, bucket: str, bundle: Bundle) -> ModelSource:
    return source_for(bucket, publish(s3, bucket, bundle), bundle)


@pytest.fixture
def warm_cache(tmp_path: Path, moto_server: str, published: ModelSource) -> Path:
    """Fetch once, so the cache holds the model; yield its entry."""
    artifacts = ModelStore(settings_for(tmp_path, moto_server, published)).fetch(published)
    assert artifacts.from_cache is False
    return tmp_path / "cache" / cache_key(published)


def test_cache_hit_serves_without_s3(tmp_path: Path, published: ModelSource, warm_cache: Path, bundle: Bundle) -> None:
    assert sorted(path.name for path in warm_cache.iterdir()) == sorted(bundle.files())
    # Nothing listens at this endpoint: only the cache can serve.
    artifacts = ModelStore(settings_for(tmp_path, closed_port_url(), published, s3_max_attempts=1)).fetch(published)
    assert artifacts.from_cache is True
    assert artifacts.model == bundle.model
    assert artifacts.manifest == bundle.manifest
    assert artifacts.tokenizer == TOKENIZER_BYTES


@pytest.mark.parametrize("corrupt", [MODEL_FILE, TOKENIZER_FILE, MANIFEST_FILE])
def test_corrupt_cache_entry_is_discarded_and_refetched(
    tmp_path: Path, moto_server: str, published: ModelSource, warm_cache: Path, bundle: Bundle, corrupt: str
) -> None:
    original = (warm_cache / corrupt).read_bytes()
    flipped = original[:-1] + bytes([original[-1] ^ 0x01])
    (warm_cache / corrupt).write_bytes(flipped)

    artifacts = ModelStore(settings_for(tmp_path, moto_server, published)).fetch(published)

    assert artifacts.from_cache is False
    assert artifacts.model == bundle.model
    assert (warm_cache / corrupt).read_bytes() == original  # the entry was written again, whole

    # With S3 unreachable, a corrupt entry is refused and deleted, never served.
    (warm_cache / corrupt).write_bytes(flipped)
    with pytest.raises(ModelLoadError, match="Could not connect"):
        ModelStore(settings_for(tmp_path, closed_port_url(), published, s3_max_attempts=1)).fetch(published)
    assert not warm_cache.exists()


def test_unwritable_cache_dir_only_skips_caching(
    tmp_path: Path, moto_server: str, published: ModelSource, bundle: Bundle
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"")
    settings = settings_for(tmp_path, moto_server, published, cache_dir=blocker / "cache")
    artifacts = ModelStore(settings).fetch(published)
    assert artifacts.model == bundle.model
    assert "cache_write" not in artifacts.timings


def test_the_cache_dir_is_created_private(tmp_path: Path, warm_cache: Path) -> None:
    for directory in (tmp_path / "cache", warm_cache):
        info = directory.lstat()
        assert info.st_uid == os.geteuid()
        assert stat.S_IMODE(info.st_mode) & 0o077 == 0, oct(info.st_mode)


def test_a_cache_others_can_write_is_never_served(
    tmp_path: Path, moto_server: str, published: ModelSource, warm_cache: Path, bundle: Bundle
) -> None:
    (tmp_path / "cache").chmod(0o777)
    # With S3 unreachable, only the cache could serve, and it must not.
    with pytest.raises(ModelLoadError, match="Could not connect"):
        ModelStore(settings_for(tmp_path, closed_port_url(), published, s3_max_attempts=1)).fetch(published)
    artifacts = ModelStore(settings_for(tmp_path, moto_server, published)).fetch(published)
    assert artifacts.from_cache is False
    assert artifacts.model == bundle.model
    assert "cache_write" not in artifacts.timings  # nor written into


def test_a_cache_dir_that_is_a_symlink_is_never_served(
    tmp_path: Path, published: ModelSource, warm_cache: Path
) -> None:
    (tmp_path / "cache").rename(tmp_path / "elsewhere")
    (tmp_path / "cache").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ModelLoadError, match="Could not connect"):
        ModelStore(settings_for(tmp_path, closed_port_url(), published, s3_max_attempts=1)).fetch(published)


@pytest.mark.parametrize("pin", ["tokenizer_version_id", "optimized_version_id"])
def test_the_cache_serves_only_the_pins_it_was_written_for(
    tmp_path: Path, published: ModelSource, warm_cache: Path, pin: str
) -> None:
    # Another VersionId (same bytes or not) is another entry: with S3 unreachable, nothing serves it.
    other = published.model_copy(update={pin: "another-version"})
    assert cache_key(other) != warm_cache.name
    with pytest.raises(ModelLoadError, match="Could not connect"):
        ModelStore(settings_for(tmp_path, closed_port_url(), other, s3_max_attempts=1)).fetch(other)


def test_a_planted_manifest_and_tokenizer_in_the_cache_are_never_served(
    tmp_path: Path, moto_server: str, published: ModelSource, warm_cache: Path, bundle: Bundle
) -> None:
    """Finding 4 of issue 11: a manifest and tokenizer that agree with each other and with the cached model."""
    planted = make_bundle(bundle.model, tokenizer=TOKENIZER_BYTES.replace(b"[UNK]", b"[XXX]"))
    (warm_cache / TOKENIZER_FILE).write_bytes(planted.files()[TOKENIZER_FILE])
    (warm_cache / MANIFEST_FILE).write_bytes(planted.manifest_bytes)

    artifacts = ModelStore(settings_for(tmp_path, moto_server, published)).fetch(published)

    assert artifacts.from_cache is False
    assert (artifacts.tokenizer, artifacts.manifest) == (TOKENIZER_BYTES, bundle.manifest)
    assert (warm_cache / MANIFEST_FILE).read_bytes() == bundle.manifest_bytes


# --- the optimized model (model.optimized.onnx) -----------------------------------------------------


#: Stands in for model.optimized.onnx: the store only checks its bytes against the manifest.
OPTIMIZED_BYTES = random.Random(5).randbytes(300_000)
OPTIMIZED_KEY = f"{PREFIX}/{OPTIMIZED_MODEL_FILE}"


def optimized_bundle(written_by: str | None = None) -> Bundle:
    """A bundle whose manifest lists an optimized model, by default written by this process's onnxruntime."""
    return make_bundle(
        tokenizer=TOKENIZER_BYTES, optimized=OPTIMIZED_BYTES, optimized_by=written_by or str(onnxruntime_version())
    )


def model_requests(proxy: FaultyProxy) -> dict[str, list[str]]:
    """The versions of model.onnx and model.optimized.onnx the store asked for."""
    found: dict[str, list[str]] = {MODEL_FILE: [], OPTIMIZED_MODEL_FILE: []}
    for request in proxy.requests:
        path, _, query = request.path.partition("?")
        name = path.rsplit("/", 1)[-1]
        if name in found:
            found[name].append(query)
    return found


def test_the_optimized_file_is_fetched_instead_of_the_model_and_cached(
    tmp_path: Path, moto_server: str, s3: S3Client, bucket: str
) -> None:
    bundle = optimized_bundle()
    versions = publish(s3, bucket, bundle)
    source = source_for(bucket, versions, bundle)
    assert source.optimized_version_id == versions[OPTIMIZED_MODEL_FILE]

    with FaultyProxy(moto_server) as proxy:
        artifacts = ModelStore(settings_for(tmp_path, proxy.endpoint_url, source)).fetch(source)

    assert artifacts.model == OPTIMIZED_BYTES
    assert artifacts.optimized == bundle.manifest.optimized
    assert (artifacts.manifest, artifacts.tokenizer) == (bundle.manifest, TOKENIZER_BYTES)
    requested = model_requests(proxy)
    assert requested[MODEL_FILE] == [], "model.onnx is not needed"
    assert requested[OPTIMIZED_MODEL_FILE]
    assert all(f"versionId={versions[OPTIMIZED_MODEL_FILE]}" in query for query in requested[OPTIMIZED_MODEL_FILE])

    # The cache holds what was fetched, and serves it again, re-verified, with S3 unreachable.
    entry = tmp_path / "cache" / cache_key(source)
    assert sorted(path.name for path in entry.iterdir()) == sorted(
        [MANIFEST_FILE, OPTIMIZED_MODEL_FILE, TOKENIZER_FILE]
    )
    cached = ModelStore(settings_for(tmp_path, closed_port_url(), source, s3_max_attempts=1)).fetch(source)
    assert (cached.from_cache, cached.model, cached.optimized) == (True, OPTIMIZED_BYTES, bundle.manifest.optimized)
    # A tampered cached copy is discarded, never served.
    (entry / OPTIMIZED_MODEL_FILE).write_bytes(OPTIMIZED_BYTES[:-1] + bytes([OPTIMIZED_BYTES[-1] ^ 1]))
    with pytest.raises(ModelLoadError, match="Could not connect"):
        ModelStore(settings_for(tmp_path, closed_port_url(), source, s3_max_attempts=1)).fetch(source)
    assert not entry.exists()


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("another onnxruntime", "was written by onnxruntime 0.0.1 and this is"),
        ("a lower level", "ONNX_LAMBDA_GRAPH_OPTIMIZATION is basic, below the extended"),
        ("no optimized model", "the manifest lists no optimized model"),
    ],
)
def test_the_portable_model_is_fetched_by_its_own_pin_when_the_optimized_one_cant_be_used(
    tmp_path: Path,
    moto_server: str,
    s3: S3Client,
    bucket: str,
    caplog: pytest.LogCaptureFixture,
    case: str,
    reason: str,
) -> None:
    bundle = optimized_bundle("0.0.1" if case == "another onnxruntime" else None)
    versions = publish(s3, bucket, bundle)
    if case == "no optimized model":
        # Parameters that pin an optimized file the (pinned) manifest doesn't list.
        bundle = make_bundle(tokenizer=TOKENIZER_BYTES)
        versions = {**publish(s3, bucket, bundle), OPTIMIZED_MODEL_FILE: versions[OPTIMIZED_MODEL_FILE]}
    source = source_for(bucket, versions, bundle)
    level = "basic" if case == "a lower level" else "all"

    with FaultyProxy(moto_server) as proxy:
        settings = settings_for(tmp_path, proxy.endpoint_url, source, graph_optimization=level)
        store = ModelStore(settings)
        artifacts = store.fetch(source)
        # The cache entry holds model.onnx: a second read says nothing more.
        assert store.fetch(source).from_cache is True

    assert (artifacts.model, artifacts.optimized) == (bundle.model, None)
    requested = model_requests(proxy)
    assert requested[OPTIMIZED_MODEL_FILE] == []
    assert requested[MODEL_FILE]
    assert all(f"versionId={versions[MODEL_FILE]}" in query for query in requested[MODEL_FILE])
    said = [record for record in caplog.records if record.getMessage().startswith("serving the portable model.onnx")]
    assert len(said) == 1, caplog.text
    assert reason in said[0].__dict__["reason"]


def test_an_optimized_file_that_differs_from_the_manifest_is_refused(
    tmp_path: Path, moto_server: str, s3: S3Client, bucket: str
) -> None:
    bundle = optimized_bundle()
    versions = publish(s3, bucket, bundle)
    tampered = OPTIMIZED_BYTES[:-1] + bytes([OPTIMIZED_BYTES[-1] ^ 0xFF])
    tampered_version = put(s3, bucket, OPTIMIZED_KEY, tampered)
    message = refusal(
        tmp_path, moto_server, source_for(bucket, versions, bundle, optimized_version_id=tampered_version)
    )
    assert f"s3://{bucket}/{OPTIMIZED_KEY} (versionId {tampered_version})" in message
    expected = bundle.manifest.files[OPTIMIZED_MODEL_FILE].sha256
    assert f"sha256 {sha256_hex(tampered)} does not match the expected {expected} (manifest.json)" in message
    # Deleted, the pinned version is a clear error too, not a silent fallback.
    s3.delete_object(Bucket=bucket, Key=OPTIMIZED_KEY, VersionId=versions[OPTIMIZED_MODEL_FILE])
    message = refusal(tmp_path, moto_server, source_for(bucket, versions, bundle))
    assert f"s3://{bucket}/{OPTIMIZED_KEY} (versionId {versions[OPTIMIZED_MODEL_FILE]}) does not exist" in message


def test_an_optimized_file_larger_than_the_functions_memory_is_refused_before_allocating(
    tmp_path: Path, moto_server: str, s3: S3Client, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    large = random.Random(9).randbytes(2 * MiB)
    bundle = make_bundle(optimized=large, optimized_by=str(onnxruntime_version()))
    versions = publish(s3, bucket, bundle)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1")  # MB, as Lambda sets it
    message = refusal(tmp_path, moto_server, source_for(bucket, versions, bundle))
    assert f"s3://{bucket}/{OPTIMIZED_KEY} (versionId {versions[OPTIMIZED_MODEL_FILE]})" in message
    assert f"gives it {2 * MiB} bytes, more than this function's {MiB} bytes of memory" in message
