"""Open Inference Protocol v2 tensors on the wire: request bytes to numpy arrays, numpy arrays to response bytes.

Covers the JSON encoding and Triton's binary tensor data extension (a JSON header of
``Inference-Header-Content-Length`` bytes, then each binary tensor's bytes in order). It knows nothing of
models or HTTP frameworks, so the server, the tests, the pre-traffic hook and the bench client share it.

It sits on the hot path, so it leans on orjson and numpy and avoids per-element Python where it can:
``data`` lists go to numpy in one ``np.asarray`` call and are then checked as a whole; binary tensors are
``np.frombuffer`` views of the body. Every malformed request raises :class:`BadRequest` with a message that
names the field and what was expected.

BYTES tensors are object arrays of ``str``: onnxruntime's string tensors and the tokenizers take text, so
binary BYTES elements must be UTF-8.

Every field is bounded before any allocation or arithmetic depends on it, so a hostile request costs time
linear in its size and ends in a :class:`BadRequest`, never in numpy's or Python's own limits (a 500):

* a shape has at most ``max_rank`` dimensions (the model's rank when the server knows it, never over
  :data:`MAX_RANK`, numpy's own limit), checked by length before any dimension is read;
* each dimension, and the product of the non-zero ones, is at most the body's length in bytes: no
  encoding carries an element in less than a byte, so nothing larger can be honest (the product is
  built one dimension at a time and refused as soon as it passes the bound, so it stays a small number);
* ``data`` nests at most ``max_rank`` lists deep, walked with an explicit stack, never by recursion;
* header values are ASCII decimal digits, at most :data:`MAX_HEADER_DIGITS` of them (:func:`parse_byte_count`);
* whatever a message repeats of the request (names, datatypes, values) is cut short (:func:`errors.echo`,
  ``_brief``), so an error body stays small whatever the request.
"""

from __future__ import annotations

import itertools
import json
import math
import struct
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import orjson

from onnx_lambda.errors import BadRequest, Unprocessable, echo

#: Triton's header naming the byte length of the JSON part of a binary-extension body.
BINARY_HEADER: Final = "Inference-Header-Content-Length"
JSON_CONTENT_TYPE: Final = "application/json"
BINARY_CONTENT_TYPE: Final = "application/octet-stream"

#: Open Inference Protocol datatype -> numpy dtype. Binary tensors are little-endian on the wire.
DATATYPES: Final[dict[str, np.dtype[Any]]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}

_DATATYPE_NAMES: Final = ", ".join(DATATYPES)
_DATATYPE_BY_KIND_SIZE: Final[dict[tuple[str, int], str]] = {
    (dtype.kind, dtype.itemsize): name for name, dtype in DATATYPES.items() if name != "BYTES"
}
_INTEGER_RANGES: Final[dict[str, tuple[int, int]]] = {
    name: (int(np.iinfo(dtype).min), int(np.iinfo(dtype).max))
    for name, dtype in DATATYPES.items()
    if dtype.kind in "iu"
}
_UNSUPPORTED_PARAMETERS: Final = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")
_LENGTH_PREFIX: Final = struct.Struct("<I")
#: The most dimensions a tensor may have: numpy's own limit (``NPY_MAXDIMS``).
MAX_RANK: Final = 64
#: The most digits a byte-count header may have: a trillion bytes is far past any body Lambda takes.
MAX_HEADER_DIGITS: Final = 12

