"""Model sources to verified bytes: ``file://`` paths and pinned ``s3://`` objects, with a /tmp cache.

Trust runs one way, from the deployment's pins. The deployment pins ``manifest.json`` by sha256 and
every file on S3 by VersionId; the manifest lists the sha256 and size of every other file (the model,
the tokenizer), so a file is served only if it is the pinned version *and* hashes to what the pinned
manifest lists. ``publish`` writes each model under a prefix ending in the manifest's digest
(``<version>-<first 16 hex of its sha256>``); when the prefix has one, it must agree with the pin, so
parameters copied from two different publishes are refused before anything is downloaded.

Anything that breaks the chain (a missing, empty, truncated, tampered or foreign file, a pin that
disagrees, an unreachable bucket) raises :class:`~onnx_lambda.errors.ModelLoadError` naming the object
and its version, and nothing is returned: a half-loaded model can never be served. The /tmp cache is
keyed on every pin, lives in a directory that must be private to this user, and is re-verified against
the pins on every read: a planted or stale entry is never served.

A manifest may list model.onnx optimized ahead of time (``optimized``); a deployment that pins that file's
VersionId too gets it instead of model.onnx when the running onnxruntime is the one that wrote it (and the
configured optimization level is at least the file's), and the portable model.onnx otherwise, logging why.
Either is verified the same way.

This module knows nothing of ONNX: it hands back bytes. Its S3 reads go through :mod:`onnx_lambda.s3`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import posixpath
import queue
import random
import re
import shutil
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, wait
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from types import TracebackType
from typing import Any, Final, ParamSpec, TypeVar
from urllib.parse import unquote, urlsplit

from pydantic import ValidationError

from onnx_lambda.config import ModelSource, Settings, lambda_memory_mb
from onnx_lambda.errors import ModelLoadError
from onnx_lambda.manifest import MANIFEST_FILE, MODEL_FILE, TOKENIZER_FILE, FileEntry, Manifest, OptimizedModel
from onnx_lambda.s3 import S3Client, S3ConnectionError, S3Error, S3Response

log = logging.getLogger("onnx_lambda.model_store")

#: A manifest is a few KiB; refuse to buffer anything absurd at that key.
MAX_MANIFEST_BYTES: Final = 8 * 1024 * 1024
#: ``publish`` ends each model's prefix with ``-`` and the first 16 hex digits of the manifest's sha256.
_PREFIX_DIGEST = re.compile(r"-([0-9a-f]{16})$")
#: Exponential backoff between our own retries of a part: full jitter, capped.
_BACKOFF_BASE_SECONDS: Final = 0.1
_BACKOFF_CAP_SECONDS: Final = 2.0
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_CONTENT_RANGE_TOTAL = re.compile(r"/(\d+)$")
#: S3 error codes that mean "this object (version) is not there", as opposed to a transient failure.
_MISSING_CODES: Final = frozenset({"NoSuchKey", "NoSuchVersion", "NoSuchBucket", "404"})
#: onnxruntime's graph optimization levels, lowest first (``ONNX_LAMBDA_GRAPH_OPTIMIZATION``).
_LEVELS: Final = ("disable", "basic", "extended", "all")

#: Sibling file name -> how error messages name that object.
_Labeller = Callable[[str], str]
#: A downloaded model's /tmp cache write, still to do (see :meth:`ModelStore.fetch_then_cache`).
CacheWrite = Callable[[], None]


def _nothing_to_write() -> None:
    """The cache write of a model read from a file or from the cache itself."""


@dataclass(frozen=True, slots=True)
class ModelArtifacts:
    """A model's verified files, ready to hand to onnxruntime and the tokenizer."""

    uri: str
    #: The ONNX bytes; onnxruntime takes them directly, no temp file.
    model: bytes
    manifest: Manifest
    #: The manifest's optimized model when ``model`` holds that file; None when it is model.onnx.
    optimized: OptimizedModel | None
    #: tokenizer.json from beside the model, when the manifest lists one.
    tokenizer: bytes | None
    #: Seconds spent: ``fetch`` (source or cache read), ``hash``, ``cache_write``, ``total``.
    timings: dict[str, float]
    from_cache: bool

    @property
    def model_file(self) -> str:
        """The file ``model`` holds: model.onnx, or the manifest's optimized copy of it."""
        return _model_file(self.optimized)


