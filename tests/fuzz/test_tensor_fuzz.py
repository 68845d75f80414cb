"""Near-valid Open Inference Protocol requests for the models really served, over HTTP with a real token.

schemathesis only knows the generic schema; this fuzzer knows each model's signature and generates
requests one mistake away from valid (and valid ones): right and wrong names, datatypes, shapes,
element counts, values at the edges of each type and of the vocabulary, JSON and binary tensors mixed,
output selection. Whatever it sends, the answer is a 200 or a 4xx that names the problem: never a 5xx.
"""

from __future__ import annotations

import json
import math
import warnings
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.servers import LocalService

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64"]
NUMPY = {
    "BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "INT8": "<i1", "INT16": "<i2",
    "INT32": "<i4", "INT64": "<i8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
}  # fmt: skip
ALLOWED = {200, 400, 404, 413, 415, 422}
VOCABULARY = 30522  # MiniLM's: ids around it are the interesting ones


@pytest.fixture(scope="module")
def signatures(local_service: LocalService) -> dict[str, dict[str, Any]]:
    headers = local_service.headers()
    names = [card["id"] for card in httpx.get(f"{local_service.url}/v1/models", headers=headers).json()["data"]]
    return {name: httpx.get(f"{local_service.url}/v2/models/{name}", headers=headers).json() for name in names}


def _values(datatype: str, valid: bool) -> st.SearchStrategy[Any]:
    if valid:
        # 0 and 1 are in the domain of every input served here (ids, masks, type ids, features).
        return (
            st.booleans()
            if datatype == "BOOL"
            else st.sampled_from([0, 1])
            if "INT" in datatype
            else st.floats(-1e3, 1e3)
        )
    if datatype == "BOOL":
        return st.one_of(st.booleans(), st.integers(0, 2))
    if datatype.startswith(("INT", "UINT")):
        return st.one_of(st.integers(-2, 3), st.integers(VOCABULARY - 3, VOCABULARY + 1), st.integers(-(2**64), 2**64))
    return st.one_of(
        st.floats(allow_nan=False, allow_infinity=False, width=32), st.floats(allow_nan=False, allow_infinity=False)
    )


def _dimension(axis: int, declared: int, valid: bool) -> st.SearchStrategy[int]:
    if valid:
        return st.just(declared) if declared >= 0 else st.integers(1, 3) if axis == 0 else st.integers(1, 12)
    if declared >= 0:
        return st.sampled_from([declared] * 8 + [declared + 1, max(0, declared - 1), 0])
    if axis == 0:
        return st.sampled_from([1, 1, 2, 3, 0, 65])
    return st.one_of(st.integers(0, 8), st.integers(250, 260))


@st.composite
def _tensor(
    draw: st.DrawFn, spec: dict[str, Any], shape_of: dict[int, int], valid: bool
) -> tuple[dict[str, Any], bytes | None]:
    name = spec["name"] if valid else draw(st.sampled_from([spec["name"]] * 9 + ["x"]))
    datatype = spec["datatype"] if valid else draw(st.sampled_from([spec["datatype"]] * 6 + DATATYPES))
    # Dynamic axes agree between inputs (the batch, the sequence) unless the draw says otherwise.
    shape = [shape_of.setdefault(axis, draw(_dimension(axis, dim, valid))) for axis, dim in enumerate(spec["shape"])]
    if not valid and draw(st.integers(0, 4)) == 0:
        shape = draw(st.lists(st.integers(-1, 4), max_size=4))
    count = max(0, math.prod(shape)) if all(d >= 0 for d in shape) else 1
    if not valid:
        count = min(count + draw(st.sampled_from([0] * 8 + [-1, 1])), 4096)
    if draw(st.sampled_from(["same", "same", "random"])) == "same":
        values = [draw(_values(datatype, valid))] * max(0, count)
    else:
        values = draw(st.lists(_values(datatype, valid), min_size=max(0, count), max_size=max(0, count)))
    tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
    binary = draw(st.integers(0, 4)) == 0
    if binary:
        try:
            with warnings.catch_warnings(), np.errstate(over="ignore", invalid="ignore"):
                warnings.simplefilter("ignore")
                raw = np.asarray(values, dtype=NUMPY[datatype]).tobytes()
        except (OverflowError, ValueError, TypeError):
            binary = False
        else:
            tensor["parameters"] = {"binary_data_size": len(raw)}
            return tensor, raw
    nested = draw(st.booleans()) and len(shape) == 2 and shape[1] > 0 and len(values) == math.prod(shape)
    tensor["data"] = [values[i : i + shape[1]] for i in range(0, len(values), shape[1])] if nested else values
    return tensor, None