Array = npt.NDArray[Any]
Parameters = dict[str, Any]


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The protocol's name for a numpy dtype; text and object arrays are BYTES.

    Raises ``ValueError`` for dtypes the protocol has no name for (complex, datetime...): that is a model's
    fault, not the caller's.
    """
    if dtype.kind in "OSU":
        return "BYTES"
    name = _DATATYPE_BY_KIND_SIZE.get((dtype.kind, dtype.itemsize))
    if name is None:
        raise ValueError(f"numpy dtype {dtype} has no Open Inference Protocol datatype")
    return name


def numpy_dtype(datatype: str, *, field: str = "datatype") -> np.dtype[Any]:
    """The numpy dtype for a protocol datatype; ``field`` names where it came from in the error message."""
    dtype = DATATYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        shown = echo(datatype) if isinstance(datatype, str) else _brief(datatype)
        raise BadRequest(f"{field}: {shown} is not a datatype; expected one of {_DATATYPE_NAMES}")
    return dtype


def parse_byte_count(text: str, name: str = BINARY_HEADER) -> int:
    """A header's byte count: ASCII decimal digits only, at most :data:`MAX_HEADER_DIGITS` of them.

    ``str.isdigit`` alone is not enough: it accepts ``"²"`` and other Unicode digits that ``int`` refuses,
    and ``int`` refuses more than 4,300 digits; both would be a 500.
    """
    if not 0 < len(text) <= MAX_HEADER_DIGITS or not text.isascii() or not text.isdigit():
        # Not echoed unless ASCII: Starlette decodes header bytes as Latin-1, the Lambda event holds UTF-8,
        # and both paths must answer alike.
        shown = echo(text) if text.isascii() else "non-ASCII text"
        raise BadRequest(f"{name} must be a byte count of 1 to {MAX_HEADER_DIGITS} ASCII digits, got {shown}")
    return int(text)


@dataclass(frozen=True, slots=True)
class _Limits:
    """What one body may describe: ``rank`` dimensions at most, ``elements`` per tensor at most."""

    rank: int
    elements: int

    @classmethod
    def of(cls, body: bytes, max_rank: int) -> _Limits:
        if isinstance(max_rank, bool) or not isinstance(max_rank, int) or max_rank < 0:
            raise ValueError(f"max_rank must be a non-negative integer, got {max_rank!r}")
        return cls(rank=min(max_rank, MAX_RANK), elements=len(body))


@dataclass(frozen=True, slots=True)
class InferInput:
    """One decoded input. ``array`` may be a read-only view of the request body (binary tensors)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    array: Array
    parameters: Parameters = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    """An entry of the request's ``outputs``: the caller wants only these, each as JSON or binary."""

    name: str
    #: The output's own ``parameters.binary_data``; None defers to the request's ``binary_data_output``.
    binary_data: bool | None
    parameters: Parameters = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InferRequest:
    """A decoded request; ``parameters`` are passed through as sent (custom keys included)."""

    id: str | None
    parameters: Parameters
    inputs: list[InferInput]
    #: None means "every output of the model".
    outputs: list[RequestedOutput] | None
    #: Triton's request-level ``parameters.binary_data_output``: the default for every output.
    binary_data_output: bool = False

    def wants_binary(self, output_name: str) -> bool:
        """Whether an output goes back as binary data: its own ``binary_data``, else the request default."""
        for requested in self.outputs or ():
            if requested.name == output_name and requested.binary_data is not None:
                return requested.binary_data
        return self.binary_data_output


@dataclass(frozen=True, slots=True)
class InferResponse:
    """A decoded response, for clients: outputs by name, plus what the server said about itself."""

    model_name: str
    model_version: str | None
    id: str | None
    parameters: Parameters
    outputs: dict[str, Array]


# --- decoding ---------------------------------------------------------------------------------------


