"""The fuzzers run against the same `onnx-lambda serve` the integration tests use, with its real token."""

from __future__ import annotations

from tests.integration.conftest import local_service

__all__ = ["local_service"]
