"""Every committed API Gateway event through the Lambda handler, in-process (as `sam local invoke -e` would)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from onnx_lambda_tools.invoke import LambdaContext
from tests.expected_events import EVENTS_DIR, EXPECTED, check_response, load_event

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def test_every_event_file_has_an_expectation() -> None:
    assert sorted(p.stem for p in EVENTS_DIR.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_event(name: str, lambda_handler: Handler, models_dir: Path) -> None:
    check_response(name, lambda_handler(load_event(name), LambdaContext()), models_dir)