def decode_infer_request(body: bytes, json_header_length: int | None, *, max_rank: int = MAX_RANK) -> InferRequest:
    """Parse an inference request body.

    ``json_header_length`` is the ``Inference-Header-Content-Length`` header's value: the JSON object is the
    first that many bytes and binary tensors follow. None means the whole body is JSON. ``max_rank`` is the
    most dimensions an input may have (a server passes its model's; it is never more than :data:`MAX_RANK`).
    """
    limits = _Limits.of(body, max_rank)
    document, binary = _split(body, json_header_length, "request")
    request_id = _optional_str(document, "id", "request")
    parameters = _parameters(document.get("parameters"), "request")
    binary_data_output = parameters.get("binary_data_output", False)
    if not isinstance(binary_data_output, bool):
        raise BadRequest(
            f"request parameters.binary_data_output must be true or false, got {_brief(binary_data_output)}"
        )
    raw_inputs = document.get("inputs")
    if raw_inputs is None:
        raise BadRequest("request: 'inputs' is required: a list of input tensors")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise BadRequest("request: 'inputs' must be a non-empty list of input tensors")
    reader = _BinaryReader(binary) if binary is not None else None
    inputs: list[InferInput] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_inputs):
        name, datatype, shape, array, tensor_parameters = _decode_tensor(raw, "input", index, reader, limits)
        if name in seen:
            raise BadRequest(f"input {echo(name)} appears more than once in 'inputs'")
        seen.add(name)
        inputs.append(InferInput(name, datatype, shape, array, tensor_parameters))
    if reader is not None:
        reader.finish()
    return InferRequest(
        id=request_id,
        parameters=parameters,
        inputs=inputs,
        outputs=_requested_outputs(document.get("outputs")),
        binary_data_output=binary_data_output,
    )


def decode_infer_response(body: bytes, json_header_length: int | None) -> InferResponse:
    """Parse an inference response (for clients, tests and the pre-traffic hook).

    An ``{"error": ...}`` body or a malformed one raises :class:`BadRequest` carrying the reason.
    """
    limits = _Limits.of(body, MAX_RANK)
    document, binary = _split(body, json_header_length, "response")
    if "outputs" not in document and isinstance(document.get("error"), str):
        raise BadRequest(f"the server answered with an error: {document['error'][:500]}")
    model_name = document.get("model_name")
    if not isinstance(model_name, str):
        raise BadRequest("response: 'model_name' is required: a string")
    model_version = _optional_str(document, "model_version", "response")
    response_id = _optional_str(document, "id", "response")
    parameters = _parameters(document.get("parameters"), "response")
    raw_outputs = document.get("outputs")
    if not isinstance(raw_outputs, list):
        raise BadRequest("response: 'outputs' is required: a list of output tensors")
    reader = _BinaryReader(binary) if binary is not None else None
    outputs: dict[str, Array] = {}
    for index, raw in enumerate(raw_outputs):
        name, _, _, array, _ = _decode_tensor(raw, "output", index, reader, limits)
        if name in outputs:
            raise BadRequest(f"output {echo(name)} appears more than once in 'outputs'")
        outputs[name] = array
    if reader is not None:
        reader.finish()
    return InferResponse(model_name, model_version, response_id, parameters, outputs)


def _split(body: bytes, json_header_length: int | None, what: str) -> tuple[dict[str, Any], memoryview | None]:
    """The JSON object at the start of the body, and the binary part after it (None without the header)."""
    view = memoryview(body)
    binary: memoryview | None = None
    if json_header_length is not None:
        if isinstance(json_header_length, bool) or not isinstance(json_header_length, int):
            raise BadRequest(f"{BINARY_HEADER} must be a byte count, got {_brief(json_header_length)}")
        if not 0 < json_header_length <= len(view):
            raise BadRequest(
                f"{BINARY_HEADER} is {_brief(json_header_length)} but the body has {len(view)} bytes; "
                "it must be the byte length of the JSON object at the start of the body"
            )
        binary = view[json_header_length:]
        view = view[:json_header_length]
    try:
        document = orjson.loads(view)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"{what} body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BadRequest(f"{what} body must be a JSON object, got {_json_type(document)}")
    return document, binary


