"""The Open Inference Protocol v2 codec: every datatype, JSON and binary, against tritonclient's own wire code."""

from __future__ import annotations

import contextlib
import struct
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from onnx_lambda.errors import BadRequest, ServiceError, Unprocessable
from onnx_lambda.protocol import (
    BINARY_HEADER,
    DATATYPES,
    datatype_of,
    decode_infer_request,
    decode_infer_response,
    encode_infer_request,
    encode_infer_response,
    error_body,
    numpy_dtype,
)

# One sample per datatype, with the values at each type's edges.
SAMPLES: dict[str, np.ndarray] = {
    "BOOL": np.array([[True, False, True]]),
    "UINT8": np.array([0, 7, 255], dtype=np.uint8),
    "UINT16": np.array([0, 65535], dtype=np.uint16),
    "UINT32": np.array([[0], [2**32 - 1]], dtype=np.uint32),
    "UINT64": np.array([2**64 - 1, 0, 1], dtype=np.uint64),
    "INT8": np.array([-128, 0, 127], dtype=np.int8),
    "INT16": np.array([-(2**15), 2**15 - 1], dtype=np.int16),
    "INT32": np.array([-(2**31), 2**31 - 1], dtype=np.int32),
    "INT64": np.array([[-(2**63), 2**63 - 1], [0, -1]], dtype=np.int64),
    "FP16": np.array([1.5, -65504.0, 6e-8, 0.1], dtype=np.float16),
    "FP32": np.array([[0.1, -3.4028235e38, 1e-45, 3.0]], dtype=np.float32),
    "FP64": np.array([0.1, -1.7976931348623157e308, 5e-324], dtype=np.float64),
    "BYTES": np.array([["héllo", ""], ["trailing nul\x00", "🙂 emoji"]], dtype=object),
}


def assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape
    if expected.dtype.kind == "f":
        np.testing.assert_array_equal(actual, expected)  # NaN == NaN here
    else:
        assert actual.tolist() == expected.tolist()


def as_text(array: np.ndarray) -> np.ndarray:
    """tritonclient returns BYTES as bytes (binary) or str (JSON); ours are str."""
    flat = [v.decode() if isinstance(v, bytes) else v for v in array.reshape(-1).tolist()]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(array.shape)


def json_request(*tensors: dict[str, Any], **extra: Any) -> bytes:
    return orjson.dumps({"inputs": list(tensors), **extra})


def tensor(
    name: str = "x", datatype: str = "FP32", shape: Any = (2,), data: Any = (1.0, 2.0), **extra: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": name,
        "datatype": datatype,
        "shape": list(shape) if isinstance(shape, tuple) else shape,
    }
    if data is not None:
        out["data"] = list(data) if isinstance(data, tuple) else data
    out.update(extra)
    return out


def bad(body: bytes, header_length: int | None = None) -> str:
    with pytest.raises(BadRequest) as caught:
        decode_infer_request(body, header_length)
    return caught.value.message


# --- datatypes --------------------------------------------------------------------------------------


def test_datatype_tables_cover_the_protocol() -> None:
    assert set(DATATYPES) == {
        "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
        "FP16", "FP32", "FP64", "BYTES",
    }  # fmt: skip
    for name, dtype in DATATYPES.items():
        assert numpy_dtype(name) == dtype
        assert datatype_of(dtype) == name
    assert datatype_of(np.dtype("U3")) == datatype_of(np.dtype("S3")) == "BYTES"
    assert datatype_of(np.dtype(">f4")) == "FP32"


def test_unknown_datatypes_are_refused() -> None:
    with pytest.raises(BadRequest, match=r"inputs\[0\].datatype: 'FLOAT' is not a datatype; expected one of BOOL"):
        numpy_dtype("FLOAT", field="inputs[0].datatype")
    with pytest.raises(ValueError, match="complex128"):
        datatype_of(np.dtype(np.complex128))


@pytest.mark.parametrize("datatype", list(SAMPLES))
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_every_datatype_round_trips_through_request_and_response(datatype: str, binary: bool) -> None:
    sample = SAMPLES[datatype]
    body, headers = encode_infer_request([("x", sample)], binary_inputs=binary, request_id="req-1")
    length = int(headers[BINARY_HEADER]) if binary else None
    assert headers["Content-Type"] == ("application/octet-stream" if binary else "application/json")
    request = decode_infer_request(body, length)
    assert request.id == "req-1"
    (decoded,) = request.inputs
    assert (decoded.name, decoded.datatype, decoded.shape) == ("x", datatype, sample.shape)
    assert_same(decoded.array, sample)

    out, out_headers = encode_infer_response(
        model_name="m", model_version="3", request_id="req-1", outputs=[("y", decoded.array)],
        binary_outputs=["y"] if binary else (),
    )  # fmt: skip
    response = decode_infer_response(out, int(out_headers[BINARY_HEADER]) if binary else None)
    assert (response.model_name, response.model_version, response.id) == ("m", "3", "req-1")
    assert_same(response.outputs["y"], sample)


