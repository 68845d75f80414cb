"""Every committed API Gateway event through the Lambda handler, in-process (as `sam local invoke -e` would)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from onnx_lambda.invoke import LambdaContext, function_environment
from tests.expected_events import EVENTS_DIR, EXPECTED, check_response, load_event

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@pytest.fixture(scope="module")
def lambda_handler(models_dir: Path) -> Iterator[Handler]:
    saved = dict(os.environ)
    os.environ.update(function_environment(models_dir))
    from onnx_lambda.config import get_settings

    get_settings.cache_clear()
    from onnx_lambda import handler

    yield handler.lambda_handler
    os.environ.clear()
    os.environ.update(saved)
    get_settings.cache_clear()


def test_every_event_file_has_an_expectation() -> None:
    assert sorted(p.stem for p in EVENTS_DIR.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_event(name: str, lambda_handler: Handler, models_dir: Path) -> None:
    check_response(name, lambda_handler(load_event(name), LambdaContext()), models_dir)