@dataclass(frozen=True, slots=True)
class _Files:
    """The raw files of one model, read but not yet checked against each other."""

    manifest: Manifest
    manifest_bytes: bytes
    model: bytes
    model_entry: FileEntry
    tokenizer: tuple[str, FileEntry, bytes] | None
    #: The manifest's optimized model when ``model`` holds that file (its ``model_entry``), else None.
    optimized: OptimizedModel | None = None
    #: Why ``model`` is model.onnx although the deployment pins an optimized model; None otherwise.
    fallback: str | None = None

    @property
    def model_file(self) -> str:
        return _model_file(self.optimized)


def _model_file(optimized: OptimizedModel | None) -> str:
    return optimized.file if optimized is not None else MODEL_FILE


class ModelStore:
    """Fetches and verifies models; one per process, safe to share between threads.

    The S3 client is built on first use, so ``file://`` sources and cache hits never pay for it.
    """

    def __init__(self, settings: Settings, s3_client: S3Client | None = None) -> None:
        self._settings = settings
        self._s3 = s3_client
        self._s3_lock = threading.Lock()
        #: Sources whose fallback to model.onnx was logged, so a refetch doesn't say it again.
        self._explained: set[ModelSource] = set()

    def fetch(self, source: ModelSource) -> ModelArtifacts:
        """Return the source's verified files, or raise ModelLoadError saying which object is wrong and how."""
        artifacts, write_cache = self.fetch_then_cache(source)
        write_cache()
        return artifacts

    def fetch_then_cache(self, source: ModelSource) -> tuple[ModelArtifacts, CacheWrite]:
        """:meth:`fetch`, leaving the /tmp cache write of a download to the caller, to run when it costs least.

        The write never raises: a cache that can't be written only costs a later init the download.
        """
        try:
            if source.uri.startswith("file://"):
                return self._fetch_file(source), _nothing_to_write
            return self._fetch_s3(source)
        except ModelLoadError:
            raise
        except (S3Error, S3ConnectionError, OSError, ValueError) as error:
            raise ModelLoadError(f"{source.uri}: {error}") from error

    # --- file:// ------------------------------------------------------------------------------

    def _fetch_file(self, source: ModelSource) -> ModelArtifacts:
        started = time.perf_counter()
        try:
            path = parse_file_uri(source.uri)
        except ValueError as error:
            raise ModelLoadError(str(error)) from None

        def label(name: str) -> str:
            return (path.parent / name).as_uri()

        files = _read_local(path, source.sha256, source.uri, label)
        fetched = time.perf_counter()
        hash_seconds = _verify(files, source, source.uri, label, prefix=path.parent.name)
        return _artifacts(source.uri, files, started, fetched - started, hash_seconds, from_cache=False)

    # --- s3:// --------------------------------------------------------------------------------

    def _fetch_s3(self, source: ModelSource) -> tuple[ModelArtifacts, CacheWrite]:
        try:
            bucket, key, version_id = parse_s3_uri(source.uri)
        except ValueError as error:
            raise ModelLoadError(str(error)) from None
        if version_id is None:
            raise ModelLoadError(
                f"{source.uri}: an s3:// model must pin its VersionId (s3://bucket/key?versionId=...), "
                "so that a deployed version never switches models"
            )
        if source.manifest_version_id is None or source.manifest_sha256 is None:
            raise ModelLoadError(
                f"{source.uri}: an s3:// model must pin its {MANIFEST_FILE} by VersionId and sha256 "
                "(manifest_version_id and manifest_sha256: the ManifestVersionId and ManifestSha256 that "
                "`onnx-lambda publish` prints)"
            )
        manifest_object = _S3Object(bucket, _sibling(key, MANIFEST_FILE), source.manifest_version_id)
        _check_prefix_digest(posixpath.basename(posixpath.dirname(key)), source.manifest_sha256, str(manifest_object))
        started = time.perf_counter()
        entry_name = cache_key(source)
        cached = self._read_cache(source, entry_name, started)
        if cached is not None:
            return cached, _nothing_to_write

        model_object = _S3Object(bucket, key, version_id)
        with _S3Download(self._client(), self._settings) as download:
            manifest_bytes = download.small_object(manifest_object, expected_size=None)
            # Refuse a foreign or changed manifest, and the model it can't vouch for, before downloading it.
            _check_manifest_pin(manifest_bytes, source.manifest_sha256, str(manifest_object))
            manifest = _parse_manifest(manifest_bytes, str(manifest_object))
            model_entry = _model_entry(manifest, str(manifest_object), source.sha256, str(model_object))
            optimized, fallback = self._choose(manifest, source)
            labels = {MANIFEST_FILE: str(manifest_object), MODEL_FILE: str(model_object)}
            fetched_object, fetched_entry = model_object, model_entry
            if optimized is not None:
                fetched_object = _S3Object(bucket, _sibling(key, optimized.file), source.optimized_version_id)
                fetched_entry = manifest.files[optimized.file]
                labels[optimized.file] = str(fetched_object)
            tokenizer_object, tokenizer_entry = _pinned_tokenizer(manifest, manifest_object, source)
            pending_tokenizer = None
            if tokenizer_object is not None and tokenizer_entry is not None:
                pending_tokenizer = download.submit_small_object(tokenizer_object, expected_size=tokenizer_entry.bytes)
            model = download.whole_object(fetched_object, fetched_entry.bytes)
            tokenizer = None
            if pending_tokenizer is not None and tokenizer_object is not None and tokenizer_entry is not None:
                name = posixpath.basename(tokenizer_object.key)
                tokenizer = (name, tokenizer_entry, download.result(pending_tokenizer, what=str(tokenizer_object)))
                labels[name] = str(tokenizer_object)
        fetched = time.perf_counter()
        files = _Files(manifest, manifest_bytes, model, fetched_entry, tokenizer, optimized, fallback)
        hash_seconds = _verify(files, source, str(model_object), labels.__getitem__)
        self._explain(source, files)
        artifacts = _artifacts(source.uri, files, started, fetched - started, hash_seconds, from_cache=False)

        def write_cache() -> None:
            write_started = time.perf_counter()
            if self._write_cache(entry_name, files):
                artifacts.timings["cache_write"] = time.perf_counter() - write_started

        return artifacts, write_cache

    def _choose(self, manifest: Manifest, source: ModelSource) -> tuple[OptimizedModel | None, str | None]:
        """The manifest's optimized model if this process may use it, else None and why not.

        Its fused operators are those of the onnxruntime that wrote it, so only that version may load it;
        and it is already optimized to its level, so a deployment configured below that (say, ``disable``
        to rule the optimizer out) gets the portable model.onnx instead.
        """
        if source.optimized_version_id is None:
            return None, None
        optimized = manifest.optimized
        if optimized is None:
            return None, "the manifest lists no optimized model (OptimizedModelVersionId names none of its files)"
        running = onnxruntime_version()
        if running != optimized.onnxruntime:
            return None, (
                f"{optimized.file} was written by onnxruntime {optimized.onnxruntime} and this is "
                f"{running or 'an onnxruntime whose version could not be read'}: its fused operators may differ"
            )
        configured = self._settings.graph_optimization
        if _LEVELS.index(configured) < _LEVELS.index(optimized.level):
            return None, (
                f"ONNX_LAMBDA_GRAPH_OPTIMIZATION is {configured}, below the {optimized.level} "
                f"that {optimized.file} is optimized to"
            )
        return optimized, None

    def _explain(self, source: ModelSource, files: _Files) -> None:
        """Log, once per source, why a deployment that pins an optimized model gets model.onnx."""
        if files.fallback is not None and source not in self._explained:
            self._explained.add(source)
            log.warning(
                "serving the portable model.onnx, not the optimized model",
                extra={"uri": source.uri, "reason": files.fallback},
            )

    def _client(self) -> S3Client:
        with self._s3_lock:
            if self._s3 is None:
                self._s3 = build_s3_client(self._settings)
            return self._s3

    # --- the /tmp cache ---------------------------------------------------------------------------

    def _read_cache(self, source: ModelSource, entry_name: str, started: float) -> ModelArtifacts | None:
        """A hit re-verified against every pin, or None. A corrupt entry is deleted, so the caller refetches it."""
        root = self._settings.cache_dir
        entry = root / entry_name
        if not entry.is_dir():
            return None
        if not (_private_dir(root) and _private_dir(entry)):
            # Someone else could have written it: a planted entry must not be served.
            log.warning("ignoring a model cache that is not private to this process", extra={"cache_dir": str(root)})
            return None

        def label(name: str) -> str:
            return f"cached {name} of {source.uri}"

        try:
            files = _read_local(
                entry / MODEL_FILE,
                source.sha256,
                label(MODEL_FILE),
                label,
                lambda manifest: self._choose(manifest, source),
            )
            fetched = time.perf_counter()
            hash_seconds = _verify(files, source, label(MODEL_FILE), label)
        except ModelLoadError as error:
            log.warning("discarding a corrupt model cache entry", extra={"entry": entry_name, "reason": str(error)})
            shutil.rmtree(entry, ignore_errors=True)
            return None
        self._explain(source, files)
        return _artifacts(source.uri, files, started, fetched - started, hash_seconds, from_cache=True)

    def _write_cache(self, entry_name: str, files: _Files) -> bool:
        """Write the entry to a temp dir and rename it into place, so a reader sees all of it or none.

        An unwritable or full cache dir only costs the next cold start a download, so it is not an error.
        """
        root = self._settings.cache_dir
        staging: Path | None = None
        try:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not _private_dir(root):
                log.warning("not caching in a directory others can write", extra={"cache_dir": str(root)})
                return False
            staging = Path(tempfile.mkdtemp(prefix=f".{entry_name}.", dir=root))
            (staging / MANIFEST_FILE).write_bytes(files.manifest_bytes)
            (staging / files.model_file).write_bytes(files.model)
            if files.tokenizer is not None:
                (staging / files.tokenizer[0]).write_bytes(files.tokenizer[2])
            os.rename(staging, root / entry_name)  # atomic; fails if another process won the race, which is fine
            staging = None
        except OSError as error:
            log.debug("model cache not written", extra={"entry": entry_name, "reason": str(error)})
            return False
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
        return True