def test_binary_tensors_are_aligned_and_zero_copy_when_possible() -> None:
    values = np.arange(5, dtype=np.float64)
    for pad in range(8):  # shift the tensor through every offset modulo its item size
        request = {"id": "x" * pad, "inputs": [tensor("x", "FP64", (5,), None, parameters={"binary_data_size": 40})]}
        header = orjson.dumps(request)
        (decoded,) = decode_infer_request(header + values.tobytes(), len(header)).inputs
        assert decoded.array.flags.aligned
        assert_same(decoded.array, values)
    body = b"\x01\x00\x01"
    header = orjson.dumps({"inputs": [tensor("b", "UINT8", (3,), None, parameters={"binary_data_size": 3})]})
    (decoded,) = decode_infer_request(header + body, len(header)).inputs
    assert not decoded.array.flags.writeable  # a view of the body, not a copy


def test_nested_and_flat_data_are_both_row_major() -> None:
    nested = decode_infer_request(json_request(tensor("x", "INT32", (2, 2), [[1, 2], [3, 4]])), None)
    flat = decode_infer_request(json_request(tensor("x", "INT32", (2, 2), [1, 2, 3, 4])), None)
    assert nested.inputs[0].array.tolist() == flat.inputs[0].array.tolist() == [[1, 2], [3, 4]]


def test_json_numbers_convert_exactly() -> None:
    integral_floats = decode_infer_request(json_request(tensor("x", "INT64", (2,), [3.0, -2.0])), None)
    assert integral_floats.inputs[0].array.tolist() == [3, -2]
    ints_for_floats = decode_infer_request(json_request(tensor("x", "FP16", (2,), [1, 2048])), None)
    assert ints_for_floats.inputs[0].array.dtype == np.float16
    huge = b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [1180591620717411303424]}]}'
    assert decode_infer_request(huge, None).inputs[0].array.tolist() == [float(2**70)]
    scalar = decode_infer_request(json_request(tensor("x", "FP32", (), [1.5])), None)
    assert scalar.inputs[0].array.shape == ()
    empty = decode_infer_request(json_request(tensor("x", "BYTES", (0, 3), [])), None)
    assert empty.inputs[0].array.shape == (0, 3)


def test_mixed_binary_and_json_inputs_keep_their_order() -> None:
    a = np.array([[1.0, 2.0]], dtype=np.float32)
    b = np.array(["x", "yz"], dtype=object)
    c = np.array([7, 8, 9], dtype=np.int64)
    d = np.array([True, False])
    arrays: list[np.ndarray] = [a, b, c, d]
    body, headers = encode_infer_request(
        list(zip("abcd", arrays, strict=True)), binary_inputs={"b", "d"}, outputs=["p", "q"], binary_outputs={"q"}
    )
    request = decode_infer_request(body, int(headers[BINARY_HEADER]))
    for decoded, expected in zip(request.inputs, arrays, strict=True):
        assert_same(decoded.array, expected)
    assert [("binary_data_size" in i.parameters) for i in request.inputs] == [False, True, False, True]
    assert request.outputs is not None
    assert [(o.name, o.binary_data) for o in request.outputs] == [("p", False), ("q", True)]
    assert (request.wants_binary("p"), request.wants_binary("q")) == (False, True)


def test_request_level_binary_data_output_is_the_default_for_every_output() -> None:
    body, _ = encode_infer_request([("x", SAMPLES["FP32"])], binary_outputs=True)
    request = decode_infer_request(body, None)
    assert request.binary_data_output is True
    assert request.outputs is None
    assert request.wants_binary("anything")
    explicit = orjson.dumps(
        {
            "inputs": [tensor()],
            "parameters": {"binary_data_output": True, "custom": "kept"},
            "outputs": [{"name": "a", "parameters": {"binary_data": False}}, {"name": "b"}],
        }
    )
    request = decode_infer_request(explicit, None)
    assert (request.wants_binary("a"), request.wants_binary("b")) == (False, True)
    assert request.parameters["custom"] == "kept"


# --- wire compatibility with tritonclient -----------------------------------------------------------


def triton_input(name: str, array: np.ndarray, binary: bool) -> triton.InferInput:
    infer_input = triton.InferInput(name, list(array.shape), datatype_of(array.dtype))
    infer_input.set_data_from_numpy(array, binary_data=binary)
    return infer_input


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_requests_decode(binary: bool) -> None:
    inputs = [triton_input(datatype.lower(), sample, binary) for datatype, sample in SAMPLES.items()]
    body, header_length = triton.InferenceServerClient.generate_request_body(inputs, request_id="abc")
    assert (header_length is not None) == binary
    request = decode_infer_request(body, header_length)
    assert request.id == "abc"
    assert request.binary_data_output is True  # tritonclient asks for binary outputs when none are named
    for decoded, (datatype, sample) in zip(request.inputs, SAMPLES.items(), strict=True):
        assert (decoded.name, decoded.datatype) == (datatype.lower(), datatype)
        assert_same(decoded.array, sample)