def _requested_outputs(raw: Any) -> list[RequestedOutput] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise BadRequest("request: 'outputs' must be a list of {\"name\": ...} objects")
    outputs: list[RequestedOutput] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        label = f"outputs[{index}]"
        if not isinstance(item, dict):
            raise BadRequest(f"{label} must be an object with a 'name', got {_json_type(item)}")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest(f"{label}: 'name' is required: a non-empty string")
        output = f"output {echo(name)}"
        if name in seen:
            raise BadRequest(f"{output} appears more than once in 'outputs'")
        seen.add(name)
        parameters = _parameters(item.get("parameters"), output)
        _reject_unsupported(parameters, output)
        if "classification" in parameters:
            raise BadRequest(f"{output}: the classification extension is not supported")
        binary_data = parameters.get("binary_data")
        if binary_data is not None and not isinstance(binary_data, bool):
            raise BadRequest(f"{output}: parameters.binary_data must be true or false, got {_brief(binary_data)}")
        outputs.append(RequestedOutput(name, binary_data, parameters))
    return outputs


def _decode_tensor(
    raw: Any, kind: Literal["input", "output"], index: int, reader: _BinaryReader | None, limits: _Limits
) -> tuple[str, str, tuple[int, ...], Array, Parameters]:
    if not isinstance(raw, dict):
        raise BadRequest(
            f"{kind}s[{index}] must be an object with 'name', 'datatype', 'shape' and 'data', got {_json_type(raw)}"
        )
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"{kind}s[{index}]: 'name' is required: a non-empty string")
    label = f"{kind} {echo(name)}"
    datatype = raw.get("datatype")
    if datatype is None:
        raise BadRequest(f"{label}: 'datatype' is required: one of {_DATATYPE_NAMES}")
    dtype = DATATYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        dtype = numpy_dtype(datatype, field=f"{label} 'datatype'")  # raises, naming the field
    shape, count = _shape(raw.get("shape"), label, limits)
    parameters = _parameters(raw.get("parameters"), label, "'parameters'")
    if parameters:
        _reject_unsupported(parameters, label)
    size = parameters.get("binary_data_size")
    data = raw.get("data")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise BadRequest(f"{label}: parameters.binary_data_size must be a byte count, got {_brief(size)}")
        if data is not None:
            raise BadRequest(f"{label}: has both 'data' and parameters.binary_data_size; send one")
        if reader is None:
            raise BadRequest(
                f"{label}: parameters.binary_data_size is set but there is no {BINARY_HEADER} header, "
                "so the body holds no binary data"
            )
        chunk = reader.take(size, label)
        array = _array_from_binary(chunk, datatype, dtype, shape, count, label)
    elif data is None:
        raise BadRequest(f"{label}: 'data' is required (or parameters.binary_data_size with binary data)")
    else:
        array = _array_from_json(data, datatype, dtype, shape, count, label, kind == "output", max(1, limits.rank))
    return name, datatype, shape, array, parameters


def _shape(raw: Any, label: str, limits: _Limits) -> tuple[tuple[int, ...], int]:
    """The shape and its element count, refused before numpy or ``math.prod`` could choke on it.

    The rank is checked by length before any dimension is read; the count is built one dimension at a
    time and refused as soon as it passes the body's length, so it never becomes a huge number. A zero
    dimension makes the count 0, but the other dimensions still may not multiply past the bound (numpy
    refuses such shapes, and no honest request sends one).
    """
    if raw is None:
        raise BadRequest(f"{label}: 'shape' is required: a list of non-negative integers")
    if not isinstance(raw, list):
        raise BadRequest(f"{label}: 'shape' must be a list of non-negative integers, got {_brief(raw)}")
    if len(raw) > limits.rank:
        why = "" if limits.rank == MAX_RANK else " (the most any input of this model has)"
        raise BadRequest(f"{label}: 'shape' has {len(raw)} dimensions; at most {limits.rank} are accepted{why}")
    product, empty = 1, False
    for dim in raw:
        if type(dim) is not int or dim < 0:
            raise BadRequest(f"{label}: 'shape' must be a list of non-negative integers, got {_brief(raw)}")
        if dim == 0:
            empty = True
            continue
        product *= dim  # at most the bound times a 64-bit value: a small number
        if product > limits.elements:
            raise BadRequest(
                f"{label}: 'shape' {_brief(raw)} describes more elements than a body of {limits.elements} "
                "bytes can hold (every element takes at least one byte)"
            )
    return tuple(raw), 0 if empty else product