def cache_key(source: ModelSource) -> str:
    """The cache entry's name: a digest of every pin, so an entry can only ever serve the source it was made for."""
    pins = json.dumps(source.model_dump(mode="json"), sort_keys=True).encode()
    return hashlib.sha256(pins).hexdigest()[:32]


def build_s3_client(settings: Settings) -> S3Client:
    """The S3 client the store uses: the configured endpoint, timeouts and attempts (see :mod:`onnx_lambda.s3`)."""
    return S3Client(
        endpoint_url=settings.s3_endpoint_url,
        timeout_seconds=settings.s3_timeout_seconds,
        max_attempts=settings.s3_max_attempts,
    )


def parse_s3_uri(uri: str) -> tuple[str, str, str | None]:
    """Split ``s3://bucket/key?versionId=v`` into bucket, key and versionId (None when absent).

    The key is taken literally; the versionId is percent-decoded but not form-decoded, because
    version ids may contain ``+``, which form decoding would turn into a space.
    """
    parts = urlsplit(uri)
    if parts.scheme != "s3":
        raise ValueError(f"{uri!r} is not an s3:// uri")
    bucket, key = parts.netloc, parts.path[1:]
    if not _BUCKET_NAME.match(bucket):
        raise ValueError(f"{uri!r}: {bucket!r} is not a valid S3 bucket name")
    if not key or key.endswith("/"):
        raise ValueError(f"{uri!r} names no object: expected s3://bucket/path/model.onnx")
    if parts.fragment:
        raise ValueError(f"{uri!r}: unexpected '#' fragment")
    version_id = None
    if parts.query:
        for pair in parts.query.split("&"):
            name, equals, value = pair.partition("=")
            if name != "versionId" or not equals or not value:
                raise ValueError(f"{uri!r}: the only query parameter allowed is versionId=<id>, got {pair!r}")
            if version_id is not None:
                raise ValueError(f"{uri!r}: versionId given twice")
            version_id = unquote(value)
    return bucket, key, version_id