def test_tritonclient_mixed_inputs_and_requested_outputs_decode() -> None:
    inputs = [
        triton_input("a", SAMPLES["FP16"], True),
        triton_input("b", SAMPLES["BYTES"], False),
        triton_input("c", SAMPLES["UINT64"], True),
    ]
    outputs = [triton.InferRequestedOutput("y", binary_data=True), triton.InferRequestedOutput("z", binary_data=False)]
    body, header_length = triton.InferenceServerClient.generate_request_body(
        inputs, outputs=outputs, parameters={"tenant": "t1"}
    )
    request = decode_infer_request(body, header_length)
    for decoded, name in zip(request.inputs, ("FP16", "BYTES", "UINT64"), strict=True):
        assert_same(decoded.array, SAMPLES[name])
    assert request.binary_data_output is False
    assert [(o.name, o.binary_data) for o in request.outputs or ()] == [("y", True), ("z", False)]
    assert request.parameters == {"tenant": "t1"}


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_our_responses_parse_in_tritonclient(binary: bool) -> None:
    outputs = [(datatype.lower(), sample) for datatype, sample in SAMPLES.items()]
    body, headers = encode_infer_response(
        model_name="m", model_version="1", request_id="r", outputs=outputs,
        binary_outputs=[name for name, _ in outputs] if binary else (),
    )  # fmt: skip
    header_length = headers.get(BINARY_HEADER)
    assert (header_length is not None) == binary
    result = triton.InferenceServerClient.parse_response_body(
        body, header_length=int(header_length) if header_length else None
    )
    assert result.get_response()["id"] == "r"
    assert result.get_response()["model_name"] == "m"
    for name, sample in outputs:
        got = result.as_numpy(name)
        assert_same(as_text(got) if sample.dtype == object else got, sample)


def test_mixed_binary_and_json_outputs_parse_in_tritonclient() -> None:
    outputs = [("a", SAMPLES["FP32"]), ("b", SAMPLES["BOOL"]), ("c", SAMPLES["BYTES"]), ("d", np.zeros((0, 4), "f4"))]
    body, headers = encode_infer_response(
        model_name="m", model_version=None, request_id=None, outputs=outputs, binary_outputs={"b", "d"}
    )
    result = triton.InferenceServerClient.parse_response_body(body, header_length=int(headers[BINARY_HEADER]))
    for name, sample in outputs:
        got = result.as_numpy(name)
        assert_same(as_text(got) if sample.dtype == object else got, sample)
    document = orjson.loads(body[: int(headers[BINARY_HEADER])])
    assert "id" not in document
    assert "model_version" not in document
    assert [o.get("parameters") for o in document["outputs"]] == [
        None, {"binary_data_size": 3}, None, {"binary_data_size": 0},
    ]  # fmt: skip


def test_response_json_shape() -> None:
    body, headers = encode_infer_response(
        model_name="m", model_version="2", request_id="i", outputs=[("p", np.array([[0.25, 0.75]], "f4"))],
        parameters={"sequence_id": 3},
    )  # fmt: skip
    assert headers == {"Content-Type": "application/json"}
    assert orjson.loads(body) == {
        "model_name": "m", "model_version": "2", "id": "i", "parameters": {"sequence_id": 3},
        "outputs": [{"name": "p", "datatype": "FP32", "shape": [1, 2], "data": [0.25, 0.75]}],
    }  # fmt: skip


def test_encoding_handles_views_byte_order_and_text_arrays() -> None:
    base = np.arange(6, dtype=np.int32).reshape(2, 3)
    outputs = [("t", base.T), ("be", base.astype(">i4")), ("u", np.array(["a", "bc"])), ("s", np.array([b"x", b"yz"]))]
    for binary in (False, True):
        body, headers = encode_infer_response(
            model_name="m", model_version=None, request_id=None, outputs=outputs,
            binary_outputs=[n for n, _ in outputs] if binary else (),
        )  # fmt: skip
        decoded = decode_infer_response(body, int(headers[BINARY_HEADER]) if binary else None).outputs
        assert decoded["t"].tolist() == base.T.tolist()
        assert decoded["be"].tolist() == base.tolist()
        assert decoded["u"].tolist() == ["a", "bc"]
        assert decoded["s"].tolist() == ["x", "yz"]


def test_non_utf8_bytes_output_needs_binary() -> None:
    raw = np.array([b"\xff\xfe"], dtype=object)
    with pytest.raises(Unprocessable, match="output 'y' holds bytes that are not UTF-8 text"):
        encode_infer_response(model_name="m", model_version=None, request_id=None, outputs=[("y", raw)])
    body, headers = encode_infer_response(
        model_name="m", model_version=None, request_id=None, outputs=[("y", raw)], binary_outputs=["y"]
    )
    result = triton.InferenceServerClient.parse_response_body(body, header_length=int(headers[BINARY_HEADER]))
    assert result.as_numpy("y").tolist() == [b"\xff\xfe"]


