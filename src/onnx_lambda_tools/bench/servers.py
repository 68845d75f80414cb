"""The two HTTP servers the HTTP path compares, each in its own process under the same uvicorn settings.

``raw``: the minimal FastAPI + uvicorn app a user would write around the model: one ``async def``
route that tokenizes, runs the session and writes the vectors with orjson; no auth, no limits, no
logging or metrics; onnxruntime with the session options that measured fastest in the same run.
``ours``: the service's app (``create_app``), auth on (JWT against the local pool's JWKS), models from
the local S3, as ``onnx-lambda serve`` runs it.

``python -m onnx_lambda_tools.bench.servers raw|ours --port P [--model-dir DIR]``; ``ours`` reads its settings
from the ``ONNX_LAMBDA_*`` environment.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

UVICORN_OPTIONS: dict[str, Any] = {"host": "127.0.0.1", "log_level": "warning", "access_log": False}


def raw_app(model_dir: Path, threads: int, optimization: str, spinning: bool) -> FastAPI:
    from onnx_lambda.manifest import read_manifest
    from onnx_lambda_tools.bench import session_grid
    from onnx_lambda_tools.bench.raw_side import RawEmbedder

    manifest = read_manifest(model_dir)
    embedder = RawEmbedder(
        model_dir,
        session_grid.options(threads, spinning, optimization),
        manifest.tokenizer.max_length if manifest.tokenizer else 256,
    )
    app = FastAPI()

    @app.get("/ready")
    async def ready() -> Response:
        return Response(b"ok")

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        document = orjson.loads(await request.body())
        texts = document["input"] if isinstance(document["input"], list) else [document["input"]]
        vectors = embedder(texts)
        body = {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(vectors)],
            "model": document["model"],
        }
        return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")

    return app


def our_app() -> FastAPI:
    from onnx_lambda.app import create_app
    from onnx_lambda.config import get_settings
    from onnx_lambda.registry import load_registry

    settings = get_settings()
    return create_app(load_registry(settings), settings)


def main(argv: list[str]) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(prog="onnx_lambda_tools.bench.servers")
    parser.add_argument("side", choices=("raw", "ours"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--optimization", default="all")
    parser.add_argument("--spinning", choices=("on", "off"), default="on")
    args = parser.parse_args(argv)
    if args.side == "raw":
        from onnx_lambda.config import available_cpus

        app = raw_app(args.model_dir, args.threads or available_cpus(), args.optimization, args.spinning == "on")
    else:
        app = our_app()
    uvicorn.run(app, port=args.port, **UVICORN_OPTIONS)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