def _parameters(raw: Any, label: str, key: str = "'parameters'") -> Parameters:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadRequest(f"{label} {key} must be a JSON object, got {_json_type(raw)}")
    return raw


def _reject_unsupported(parameters: Parameters, label: str) -> None:
    if any(key in parameters for key in _UNSUPPORTED_PARAMETERS):
        raise BadRequest(f"{label}: shared memory is not supported; send the data in the body")


def _optional_str(document: dict[str, Any], key: str, what: str) -> str | None:
    value = document.get(key)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{what} {key!r} must be a string, got {_json_type(value)}")
    return value


class _BinaryReader:
    """Hands out consecutive slices of the binary part; ``finish`` checks nothing was left over."""

    __slots__ = ("_offset", "_view")

    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._offset = 0

    def take(self, size: int, label: str) -> memoryview:
        end = self._offset + size
        if end > len(self._view):
            raise BadRequest(
                f"{label}: parameters.binary_data_size is {size} but only "
                f"{len(self._view) - self._offset} bytes of binary data remain after the JSON header"
            )
        chunk = self._view[self._offset : end]
        self._offset = end
        return chunk

    def finish(self) -> None:
        extra = len(self._view) - self._offset
        if extra:
            raise BadRequest(
                f"the body has {extra} bytes of binary data after the tensors' binary_data_size values "
                f"(which add up to {self._offset}); {BINARY_HEADER} or a binary_data_size is wrong"
            )


def _array_from_binary(
    chunk: memoryview, datatype: str, dtype: np.dtype[Any], shape: tuple[int, ...], count: int, label: str
) -> Array:
    if datatype == "BYTES":
        return _bytes_elements(chunk, shape, count, label).reshape(shape)
    expected = count * dtype.itemsize
    if len(chunk) != expected:
        raise BadRequest(
            f"{label}: parameters.binary_data_size is {len(chunk)} bytes but shape {list(shape)} of "
            f"{datatype} needs {expected}"
        )
    array = np.frombuffer(chunk, dtype=dtype)
    if not array.flags.aligned:
        array = array.copy()  # the JSON header's length puts tensors at arbitrary offsets
    if datatype == "BOOL" and count and array.view(np.uint8).max() > 1:
        raise BadRequest(f"{label}: BOOL binary data must be bytes 0 or 1")
    return array.reshape(shape)


def _bytes_elements(chunk: memoryview, shape: tuple[int, ...], count: int, label: str) -> Array:
    """Triton's BYTES layout: each element is a 4-byte little-endian length, then that many bytes."""
    elements: list[str] = []
    offset, end = 0, len(chunk)
    while offset < end:
        if offset + 4 > end:
            raise BadRequest(f"{label}: BYTES binary data ends inside an element's 4-byte length prefix")
        (length,) = _LENGTH_PREFIX.unpack_from(chunk, offset)
        offset += 4
        if offset + length > end:
            raise BadRequest(
                f"{label}: BYTES element {len(elements)} declares {length} bytes but only "
                f"{end - offset} remain in its binary_data_size"
            )
        try:
            elements.append(str(chunk[offset : offset + length], "utf-8"))
        except UnicodeDecodeError:
            raise BadRequest(f"{label}: BYTES element {len(elements)} is not valid UTF-8 text") from None
        offset += length
        if len(elements) > count:
            break
    if len(elements) != count:
        held = "more" if len(elements) > count else str(len(elements))
        raise BadRequest(f"{label}: shape {list(shape)} needs {count} BYTES elements but its binary data holds {held}")
    return _object_array(elements)