def parse_file_uri(uri: str) -> Path:
    """``file:///abs/path/model.onnx`` (or ``file://localhost/...``) to a path; percent escapes decoded."""
    parts = urlsplit(uri)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
        raise ValueError(f"{uri!r}: expected file:///absolute/path/model.onnx")
    path = Path(unquote(parts.path))  # url2pathname on POSIX; urllib.request costs 2 ms of a cold start
    if not path.is_absolute() or not path.name:
        raise ValueError(f"{uri!r}: expected file:///absolute/path/model.onnx")
    return path


# --- checks shared by every source ---------------------------------------------------------------


def _parse_manifest(data: bytes, label: str) -> Manifest:
    try:
        return Manifest.model_validate_json(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or '(document)'}: {problem['msg']}"
            for problem in error.errors()[:3]
        )
        raise ModelLoadError(f"{label} is not a valid manifest: {problems}") from None


def _model_entry(manifest: Manifest, manifest_label: str, pin: str | None, model_label: str) -> FileEntry:
    entry = manifest.files.get(MODEL_FILE)
    if entry is None:
        raise ModelLoadError(f"{manifest_label} lists no {MODEL_FILE} in its files")
    if pin is not None and entry.sha256 != pin:
        raise ModelLoadError(
            f"{manifest_label} lists {MODEL_FILE} with sha256 {entry.sha256}, but {model_label} is pinned "
            f"to sha256 {pin}: the manifest belongs to a different model"
        )
    if entry.bytes == 0:
        raise ModelLoadError(f"{manifest_label} lists {MODEL_FILE} as 0 bytes")
    return entry