def test_json_nulls_in_a_response_are_nan() -> None:
    body, _ = encode_infer_response(
        model_name="m", model_version=None, request_id=None, outputs=[("y", np.array([np.nan, 1.0], "f4"))]
    )
    assert b"[null,1.0]" in body
    assert np.isnan(decode_infer_response(body, None).outputs["y"][0])


def test_error_bodies() -> None:
    assert orjson.loads(error_body('bad "thing"')) == {"error": 'bad "thing"'}
    with pytest.raises(BadRequest, match="the server answered with an error: nope"):
        decode_infer_response(error_body("nope"), None)


# --- property: encode/decode round-trips ------------------------------------------------------------

TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=12)  # no lone surrogates
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


@st.composite
def tensors(draw: st.DrawFn, binary: bool) -> np.ndarray:
    datatype = draw(st.sampled_from(list(DATATYPES)))
    shape = draw(SHAPES)
    if datatype == "BYTES":
        flat = draw(st.lists(TEXT, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
        return array.reshape(shape)
    dtype = DATATYPES[datatype]
    # JSON has no NaN or infinity; binary carries every bit pattern.
    elements = hnp.from_dtype(dtype, allow_nan=binary, allow_infinity=binary) if dtype.kind == "f" else None
    return draw(hnp.arrays(dtype, shape, elements=elements))


@st.composite
def tensor_sets(draw: st.DrawFn) -> list[tuple[str, np.ndarray, bool]]:
    count = draw(st.integers(min_value=1, max_value=4))
    out = []
    for index in range(count):
        binary = draw(st.booleans())
        out.append((f"t{index}", draw(tensors(binary)), binary))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tensor_sets(), st.one_of(st.none(), TEXT))
def test_round_trip_property(tensor_set: list[tuple[str, np.ndarray, bool]], request_id: str | None) -> None:
    pairs = [(name, array) for name, array, _ in tensor_set]
    binary = {name for name, _, is_binary in tensor_set if is_binary}
    body, headers = encode_infer_request(pairs, binary_inputs=binary, request_id=request_id)
    length = int(headers[BINARY_HEADER]) if BINARY_HEADER in headers else None
    assert (length is not None) == bool(binary)
    request = decode_infer_request(body, length)
    assert request.id == request_id
    for decoded, (name, array) in zip(request.inputs, pairs, strict=True):
        assert decoded.name == name
        assert_same(decoded.array, array)
    out, out_headers = encode_infer_response(
        model_name="m", model_version="1", request_id=request.id,
        outputs=[(i.name, i.array) for i in request.inputs], binary_outputs=binary,
    )  # fmt: skip
    response = decode_infer_response(out, int(out_headers[BINARY_HEADER]) if binary else None)
    for name, array in pairs:
        assert_same(response.outputs[name], array)
    # And tritonclient reads the same response.
    result = triton.InferenceServerClient.parse_response_body(
        out, header_length=int(out_headers[BINARY_HEADER]) if binary else None
    )
    for name, array in pairs:
        got = result.as_numpy(name)
        assert_same(as_text(got) if array.dtype == object else got, array)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)
FUZZ_TENSORS = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.sampled_from(["x", "y"]), JSON_VALUES),
        "datatype": st.one_of(st.sampled_from(list(DATATYPES)), JSON_VALUES),
        "shape": st.one_of(st.lists(st.integers(-1, 3), max_size=3), JSON_VALUES),
        "data": JSON_VALUES,
        "parameters": st.one_of(
            st.fixed_dictionaries({"binary_data_size": st.one_of(st.integers(-1, 16), JSON_VALUES)}), JSON_VALUES
        ),
    },
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        JSON_VALUES,
        st.fixed_dictionaries(
            {"inputs": st.one_of(st.lists(FUZZ_TENSORS, max_size=3), JSON_VALUES)},
            optional={"id": JSON_VALUES, "parameters": JSON_VALUES, "outputs": JSON_VALUES},
        ),
    ),
    st.binary(max_size=24),
    st.booleans(),
)
def test_arbitrary_bodies_raise_only_bad_request(document: Any, tail: bytes, with_header: bool) -> None:
    header = orjson.dumps(document)
    with contextlib.suppress(BadRequest):
        decode_infer_request(header + tail if with_header else header, len(header) if with_header else None)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.one_of(st.none(), st.integers(-2, 70)))
def test_arbitrary_bytes_raise_only_bad_request(body: bytes, header_length: int | None) -> None:
    with contextlib.suppress(BadRequest):
        decode_infer_request(body, header_length)


# --- bad input: one test per rule -------------------------------------------------------------------


