"""`onnx-lambda package`: a user's own ONNX file becomes a model directory the service serves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime.datasets
import pytest
from mangum import Mangum

from onnx_lambda.app import create_app
from onnx_lambda.config import ModelSource, Settings
from onnx_lambda.manifest import verify_model_dir
from onnx_lambda.registry import load_registry
from onnx_lambda_tools.cli import main
from onnx_lambda_tools.invoke import LambdaContext
from onnx_lambda_tools.local.events import build_event
from tests import raw_reference


def serve_directories(*directories: Path) -> Mangum:
    settings = Settings(
        models=[
            ModelSource(uri=(d / "model.onnx").as_uri(), sha256=verify_model_dir(d).model_sha256) for d in directories
        ]
    )
    return Mangum(create_app(load_registry(settings), settings), lifespan="off")


def call(handler: Mangum, path: str, body: dict[str, object]) -> dict[str, object]:
    event = build_event(
        method="POST",
        path=path,
        route_key=f"POST {path}",
        headers=[("content-type", "application/json")],
        body=json.dumps(body).encode(),
        claims={"sub": "u", "client_id": "c", "token_use": "access", "scope": "inference/invoke"},
        scopes=["inference/invoke"],
    )
    response = handler(event, LambdaContext())  # type: ignore[arg-type]
    assert response["statusCode"] == 200, response
    return dict(json.loads(response["body"]))


def test_package_a_tabular_model_and_an_embedder(models_dir: Path, tmp_path: Path) -> None:
    tabular, embedder = tmp_path / "my-classifier", tmp_path / "my-embedder"
    source = models_dir / "all-minilm-l6-v2"
    assert (
        main(
            [
                "package",
                str(models_dir / "breast-cancer-classifier" / "model.onnx"),
                "--name",
                "my-classifier",
                "--out",
                str(tabular),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "package",
                str(source / "model.onnx"),
                "--tokenizer",
                str(source / "tokenizer.json"),
                "--name",
                "my-embedder",
                "--out",
                str(embedder),
            ]
        )
        == 0
    )
    handler = serve_directories(tabular, embedder)
    for directory in (tabular, embedder):
        manifest = verify_model_dir(directory)
        # Sealed with the optimized copy that publish uploads and pins (its sha256 verified above).
        assert manifest.optimized is not None
        assert manifest.optimized.file in manifest.files
        answer = call(handler, f"/v2/models/{manifest.name}/infer", manifest.golden.infer_request)
        for want, got in zip(manifest.golden.infer_response["outputs"], answer["outputs"], strict=True):  # type: ignore[call-overload]
            assert want["name"] == got["name"]
            assert np.allclose(want["data"], got["data"], atol=manifest.golden.atol)
    manifest = verify_model_dir(embedder)
    assert manifest.golden.embeddings_request is not None
    assert manifest.golden.embeddings_response is not None
    answer = call(handler, "/v1/embeddings", manifest.golden.embeddings_request)
    assert answer["usage"] == manifest.golden.embeddings_response["usage"]
    check_against_upstream(tabular, embedder, answer)


def check_against_upstream(tabular: Path, embedder: Path, served: dict[str, object]) -> None:
    """The packaged goldens and the served vectors, against onnxruntime and tokenizers on the packaged files.

    `package` computes its goldens with the service's own Embedder, and the service then agrees with them
    by construction; the reference here shares no code with either (tests/raw_reference.py).
    """
    for directory in (tabular, embedder):
        manifest = raw_reference.read_manifest_json(directory)
        golden = manifest["golden"]
        actual = raw_reference.run_infer_request(directory / "model.onnx", golden["infer_request"])
        outputs = golden["infer_response"]["outputs"]
        assert [tensor["name"] for tensor in outputs] == list(actual)
        for tensor, array in zip(outputs, actual.values(), strict=True):
            assert tensor["shape"] == list(array.shape)
            np.testing.assert_allclose(
                np.asarray(tensor["data"], dtype=np.float64).reshape(array.shape), array, rtol=0, atol=golden["atol"]
            )

    manifest = raw_reference.read_manifest_json(embedder)
    golden = manifest["golden"]
    texts = golden["embeddings_request"]["input"]
    assert isinstance(texts, list)
    assert len(texts) >= 2, "a batch, so that padding is exercised"
    assert len({len(text.split()) for text in texts}) > 1, "texts of different lengths, so that one is padded"
    raw = raw_reference.embed(embedder, texts, manifest["tokenizer"]["max_length"])
    assert golden["embeddings_response"]["usage"]["prompt_tokens"] == sum(raw.token_counts)
    for vectors in (
        [item["embedding"] for item in golden["embeddings_response"]["data"]],
        [item["embedding"] for item in served["data"]],  # type: ignore[attr-defined]
    ):
        np.testing.assert_allclose(np.asarray(vectors, dtype=np.float32), raw.vectors, rtol=0, atol=golden["atol"])


def test_a_model_with_zipmap_outputs_is_refused_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    iris = onnxruntime.datasets.get_example("logreg_iris.onnx")
    assert main(["package", iris, "--name", "iris", "--out", str(tmp_path / "iris")]) == 2
    assert "zipmap=False" in capsys.readouterr().err
    assert not (tmp_path / "iris").exists()


def pairs_model(path: Path) -> Path:
    """A model that needs an even number of samples: it reshapes its (n,) input to (-1, 2)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Reshape", ["samples", "pair_shape"], ["pairs"])],
        "pairs",
        [helper.make_tensor_value_info("samples", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("pairs", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor("pair_shape", TensorProto.INT64, [2], [-1, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_a_model_that_refuses_the_generated_example_says_how_to_fix_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = pairs_model(tmp_path / "pairs.onnx")
    assert main(["package", str(model), "--name", "pairs", "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error
    assert "pairs.onnx refused a generated example" in error
    assert "--sample" in error
    assert not (tmp_path / "out").exists()

    sample = tmp_path / "request.json"
    sample.write_text(
        json.dumps({"inputs": [{"name": "samples", "datatype": "FP32", "shape": [4], "data": [1, 2, 3, 4]}]})
    )
    assert (
        main(["package", str(model), "--name", "pairs", "--out", str(tmp_path / "out"), "--sample", str(sample)]) == 0
    )
    golden = verify_model_dir(tmp_path / "out").golden
    # The reference: onnxruntime itself, on the sample.
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    (want,) = session.run(None, {"samples": np.asarray([1, 2, 3, 4], dtype=np.float32)})
    assert np.allclose(np.asarray(golden.infer_response["outputs"][0]["data"]).reshape(2, 2), want)


def test_a_file_that_is_not_a_model_is_refused_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "broken.onnx"
    model.write_bytes(b"not an onnx model")
    assert main(["package", str(model), "--name", "broken", "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "onnxruntime cannot load" in error
    assert "Traceback" not in error


def test_a_sample_that_is_not_an_infer_request_is_refused_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = pairs_model(tmp_path / "pairs.onnx")
    sample = tmp_path / "request.json"
    sample.write_text(json.dumps({"inputs": [{"nom": "samples"}]}))
    assert (
        main(["package", str(model), "--name", "pairs", "--out", str(tmp_path / "out"), "--sample", str(sample)]) == 2
    )
    error = capsys.readouterr().err
    assert "is not an Open Inference Protocol infer request" in error
    assert "Traceback" not in error