def _check_manifest_pin(data: bytes, pin: str, label: str) -> None:
    found = hashlib.sha256(data).hexdigest()
    if found != pin:
        raise ModelLoadError(
            f"{label}: sha256 {found} does not match the pinned manifest sha256 {pin}: "
            "the manifest was changed after it was published, or belongs to another model"
        )


def _check_prefix_digest(prefix: str, manifest_sha256: str, label: str) -> None:
    """A prefix that ends in a manifest digest (publish's layout) must name the pinned manifest."""
    match = _PREFIX_DIGEST.search(prefix)
    if match is not None and not manifest_sha256.startswith(match.group(1)):
        raise ModelLoadError(
            f"{label}: its prefix {prefix!r} was published for a manifest whose sha256 starts with "
            f"{match.group(1)}, but the pinned manifest sha256 is {manifest_sha256}: "
            "the model's parameters come from different publishes"
        )


def _pinned_tokenizer(
    manifest: Manifest, manifest_object: _S3Object, source: ModelSource
) -> tuple[_S3Object | None, FileEntry | None]:
    """The tokenizer's pinned S3 version and its manifest entry, or (None, None) for a model without one."""
    tokenizer_entry = _tokenizer_entry(manifest, str(manifest_object))
    if tokenizer_entry is None:
        if source.tokenizer_version_id is not None:
            raise ModelLoadError(
                f"{manifest_object} lists no tokenizer, but the deployment pins a tokenizer VersionId "
                f"({source.tokenizer_version_id}): the model's parameters come from different publishes"
            )
        return None, None
    name, entry = tokenizer_entry
    if source.tokenizer_version_id is None:
        raise ModelLoadError(
            f"{manifest_object} lists tokenizer {name!r}, but the deployment pins no VersionId for it "
            "(tokenizer_version_id: the TokenizerVersionId that `onnx-lambda publish` prints)"
        )
    key = _sibling(manifest_object.key, name)
    return _S3Object(manifest_object.bucket, key, source.tokenizer_version_id), entry


def _tokenizer_entry(manifest: Manifest, manifest_label: str) -> tuple[str, FileEntry] | None:
    if manifest.tokenizer is not None:
        name = manifest.tokenizer.file
    elif TOKENIZER_FILE in manifest.files:
        name = TOKENIZER_FILE
    else:
        return None
    if name in ("", ".", "..") or "/" in name or "\\" in name:
        raise ModelLoadError(f"{manifest_label}: tokenizer file {name!r} must be a plain file name")
    entry = manifest.files.get(name)
    if entry is None:
        raise ModelLoadError(f"{manifest_label} names tokenizer {name!r} but pins no sha256 for it in files")
    return name, entry


def _check(data: bytes, expected: FileEntry, label: str, expected_from: str) -> None:
    if len(data) != expected.bytes:
        raise ModelLoadError(
            f"{label} is {len(data)} bytes, expected {expected.bytes} ({expected_from}): "
            "the object is empty, truncated or not the published one"
        )
    found = hashlib.sha256(data).hexdigest()
    if found != expected.sha256:
        raise ModelLoadError(f"{label}: sha256 {found} does not match the expected {expected.sha256} ({expected_from})")


