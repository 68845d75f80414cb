"""Which model a deployment pins, and its pinned manifest beside it in S3."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
#: ``onnx-lambda publish`` ends each model's prefix with ``-`` and the first 16 hex digits of the manifest's sha256.
_PREFIX_DIGEST = re.compile(r"-([0-9a-f]{16})$")


@dataclass(frozen=True, slots=True)
class ModelRef:
    """``s3://bucket/<prefix>/model.onnx?versionId=...`` and its manifest's pins, as the function is configured."""

    bucket: str
    key: str
    version_id: str | None
    manifest_version_id: str = ""
    manifest_sha256: str = ""

    @property
    def manifest_key(self) -> str:
        # Publish writes manifest.json beside model.onnx under an immutable, content-addressed prefix.
        prefix, _, _ = self.key.rpartition("/")
        return f"{prefix}/{MANIFEST_FILE}" if prefix else MANIFEST_FILE


def parse_model_uri(uri: str, manifest_version_id: str = "", manifest_sha256: str = "") -> ModelRef:
    parts = urlsplit(uri)
    key = parts.path.lstrip("/")
    if parts.scheme != "s3" or not parts.netloc or not key:
        raise ValueError(f"model uri must look like s3://bucket/key?versionId=..., got {uri!r}")
    version_ids = parse_qs(parts.query).get("versionId")
    return ModelRef(
        bucket=parts.netloc,
        key=key,
        version_id=version_ids[0] if version_ids else None,
        manifest_version_id=manifest_version_id,
        manifest_sha256=manifest_sha256,
    )


def load_manifest(s3: Any, ref: ModelRef) -> dict[str, Any]:
    """The pinned manifest as JSON, refused unless it is the version and the bytes the deployment pins.

    ``s3`` is a boto3 S3 client. Reading the key's latest version instead would let anyone who can write
    to the bucket swap the golden answers that approve a deployment.
    """
    where = f"s3://{ref.bucket}/{ref.manifest_key}"
    if not ref.manifest_version_id or not ref.manifest_sha256:
        raise ValueError(f"the deployment pins no VersionId and sha256 for {where} (ManifestVersionId, ManifestSha256)")
    digest = _PREFIX_DIGEST.search(ref.manifest_key.rpartition("/")[0])
    if digest is not None and not ref.manifest_sha256.startswith(digest.group(1)):
        published = f"{where} was published as sha256 {digest.group(1)}..."
        raise ValueError(f"{published}, the deployment pins {ref.manifest_sha256}")
    body = s3.get_object(Bucket=ref.bucket, Key=ref.manifest_key, VersionId=ref.manifest_version_id)["Body"].read()
    found = hashlib.sha256(body).hexdigest()
    if found != ref.manifest_sha256:
        pinned = f"{where} (versionId {ref.manifest_version_id})"
        raise ValueError(f"{pinned} has sha256 {found}, the deployment pins {ref.manifest_sha256}")
    manifest = json.loads(body)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("golden"), dict):
        raise ValueError(f"{where} has no golden request/response")
    return manifest
