"""What the function reads from an API Gateway HTTP API payload format 2.0 event beyond what Mangum maps.

Events are built (for ``events/``, the tests and the local emulator) by
``onnx_lambda_tools.local.events``, which never ships in the image.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def request_id(event: Mapping[str, Any] | None) -> str | None:
    """API Gateway's ``requestContext.requestId`` (what Powertools' ``correlation_paths.API_GATEWAY_HTTP``
    selects, read directly rather than through a JMESPath query on every invocation)."""
    request_context = (event or {}).get("requestContext")
    value = request_context.get("requestId") if isinstance(request_context, Mapping) else None
    return value if isinstance(value, str) else None
