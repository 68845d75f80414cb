"""A slow S3 at init: a ranged GET that stalls mid-body times out and is retried, and the model that
loads is whole (it reproduces its manifest's golden embeddings).

The real MiniLM model (23 MB) from the real local S3, through a proxy that stalls one part's response
half-way, the way a congested network does. Fetching in 1 MiB parts makes the model two dozen ranged GETs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from onnx_lambda.config import ModelSource, Settings
from onnx_lambda.manifest import OPTIMIZED_MODEL_FILE, read_manifest
from onnx_lambda.registry import load_registry
from tests.faults.support import publish_model
from tests.integration.moto import FaultyProxy, ProxiedRequest

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

EMBEDDER = "all-minilm-l6-v2"
MiB = 1024 * 1024
STALLED_RANGE = f"bytes={2 * MiB}-{3 * MiB - 1}"


def test_a_stalled_ranged_get_times_out_and_is_retried(
    s3: S3Client, bucket: str, models_dir: Path, moto_server: str, tmp_path: Path
) -> None:
    published = publish_model(s3, bucket, models_dir, EMBEDDER)
    # The file the deployment loads, as publish pins it: the optimized model.
    model_path = f"/{bucket}/{published.prefix}/{OPTIMIZED_MODEL_FILE}"

    def stall_one_part_once(request: ProxiedRequest) -> bool:
        return (
            request.path.startswith(model_path)
            and request.headers.get("range") == STALLED_RANGE
            and not any(earlier.stalled for earlier in proxy.requests)
        )

    with FaultyProxy(moto_server, stall=stall_one_part_once) as proxy:
        settings = Settings(
            models=[ModelSource.model_validate(published.source())],
            s3_endpoint_url=proxy.endpoint_url,
            cache_dir=tmp_path / "cache",
            s3_part_size=MiB,
            s3_max_concurrency=4,
            s3_timeout_seconds=1.0,
            s3_deadline_seconds=30.0,
        )
        registry = load_registry(settings)

    parts = [request for request in proxy.requests if request.path.startswith(model_path)]
    size = read_manifest(models_dir / EMBEDDER).files[OPTIMIZED_MODEL_FILE].bytes
    assert len(parts) == -(-size // MiB) + 1, "one ranged GET per part, plus the one retry"
    assert all(f"versionId={published.versions[OPTIMIZED_MODEL_FILE]}" in request.path for request in parts)
    retried = [request for request in parts if request.headers.get("range") == STALLED_RANGE]
    assert [request.stalled for request in retried] == [True, False]

    served = registry.get(EMBEDDER)
    assert served.embedder is not None
    golden = read_manifest(models_dir / EMBEDDER).golden
    assert golden.embeddings_request is not None
    assert golden.embeddings_response is not None
    vectors = served.embedder.embed(golden.embeddings_request["input"]).vectors
    expected = np.array([item["embedding"] for item in golden.embeddings_response["data"]], dtype=np.float32)
    np.testing.assert_allclose(vectors, expected, atol=golden.atol)
