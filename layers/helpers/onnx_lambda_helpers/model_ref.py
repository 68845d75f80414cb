"""Which model a deployment pins, and its manifest beside it in S3."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True, slots=True)
class ModelRef:
    """``s3://bucket/<prefix>/model.onnx?versionId=...``, the same URI the function's environment carries."""

    bucket: str
    key: str
    version_id: str | None

    @property
    def manifest_key(self) -> str:
        # Publish writes manifest.json beside model.onnx under an immutable, content-addressed prefix.
        prefix, _, _ = self.key.rpartition("/")
        return f"{prefix}/{MANIFEST_FILE}" if prefix else MANIFEST_FILE


def parse_model_uri(uri: str) -> ModelRef:
    parts = urlsplit(uri)
    key = parts.path.lstrip("/")
    if parts.scheme != "s3" or not parts.netloc or not key:
        raise ValueError(f"model uri must look like s3://bucket/key?versionId=..., got {uri!r}")
    version_ids = parse_qs(parts.query).get("versionId")
    return ModelRef(bucket=parts.netloc, key=key, version_id=version_ids[0] if version_ids else None)


def load_manifest(s3: Any, ref: ModelRef) -> dict[str, Any]:
    """The manifest as JSON; ``s3`` is a boto3 S3 client."""
    body = s3.get_object(Bucket=ref.bucket, Key=ref.manifest_key)["Body"].read()
    manifest = json.loads(body)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("golden"), dict):
        raise ValueError(f"s3://{ref.bucket}/{ref.manifest_key} has no golden request/response")
    return manifest