def test_malformed_json() -> None:
    assert bad(b'{"inputs": [').startswith("request body is not valid JSON: ")
    assert bad(b"\xff\xfe").startswith("request body is not valid JSON: ")


@pytest.mark.parametrize("body", [b"[]", b'"x"', b"3", b"null"])
def test_non_object_body(body: bytes) -> None:
    assert "request body must be a JSON object" in bad(body)


def test_missing_or_empty_inputs() -> None:
    assert bad(b"{}") == "request: 'inputs' is required: a list of input tensors"
    assert "'inputs' must be a non-empty list" in bad(b'{"inputs": []}')
    assert "'inputs' must be a non-empty list" in bad(b'{"inputs": {"name": "x"}}')
    assert "inputs[0] must be an object" in bad(b'{"inputs": [3]}')


@pytest.mark.parametrize("field", ["name", "datatype", "shape"])
def test_missing_required_tensor_fields(field: str) -> None:
    spec = tensor()
    del spec[field]
    message = bad(json_request(spec))
    assert f"'{field}' is required" in message
    assert message.startswith("inputs[0]" if field == "name" else "input 'x'")


def test_missing_data() -> None:
    assert "input 'x': 'data' is required" in bad(json_request(tensor(data=None)))


def test_unknown_datatype_names_the_field() -> None:
    message = bad(json_request(tensor(datatype="FLOAT32")))
    assert message.startswith("input 'x' 'datatype': 'FLOAT32' is not a datatype; expected one of BOOL, UINT8")
    assert "BF16" in bad(json_request(tensor(datatype="BF16")))


@pytest.mark.parametrize("shape", [[-1, 2], [1.5], ["2"], [True], 2, {"0": 2}])
def test_bad_shapes(shape: Any) -> None:
    assert "input 'x': 'shape' must be a list of non-negative integers" in bad(json_request(tensor(shape=shape)))


def test_element_count_must_match_shape() -> None:
    message = bad(json_request(tensor(shape=(2, 3), data=[1.0] * 5)))
    assert message == "input 'x': shape [2, 3] needs 6 elements but 'data' has 5"
    assert "needs 1 elements but 'data' has 0" in bad(json_request(tensor("s", "BYTES", (1,), [])))


def test_ragged_data() -> None:
    assert "input 'x': 'data' is ragged" in bad(json_request(tensor(shape=(3,), data=[[1.0, 2.0], [3.0]])))


def test_data_must_be_a_list() -> None:
    assert "input 'x': 'data' must be a list" in bad(json_request(tensor(shape=(1,), data=1.0)))


@pytest.mark.parametrize(
    ("datatype", "value", "expected"),
    [
        ("UINT8", 300, "value 300 is out of range for UINT8 [0, 255]"),
        ("UINT32", -1, "value -1 is out of range for UINT32 [0, 4294967295]"),
        ("UINT64", -1, "value -1 is out of range for UINT64"),
        ("INT8", 128, "value 128 is out of range for INT8 [-128, 127]"),
        ("INT64", 2**63, "value 9223372036854775808 is out of range for INT64"),
        ("FP16", 70000, "a value is out of range for FP16"),
        ("FP32", 1e39, "a value is out of range for FP32"),
    ],
)
def test_numbers_out_of_range(datatype: str, value: Any, expected: str) -> None:
    assert expected in bad(json_request(tensor(datatype=datatype, shape=(2,), data=[0, value])))


def test_integers_past_64_bits_are_out_of_range() -> None:
    # orjson reads integers past 64 bits as floats; they must still be refused, not wrapped.
    body = b'{"inputs": [{"name": "x", "datatype": "UINT64", "shape": [2], "data": [0, 18446744073709551616]}]}'
    assert "value 18446744073709551616 is out of range for UINT64" in bad(body)


def test_big_unsigned_mixed_with_negatives_is_out_of_range() -> None:
    assert "value -1 is out of range for UINT64" in bad(json_request(tensor("x", "UINT64", (2,), [2**64 - 1, -1])))


def test_fractions_where_integers_are_due() -> None:
    assert "input 'x': INT32 data must be integers, got a number 1.5" in bad(
        json_request(tensor(datatype="INT32", data=[1, 1.5]))
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (["NaN", 1.0], 'FP32 data must be numbers, got a string "NaN"'),
        ([1.0, "abc"], 'FP32 data must be numbers, got a string "abc"'),
        ([None, 1.0], "FP32 data must be numbers, got null"),
        ([1.0, {"a": 1}], "FP32 data must be numbers, got an object"),
        ([True, False], "FP32 data must be numbers, got a boolean true"),
    ],
)
def test_non_numbers_in_numeric_data(data: list[Any], expected: str) -> None:
    assert f"input 'x': {expected}" in bad(json_request(tensor(data=data)))


def test_nan_literal_is_not_json() -> None:
    assert bad(b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [NaN]}]}').startswith(
        "request body is not valid JSON"
    )


