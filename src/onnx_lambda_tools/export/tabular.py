"""The tabular model: a scaled logistic regression on scikit-learn's breast cancer dataset, via skl2onnx.

It's small and real: 30 numeric features in, a class label and both class probabilities out. It shows the
service handles a non-text model with two outputs, and the dataset ships inside scikit-learn, so the build
needs no download. Training is deterministic: a fixed, stratified split, and lbfgs has no randomness.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from onnx_lambda.config import available_cpus
from onnx_lambda.manifest import MODEL_FILE, Golden, Manifest
from onnx_lambda.model import session_options
from onnx_lambda_tools.export import BREAST_CANCER, MODEL_VERSION, golden
from onnx_lambda_tools.export.bundle import staged_model_dir, write_manifest

INPUT = "features"
LABEL = "label"
PROBABILITIES = "probabilities"
N_FEATURES = 30
#: The highest opsets the converter may use; all run on any onnxruntime since 1.14.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
SPLIT_SEED = 0
#: Replays of the golden request must agree this closely (measured: exactly, at every optimization level);
#: as tight as the parity with scikit-learn. A label differs by at least 1, so it must match exactly.
GOLDEN_ATOL = 1e-5


def load_dataset() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], list[str], list[str]]:
    """Features, labels (0 = malignant, 1 = benign), feature names and class names."""
    from sklearn.datasets import load_breast_cancer

    data: Any = load_breast_cancer()
    return (
        np.asarray(data.data, dtype=np.float64),
        np.asarray(data.target, dtype=np.int64),
        [str(name) for name in data.feature_names],
        [str(name) for name in data.target_names],
    )


def train() -> tuple[Any, dict[str, Any]]:
    """The fitted pipeline and what to record about it (split, held-out accuracy)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, labels, _, _ = load_dataset()
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=0.25, stratify=labels, random_state=SPLIT_SEED
    )
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
    pipeline.fit(x_train, y_train)
    evaluation = {
        "split": {"test_size": 0.25, "stratify": True, "random_state": SPLIT_SEED},
        "train_rows": len(y_train),
        "test_rows": len(y_test),
        "test_accuracy": round(float(pipeline.score(x_test, y_test)), 4),
    }
    return pipeline, evaluation


def to_onnx(pipeline: Any) -> bytes:
    """The ONNX bytes, identical on every run (the sha256 in the manifest is only useful if it is stable)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType

    classifier = pipeline.steps[-1][1]
    onnx_model = convert_sklearn(
        pipeline,
        name=BREAST_CANCER,
        initial_types=[(INPUT, FloatTensorType([None, N_FEATURES]))],
        final_types=[(LABEL, Int64TensorType([None])), (PROBABILITIES, FloatTensorType([None, 2]))],
        # A plain probability tensor, not a list of {class: probability} maps: the service speaks tensors.
        options={id(classifier): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )
    # skl2onnx collects the opset imports in a set, so their order follows the string hash seed.
    opsets = sorted(onnx_model.opset_import, key=lambda opset: opset.domain)
    del onnx_model.opset_import[:]
    onnx_model.opset_import.extend(opsets)
    data: bytes = onnx_model.SerializeToString()
    return data


def opsets(model_bytes: bytes) -> dict[str, int]:
    """The opsets the model imports (skl2onnx picks the lowest that ``TARGET_OPSET`` allows)."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    return {opset.domain or "ai.onnx": int(opset.version) for opset in model.opset_import}


def golden_rows(labels: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
    """Two rows of each class, so the golden response shows both labels."""
    return np.sort(np.concatenate([np.flatnonzero(labels == label)[:2] for label in (0, 1)]))


def build(out: Path) -> Manifest:
    import skl2onnx
    import sklearn

    pipeline, evaluation = train()
    features, labels, feature_names, class_names = load_dataset()
    with staged_model_dir(out / BREAST_CANCER) as model_dir:
        model_bytes = to_onnx(pipeline)
        (model_dir / MODEL_FILE).write_bytes(model_bytes)
        session = ort.InferenceSession(
            model_bytes, sess_options=session_options(available_cpus(), "all"), providers=["CPUExecutionProvider"]
        )
        inputs, outputs = golden.tensor_specs(session)
        rows = features[golden_rows(labels)].astype(np.float32)
        request = golden.infer_request(f"golden-{BREAST_CANCER}", {INPUT: rows}, [LABEL, PROBABILITIES])
        return write_manifest(
            model_dir,
            {
                "name": BREAST_CANCER,
                "version": MODEL_VERSION,
                "description": "Breast cancer (Wisconsin diagnostic) classifier: StandardScaler + "
                "LogisticRegression. Input: 30 FP32 features per row, in the order of source.features. "
                "Output: label (0 = malignant, 1 = benign) and the probability of each class.",
                "inputs": inputs,
                "outputs": outputs,
                "golden": Golden(
                    infer_request=request,
                    infer_response=golden.answer_infer_request(session, BREAST_CANCER, MODEL_VERSION, request),
                    atol=GOLDEN_ATOL,
                ),
                "source": {
                    "dataset": "sklearn.datasets.load_breast_cancer",
                    "features": feature_names,
                    "classes": {str(label): name for label, name in enumerate(class_names)},
                    "estimator": "make_pipeline(StandardScaler(), LogisticRegression(C=1.0))",
                    "training": evaluation,
                    "converter": "skl2onnx.convert_sklearn (zipmap=False)",
                    "opset": opsets(model_bytes),
                    "versions": {"scikit-learn": sklearn.__version__, "skl2onnx": skl2onnx.__version__},
                },
            },
        )
