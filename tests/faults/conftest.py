"""The fault-injection tests use the real local S3 (the root conftest's `s3` and `bucket`), never real AWS."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _only_local_aws(aws_environment: None) -> None:
    """Every test here builds its own AWS clients, as the code under test does in Lambda."""
