"""The inference function as issue 10's image shipped it, for the canary's test behind the API Gateway emulator.

In that image ``create_app`` raised ``PackageNotFoundError`` (no distribution metadata in /var/task): the
routes the handler answers directly (inference) worked, and every route left to the FastAPI app failed.
This is the real handler with the app made to fail the same way. The emulator runs it through its
``handler`` override, in place of the image's CMD (``onnx_lambda.handler.lambda_handler``).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from typing import NoReturn

from onnx_lambda import handler as function


def _app_without_distribution_metadata() -> NoReturn:
    raise PackageNotFoundError("onnx-lambda")


function.asgi = _app_without_distribution_metadata  # type: ignore[assignment]
lambda_handler = function.lambda_handler