def _verify(
    files: _Files, source: ModelSource, model_label: str, sibling_label: _Labeller, prefix: str | None = None
) -> float:
    """Check the manifest against its pins, and every file against the manifest; return the seconds spent."""
    started = time.perf_counter()
    manifest_label = sibling_label(MANIFEST_FILE)
    if source.manifest_sha256 is not None:
        _check_manifest_pin(files.manifest_bytes, source.manifest_sha256, manifest_label)
    if prefix is not None:
        _check_prefix_digest(prefix, hashlib.sha256(files.manifest_bytes).hexdigest(), manifest_label)
    model_entry = _model_entry(files.manifest, manifest_label, source.sha256, model_label)
    if files.optimized is None:
        _check(files.model, model_entry, model_label, "manifest.json")
    else:
        name = files.optimized.file
        _check(files.model, files.manifest.files[name], sibling_label(name), "manifest.json")
    if files.tokenizer is not None:
        name, entry, data = files.tokenizer
        _check(data, entry, sibling_label(name), "manifest.json")
    return time.perf_counter() - started


def _private_dir(path: Path) -> bool:
    """A real directory (not a symlink) owned by this process's user, that no group or other may write."""
    try:
        info = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o022


def _artifacts(
    uri: str, files: _Files, started: float, fetch_seconds: float, hash_seconds: float, *, from_cache: bool
) -> ModelArtifacts:
    return ModelArtifacts(
        uri=uri,
        model=files.model,
        manifest=files.manifest,
        optimized=files.optimized,
        tokenizer=files.tokenizer[2] if files.tokenizer is not None else None,
        timings={"fetch": fetch_seconds, "hash": hash_seconds, "total": time.perf_counter() - started},
        from_cache=from_cache,
    )


# --- local files (file:// sources and cache entries) -----------------------------------------


def _portable(manifest: Manifest) -> tuple[OptimizedModel | None, str | None]:
    """A file:// source always serves model.onnx: only an S3 deployment pins an optimized model."""
    return None, None


def _read_local(
    model_path: Path,
    pin: str | None,
    model_label: str,
    sibling_label: _Labeller,
    choose: Callable[[Manifest], tuple[OptimizedModel | None, str | None]] = _portable,
) -> _Files:
    manifest_bytes = _read_bytes(model_path.with_name(MANIFEST_FILE), sibling_label(MANIFEST_FILE))
    manifest = _parse_manifest(manifest_bytes, sibling_label(MANIFEST_FILE))
    model_entry = _model_entry(manifest, sibling_label(MANIFEST_FILE), pin, model_label)
    optimized, fallback = choose(manifest)
    if optimized is None:
        model = _read_bytes(model_path, model_label)
    else:
        model_entry = manifest.files[optimized.file]
        model = _read_bytes(model_path.with_name(optimized.file), sibling_label(optimized.file))
    tokenizer = None
    tokenizer_entry = _tokenizer_entry(manifest, sibling_label(MANIFEST_FILE))
    if tokenizer_entry is not None:
        name, entry = tokenizer_entry
        tokenizer = (name, entry, _read_bytes(model_path.with_name(name), sibling_label(name)))
    return _Files(manifest, manifest_bytes, model, model_entry, tokenizer, optimized, fallback)


