"""An onnxruntime session built from bytes, with its signature and a validated ``run``.

Session options are explicit because the defaults are wrong for Lambda: onnxruntime sizes its pools from
the host's core count, not from the vCPUs the function's memory setting buys.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from onnx_lambda.errors import BadRequest, ModelLoadError, PayloadTooLarge, Unprocessable, echo
from onnx_lambda.manifest import Datatype, Manifest, TensorSpec
from onnx_lambda.protocol import DATATYPES

GraphOptimization = Literal["disable", "basic", "extended", "all"]

_OPTIMIZATION_LEVELS: dict[str, ort.GraphOptimizationLevel] = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}

#: onnxruntime's tensor type strings, in Open Inference Protocol terms.
_ORT_DATATYPES: dict[str, Datatype] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


def session_options(threads: int, optimization: GraphOptimization, *, spinning: bool = False) -> ort.SessionOptions:
    """Explicit options: onnxruntime would size its pool from the host's cores, not the function's CPU share.

    ``threads`` and ``spinning`` come from :meth:`Settings.threads <onnx_lambda.config.Settings.threads>`,
    the rule measured under Lambda's CPU quota: a spinning pool answers sooner when each of its threads has
    a CPU to itself, and burns the quota (so it gets throttled) when not.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # One request at a time per execution environment: there's no parallel branch worth a second pool.
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = _OPTIMIZATION_LEVELS[optimization]
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.log_severity_level = 3
    return options


def _dims(shape: list[int | str | None]) -> list[int]:
    return [dim if isinstance(dim, int) and dim >= 0 else -1 for dim in shape]


@dataclass(frozen=True, slots=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise BadRequest(f"model has no input named {echo(name)}; expected one of {[s.name for s in self.inputs]}")


def signature_of(session: ort.InferenceSession, name: str) -> Signature:
    """Names, datatypes and shapes; refuses types the Open Inference Protocol can't carry (e.g. ZipMap's maps)."""

    def spec(node: Any, kind: str) -> TensorSpec:
        datatype = _ORT_DATATYPES.get(node.type)
        if datatype is None:
            raise ModelLoadError(
                f"model {name!r}: {kind} {node.name!r} has type {node.type}, which has no Open Inference Protocol "
                "datatype (a scikit-learn classifier needs skl2onnx's zipmap=False)"
            )
        return TensorSpec(name=node.name, datatype=datatype, shape=_dims(node.shape))

    return Signature(
        inputs=tuple(spec(node, "input") for node in session.get_inputs()),
        outputs=tuple(spec(node, "output") for node in session.get_outputs()),
    )


class OnnxModel:
    """One loaded model. ``run`` validates names, dtypes and shapes, so onnxruntime only sees good input."""

    def __init__(self, manifest: Manifest, session: ort.InferenceSession) -> None:
        self.manifest = manifest
        self.name = manifest.name
        self.version = manifest.version
        self._session = session
        self.signature = signature_of(session, manifest.name)
        self._output_names = [spec.name for spec in self.signature.outputs]
        self._input_specs = {spec.name: spec for spec in self.signature.inputs}
        #: The most dimensions any input has: requests are refused past it before anything is allocated.
        self.max_rank = max((len(spec.shape) for spec in self.signature.inputs), default=0)

    @classmethod
    def from_bytes(
        cls,
        manifest: Manifest,
        data: bytes,
        *,
        threads: int,
        optimization: GraphOptimization = "all",
        spinning: bool = False,
    ) -> OnnxModel:
        options = session_options(threads, optimization, spinning=spinning)
        try:
            session = ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own, unexported exception types
            raise ModelLoadError(f"model {manifest.name!r} is not a loadable ONNX model: {exc}") from exc
        # onnxruntime keeps the bytes a session was built from, only to rebuild it for other execution
        # providers (which this service never asks for): the model's size in resident memory, for good.
        if getattr(session, "_model_bytes", None) is not None:
            session._model_bytes = None
        return cls(manifest, session)

    def validate(self, inputs: Mapping[str, np.ndarray], max_batch_size: int) -> None:
        """Refuse what onnxruntime would fail on, with a message that names the input and the expectation."""
        batch: int | None = None
        for name, array in inputs.items():
            spec = self._input_specs.get(name)
            if spec is None:
                raise BadRequest(f"unknown input {echo(name)}; model {self.name!r} takes {list(self._input_specs)}")
            expected_dtype = DATATYPES[spec.datatype]
            if array.dtype != expected_dtype and not (spec.datatype == "BYTES" and array.dtype.kind in "OSU"):
                raise BadRequest(f"input {name!r} must be {spec.datatype}")
            if array.ndim != len(spec.shape):
                raise BadRequest(
                    f"input {name!r} has shape {list(array.shape)}; expected {len(spec.shape)} dimensions "
                    f"{spec.shape} (-1 = any)"
                )
            for axis, (got, want) in enumerate(zip(array.shape, spec.shape, strict=True)):
                if want >= 0 and got != want:
                    raise BadRequest(
                        f"input {name!r} has shape {list(array.shape)}; dimension {axis} must be {want} "
                        f"(expected {spec.shape}, -1 = any)"
                    )
            if spec.shape and spec.shape[0] == -1 and array.ndim:
                if batch is None:
                    batch = array.shape[0]
                elif array.shape[0] != batch:
                    raise BadRequest(f"inputs disagree on the batch size: {name!r} has {array.shape[0]}, not {batch}")
        missing = self._input_specs.keys() - inputs.keys()
        if missing:
            raise BadRequest(f"missing input(s) {sorted(missing)}; model {self.name!r} needs {list(self._input_specs)}")
        if batch is not None:
            if batch == 0:
                raise BadRequest("batch is empty: send at least one row")
            if batch > max_batch_size:
                raise PayloadTooLarge(f"batch size {batch} is over the limit of {max_batch_size}")

    def run(self, inputs: Mapping[str, np.ndarray], outputs: Collection[str] | None = None) -> dict[str, np.ndarray]:
        """Run without validation: callers validate once, at the edge."""
        names = self._output_names
        if outputs is not None:
            unknown = [name for name in outputs if name not in self._output_names]
            if unknown:
                shown = ", ".join(echo(name) for name in unknown[:3]) + (", ..." if len(unknown) > 3 else "")
                raise BadRequest(f"unknown output(s) {shown}; model {self.name!r} produces {self._output_names}")
            names = list(outputs)
        try:
            results = self._session.run(names, dict(inputs))
        except InvalidArgument as exc:
            # onnxruntime's verdict on the values (an index out of range, ...): the caller's to fix, not a 500.
            message = _status_message(exc)
            raise Unprocessable(f"model {self.name!r} cannot run on these input values: {message}") from None
        return dict(zip(names, results, strict=True))


def _status_message(error: Exception) -> str:
    """The part of an onnxruntime error meant for people, without node names or source paths."""
    _, found, message = str(error).partition("Status Message: ")
    first_line = message.strip().splitlines()[0] if found and message.strip() else ""
    if not first_line or "/" in first_line.split(" ", 1)[0]:
        return "onnxruntime refused them"
    return first_line[:300]
