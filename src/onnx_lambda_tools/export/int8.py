"""MiniLM to int8: SmoothQuant, then static (calibrated) or dynamic quantization of the weight MatMuls.

The shipped recipe is static. Dynamic quantization measures each MatMul input's range on the batch at hand,
so a text's vector moved with its batch-mates (cosine down to 0.977 between a text alone and in a batch of
32 on the parity corpus). Static quantization fixes every activation's scale at export time from
calibration text, so each token row is quantized the same way whatever else is in the batch: alone or in a
batch, the vectors agree to about 1e-7, as fp32 does. ``int8_study`` measures every recipe below
(parity, batch invariance, speed); docs/performance.md has its table.

Besides the embedding tables (weights only), only the 36 MatMuls with a constant weight (Q, K, V, attention
output, the two FFN layers) are quantized: the attention's activation-by-activation MatMuls, Softmax,
LayerNorm, GELU and the pooling stay fp32, as with dynamic quantization.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
from onnx import helper

from onnx_lambda_tools.export import smoothing

Feeds = Mapping[str, npt.NDArray[np.int64]]

#: onnxruntime's histogram default: drop the 0.001 % most extreme values (half at each end) of each
#: activation. On the parity corpus it beat MinMax (min cosine to fp32 0.9771 against 0.9697) and Entropy
#: (0.9743); 99.99 % and 99.9999 % did worse (0.948 and 0.969, in a prototype).
PERCENTILE = 99.999


@dataclass(frozen=True)
class Recipe:
    """One way to make the int8 model; the fields are the choices ``int8_study`` compares."""

    name: str
    activations: Literal["static", "dynamic"]
    calibration: Literal["MinMax", "Entropy", "Percentile"] = "Percentile"
    #: QOperator means QLinearMatMul, which also quantizes each MatMul's output.
    format: Literal["QDQ", "QOperator"] = "QDQ"
    #: False keeps MatMul outputs in fp32 (``OpTypesToExcludeOutputQuantization``), as dynamic does.
    quantize_outputs: bool = False
    #: Rewrite each quantized MatMul and its bias Add as one ``MatMulIntegerToFloat`` (see ``fold_qdq_matmuls``).
    fold: bool = True
    #: QUInt8 (u8s8) or QInt8 (s8s8) activations.
    activation_type: Literal["QUInt8", "QInt8"] = "QUInt8"
    #: Substrings of the names of weight MatMuls to leave in fp32.
    fp32_matmuls: tuple[str, ...] = ()


SHIPPED = Recipe("static, Percentile, QDQ, bias folded", "static")
DYNAMIC = Recipe("dynamic", "dynamic")


def weight_matmuls(model: onnx.ModelProto) -> list[str]:
    """Names of the MatMul nodes whose second input is a constant 2-D weight."""
    weights = {init.name for init in model.graph.initializer if len(init.dims) == 2}
    return [node.name for node in model.graph.node if node.op_type == "MatMul" and node.input[1] in weights]


def quantize(
    fp32_model: Path, int8_model: Path, calibration: Sequence[Feeds], recipe: Recipe = SHIPPED
) -> dict[str, Any]:
    """Smooth (see ``smoothing``), then quantize ``fp32_model`` to ``int8_model`` by ``recipe``.

    ``calibration`` is the tokenized calibration text, in batches padded as the service pads (the smoothing
    scales and, for static activations, the activation ranges come from it). Returns what to record in the
    manifest about how the model was made.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(fp32_model))
    groups = smoothing.layernorm_matmul_groups(model)
    smoothed = smoothing.smooth(model, smoothing.activation_absmax(model, groups, calibration))
    excluded = [name for name in weight_matmuls(smoothed) if any(part in name for part in recipe.fp32_matmuls)]
    included = [name for name in weight_matmuls(smoothed) if name not in excluded]
    # The quantizers log advice to run onnxruntime's pre-processing (shape inference and a graph
    # optimization pass) and print calibration progress. Neither is needed: the session optimizes the graph
    # at load, and the parity test holds the result to the fp32 model. The static path also warns that the
    # model is already quantized: its embedding tables are, on purpose (below).
    quiet = _DropMessage(
        "Please consider to run pre-processing before quantization",
        "Please consider pre-processing",
        "Please check if the model is already quantized",
    )
    logging.getLogger().addFilter(quiet)
    try:
        if recipe.activations == "dynamic":
            quantize_dynamic(
                smoothed, int8_model, per_channel=True, weight_type=QuantType.QInt8, nodes_to_exclude=excluded
            )
        else:
            with tempfile.TemporaryDirectory() as scratch:
                # The embedding tables (Gather) first, as quantize_dynamic does them: int8 rows, dequantized
                # after the lookup, weights only. A quarter of 47 MB of word embeddings, and no activation
                # is involved, so nothing depends on the batch.
                tables = Path(scratch) / "tables.onnx"
                quantize_dynamic(
                    smoothed, tables, per_channel=True, weight_type=QuantType.QInt8, op_types_to_quantize=["Gather"]
                )
                with contextlib.redirect_stdout(io.StringIO()):
                    _quantize_static(onnx.load(str(tables)), int8_model, calibration, recipe, included)
    finally:
        logging.getLogger().removeFilter(quiet)
    if recipe.activations == "static" and recipe.fold:
        onnx.save(fold_qdq_matmuls(onnx.load(str(int8_model))), str(int8_model))
    return provenance(recipe, smoothed_activations=len(groups), calibration_batches=calibration)