def test_bool_takes_only_true_and_false() -> None:
    assert "input 'x': BOOL data must be true or false, got a number 1" in bad(
        json_request(tensor(datatype="BOOL", data=[1, 0]))
    )
    assert "BOOL data must be true or false" in bad(json_request(tensor(datatype="BOOL", data=["true", "false"])))


def test_bytes_data_are_strings() -> None:
    assert "input 'x': BYTES data must be strings, got a number 3" in bad(
        json_request(tensor(datatype="BYTES", data=["a", 3]))
    )


def test_duplicate_input_names() -> None:
    assert bad(json_request(tensor(), tensor())) == "input 'x' appears more than once in 'inputs'"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"id": 5}, "request 'id' must be a string, got a number"),
        ({"parameters": [1]}, "request 'parameters' must be a JSON object, got a list"),
        ({"parameters": {"binary_data_output": "yes"}}, "parameters.binary_data_output must be true or false"),
        ({"outputs": "y"}, "'outputs' must be a list"),
        ({"outputs": [{}]}, "outputs[0]: 'name' is required"),
        ({"outputs": [{"name": "y"}, {"name": "y"}]}, "output 'y' appears more than once in 'outputs'"),
        (
            {"outputs": [{"name": "y", "parameters": {"binary_data": 1}}]},
            "parameters.binary_data must be true or false",
        ),
        (
            {"outputs": [{"name": "y", "parameters": {"classification": 2}}]},
            "classification extension is not supported",
        ),
        ({"outputs": [{"name": "y", "parameters": {"shared_memory_region": "r"}}]}, "shared memory is not supported"),
    ],
)
def test_bad_request_fields(extra: dict[str, Any], expected: str) -> None:
    assert expected in bad(json_request(tensor(), **extra))


def test_input_parameters_must_be_an_object_and_not_shared_memory() -> None:
    assert "input 'x' 'parameters' must be a JSON object" in bad(json_request(tensor(parameters=[])))
    assert "input 'x': shared memory is not supported" in bad(
        json_request(tensor(data=None, parameters={"shared_memory_region": "r"}))
    )


# --- bad binary input -------------------------------------------------------------------------------


def binary_body(tensors: list[dict[str, Any]], payload: bytes) -> tuple[bytes, int]:
    header = orjson.dumps({"inputs": tensors})
    return header + payload, len(header)


def sized(name: str, datatype: str, shape: tuple[int, ...], size: Any) -> dict[str, Any]:
    return tensor(name, datatype, shape, None, parameters={"binary_data_size": size})


def test_binary_sizes_must_add_up_to_the_body() -> None:
    body, length = binary_body([sized("a", "FP32", (2,), 8)], np.zeros(3, "f4").tobytes())
    assert "the body has 4 bytes of binary data after the tensors' binary_data_size values" in bad(body, length)
    body, length = binary_body([sized("a", "FP32", (2,), 8), sized("b", "FP32", (1,), 4)], np.zeros(2, "f4").tobytes())
    assert "input 'b': parameters.binary_data_size is 4 but only 0 bytes of binary data remain" in bad(body, length)


def test_binary_size_must_match_the_shape() -> None:
    body, length = binary_body([sized("a", "FP32", (3,), 8)], np.zeros(2, "f4").tobytes())
    assert bad(body, length) == "input 'a': parameters.binary_data_size is 8 bytes but shape [3] of FP32 needs 12"


@pytest.mark.parametrize("size", [-1, "8", 1.5, True])
def test_binary_size_must_be_a_byte_count(size: Any) -> None:
    body, length = binary_body([sized("a", "FP32", (2,), size)], np.zeros(2, "f4").tobytes())
    assert "input 'a': parameters.binary_data_size must be a byte count" in bad(body, length)


def test_binary_size_needs_the_header() -> None:
    body, _ = binary_body([sized("a", "FP32", (2,), 8)], b"")
    assert "there is no Inference-Header-Content-Length header" in bad(body, None)


def test_binary_size_and_data_are_exclusive() -> None:
    spec = tensor("a", "FP32", (2,), [1.0, 2.0], parameters={"binary_data_size": 8})
    body, length = binary_body([spec], np.zeros(2, "f4").tobytes())
    assert "input 'a': has both 'data' and parameters.binary_data_size" in bad(body, length)


@pytest.mark.parametrize("length", [0, -3, 10_000])
def test_header_length_must_fit_the_body(length: int) -> None:
    body, _ = binary_body([sized("a", "FP32", (2,), 8)], np.zeros(2, "f4").tobytes())
    assert "Inference-Header-Content-Length is" in bad(body, length)


def test_header_length_cutting_the_json_is_invalid_json() -> None:
    body, length = binary_body([sized("a", "FP32", (2,), 8)], np.zeros(2, "f4").tobytes())
    assert bad(body, length - 1).startswith("request body is not valid JSON")


