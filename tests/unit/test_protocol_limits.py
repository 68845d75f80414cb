"""Issue 11, findings 1 and 2: hostile tensors are refused by the codec with a short 400, before any
allocation or arithmetic depends on them.

Each case was confirmed against the code before the fix: it ended in a ValueError, TypeError or
RecursionError (a 500 on both paths), or in an error message hundreds of kilobytes long. The same cases
go through the Lambda handler and FastAPI in ``tests/integration/test_hostile_requests.py``.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnx_lambda.errors import BadRequest, echo
from onnx_lambda.protocol import (
    MAX_HEADER_DIGITS,
    MAX_RANK,
    _brief,
    decode_infer_request,
    decode_infer_response,
    numpy_dtype,
    parse_byte_count,
)

#: A message is a sentence or two: what error bodies carry, whatever the request sent.
SHORT = 400
HUGE = 2**64 - 1


def refused(body: bytes, header_length: int | None = None, **limits: Any) -> str:
    with pytest.raises(BadRequest) as caught:
        decode_infer_request(body, header_length, **limits)
    message = caught.value.message
    assert len(message) < SHORT, len(message)
    return message


def request(**fields: Any) -> bytes:
    return orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", **fields}]})


def nested(depth: int, leaf: str = "") -> bytes:
    return b"[" * depth + leaf.encode() + b"]" * depth


def raw_tensor(datatype: str, shape: bytes, data: bytes) -> bytes:
    return b'{"inputs": [{"name": "x", "datatype": "%s", "shape": %s, "data": %s}]}' % (datatype.encode(), shape, data)


# --- rank -------------------------------------------------------------------------------------------


def test_regression_twenty_thousand_huge_dimensions_are_refused_by_their_count() -> None:
    """Was: math.prod over 20,000 values of 2**64 - 1, twice (seconds, quadratic in the rank), then a 500."""
    message = refused(request(shape=[HUGE] * 20_000, data=[]))
    assert message == "input 'x': 'shape' has 20000 dimensions; at most 64 are accepted"


def test_regression_rank_over_numpy_limit() -> None:
    """Was: numpy's 'maximum supported dimension for an ndarray is currently 64' ValueError, a 500."""
    assert "'shape' has 65 dimensions; at most 64" in refused(request(shape=[1] * 65, data=[1.0]))
    assert decode_infer_request(request(shape=[1] * MAX_RANK, data=[1.0]), None).inputs[0].array.ndim == MAX_RANK


def test_rank_is_at_most_the_callers_limit() -> None:
    message = refused(request(shape=[1, 1, 2], data=[1.0, 2.0]), max_rank=2)
    assert message == (
        "input 'x': 'shape' has 3 dimensions; at most 2 are accepted (the most any input of this model has)"
    )
    assert decode_infer_request(request(shape=[1, 2], data=[1.0, 2.0]), None, max_rank=2).inputs[0].shape == (1, 2)
    # Never over numpy's limit, whatever the caller asks for.
    assert "at most 64" in refused(request(shape=[1] * 65, data=[1.0]), max_rank=1000)


# --- dimensions -------------------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", ["FP32", "BYTES"])
def test_regression_zero_count_shape_with_a_dimension_past_the_body(datatype: str) -> None:
    """Was: 'Maximum allowed dimension exceeded' from np.empty / reshape, a 500."""
    body = orjson.dumps({"inputs": [{"name": "x", "datatype": datatype, "shape": [0, 2**63], "data": []}]})
    message = refused(body)
    assert message.startswith("input 'x': 'shape' [0, 9223372036854775808] describes more elements than a body")
    assert f"a body of {len(body)} bytes" in message


def test_regression_binary_zero_count_shape_past_numpys_size() -> None:
    """Was: 'array is too big' from reshape, a 500."""
    header = orjson.dumps(
        {
            "inputs": [
                {"name": "x", "datatype": "FP32", "shape": [0, 2**40, 2**40], "parameters": {"binary_data_size": 0}}
            ]
        }
    )
    assert "'shape' [0, 1099511627776, 1099511627776] describes more elements" in refused(header, len(header))


def test_regression_a_count_mismatch_never_formats_a_huge_product() -> None:
    """Was: the count-mismatch message wrote math.prod(shape) out (over 4,300 digits: a ValueError, a 500)."""
    message = refused(request(shape=[HUGE] * 64, data=[1.0]))
    assert "describes more elements than a body of" in message