def _read_bytes(path: Path, label: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ModelLoadError(f"{label} is missing") from None
    except OSError as error:
        raise ModelLoadError(f"{label} cannot be read: {error.strerror or error}") from None


# --- S3 ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _S3Object:
    bucket: str
    key: str
    version_id: str | None

    def __str__(self) -> str:
        version = self.version_id if self.version_id and self.version_id != "null" else "unversioned"
        return f"s3://{self.bucket}/{self.key} (versionId {version})"


def onnxruntime_version() -> str | None:
    """``onnxruntime.__version__`` of the onnxruntime this process runs, or None if none is installed.

    Read from the package's metadata when onnxruntime isn't imported yet: the store decides which file to
    download while init still imports, and onnxruntime's import (about 100 ms of CPU) must not delay that.
    """
    module = sys.modules.get("onnxruntime")
    if module is not None:
        return str(getattr(module, "__version__", "")) or None
    from importlib import metadata

    try:
        return metadata.version("onnxruntime")
    except metadata.PackageNotFoundError:
        return None


def memory_limit_bytes() -> int:
    """What this function may hold: its MemorySize on Lambda, else the machine's memory."""
    memory_mb = lambda_memory_mb()
    if memory_mb is not None:
        return memory_mb * 1024 * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _sibling(key: str, name: str) -> str:
    return posixpath.join(posixpath.dirname(key), name)


class _RetryableRead(Exception):
    """A body that ended early: the client retries requests, not reads that fail mid-body, so we do."""


class _S3Download:
    """One fetch's S3 reads: a worker pool, a deadline over all of them, and a stop flag for stragglers.

    The client retries a request that fails before its body arrives (connect errors, 5xx, throttling);
    :meth:`_read_range` retries what it can't: a body that times out or ends early. The deadline is
    enforced by the waiting thread, so even a worker stuck in a socket read can't hold init past it.
    """

    def __init__(self, s3: S3Client, settings: Settings) -> None:
        self._s3 = s3
        self._settings = settings
        self._deadline = time.monotonic() + settings.s3_deadline_seconds
        self._stop = threading.Event()
        self._pool = _DaemonPool(settings.s3_max_concurrency)

    def __enter__(self) -> _S3Download:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        self._pool.shutdown()

    # --- what the store calls -------------------------------------------------------------------

    def small_object(self, obj: _S3Object, *, expected_size: int | None) -> bytes:
        return self.result(self.submit_small_object(obj, expected_size=expected_size), what=str(obj))

    def submit_small_object(self, obj: _S3Object, *, expected_size: int | None) -> Future[bytes]:
        return self._pool.submit(self._get_small_object, obj, expected_size)

    def result(self, future: Future[bytes], *, what: str) -> bytes:
        self._wait([future], what)
        return future.result()

    def whole_object(self, obj: _S3Object, size: int) -> bytes:
        """The object's bytes, fetched in ``s3_part_size`` ranges by the pool into one buffer."""
        limit = memory_limit_bytes()
        if size > limit:
            # Checked before the buffer is allocated: a size no function could hold is a clear error, not a MemoryError.
            raise ModelLoadError(
                f"{obj}: manifest.json gives it {size} bytes, more than this function's {limit} bytes of memory"
            )
        buffer = bytearray(size)
        view = memoryview(buffer)
        part_size = self._settings.s3_part_size
        futures = [
            self._pool.submit(self._read_range, obj, start, view[start : start + part_size], size)
            for start in range(0, size, part_size)
        ]
        self._wait(futures, str(obj))
        # onnxruntime takes only bytes: this is the one copy, and the buffer is freed right after.
        return bytes(buffer)

    # --- the workers ------------------------------------------------------------------------------

    def _get_small_object(self, obj: _S3Object, expected_size: int | None) -> bytes:
        """GET a pinned version whole: the manifest (size unknown until read, so capped) or the tokenizer."""
        try:
            response = self._s3.get_object(obj.bucket, obj.key, str(obj.version_id))
        except S3Error as error:
            raise _client_error(obj, error, posixpath.basename(obj.key)) from None
        except S3ConnectionError as error:
            raise ModelLoadError(f"{obj} could not be fetched: {error}") from None
        size = response.content_length
        if expected_size is not None and size != expected_size:
            response.close()
            raise _size_mismatch(obj, size, expected_size)
        if size > MAX_MANIFEST_BYTES and expected_size is None:
            response.close()
            raise ModelLoadError(f"{obj} is {size} bytes, over the {MAX_MANIFEST_BYTES} bytes a manifest may have")
        buffer = bytearray(size)
        if size:
            self._read_range(obj, 0, memoryview(buffer), size, first_response=response)
        else:
            response.close()
        return bytes(buffer)

    def _read_range(
        self,
        obj: _S3Object,
        start: int,
        into: memoryview,
        total: int,
        first_response: S3Response | None = None,
    ) -> None:
        """Fill ``into`` with bytes ``start..`` of the pinned version, retrying reads that fail mid-body."""
        end = start + len(into) - 1
        response = first_response
        attempt = 1
        while True:
            if self._stop.is_set():
                raise ModelLoadError(f"{obj}: fetch abandoned")
            if response is None:
                response = self._get_range(obj, start, end, total)
            try:
                _read_exactly(response, into)
                return
            except (_RetryableRead, HTTPException, OSError) as error:
                if attempt >= self._settings.s3_max_attempts:
                    raise ModelLoadError(
                        f"{obj}: reading bytes {start}-{end} failed {attempt} times, last: {error}"
                    ) from None
                log.debug("retrying a ranged read", extra={"object": str(obj), "start": start, "reason": str(error)})
                self._backoff(attempt, obj)
                attempt += 1
                response = None

    def _get_range(self, obj: _S3Object, start: int, end: int, total: int) -> S3Response:
        # Every retry reads the same, pinned version.
        try:
            response = self._s3.get_object(obj.bucket, obj.key, str(obj.version_id), f"bytes={start}-{end}")
        except S3Error as error:
            if error.code == "InvalidRange":
                raise _size_mismatch(obj, error.details.get("ActualObjectSize", "fewer"), total) from None
            raise _client_error(obj, error, f"bytes {start}-{end}") from None
        except S3ConnectionError as error:  # already retried
            raise ModelLoadError(f"{obj} could not be fetched: {error}") from None
        match = _CONTENT_RANGE_TOTAL.search(response.content_range)
        actual_total = int(match.group(1)) if match else response.content_length
        if actual_total != total:
            response.close()
            raise _size_mismatch(obj, actual_total, total)
        if response.content_length != end - start + 1:
            response.close()
            raise ModelLoadError(
                f"{obj}: asked for bytes {start}-{end}, got {response.content_length} bytes (range ignored?)"
            )
        return response

    # --- time ---------------------------------------------------------------------------------------

    def _wait(self, futures: Sequence[Future[Any]], what: str) -> None:
        done, pending = wait(futures, timeout=max(0.0, self._deadline - time.monotonic()), return_when=FIRST_EXCEPTION)
        for future in done:
            if future.exception() is not None:
                self._stop.set()
                future.result()  # re-raises the worker's ModelLoadError
        if pending:
            self._stop.set()
            raise self._deadline_error(what)

    def _backoff(self, attempt: int, obj: _S3Object) -> None:
        delay = random.uniform(0, min(_BACKOFF_CAP_SECONDS, _BACKOFF_BASE_SECONDS * 2**attempt))  # noqa: S311  # nosec B311  # jitter
        if time.monotonic() + delay >= self._deadline:
            raise self._deadline_error(str(obj))
        if self._stop.wait(delay):
            raise ModelLoadError(f"{obj}: fetch abandoned")

    def _deadline_error(self, what: str) -> ModelLoadError:
        return ModelLoadError(
            f"{what}: not fetched within the {self._settings.s3_deadline_seconds:g} s deadline "
            "(ONNX_LAMBDA_S3_DEADLINE_SECONDS); S3 is unreachable or too slow"
        )


_T = TypeVar("_T")
_P = ParamSpec("_P")


class _DaemonPool:
    """A minimal ThreadPoolExecutor whose threads are daemons.

    ThreadPoolExecutor joins its workers at interpreter exit, so a worker stuck in a socket read past
    the deadline would hold a failed init (and the process) until the read timed out. These don't.
    """

    def __init__(self, workers: int) -> None:
        self._tasks: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        self._futures: list[Future[Any]] = []
        self._workers = workers
        for number in range(workers):
            threading.Thread(target=self._work, name=f"model-fetch-{number}", daemon=True).start()

    def submit(self, call: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        future: Future[_T] = Future()
        self._futures.append(future)
        self._tasks.put((future, functools.partial(call, *args, **kwargs)))
        return future

    def shutdown(self) -> None:
        """Cancel what hasn't started and let the workers exit once their current call returns."""
        for future in self._futures:
            future.cancel()
        for _ in range(self._workers):
            self._tasks.put(None)

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            future, call = task
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = call()
            except BaseException as error:
                future.set_exception(error)
            else:
                future.set_result(result)


def _read_exactly(body: S3Response, into: memoryview) -> None:
    filled = 0
    try:
        while filled < len(into):
            count = body.readinto(into[filled:])
            if not count:
                raise _RetryableRead(f"body ended after {filled} of {len(into)} bytes")
            filled += count
    finally:
        body.close()


def _client_error(obj: _S3Object, error: S3Error, what: str) -> ModelLoadError:
    code = error.code
    if code in _MISSING_CODES:
        return ModelLoadError(f"{what}: {obj} does not exist ({code})")
    if code in ("AccessDenied", "403"):
        return ModelLoadError(
            f"{what}: access to {obj} denied (S3 also says this for a missing key the role may not list): "
            "the function's role needs s3:GetObjectVersion on the model's prefix"
        )
    return ModelLoadError(f"{what}: {obj} could not be fetched: {error}")


def _size_mismatch(obj: _S3Object, actual: object, expected: int) -> ModelLoadError:
    return ModelLoadError(
        f"{obj} is {actual} bytes, expected {expected} (manifest.json): "
        "the object is empty, truncated or not the published one"
    )