@st.composite
def infer_requests(draw: st.DrawFn, signatures: dict[str, dict[str, Any]]) -> tuple[str, bytes, dict[str, str]]:
    model = draw(st.sampled_from(sorted(signatures)))
    signature = signatures[model]
    inputs = list(signature["inputs"])
    valid = draw(st.booleans())
    if not valid and draw(st.integers(0, 9)) == 0:
        inputs = draw(st.lists(st.sampled_from(inputs), min_size=0, max_size=len(inputs) + 1))
    shape_of: dict[int, int] = {}
    tensors = [draw(_tensor(spec, shape_of, valid)) for spec in inputs]
    document: dict[str, Any] = {"inputs": [tensor for tensor, _ in tensors]}
    if draw(st.booleans()):
        document["id"] = draw(st.text(max_size=20))
    choice = draw(st.integers(0, 3))
    if choice == 1:
        outputs = [spec["name"] for spec in signature["outputs"]]
        document["outputs"] = [{"name": name} for name in draw(st.lists(st.sampled_from(outputs), max_size=2))]
    elif choice == 2:
        document["outputs"] = [{"name": draw(st.text(max_size=8)), "parameters": {"binary_data": True}}]
    elif choice == 3:
        document["parameters"] = {"binary_data_output": draw(st.booleans())}
    header = json.dumps(document).encode()
    chunks = [raw for _, raw in tensors if raw is not None]
    if not chunks:
        return model, header, {"content-type": "application/json"}
    return model, header + b"".join(chunks), {"inference-header-content-length": str(len(header))}


@pytest.mark.parametrize("examples", [300])
def test_near_valid_infer_requests_never_get_a_server_error(
    local_service: LocalService, signatures: dict[str, dict[str, Any]], examples: int
) -> None:
    statuses: dict[int, int] = {}
    with httpx.Client(base_url=local_service.url, headers=local_service.headers(), timeout=30) as client:

        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)
        @given(infer_requests(signatures))
        def fuzz(request: tuple[str, bytes, dict[str, str]]) -> None:
            model, body, headers = request
            response = client.post(f"/v2/models/{model}/infer", content=body, headers=headers)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert response.status_code in ALLOWED, (response.status_code, response.text[:500], body[:500])
            assert b"Traceback" not in response.content
            if response.status_code != 200:
                assert response.json()["error"], response.text

        fuzz()
    # Both verdicts were reached often: the fuzzer got past the decoder into the models.
    assert statuses.get(200, 0) >= examples // 5, statuses
    assert sum(count for status, count in statuses.items() if status >= 400) >= examples // 5, statuses


def _infer(client: httpx.Client, model: str, tensors: list[dict[str, Any]]) -> httpx.Response:
    return client.post(f"/v2/models/{model}/infer", json={"inputs": tensors})


def _tokens(ids: list[int], type_ids: list[int] | None = None) -> list[dict[str, Any]]:
    shape = [1, len(ids)]
    return [
        {"name": "input_ids", "datatype": "INT64", "shape": shape, "data": ids},
        {"name": "attention_mask", "datatype": "INT64", "shape": shape, "data": [1] * len(ids)},
        {"name": "token_type_ids", "datatype": "INT64", "shape": shape, "data": type_ids or [0] * len(ids)},
    ]


@pytest.mark.parametrize(
    ("ids", "type_ids", "status", "phrase"),
    [
        ([101, VOCABULARY, 102], None, 400, "outside 0..30521"),
        ([101, -1, 102], None, 400, "outside 0..30521"),
        ([101, 2**40, 102], None, 400, "outside 0..30521"),
        ([], None, 400, "0 tokens"),
        ([101] + [1000] * 300 + [102], None, 400, "302 tokens"),
        ([101, 1000, 102], [0, 7, 0], 400, "only 0 and 1"),
    ],
)
def test_regression_raw_token_tensors_out_of_the_models_domain_are_4xx(
    local_service: LocalService, ids: list[int], type_ids: list[int] | None, status: int, phrase: str
) -> None:
    """Found by this fuzzer: onnxruntime failed on these (Gather out of bounds, no position, empty) with a 500."""
    with httpx.Client(base_url=local_service.url, headers=local_service.headers(), timeout=30) as client:
        response = _infer(client, "all-minilm-l6-v2", _tokens(ids, type_ids))
        assert response.status_code == status, response.text
        message = response.json()["error"]
        assert phrase in message
        assert "onnxruntime_src" not in message
        assert "Gather" not in message  # node names are internals
        assert _infer(client, "all-minilm-l6-v2", _tokens([101, 1000, 102])).status_code == 200


def test_binary_token_ids_are_checked_too(local_service: LocalService) -> None:
    ids = np.array([[101, VOCABULARY + 5, 102]], dtype="<i8")
    tensors = [
        {"name": "input_ids", "datatype": "INT64", "shape": [1, 3], "parameters": {"binary_data_size": 24}},
        {"name": "attention_mask", "datatype": "INT64", "shape": [1, 3], "data": [1, 1, 1]},
        {"name": "token_type_ids", "datatype": "INT64", "shape": [1, 3], "data": [0, 0, 0]},
    ]
    header = json.dumps({"inputs": tensors}).encode()
    response = httpx.post(
        f"{local_service.url}/v2/models/all-minilm-l6-v2/infer",
        content=header + ids.tobytes(),
        headers=local_service.headers(**{"inference-header-content-length": str(len(header))}),
    )
    assert response.status_code == 400
    assert "outside 0..30521" in response.json()["error"]