def test_every_dimension_is_within_what_the_body_can_hold() -> None:
    body = request(shape=[1, 1000], data=[1.0])
    assert f"describes more elements than a body of {len(body)} bytes" in refused(body)
    # The product is checked as it grows, and only the non-zero dimensions count.
    assert "describes more elements" in refused(request(shape=[0, 40, 40], data=[]))
    assert decode_infer_request(request(shape=[0, 4, 4], data=[]), None).inputs[0].array.shape == (0, 4, 4)
    # A shape exactly as large as its data is fine, however many elements.
    values = [0.5] * 5000
    assert decode_infer_request(request(shape=[50, 100], data=values), None).inputs[0].array.shape == (50, 100)


def test_response_decoding_has_the_same_limits() -> None:
    body = orjson.dumps(
        {"model_name": "m", "outputs": [{"name": "y", "datatype": "FP32", "shape": [HUGE] * 100, "data": []}]}
    )
    with pytest.raises(BadRequest, match="has 100 dimensions; at most 64"):
        decode_infer_response(body, None)


# --- nesting ----------------------------------------------------------------------------------------


def test_regression_shape_nested_300_deep() -> None:
    """Was: orjson's 'Recursion limit reached' TypeError while writing the message, a 500."""
    message = refused(raw_tensor("FP32", nested(300), b"[]"))
    assert message.startswith("input 'x': 'shape' must be a list of non-negative integers, got [[[[...]]]]")


@pytest.mark.parametrize("datatype", ["FP32", "BYTES"])
def test_regression_data_nested_300_deep(datatype: str) -> None:
    message = refused(raw_tensor(datatype, b"[1]", nested(300, '"a"' if datatype == "BYTES" else "1")))
    assert message == "input 'x': 'data' nests lists more than 64 deep; send it flat, or nested as its shape"


def test_regression_bytes_nested_a_thousand_deep() -> None:
    """Was: RecursionError from the recursive flattening of BYTES data, a 500."""
    assert "'data' nests lists more than 64 deep" in refused(raw_tensor("BYTES", b"[1]", nested(1000, '"a"')))
    # Deeper than the JSON parser goes: its own error, still a 400.
    assert "not valid JSON" in refused(raw_tensor("BYTES", b"[1]", nested(1100, '"a"')))


def test_data_nesting_is_bounded_by_the_rank_limit() -> None:
    message = refused(raw_tensor("BYTES", b"[1, 1]", nested(3, '"a"')), max_rank=2)
    assert "nests lists more than 2 deep" in message
    assert decode_infer_request(raw_tensor("BYTES", b"[1, 1]", nested(2, '"a"')), None, max_rank=2).inputs[0].shape
    # Ragged nesting below the first path is still ragged (numpy finds it), not a crash.
    assert "ragged" in refused(raw_tensor("FP32", b"[2]", b"[1, " + nested(200, "2") + b"]"))


def test_bytes_data_flatten_in_row_major_order_at_any_allowed_depth() -> None:
    data = [["a", ["b", "c"]], [[["d"]]], "e"]
    decoded = decode_infer_request(
        orjson.dumps({"inputs": [{"name": "s", "datatype": "BYTES", "shape": [5], "data": data}]}), None
    )
    assert decoded.inputs[0].array.tolist() == ["a", "b", "c", "d", "e"]


# --- headers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["²", "9" * 5000, "1" * (MAX_HEADER_DIGITS + 1), "", "-1", " 12", "12 ", "0x10", "1e3", "١٢"]
)
def test_regression_header_byte_counts_are_short_ascii_digits(text: str) -> None:
    """Was: isdigit() accepted '²' and 5,000 digits, and int() then refused them: a 500."""
    with pytest.raises(BadRequest) as caught:
        parse_byte_count(text)
    message = caught.value.message
    assert message.startswith("Inference-Header-Content-Length must be a byte count of 1 to 12 ASCII digits, got ")
    assert len(message) < SHORT


@pytest.mark.parametrize(
    ("text", "value"), [("0", 0), ("12", 12), ("000042", 42), ("9" * MAX_HEADER_DIGITS, 10**12 - 1)]
)
def test_header_byte_counts(text: str, value: int) -> None:
    assert parse_byte_count(text) == value


# --- echoed values ----------------------------------------------------------------------------------


