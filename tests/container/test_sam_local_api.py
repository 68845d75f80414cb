"""`make sam-api`: `sam local start-api` serving the built image, driven by off-the-shelf clients.

SAM's local API skips JWT authorizers (aws-sam-cli #5131). `make sam-api` therefore runs the function
with ONNX_LAMBDA_AUTH_MODE=jwt, so that it verifies the bearer token itself against the local Cognito:
a protected route without a valid token is refused here as API Gateway would refuse it.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import openai
import pytest
import tritonclient.http as triton

from onnx_lambda.manifest import read_manifest
from onnx_lambda_tools.local import containers, sam_local
from onnx_lambda_tools.local.cloud import free_port
from tests.container.conftest import ROOT
from tests.integration.test_clients import EMBEDDER, TABULAR, TEXTS, cosine, direct_embeddings


@dataclass(frozen=True)
class SamApi:
    url: str
    token: str


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture(scope="module")
def sam_api(sam_built: Path, local_cloud: containers.LocalCloudEndpoints, models_dir: Path) -> Iterator[SamApi]:
    port = free_port()
    log_path = ROOT / "build" / "sam-api.log"
    log_path.parent.mkdir(exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["make", "--no-print-directory", "sam-api", f"PORT={port}"],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 300
            while True:
                if process.poll() is not None:
                    pytest.fail(f"make sam-api exited {process.returncode}:\n{log_path.read_text()[-3000:]}")
                try:
                    if get(f"{url}/v2/health/live")[0] == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"make sam-api did not answer:\n{log_path.read_text()[-3000:]}")
                time.sleep(1)
            token = subprocess.run(
                [sys.executable, "-m", "onnx_lambda_tools.cli", "token"],
                cwd=ROOT,
                env={**os.environ, "ONNX_LAMBDA_STATE_FILE": str(sam_local.WORK_DIR / "local-stack.json")},
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            ).stdout.strip()
            yield SamApi(url=url, token=token)
        finally:
            with contextlib.suppress(ProcessLookupError):  # it may have exited already
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
            # SAM's warm containers outlive a killed start-api; remove the ones it labelled.
            stale = containers.docker("ps", "-aq", "--filter", "label=sam.cli.container.type=lambda", check=False)
            for container in stale.split():
                containers.docker("rm", "-f", container, check=False)


def test_protected_routes_refuse_a_missing_or_forged_token(sam_api: SamApi) -> None:
    assert get(f"{sam_api.url}/v2/models/{EMBEDDER}")[0] == 401
    header, payload, _signature = sam_api.token.split(".")
    forged = ".".join((header, payload, base64.urlsafe_b64encode(b"x" * 256).decode().rstrip("=")))
    status, body = get(f"{sam_api.url}/v2/models/{EMBEDDER}", forged)
    assert status == 401, body
    assert b"signature" in body.lower()


def test_openai_client_embeddings_match_direct_onnxruntime(sam_api: SamApi, models_dir: Path) -> None:
    client = openai.OpenAI(base_url=f"{sam_api.url}/v1", api_key=sam_api.token, max_retries=0, timeout=120)
    result = client.embeddings.create(model=EMBEDDER, input=TEXTS)
    got = np.asarray([item.embedding for item in sorted(result.data, key=lambda d: d.index)], dtype=np.float32)
    reference = direct_embeddings(models_dir, TEXTS)
    assert got.shape == reference.shape
    assert cosine(got, reference).min() >= 0.9999
    assert result.usage.prompt_tokens > len(TEXTS) * 2


def test_tritonclient_metadata_and_infer(sam_api: SamApi, models_dir: Path) -> None:
    headers = {"Authorization": f"Bearer {sam_api.token}"}
    client = triton.InferenceServerClient(url=sam_api.url.removeprefix("http://"), network_timeout=120)
    assert client.is_server_live()
    metadata = client.get_model_metadata(TABULAR, headers=headers)
    assert metadata["name"] == TABULAR
    golden = read_manifest(models_dir / TABULAR).golden.infer_request["inputs"][0]
    tensor = triton.InferInput(golden["name"], golden["shape"], golden["datatype"])
    features = np.asarray(golden["data"], dtype=np.float32).reshape(golden["shape"])
    # JSON tensors, not Triton's binary extension: SAM's local API decodes every request body it isn't told
    # is binary as UTF-8 (a 502 here), and an HTTP API has no BinaryMediaTypes to tell it. API Gateway itself
    # base64-encodes binary bodies; tests/integration covers the binary extension through `serve --lambda`.
    tensor.set_data_from_numpy(features, binary_data=False)
    session = ort.InferenceSession(str(models_dir / TABULAR / "model.onnx"), providers=["CPUExecutionProvider"])
    outputs = [triton.InferRequestedOutput(output.name, binary_data=False) for output in session.get_outputs()]
    result = client.infer(TABULAR, [tensor], outputs=outputs, headers=headers)
    # The reference: onnxruntime on the same file, with nothing of ours in between.
    for output, want in zip(session.get_outputs(), session.run(None, {golden["name"]: features}), strict=True):
        assert np.allclose(result.as_numpy(output.name), want, atol=1e-6), output.name