def _array_from_json(
    data: Any,
    datatype: str,
    dtype: np.dtype[Any],
    shape: tuple[int, ...],
    count: int,
    label: str,
    nulls_are_nan: bool,
    max_depth: int,
) -> Array:
    if not isinstance(data, list):
        raise BadRequest(f"{label}: 'data' must be a list (flat or nested, row-major), got {_json_type(data)}")
    if datatype == "BYTES":
        elements = _flat_strings(data, label, max_depth)
        if len(elements) != count:
            raise _count_mismatch(label, shape, count, len(elements))
        return _object_array(elements).reshape(shape)
    # numpy finds any list nested deeper than the first path (and refuses it as ragged), but only down to
    # its own 64 dimensions: the first path is checked here, so deeper nesting gets a message of its own.
    node: Any = data
    for _ in range(max_depth):
        node = node[0] if node else None
        if not isinstance(node, list):
            break
    else:
        raise _too_deep(label, max_depth)
    try:
        raw = np.asarray(data)
    except ValueError:
        raise BadRequest(f"{label}: 'data' is ragged: nested lists must all have the same length") from None
    if raw.size != count:
        raise _count_mismatch(label, shape, count, raw.size)
    if count == 0:
        return np.empty(shape, dtype=dtype)
    return _convert(raw, data, datatype, dtype, label, nulls_are_nan).reshape(shape)


def _convert(
    raw: Array, data: list[Any], datatype: str, dtype: np.dtype[Any], label: str, nulls_are_nan: bool
) -> Array:
    """numpy's inferred array -> the declared dtype, refusing anything that would change a value.

    The common cases (floats for FP*, integers for INT*/UINT*) take whole-array numpy operations only.
    """
    kind = raw.dtype.kind
    if datatype == "BOOL":
        if kind != "b":
            raise BadRequest(f"{label}: BOOL data must be true or false, got {_first_offending(data, datatype)}")
        return raw
    if kind == "O" or (kind == "f" and dtype.kind in "iu"):
        # Nulls, integers past 64 bits, or floats where integers are due (which may be exact integers
        # that numpy widened to float64, e.g. [2**64 - 1, 0]): check element by element.
        raw = _objects_to_numbers(np.array(data, dtype=object), datatype, dtype, label, nulls_are_nan)
    elif kind not in "iuf":
        raise BadRequest(f"{label}: {datatype} data must be numbers, got {_first_offending(data, datatype)}")
    if dtype.kind == "f":
        if raw.dtype == dtype:
            return raw
        with np.errstate(over="ignore"):
            converted = raw.astype(dtype)
        # JSON has no infinities, so one here is a finite value past the type's range.
        if dtype.itemsize < 8 and np.isinf(converted).any():
            raise BadRequest(f"{label}: a value is out of range for {datatype} (max ±{np.finfo(dtype).max})")
        return converted
    if raw.dtype == dtype:
        return raw
    low, high = _INTEGER_RANGES[datatype]
    # .item() makes Python numbers, whose comparisons with ints are exact at the 64-bit edges.
    smallest, largest = raw.min().item(), raw.max().item()
    if smallest < low or largest > high:
        bad = smallest if smallest < low else largest
        raise BadRequest(f"{label}: value {bad} is out of range for {datatype} [{low}, {high}]")
    return raw.astype(dtype)


def _objects_to_numbers(raw: Array, datatype: str, dtype: np.dtype[Any], label: str, nulls_are_nan: bool) -> Array:
    """The slow path, over Python objects: exact integer checks, and nulls (NaN in a JSON response)."""
    integers = dtype.kind in "iu"
    values: list[Any] = []
    for value in raw.flat:
        if type(value) is int:
            values.append(value)
        elif type(value) is float and (not integers or value.is_integer()):
            values.append(int(value) if integers else value)
        elif value is None and nulls_are_nan and not integers:
            values.append(math.nan)
        else:
            raise BadRequest(
                f"{label}: {datatype} data must be {'integers' if integers else 'numbers'}, got {_describe(value)}"
            )
    if integers:
        low, high = _INTEGER_RANGES[datatype]
        for value in values:
            if not low <= value <= high:
                raise BadRequest(f"{label}: value {value} is out of range for {datatype} [{low}, {high}]")
        return np.array(values, dtype=dtype)
    try:
        return np.array([float(value) for value in values], dtype=np.float64)
    except OverflowError:
        raise BadRequest(f"{label}: a value is out of range for {datatype}") from None