def test_bytes_binary_framing() -> None:
    def payload(*parts: bytes) -> bytes:
        return b"".join(struct.pack("<I", len(p)) + p for p in parts)

    ok, length = binary_body([sized("s", "BYTES", (2,), len(payload(b"ab", b"")))], payload(b"ab", b""))
    assert decode_infer_request(ok, length).inputs[0].array.tolist() == ["ab", ""]

    truncated = payload(b"abc")[:-1]
    body, length = binary_body([sized("s", "BYTES", (1,), len(truncated))], truncated)
    assert "BYTES element 0 declares 3 bytes but only 2 remain" in bad(body, length)

    short_prefix = b"\x01\x00"
    body, length = binary_body([sized("s", "BYTES", (1,), 2)], short_prefix)
    assert "ends inside an element's 4-byte length prefix" in bad(body, length)

    too_many = payload(b"a", b"b", b"c")
    body, length = binary_body([sized("s", "BYTES", (2,), len(too_many))], too_many)
    assert "shape [2] needs 2 BYTES elements but its binary data holds more" in bad(body, length)

    too_few = payload(b"a")
    body, length = binary_body([sized("s", "BYTES", (2,), len(too_few))], too_few)
    assert "holds 1" in bad(body, length)

    not_utf8 = payload(b"\xff")
    body, length = binary_body([sized("s", "BYTES", (1,), len(not_utf8))], not_utf8)
    assert "input 's': BYTES element 0 is not valid UTF-8 text" in bad(body, length)


def test_bool_binary_bytes_are_zero_or_one() -> None:
    body, length = binary_body([sized("b", "BOOL", (2,), 2)], b"\x01\x02")
    assert "input 'b': BOOL binary data must be bytes 0 or 1" in bad(body, length)


def test_bad_request_is_the_400_service_error() -> None:
    """The fuzz tests above rely on BadRequest being a ServiceError the app maps to 400."""
    assert issubclass(BadRequest, ServiceError)
    assert BadRequest("x").status == 400


# --- edges a mutation run found unpinned (`make mutation`, docs/testing.md) -------------------------


def test_a_scalar_model_takes_rank_zero_and_nothing_nested() -> None:
    """``max_rank=0`` is a model whose inputs are scalars: a scalar decodes, a nested one is refused."""
    scalar = decode_infer_request(json_request(tensor("x", "FP32", (), [1.5])), None, max_rank=0)
    assert scalar.inputs[0].array.tolist() == 1.5
    assert "at most 0 are accepted" in decode_error(json_request(tensor("x", "FP32", (1,), [1.5])), max_rank=0)


def test_data_nests_no_deeper_than_a_rank_one_model_allows() -> None:
    assert "nests lists more than 1 deep" in decode_error(
        json_request(tensor("x", "FP32", (2,), [[1.0, 2.0]])), max_rank=1
    )
    assert decode_infer_request(json_request(tensor("x", "FP32", (2,), [1.0, 2.0])), None, max_rank=1).inputs


@pytest.mark.parametrize("max_rank", [True, -1, 1.5, "3", None])
def test_max_rank_must_be_a_non_negative_integer(max_rank: Any) -> None:
    with pytest.raises(ValueError, match="max_rank must be a non-negative integer"):
        decode_infer_request(json_request(tensor()), None, max_rank=max_rank)


@pytest.mark.parametrize("header_length", ["12", 12.0, True])
def test_a_header_length_that_is_not_an_int_is_a_bad_request(header_length: Any) -> None:
    with pytest.raises(BadRequest, match="Inference-Header-Content-Length must be a byte count"):
        decode_infer_request(json_request(tensor()), header_length)


def test_requested_outputs_keep_their_parameters_and_need_a_name() -> None:
    parameters = {"binary_data": True, "custom": [1, 2]}
    request = decode_infer_request(json_request(tensor(), outputs=[{"name": "y", "parameters": parameters}]), None)
    assert request.outputs is not None
    assert request.outputs[0].parameters == parameters
    assert "outputs[0]: 'name' is required: a non-empty string" in bad(json_request(tensor(), outputs=[{"name": ""}]))
    assert "outputs[0] must be an object with a 'name', got a string" in bad(json_request(tensor(), outputs=["y"]))


def test_nested_non_numbers_are_named_in_the_message() -> None:
    assert "input 'x': FP32 data must be numbers, got a string \"a\"" in bad(
        json_request(tensor("x", "FP32", (2, 2), [[1.0, 2.0], [3.0, "a"]]))
    )


def test_fractions_beside_integers_past_64_bits_keep_their_value_in_fp64() -> None:
    """numpy makes objects of [1.5, 2**64]; the slow path must not turn 1.5 into 1."""
    body = b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [2], "data": [1.5, 18446744073709551616]}]}'
    assert decode_infer_request(body, None).inputs[0].array.tolist() == [1.5, 18446744073709551616.0]


