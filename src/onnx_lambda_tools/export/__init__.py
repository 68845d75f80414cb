"""Build the served models offline: ``python -m onnx_lambda_tools.export --out models`` (what ``make model`` runs).

Each model directory holds ``model.onnx``, a ``manifest.json`` that pins every file's sha256, the tensor
signature and a golden request/response, and ``tokenizer.json`` where the model reads text. The heavy
export-time dependencies (torch, transformers, scikit-learn, skl2onnx) are imported only by the builders,
never by this package, so importing the names below costs nothing.
"""

from __future__ import annotations

#: The default served model: MiniLM quantized to int8.
MINILM_INT8 = "all-minilm-l6-v2"
#: The fp32 export it is quantized from, served too, for callers who want the reference numbers.
MINILM_FP32 = "all-minilm-l6-v2-fp32"
#: The tabular model: scikit-learn on the breast cancer dataset that ships with scikit-learn.
BREAST_CANCER = "breast-cancer-classifier"

MODEL_NAMES: tuple[str, ...] = (MINILM_INT8, MINILM_FP32, BREAST_CANCER)

#: Every model is published as version "1"; a new export is a new S3 object version, not a new name.
MODEL_VERSION = "1"