def _quantize_static(
    smoothed: onnx.ModelProto, out: Path, calibration: Sequence[Feeds], recipe: Recipe, matmuls: list[str]
) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    extra: dict[str, Any] = {
        # The histogram calibrators stack the outputs of a whole pass with np.asarray, which fails on
        # batches of different sequence lengths; one batch per pass sidesteps that (and changes nothing
        # for MinMax). The name says MinMax, but quantize_static applies it to every method.
        "CalibStridedMinMax": 1,
    }
    if recipe.calibration == "Percentile":
        extra["CalibPercentile"] = PERCENTILE
    if not recipe.quantize_outputs:
        extra["OpTypesToExcludeOutputQuantization"] = ["MatMul"]
    quantize_static(
        smoothed,
        out,
        _Batches(calibration),
        quant_format=QuantFormat[recipe.format],
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        activation_type=QuantType[recipe.activation_type],
        weight_type=QuantType.QInt8,
        # By name: MatMulConstBOnly alone let the attention's activation-by-activation MatMuls through.
        nodes_to_quantize=matmuls,
        calibrate_method=CalibrationMethod[recipe.calibration],
        extra_options=extra,
    )


def provenance(recipe: Recipe, smoothed_activations: int, calibration_batches: Sequence[Feeds]) -> dict[str, Any]:
    texts = sum(len(feeds["input_ids"]) for feeds in calibration_batches)
    record: dict[str, Any] = {
        "method": f"onnxruntime.quantization.quantize_{recipe.activations}",
        "per_channel": True,
        "weight_type": "QInt8",
        "quantized": "MatMul nodes with a constant weight, and the embedding tables (weights only); the rest is fp32",
    }
    if recipe.activations == "dynamic":
        record["activations"] = "QUInt8, dynamic (scaled per batch), per tensor"
    else:
        record["activations"] = f"{recipe.activation_type}, static (calibrated), per tensor"
        record["calibration"] = {
            "method": recipe.calibration,
            **({"percentile": PERCENTILE} if recipe.calibration == "Percentile" else {}),
            "texts": texts,
        }
        record["format"] = recipe.format
        if recipe.fold:
            record["format"] += ", each MatMul and its bias folded into com.microsoft.MatMulIntegerToFloat"
    if recipe.fp32_matmuls:
        record["fp32_matmuls"] = list(recipe.fp32_matmuls)
    record["smoothing"] = {
        "method": "SmoothQuant on LayerNormalization outputs that feed MatMul, power-of-two scales",
        "alpha": smoothing.ALPHA,
        "activations_smoothed": smoothed_activations,
        "calibration_texts": texts,
    }
    record["onnxruntime"] = ort.__version__
    return record