def test_regression_a_200_kb_input_name_is_echoed_short() -> None:
    """Was: the whole name in the message, twice the request's size in the response."""
    name = "n" * 200_000
    message = refused(orjson.dumps({"inputs": [{"name": name, "datatype": "FP33", "shape": [1], "data": [1]}]}))
    assert message.startswith(
        "input 'nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn'... (200000 characters) 'datatype': 'FP33'"
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"datatype": "F" * 200_000},
        {"datatype": ["F" * 200_000] * 1000},
        {"shape": ["x" * 200_000]},
        {"shape": [[[[[[1]]]]]] * 5000},
        {"data": [1.0], "parameters": {"binary_data_size": "9" * 200_000}},
        {"data": [[1.0, "z" * 200_000]]},
        {"data": [{"k" * 100_000: 1}]},
    ],
)
def test_every_echoed_value_is_short(fields: dict[str, Any]) -> None:
    refused(request(**{"shape": [1], "data": [1.0], **fields}))


def test_echoed_request_and_output_fields_are_short() -> None:
    long = "o" * 200_000
    refused(
        orjson.dumps(
            {
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}],
                "outputs": [{"name": long}, {"name": long}],
            }
        )
    )
    refused(
        orjson.dumps(
            {
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}],
                "parameters": {"binary_data_output": [long] * 100},
            }
        )
    )
    refused(orjson.dumps({"inputs": [{"name": long, "datatype": "FP32", "shape": [1], "data": [1.0]}] * 2}))
    with pytest.raises(BadRequest) as caught:
        numpy_dtype({"nested": [long]})  # type: ignore[arg-type]
    assert len(caught.value.message) < SHORT


def test_echo() -> None:
    assert echo("abc") == "'abc'"
    assert echo("x" * 41) == "'" + "x" * 40 + "'... (41 characters)"
    assert len(echo("\x00" * 1_000_000)) < 200


# --- how a message quotes a request value (_brief) ----------------------------------------------------
# The rules of protocol._brief's docstring: JSON-like text, at most 80 characters, lists and objects shown
# three levels deep with their first 8 items or 4 keys, integers past 128 bits described. Small values
# must read exactly as JSON (json.dumps is the reference); anything else must stay within the bound.

BRIEF_LIMIT = 80


def container_depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((container_depth(item) for item in value), default=0)
    if isinstance(value, dict):
        return 1 + max((container_depth(item) for item in value.values()), default=0)
    return 0


def within_brief_rules(value: Any) -> bool:
    if isinstance(value, list):
        return len(value) <= 8 and all(within_brief_rules(item) for item in value)
    if isinstance(value, dict):
        return len(value) <= 4 and all(within_brief_rules(item) for item in value.values())
    return not isinstance(value, int) or value.bit_length() <= 128


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**130), max_value=2**130)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=9) | st.dictionaries(st.text(max_size=4), children, max_size=5),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_a_small_value_is_quoted_exactly_as_json_and_any_value_within_the_bound(value: Any) -> None:
    text = _brief(value)
    assert len(text) <= BRIEF_LIMIT
    reference = json.dumps(value, ensure_ascii=False)
    if container_depth(value) <= 3 and within_brief_rules(value) and len(reference) <= BRIEF_LIMIT:
        assert text == reference


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "null"),
        (True, "true"),
        (False, "false"),
        ('é"\n', json.dumps('é"\n', ensure_ascii=False)),
        ("x" * 78, '"' + "x" * 78 + '"'),  # exactly the limit: whole
        ("x" * 79, '"' + "x" * 76 + "..."),  # one over: cut to the limit
        (2**128 - 1, str(2**128 - 1)),
        (2**128, "<an integer of 129 bits>"),
        (-(2**4000), "<an integer of 4001 bits>"),
        (list(range(8)), "[0, 1, 2, 3, 4, 5, 6, 7]"),
        (list(range(9)), "[0, 1, 2, 3, 4, 5, 6, 7, ... 9 items]"),
        ({"a": 1, "b": 2, "c": 3, "d": 4}, '{"a": 1, "b": 2, "c": 3, "d": 4}'),
        ({"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}, '{"a": 1, "b": 2, "c": 3, "d": 4, ... 5 keys}'),
        ([[[[1]]]], "[[[[...]]]]"),
        ([[[[]]]], "[[[[]]]]"),
        ({"a": {"b": {"c": {"d": 1}}}}, '{"a": {"b": {"c": {...}}}}'),
        ({"a": {"b": {"c": {}}}}, '{"a": {"b": {"c": {}}}}'),
        ({1: "key made text"}, '{"1": "key made text"}'),
        (b"raw", "<bytes>"),
    ],
)
def test_brief_follows_its_rules(value: Any, expected: str) -> None:
    assert _brief(value) == expected


def test_a_long_string_inside_a_list_is_cut_before_it_is_quoted() -> None:
    text = _brief(["y" * 200_000])
    assert text == '["' + "y" * 75 + "..."
    assert len(text) == BRIEF_LIMIT
