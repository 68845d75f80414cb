"""What each file in events/ must get back: the status, and for errors a phrase the message must contain."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np

from onnx_lambda import protocol
from onnx_lambda.manifest import read_manifest

EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"

EXPECTED: dict[str, tuple[int, str | None]] = {
    "health-live": (200, None),
    "health-ready": (200, None),
    "server-metadata": (200, None),
    "repository-index": (200, None),
    "model-metadata": (200, None),
    "model-version-metadata": (200, None),
    "model-ready": (200, None),
    "model-version-ready": (200, None),
    "infer-tabular": (200, None),
    "infer-tabular-version": (200, None),
    "infer-tabular-binary": (200, None),
    "infer-minilm": (200, None),
    "embeddings": (200, None),
    "embeddings-batch": (200, None),
    "embeddings-base64": (200, None),
    "models-list": (200, None),
    "bad-json": (400, "not valid JSON"),
    "bad-content-type": (415, "content-type"),
    "bad-wrong-datatype": (400, "FP32"),
    "bad-shape": (400, "features"),
    "bad-unknown-input": (400, "pixels"),
    "bad-unknown-model": (404, "no-such-model"),
    "bad-empty-input": (400, "empty"),
    "bad-embeddings-model": (400, "takes tensors"),
    "bad-no-claims": (401, None),
    "bad-no-scope": (403, "inference/invoke"),
}


def load_event(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS_DIR / f"{name}.json").read_text()))


def response_body(response: dict[str, Any]) -> bytes:
    body = response.get("body") or ""
    return base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()


def check_response(name: str, response: dict[str, Any], models_dir: Path) -> None:
    """Assert one Lambda proxy response against EXPECTED and, for golden events, the manifest's answer."""
    status, phrase = EXPECTED[name]
    assert response["statusCode"] == status, (name, response)
    body = response_body(response)
    headers = {k.lower(): v for k, v in response.get("headers", {}).items()}
    if status >= 400:
        error = json.loads(body)["error"]
        if isinstance(error, dict):  # OpenAI's error object on /v1/
            assert error["type"]
            error = error["message"]
        assert isinstance(error, str)
        assert "Traceback" not in error
        if phrase:
            assert phrase in error, (name, error)
        if status == 401:
            assert headers.get("www-authenticate", "").startswith("Bearer")
        return
    if name.startswith("infer-"):
        model = "all-minilm-l6-v2" if "minilm" in name else "breast-cancer-classifier"
        golden = read_manifest(models_dir / model).golden
        length = headers.get("inference-header-content-length")
        decoded = protocol.decode_infer_response(body, int(length) if length else None)
        assert decoded.model_name == model
        for expected in golden.infer_response["outputs"]:
            got = decoded.outputs[expected["name"]]
            want = np.asarray(expected["data"]).reshape(expected["shape"])
            assert np.allclose(got, want, atol=golden.atol), (name, expected["name"])
    if name == "repository-index":
        index = json.loads(body)
        assert index, "the index lists no model"
        assert all(set(entry) == {"name", "version", "state"} and entry["state"] == "READY" for entry in index), index
        assert "breast-cancer-classifier" in {entry["name"] for entry in index}
    if name.startswith("embeddings"):
        document = json.loads(body)
        assert document["object"] == "list"
        assert document["usage"]["prompt_tokens"] > 0
        for item in document["data"]:
            vector = item["embedding"]
            array = (
                np.frombuffer(base64.b64decode(vector), dtype="<f4") if isinstance(vector, str) else np.asarray(vector)
            )
            assert array.shape == (384,)
            assert abs(float(np.linalg.norm(array)) - 1.0) < 1e-3