def test_a_request_asks_for_json_outputs_unless_told_otherwise() -> None:
    """The docstring's default: without ``binary_outputs`` every output comes back as JSON, so the request
    carries no ``parameters`` (tritonclient, unlike us, asks for binary by default)."""
    body, headers = encode_infer_request([("x", SAMPLES["FP32"])])
    assert headers == {"Content-Type": "application/json"}
    assert "parameters" not in orjson.loads(body)
    request = decode_infer_request(body, None)
    assert (request.binary_data_output, request.wants_binary("y")) == (False, False)


def test_binary_outputs_true_with_named_outputs_asks_each_for_binary() -> None:
    body, _ = encode_infer_request([("x", SAMPLES["FP32"])], outputs=["y", "z"], binary_outputs=True)
    assert orjson.loads(body)["outputs"] == [
        {"name": "y", "parameters": {"binary_data": True}},
        {"name": "z", "parameters": {"binary_data": True}},
    ]
    with pytest.raises(ValueError, match="pass them as outputs too"):
        encode_infer_request([("x", SAMPLES["FP32"])], binary_outputs=["y"])


@pytest.mark.parametrize("datatype", ["UINT16", "INT32", "INT64", "FP16", "FP32", "FP64"])
def test_byte_order_never_changes_the_wire(datatype: str) -> None:
    native = np.array([[0.1, 2.0], [-3.5, 70.0]]).astype(DATATYPES[datatype])
    swapped = native.astype(native.dtype.newbyteorder(">"))
    for binary in ((), ["y"]):
        ours = encode_infer_response(
            model_name="m", model_version=None, request_id=None, outputs=[("y", native)], binary_outputs=binary
        )
        theirs = encode_infer_response(
            model_name="m", model_version=None, request_id=None, outputs=[("y", swapped)], binary_outputs=binary
        )
        assert ours == theirs


def test_bytes_outputs_that_are_neither_text_nor_bytes_are_written_as_text() -> None:
    values = np.array([5, 2.5, "x"], dtype=object)
    body, _ = encode_infer_response(model_name="m", model_version=None, request_id=None, outputs=[("y", values)])
    assert orjson.loads(body)["outputs"][0]["data"] == ["5", "2.5", "x"]


def test_a_response_keeps_its_parameters_version_and_id() -> None:
    document = {
        "model_name": "m",
        "model_version": "3",
        "id": "r-1",
        "parameters": {"sequence_id": 7},
        "outputs": [{"name": "y", "datatype": "INT32", "shape": [2], "data": [1, 2]}],
    }
    response = decode_infer_response(orjson.dumps(document), None)
    assert (response.model_name, response.model_version, response.id) == ("m", "3", "r-1")
    assert response.parameters == {"sequence_id": 7}
    assert response.outputs["y"].tolist() == [1, 2]


def test_a_response_with_outputs_is_decoded_even_beside_an_error_field() -> None:
    document = {"model_name": "m", "outputs": [], "error": "a field some servers add"}
    assert decode_infer_response(orjson.dumps(document), None).outputs == {}


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"outputs": []}, "response: 'model_name' is required: a string"),
        ({"model_name": "m"}, "response: 'outputs' is required: a list of output tensors"),
        ({"model_name": "m", "outputs": [], "id": 3}, "response 'id' must be a string"),
        ({"model_name": "m", "outputs": [], "model_version": 3}, "response 'model_version' must be a string"),
        ({"model_name": "m", "outputs": [], "parameters": [1]}, "response 'parameters' must be a JSON object"),
        (
            {"model_name": "m", "outputs": [{"name": "y", "datatype": "FP32", "shape": [1], "data": [1.0]}] * 2},
            "output 'y' appears more than once in 'outputs'",
        ),
        ({"model_name": "m", "outputs": [{"name": "y"}, 5]}, "output 'y': 'datatype' is required"),
        ({"model_name": "m", "outputs": [5]}, "outputs[0] must be an object"),
    ],
)
def test_malformed_responses_say_what_is_wrong(document: dict[str, Any], expected: str) -> None:
    with pytest.raises(BadRequest) as caught:
        decode_infer_response(orjson.dumps(document), None)
    assert expected in caught.value.message


def decode_error(body: bytes, **limits: Any) -> str:
    with pytest.raises(BadRequest) as caught:
        decode_infer_request(body, None, **limits)
    return caught.value.message


def test_a_null_beside_fractions_in_a_response_keeps_the_fractions() -> None:
    """Nulls (NaN in a JSON response) take the slow path over Python objects; 1.5 must stay 1.5 there."""
    document = {
        "model_name": "m",
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [3], "data": [1.5, None, -2.25]}],
    }
    values = decode_infer_response(orjson.dumps(document), None).outputs["y"]
    assert values.dtype == np.float32
    assert values[0] == 1.5
    assert np.isnan(values[1])
    assert values[2] == -2.25