def _flat_strings(data: list[Any], label: str, max_depth: int) -> list[str]:
    """BYTES ``data``, flat or nested, in row-major order: an explicit stack, at most ``max_depth`` deep."""
    elements: list[str] = []
    stack: list[Iterator[Any]] = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, str):
                elements.append(item)
            elif isinstance(item, list):
                if len(stack) >= max_depth:
                    raise _too_deep(label, max_depth)
                stack.append(iter(item))
                break
            else:
                raise BadRequest(f"{label}: BYTES data must be strings, got {_describe(item)}")
        else:
            stack.pop()
    return elements


def _too_deep(label: str, max_depth: int) -> BadRequest:
    return BadRequest(f"{label}: 'data' nests lists more than {max_depth} deep; send it flat, or nested as its shape")


def _object_array(elements: Sequence[Any]) -> Array:
    array = np.empty(len(elements), dtype=object)
    array[:] = elements
    return array


def _count_mismatch(label: str, shape: tuple[int, ...], count: int, actual: int) -> BadRequest:
    return BadRequest(f"{label}: shape {_brief(list(shape))} needs {count} elements but 'data' has {actual}")


# --- encoding ---------------------------------------------------------------------------------------


def encode_infer_response(
    *,
    model_name: str,
    model_version: str | None,
    request_id: str | None,
    outputs: Sequence[tuple[str, Array]],
    binary_outputs: Collection[str] = (),
    parameters: Mapping[str, Any] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The response body and the headers to send with it.

    Outputs named in ``binary_outputs`` go as binary data after the JSON header (and the body becomes
    ``application/octet-stream`` with ``Inference-Header-Content-Length``); the rest as JSON ``data``.
    """
    document: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        document["model_version"] = model_version
    if request_id is not None:
        document["id"] = request_id
    if parameters:
        document["parameters"] = dict(parameters)
    tensors, chunks = _encode_tensors(outputs, binary_outputs, "output")
    document["outputs"] = tensors
    return _body(document, chunks)


def encode_infer_request(
    inputs: Sequence[tuple[str, Array]],
    *,
    binary_inputs: bool | Collection[str] = False,
    outputs: Sequence[str] | None = None,
    binary_outputs: bool | Collection[str] = False,
    request_id: str | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """An inference request body and its headers, as tritonclient would send them.

    ``binary_inputs``/``binary_outputs`` are True/False for all, or the names to send/receive as binary.
    Without ``outputs`` every model output is returned, as binary if ``binary_outputs`` is True.
    """
    document: dict[str, Any] = {}
    if request_id is not None:
        document["id"] = request_id
    request_parameters = dict(parameters or {})
    binary_input_names = _names(binary_inputs, [name for name, _ in inputs])
    tensors, chunks = _encode_tensors(inputs, binary_input_names, "input")
    document["inputs"] = tensors
    if outputs is not None:
        binary_output_names = _names(binary_outputs, outputs)
        document["outputs"] = [
            {"name": name, "parameters": {"binary_data": name in binary_output_names}} for name in outputs
        ]
    elif binary_outputs is True:
        request_parameters["binary_data_output"] = True
    elif binary_outputs:
        raise ValueError("binary_outputs names outputs: pass them as outputs too")
    if request_parameters:
        document["parameters"] = request_parameters
    return _body(document, chunks)


def error_body(message: str) -> bytes:
    """The protocol's error object, ``{"error": "..."}``."""
    return orjson.dumps({"error": message})


def _names(choice: bool | Collection[str], names: Sequence[str]) -> frozenset[str]:
    if choice is True:
        return frozenset(names)
    if choice is False:
        return frozenset()
    return frozenset(choice)


def _encode_tensors(
    tensors: Sequence[tuple[str, Array]], binary: Collection[str], kind: str
) -> tuple[list[dict[str, Any]], list[Any]]:
    encoded: list[dict[str, Any]] = []
    chunks: list[Any] = []
    for name, array in tensors:
        datatype = datatype_of(array.dtype)
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if name in binary:
            raw = _tensor_bytes(array, datatype)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = _json_data(array, datatype, name, kind)
        encoded.append(tensor)
    return encoded, chunks


def _body(document: dict[str, Any], chunks: list[Any]) -> tuple[bytes, dict[str, str]]:
    header = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, {"Content-Type": JSON_CONTENT_TYPE}
    headers = {"Content-Type": BINARY_CONTENT_TYPE, BINARY_HEADER: str(len(header))}
    return b"".join([header, *chunks]), headers


def _json_data(array: Array, datatype: str, name: str, kind: str) -> Any:
    """What goes in ``data``: a flat numpy array for orjson to write, or a list of str for BYTES."""
    if datatype == "BYTES":
        return [_text(value, name, kind) for value in array.reshape(-1).tolist()]
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return np.ascontiguousarray(array).reshape(-1)


def _text(value: Any, name: str, kind: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise Unprocessable(
                f"{kind} {name!r} holds bytes that are not UTF-8 text; request it with binary_data"
            ) from None
    return str(value)


def _tensor_bytes(array: Array, datatype: str) -> bytes | memoryview:
    """The tensor's binary encoding: little-endian, row-major, no padding (a view when already so)."""
    if datatype == "BYTES":
        parts: list[bytes] = []
        for value in array.reshape(-1).tolist():
            element = value if isinstance(value, bytes) else str(value).encode("utf-8")
            parts.append(_LENGTH_PREFIX.pack(len(element)))
            parts.append(element)
        return b"".join(parts)
    little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return little.data.cast("B") if little.size else b""


# --- messages ---------------------------------------------------------------------------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _brief(value: Any, limit: int = 80) -> str:
    """A request value as JSON-like text for a message, at most ``limit`` characters.

    Bounded work whatever the value: strings are cut before they are quoted, lists and objects show
    their first few items three levels deep, and an integer past 128 bits is described, not written out
    (Python refuses to write one of more than 4,300 digits).
    """
    text = _render(value, 0, limit)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _render(value: Any, depth: int, limit: int) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if value.bit_length() <= 128 else f"<an integer of {value.bit_length()} bits>"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value[:limit], ensure_ascii=False) + ("..." if len(value) > limit else "")
    if isinstance(value, list | tuple):
        if depth >= 3:
            return "[...]" if value else "[]"
        items = [_render(item, depth + 1, limit) for item in value[:8]]
        if len(value) > 8:
            items.append(f"... {len(value)} items")
        return "[" + ", ".join(items) + "]"
    if isinstance(value, dict):
        if depth >= 3:
            return "{...}" if value else "{}"
        entries = [
            f"{_render(str(key), depth + 1, limit)}: {_render(item, depth + 1, limit)}"
            for key, item in itertools.islice(value.items(), 4)
        ]
        if len(value) > 4:
            entries.append(f"... {len(value)} keys")
        return "{" + ", ".join(entries) + "}"
    return f"<{type(value).__name__}>"


def _first_offending(data: list[Any], datatype: str) -> str:
    """The first element of the request's data that isn't of the declared kind, described for the message."""
    stack: list[Iterator[Any]] = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            if not (isinstance(value, bool) if datatype == "BOOL" else type(value) in (int, float)):
                return _describe(value)
        else:
            stack.pop()
    return ""


def _describe(value: Any) -> str:
    return f"{_json_type(value)} {_brief(value)}"
