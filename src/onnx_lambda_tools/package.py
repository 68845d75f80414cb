"""``onnx-lambda package``: your own ONNX file to a model directory the service will serve.

It copies the model (and tokenizer.json), reads the signature from onnxruntime, computes a golden
request and response by running the model, and seals it all with a manifest. ``publish`` then uploads
it, and the pre-traffic hook replays the golden request against every new Lambda version.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from onnx_lambda.errors import ModelLoadError
from onnx_lambda.manifest import MODEL_FILE, TOKENIZER_FILE, Golden, Manifest, TensorSpec, TokenizerSettings

GOLDEN_TEXTS = ("The quick brown fox jumps over the lazy dog.", "Serverless inference on AWS Lambda")


def sample_inputs(specs: list[TensorSpec]) -> dict[str, Any]:
    """A deterministic example input: one row, dynamic axes of 1, seeded values."""
    import numpy as np

    from onnx_lambda.protocol import DATATYPES

    rng = np.random.default_rng(0)
    inputs: dict[str, Any] = {}
    for spec in specs:
        shape = [dim if dim > 0 else 1 for dim in spec.shape]
        dtype = DATATYPES[spec.datatype]
        if dtype.kind == "O":
            raise ValueError(f"input {spec.name!r} is {spec.datatype}: give an example request with --sample")
        if dtype.kind == "f":
            inputs[spec.name] = rng.standard_normal(shape).astype(dtype)
        else:
            inputs[spec.name] = np.zeros(shape, dtype=dtype)
    return inputs


class PackageError(ValueError):
    """A model or example that can't be packaged, said so that the user knows what to change."""


def _onnxruntime_errors() -> tuple[type[Exception], ...]:
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    return (state.Fail, state.InvalidArgument, state.RuntimeException, state.InvalidGraph, state.InvalidProtobuf)


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:500]


def package(
    model: Path,
    out: Path,
    *,
    name: str,
    version: str,
    tokenizer: Path | None = None,
    sample: Path | None = None,
    max_length: int = 256,
    atol: float = 1e-4,
) -> Manifest:
    import onnxruntime as ort

    from onnx_lambda.config import available_cpus
    from onnx_lambda.model import session_options, signature_of
    from onnx_lambda_tools.export.bundle import staged_model_dir, write_manifest

    try:
        session = ort.InferenceSession(
            str(model), sess_options=session_options(available_cpus(), "all"), providers=["CPUExecutionProvider"]
        )
    except _onnxruntime_errors() as error:
        raise PackageError(f"onnxruntime cannot load {model}: {_first_line(error)}") from None
    signature = signature_of(session, name)
    inputs, outputs = list(signature.inputs), list(signature.outputs)
    tokenizer_settings = TokenizerSettings(max_length=max_length) if tokenizer else None
    try:
        request, response, embeddings = _golden(
            session, name, version, inputs, outputs, tokenizer_settings, tokenizer, sample
        )
    except _onnxruntime_errors() as error:
        how = (
            f"the example request in {sample}"
            if sample is not None
            else "a generated example (every dynamic dimension 1, every value 0 or 1)"
        )
        raise PackageError(
            f"{model.name} refused {how}: {_first_line(error)}\n"
            "  Give an example it accepts with --sample request.json, an Open Inference Protocol infer request: "
            '{"inputs": [{"name": ..., "datatype": ..., "shape": [...], "data": [...]}]}'
        ) from None
    except (KeyError, TypeError, AttributeError) as error:
        raise PackageError(
            f"--sample {sample} is not an Open Inference Protocol infer request ({type(error).__name__}: "
            f"{_first_line(error)}): it needs an 'inputs' list of {{name, datatype, shape, data}}"
        ) from None
    with staged_model_dir(out) as staging:
        shutil.copyfile(model, staging / MODEL_FILE)
        if tokenizer is not None:
            shutil.copyfile(tokenizer, staging / TOKENIZER_FILE)
        return write_manifest(
            staging,
            {
                "name": name,
                "version": version,
                "inputs": inputs,
                "outputs": outputs,
                "tokenizer": tokenizer_settings,
                "golden": Golden(infer_request=request, infer_response=response, atol=atol, **embeddings),
                "source": {"packaged_from": model.name},
            },
        )


def _golden(
    session: Any,
    name: str,
    version: str,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    tokenizer_settings: TokenizerSettings | None,
    tokenizer: Path | None,
    sample: Path | None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The golden request, the model's answer to it, and for an embedder the embeddings pair."""
    from onnx_lambda.embeddings import Embedder
    from onnx_lambda.model import OnnxModel
    from onnx_lambda_tools.export import golden

    output_names = [spec.name for spec in outputs]
    embeddings: dict[str, Any] = {}
    if sample is not None:
        request = json.loads(sample.read_text())
        request.setdefault("id", f"golden-{name}")
    elif tokenizer is not None and tokenizer_settings is not None:
        placeholder = Manifest.model_construct(name=name, version=version, inputs=inputs, outputs=outputs)
        embedder = Embedder(OnnxModel(placeholder, session), tokenizer.read_bytes(), tokenizer_settings)
        feeds = embedder.tokenize(GOLDEN_TEXTS)
        request = golden.infer_request(f"golden-{name}", feeds, output_names)
        result = embedder.embed(GOLDEN_TEXTS)
        counts = [int(c) for c in feeds["attention_mask"].sum(axis=1)]
        embeddings = {
            "embeddings_request": golden.embeddings_request(name, GOLDEN_TEXTS),
            "embeddings_response": golden.embeddings_response(name, result.vectors, counts),
        }
        assert result.prompt_tokens == sum(counts)
    else:
        request = golden.infer_request(f"golden-{name}", sample_inputs(inputs), output_names)
    response = golden.answer_infer_request(session, name, version, request)
    return request, response, embeddings


def add_package_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="your model.onnx")
    parser.add_argument("--name", required=True, help="the model's name in the API (lower case, digits, . _ -)")
    parser.add_argument("--version", default="1", help="the model's version (default: 1)")
    parser.add_argument("--out", type=Path, required=True, help="the model directory to write")
    parser.add_argument("--tokenizer", type=Path, help="a Hugging Face tokenizer.json: serve /v1/embeddings too")
    parser.add_argument("--sample", type=Path, help="an Open Inference Protocol infer request to use as golden")
    parser.add_argument("--max-length", type=int, default=256, help="tokenizer truncation (default: 256)")
    parser.add_argument("--atol", type=float, default=1e-4, help="golden comparison tolerance (default: 1e-4)")


def package_command(args: argparse.Namespace) -> int:
    try:
        manifest = package(
            args.model,
            args.out,
            name=args.name,
            version=args.version,
            tokenizer=args.tokenizer,
            sample=args.sample,
            max_length=args.max_length,
            atol=args.atol,
        )
    except (ValueError, OSError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {manifest.name} {manifest.version}, model sha256 {manifest.model_sha256}")
    return 0
