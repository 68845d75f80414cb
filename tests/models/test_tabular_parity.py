"""The breast cancer classifier: onnxruntime must answer what scikit-learn answers, row for row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onnx_lambda.manifest import MODEL_FILE, TensorSpec, read_manifest, sha256_hex
from onnx_lambda_tools.export import BREAST_CANCER, tabular

from .conftest import open_session

pytestmark = pytest.mark.models

PROBABILITY_ATOL = 1e-5


def test_onnx_matches_scikit_learn_on_the_whole_dataset(models_dir: Path) -> None:
    pipeline, _ = tabular.train()
    features, _, _, _ = tabular.load_dataset()
    # The service receives FP32; give scikit-learn the very same values.
    rows = features.astype(np.float32)
    session = open_session(models_dir / BREAST_CANCER / MODEL_FILE)
    labels, probabilities = session.run([tabular.LABEL, tabular.PROBABILITIES], {tabular.INPUT: rows})

    expected_labels = pipeline.predict(rows)
    expected_probabilities = pipeline.predict_proba(rows)
    assert len(labels) == len(rows) == 569
    mismatched = np.flatnonzero(labels != expected_labels)
    assert mismatched.size == 0, f"labels differ on rows {mismatched.tolist()}"
    np.testing.assert_allclose(probabilities, expected_probabilities, rtol=0, atol=PROBABILITY_ATOL)
    assert set(labels.tolist()) == {0, 1}


def test_the_export_is_reproducible(models_dir: Path) -> None:
    """Training and conversion are deterministic: the same bytes as the published model, every time."""
    pipeline, _ = tabular.train()
    assert sha256_hex(tabular.to_onnx(pipeline)) == read_manifest(models_dir / BREAST_CANCER).model_sha256


def test_the_signature_is_the_documented_one(models_dir: Path) -> None:
    manifest = read_manifest(models_dir / BREAST_CANCER)
    assert manifest.inputs == [TensorSpec(name="features", datatype="FP32", shape=[-1, 30])]
    assert manifest.outputs == [
        TensorSpec(name="label", datatype="INT64", shape=[-1]),
        TensorSpec(name="probabilities", datatype="FP32", shape=[-1, 2]),
    ]
    assert manifest.source["features"][0] == "mean radius"
    assert manifest.source["classes"] == {"0": "malignant", "1": "benign"}
    assert manifest.source["training"]["test_accuracy"] > 0.9
