"""Two Lambda proxy responses to the same event compared: same status, same headers, same body.

Numbers compare within float tolerance, because the image's interpreter and onnxruntime build can differ
from the virtualenv's in the last bits; everything else (messages, names, shapes, ids) compares exactly.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import numpy as np

from onnx_lambda import protocol
from tests.expected_events import response_body

#: Headers that differ between runs by design.
VOLATILE_HEADERS = frozenset({"x-request-id", "date", "content-length"})


def assert_same_response(name: str, got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got["statusCode"] == want["statusCode"], (name, got, want)
    got_headers = {k.lower(): v for k, v in got.get("headers", {}).items() if k.lower() not in VOLATILE_HEADERS}
    want_headers = {k.lower(): v for k, v in want.get("headers", {}).items() if k.lower() not in VOLATILE_HEADERS}
    length = want_headers.pop("inference-header-content-length", None)
    got_length = got_headers.pop("inference-header-content-length", None)
    assert got_headers == want_headers, name
    got_body, want_body = response_body(got), response_body(want)
    if length is not None or got_length is not None:
        got_decoded = protocol.decode_infer_response(got_body, int(got_length) if got_length else None)
        want_decoded = protocol.decode_infer_response(want_body, int(length) if length else None)
        assert got_decoded.model_name == want_decoded.model_name, name
        assert got_decoded.outputs.keys() == want_decoded.outputs.keys(), name
        for output, array in want_decoded.outputs.items():
            assert np.allclose(got_decoded.outputs[output], array, rtol=1e-5, atol=1e-6), (name, output)
        return
    if want_headers.get("content-type", "").startswith("application/json"):
        assert_close(json.loads(got_body), json.loads(want_body), name)
    else:
        assert got_body == want_body, name


def assert_close(got: Any, want: Any, where: str) -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict), (where, got)
        assert got.keys() == want.keys(), (where, got, want)
        for key, value in want.items():
            assert_close(got[key], value, f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list), (where, got)
        assert len(got) == len(want), (where, got, want)
        for index, (a, b) in enumerate(zip(got, want, strict=True)):
            assert_close(a, b, f"{where}[{index}]")
    elif isinstance(want, float) or (isinstance(want, int) and isinstance(got, float)):
        assert math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-6), (where, got, want)
    elif isinstance(want, str) and isinstance(got, str) and want != got and where.endswith(".embedding"):
        # base64 embeddings: little-endian float32 vectors
        a = np.frombuffer(base64.b64decode(got), dtype="<f4")
        b = np.frombuffer(base64.b64decode(want), dtype="<f4")
        assert a.shape == b.shape, where
        assert np.allclose(a, b, rtol=1e-5, atol=1e-6), where
    else:
        assert got == want, (where, got, want)