class _Batches:
    """The calibration batches as onnxruntime's ``CalibrationDataReader`` protocol, with ``set_range`` for
    ``CalibStridedMinMax``."""

    def __init__(self, batches: Sequence[Feeds]) -> None:
        self._batches = list(batches)
        self._next: Iterator[Feeds] = iter(self._batches)

    def __len__(self) -> int:
        return len(self._batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next = iter(self._batches[start_index:end_index])

    def get_next(self) -> dict[str, npt.NDArray[np.int64]] | None:
        feeds = next(self._next, None)
        return None if feeds is None else dict(feeds)

    def __iter__(self) -> Iterator[dict[str, npt.NDArray[np.int64]]]:
        while (feeds := self.get_next()) is not None:
            yield feeds


def fold_qdq_matmuls(model: onnx.ModelProto) -> onnx.ModelProto:
    """Each ``DequantizeLinear(a), DequantizeLinear(W) -> MatMul [-> Add(bias)]`` as one
    ``com.microsoft.MatMulIntegerToFloat(a_q, W_q, scales, zero points[, bias])``.

    onnxruntime makes the same node from the QDQ pattern at load but leaves the bias Add out, which then
    fuses into a slower BiasGelu; that cost the QDQ model 5-8 % of dynamic's speed. Folded, the graph is
    what onnxruntime makes of the dynamic model, with a fixed QuantizeLinear where dynamic measures each
    batch. The arithmetic is unchanged (the same kernel runs either way).
    """
    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    graph = folded.graph
    constants = {init.name: init for init in graph.initializer}
    producer = {output: node for node in graph.node for output in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    graph_outputs = {output.name for output in graph.output}

    replaced: dict[int, onnx.NodeProto] = {}  # id of the MatMul -> its MatMulIntegerToFloat
    dropped: set[int] = set()
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        activation, weight = (producer.get(name) for name in node.input)
        if not (
            activation is not None
            and weight is not None
            and activation.op_type == weight.op_type == "DequantizeLinear"
            and weight.input[0] in constants
            and len(activation.input) == len(weight.input) == 3
        ):
            continue
        inputs = [activation.input[0], weight.input[0], activation.input[1], weight.input[1]]
        inputs += [activation.input[2], weight.input[2]]
        output = node.output[0]
        columns = constants[weight.input[0]].dims[-1]
        bias = _bias_add(node, columns, consumers, constants, graph_outputs)
        if bias is not None:
            add, bias_name = bias
            inputs.append(bias_name)
            output = add.output[0]
            dropped.add(id(add))
        replaced[id(node)] = helper.make_node(
            "MatMulIntegerToFloat", inputs, [output], name=f"{node.name}_int8", domain="com.microsoft"
        )
    for node in graph.node:  # a DequantizeLinear goes once nothing reads it
        if node.op_type == "DequantizeLinear" and node.output[0] not in graph_outputs:
            readers = consumers[node.output[0]]
            if readers and all(id(reader) in replaced or id(reader) in dropped for reader in readers):
                dropped.add(id(node))
    nodes = [replaced.get(id(node), node) for node in graph.node if id(node) not in dropped]
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    if not any(opset.domain == "com.microsoft" for opset in folded.opset_import):
        folded.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.checker.check_model(folded)
    return folded


def _bias_add(
    matmul: onnx.NodeProto,
    columns: int,
    consumers: Mapping[str, list[onnx.NodeProto]],
    constants: Mapping[str, onnx.TensorProto],
    graph_outputs: set[str],
) -> tuple[onnx.NodeProto, str] | None:
    """The Add of a constant bias of ``columns`` values that is the MatMul's only reader, and the bias's name."""
    readers = consumers.get(matmul.output[0], [])
    if len(readers) != 1 or readers[0].op_type != "Add" or matmul.output[0] in graph_outputs:
        return None
    add = readers[0]
    (other,) = [name for name in add.input if name != matmul.output[0]] or [""]
    if other not in constants or list(constants[other].dims) != [columns]:
        return None
    return add, other


class _DropMessage(logging.Filter):
    def __init__(self, *prefixes: str) -> None:
        super().__init__()
        self._prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self._prefixes)
