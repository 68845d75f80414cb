"""Golden request/response pairs, in the wire formats the service speaks.

The pre-traffic hook replays ``infer_request`` against a new Lambda version and fails the deployment unless
the answer matches ``infer_response`` within ``atol``. So the response is never written by hand: it is what
onnxruntime answers when the request is decoded the way the service decodes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from onnx_lambda import protocol
from onnx_lambda.errors import ModelLoadError
from onnx_lambda.manifest import Datatype, TensorSpec
from onnx_lambda.model import signature_of

Array = npt.NDArray[Any]


def tensor_specs(session: ort.InferenceSession) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The session's inputs and outputs as the manifest states them: symbolic axes become ``-1``."""
    try:
        signature = signature_of(session, "model")
    except ModelLoadError as exc:
        raise ValueError(str(exc)) from None
    return list(signature.inputs), list(signature.outputs)


def datatype_of(array: Array) -> Datatype:
    datatype = protocol.datatype_of(array.dtype)
    if datatype == "BYTES":
        raise ValueError(f"no JSON golden for numpy dtype {array.dtype}: give a numeric example")
    return datatype  # type: ignore[return-value]  # protocol's names are the manifest's Datatype literals


def json_values(array: Array) -> list[Any]:
    """Row-major flat values; floats in their shortest form that reads back to the same 16/32-bit value."""
    flat = np.ascontiguousarray(array).ravel()
    if flat.dtype in (np.float16, np.float32):
        return [float(str(value)) for value in flat]
    values: list[Any] = flat.tolist()
    return values


def encode_tensor(name: str, array: Array) -> dict[str, Any]:
    return {"name": name, "datatype": datatype_of(array), "shape": list(array.shape), "data": json_values(array)}


def decode_tensor(tensor: Mapping[str, Any]) -> Array:
    datatype: Datatype = tensor["datatype"]
    if datatype not in protocol.DATATYPES or datatype == "BYTES":
        raise ValueError(f"tensor {tensor['name']!r}: datatype {datatype} is not supported here")
    return np.asarray(tensor["data"], dtype=protocol.DATATYPES[datatype]).reshape(tensor["shape"])


def infer_request(request_id: str, inputs: Mapping[str, Array], outputs: Sequence[str]) -> dict[str, Any]:
    return {
        "id": request_id,
        "inputs": [encode_tensor(name, array) for name, array in inputs.items()],
        "outputs": [{"name": name} for name in outputs],
    }


def infer_response(
    model_name: str, model_version: str, request_id: str, outputs: Mapping[str, Array]
) -> dict[str, Any]:
    return {
        "model_name": model_name,
        "model_version": model_version,
        "id": request_id,
        "outputs": [encode_tensor(name, array) for name, array in outputs.items()],
    }


def run_infer_request(session: ort.InferenceSession, request: Mapping[str, Any]) -> dict[str, Array]:
    """Decode an infer request, run it, and return the requested outputs (all of them if none are named)."""
    inputs = {tensor["name"]: decode_tensor(tensor) for tensor in request["inputs"]}
    names = [output["name"] for output in request.get("outputs", [])] or [o.name for o in session.get_outputs()]
    results = session.run(names, inputs)
    return {name: np.asarray(result) for name, result in zip(names, results, strict=True)}


def answer_infer_request(
    session: ort.InferenceSession, model_name: str, model_version: str, request: Mapping[str, Any]
) -> dict[str, Any]:
    outputs = run_infer_request(session, request)
    return infer_response(model_name, model_version, request["id"], outputs)


def embeddings_request(model_name: str, texts: Sequence[str]) -> dict[str, Any]:
    return {"model": model_name, "input": list(texts)}


def embeddings_response(model_name: str, vectors: Array, token_counts: Sequence[int]) -> dict[str, Any]:
    """The OpenAI embeddings response; ``usage`` counts real tokens ([CLS] and [SEP] included, padding not)."""
    tokens = int(sum(token_counts))
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": json_values(vector)}
            for index, vector in enumerate(vectors)
        ],
        "model": model_name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def infer_response_difference(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> float:
    """Max absolute difference between two infer responses' outputs.

    Everything but the numbers must match exactly (model, id, output names, datatypes, shapes); a
    ``ValueError`` names the first thing that doesn't.
    """
    for key in ("model_name", "model_version", "id"):
        if expected.get(key) != actual.get(key):
            raise ValueError(f"{key}: expected {expected.get(key)!r}, got {actual.get(key)!r}")
    expected_outputs = {tensor["name"]: tensor for tensor in expected["outputs"]}
    actual_outputs = {tensor["name"]: tensor for tensor in actual["outputs"]}
    if expected_outputs.keys() != actual_outputs.keys():
        raise ValueError(f"outputs: expected {sorted(expected_outputs)}, got {sorted(actual_outputs)}")
    worst = 0.0
    for name, want in expected_outputs.items():
        got = actual_outputs[name]
        for key in ("datatype", "shape"):
            if want[key] != got[key]:
                raise ValueError(f"output {name!r} {key}: expected {want[key]}, got {got[key]}")
        want_values = np.asarray(want["data"], dtype=np.float64)
        got_values = np.asarray(got["data"], dtype=np.float64)
        if want_values.shape != got_values.shape:
            raise ValueError(f"output {name!r}: expected {want_values.size} values, got {got_values.size}")
        if want_values.size:
            worst = max(worst, float(np.max(np.abs(want_values - got_values))))
    return worst
