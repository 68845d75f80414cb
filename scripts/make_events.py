"""Regenerate events/: API Gateway HTTP API v2 events for every route, good and bad.

Run after `make model`: the inference events carry each model's golden request. Deterministic (fixed
request ids and times), so `git diff events/` shows only real changes.

    .venv/bin/python scripts/make_events.py
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from onnx_lambda import protocol
from onnx_lambda.manifest import read_manifest
from onnx_lambda_tools.local.events import build_event

ROOT = Path(__file__).resolve().parent.parent
EPOCH_MS = 1_796_300_000_000
POOL = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_EXAMPLE11"
CLIENT = "4example0machine0client0id"
#: What API Gateway's JWT authorizer hands over for a client_credentials access token.
MACHINE_CLAIMS = {
    "sub": CLIENT,
    "token_use": "access",
    "scope": "inference/invoke",
    "auth_time": EPOCH_MS // 1000 - 60,
    "iss": POOL,
    "exp": EPOCH_MS // 1000 + 3540,
    "iat": EPOCH_MS // 1000 - 60,
    "version": 2,
    "jti": "0f8e7d6c-5b4a-4392-8a1b-0c9d8e7f6a5b",
    "client_id": CLIENT,
}
HEADERS = [("accept", "application/json"), ("user-agent", "python-httpx/0.28.1"), ("authorization", "Bearer eyJ...")]
JSON_HEADERS = [*HEADERS, ("content-type", "application/json")]


def event(
    name: str,
    method: str,
    route: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: list[tuple[str, str]] | None = None,
    params: dict[str, str] | None = None,
    claims: dict[str, Any] | None = MACHINE_CLAIMS,
    scopes: list[str] | None = None,
) -> tuple[str, dict[str, Any]]:
    request_id = base64.b64encode(name.encode()).decode()[:16]
    return name, build_event(
        method=method,
        path=path,
        route_key=f"{method} {route}",
        headers=headers if headers is not None else (JSON_HEADERS if body is not None else HEADERS),
        body=body,
        path_parameters=params,
        claims=claims,
        scopes=["inference/invoke"] if claims is not None and scopes is None else scopes,
        request_id=request_id,
        epoch_ms=EPOCH_MS,
    )


def events() -> list[tuple[str, dict[str, Any]]]:
    minilm = read_manifest(ROOT / "models" / "all-minilm-l6-v2")
    tabular = read_manifest(ROOT / "models" / "breast-cancer-classifier")
    tab_name, emb_name = tabular.name, minilm.name
    tab_infer = f"/v2/models/{tab_name}/infer"
    infer_route = "/v2/models/{model_name}/infer"
    golden = json.dumps(tabular.golden.infer_request).encode()
    rows = np.asarray(tabular.golden.infer_request["inputs"][0]["data"], dtype=np.float32).reshape(-1, 30)
    binary_body, binary_headers = protocol.encode_infer_request(
        [("features", rows)], binary_inputs=True, binary_outputs=True, request_id="binary-1"
    )
    wrong_dtype = json.loads(golden)
    wrong_dtype["inputs"][0]["datatype"] = "INT64"
    wrong_dtype["inputs"][0]["data"] = [int(v) for v in wrong_dtype["inputs"][0]["data"]]
    bad_shape = json.loads(golden)
    bad_shape["inputs"][0]["shape"] = [1, 31]
    unknown_input = json.loads(golden)
    unknown_input["inputs"][0]["name"] = "pixels"
    params = {"model_name": tab_name}
    emb_params = {"model_name": emb_name}
    embed = "/v1/embeddings"

    def embeddings_body(**fields: Any) -> bytes:
        return json.dumps({"model": emb_name, **fields}).encode()

    return [
        event("health-live", "GET", "/v2/health/live", "/v2/health/live", claims=None, headers=[("accept", "*/*")]),
        event("health-ready", "GET", "/v2/health/ready", "/v2/health/ready", claims=None, headers=[("accept", "*/*")]),
        event("server-metadata", "GET", "/v2", "/v2"),
        # tritonclient's get_model_repository_index() sends no body; Triton's own request may say {"ready": true}.
        event("repository-index", "POST", "/v2/repository/index", "/v2/repository/index", body=b'{"ready": true}'),
        event(
            "model-metadata",
            "GET",
            "/v2/models/{model_name}",
            f"/v2/models/{emb_name}",
            params=emb_params,
        ),
        event(
            "model-version-metadata",
            "GET",
            "/v2/models/{model_name}/versions/{model_version}",
            f"/v2/models/{tab_name}/versions/{tabular.version}",
            params={**params, "model_version": tabular.version},
        ),
        event("model-ready", "GET", "/v2/models/{model_name}/ready", f"/v2/models/{tab_name}/ready", params=params),
        event(
            "model-version-ready",
            "GET",
            "/v2/models/{model_name}/versions/{model_version}/ready",
            f"/v2/models/{tab_name}/versions/{tabular.version}/ready",
            params={**params, "model_version": tabular.version},
        ),
        event("infer-tabular", "POST", infer_route, tab_infer, body=golden, params=params),
        event(
            "infer-tabular-version",
            "POST",
            "/v2/models/{model_name}/versions/{model_version}/infer",
            f"/v2/models/{tab_name}/versions/{tabular.version}/infer",
            body=golden,
            params={**params, "model_version": tabular.version},
        ),
        event(
            "infer-tabular-binary",
            "POST",
            infer_route,
            tab_infer,
            body=binary_body,
            headers=[
                *HEADERS,
                *((name.lower(), value) for name, value in binary_headers.items()),
            ],
            params=params,
        ),
        event(
            "infer-minilm",
            "POST",
            infer_route,
            f"/v2/models/{emb_name}/infer",
            body=json.dumps(minilm.golden.infer_request).encode(),
            params={"model_name": emb_name},
        ),
        event("embeddings", "POST", embed, embed, body=embeddings_body(input="Serverless inference on AWS Lambda")),
        event(
            "embeddings-batch",
            "POST",
            embed,
            embed,
            body=embeddings_body(input=["first sentence", "第二个句子", "third one 🚀"]),
        ),
        event(
            "embeddings-base64",
            "POST",
            embed,
            embed,
            body=embeddings_body(input="base64 please", encoding_format="base64"),
        ),
        event("models-list", "GET", "/v1/models", "/v1/models"),
        # --- bad input: each must get a 4xx that names the problem -----------------------------
        event("bad-json", "POST", infer_route, tab_infer, body=b'{"inputs": [', params=params),
        event(
            "bad-content-type",
            "POST",
            embed,
            embed,
            body=b"input=hello",
            headers=[*HEADERS, ("content-type", "application/x-www-form-urlencoded")],
        ),
        event(
            "bad-wrong-datatype", "POST", infer_route, tab_infer, body=json.dumps(wrong_dtype).encode(), params=params
        ),
        event("bad-shape", "POST", infer_route, tab_infer, body=dumps(bad_shape), params=params),
        event("bad-unknown-input", "POST", infer_route, tab_infer, body=dumps(unknown_input), params=params),
        event(
            "bad-unknown-model",
            "POST",
            infer_route,
            "/v2/models/no-such-model/infer",
            body=golden,
            params={"model_name": "no-such-model"},
        ),
        event("bad-empty-input", "POST", embed, embed, body=embeddings_body(input=[])),
        event("bad-embeddings-model", "POST", embed, embed, body=dumps({"model": tab_name, "input": "x"})),
        event("bad-no-claims", "POST", embed, embed, body=embeddings_body(input="no authorizer"), claims=None),
        event(
            "bad-no-scope",
            "POST",
            embed,
            embed,
            body=embeddings_body(input="wrong scope"),
            claims={**MACHINE_CLAIMS, "scope": "other/read"},
            scopes=[],
        ),
    ]


def dumps(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


def main() -> int:
    out = ROOT / "events"
    out.mkdir(exist_ok=True)
    for name, payload in events():
        (out / f"{name}.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {len(events())} events to {out.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
