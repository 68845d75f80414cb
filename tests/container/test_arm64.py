"""The arm64 image, which the template offers (Architecture=arm64), built and run under QEMU.

binfmt_misc hands arm64 binaries to Debian's qemu-user-static, so the stand-in base, the image's pip
install and the function itself all run emulated. Its speed means nothing; its answers must be right.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from onnx_lambda import protocol
from onnx_lambda.manifest import read_manifest
from onnx_lambda_tools.local import containers, sam_local
from tests.container.test_image import invoke
from tests.expected_events import check_response, load_event, response_body

pytestmark = pytest.mark.arm64

EVENTS = ["health-ready", "model-metadata", "embeddings-batch", "infer-tabular-binary", "bad-shape"]
#: Raw onnxruntime inside the arm64 container, on the model file the function cached (model.optimized.onnx
#: when the image's onnxruntime wrote it, else model.onnx): the reference for the int8 model, whose integer
#: kernels differ between x86_64 and arm64 (so the x86_64 golden is not one).
RAW_ONNXRUNTIME = """
import glob, json, sys
import numpy as np, onnxruntime as ort
request = json.load(sys.stdin)
wanted = {tensor["name"] for tensor in request["inputs"]}
for path in glob.glob("/tmp/onnx-lambda-cache/*/*.onnx"):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    if {i.name for i in session.get_inputs()} == wanted:
        feeds = {t["name"]: np.asarray(t["data"], dtype=np.int64).reshape(t["shape"]) for t in request["inputs"]}
        outputs = session.run(None, feeds)
        print(json.dumps({o.name: v.tolist() for o, v in zip(session.get_outputs(), outputs)}))
"""


@pytest.fixture(scope="module")
def arm64_function(docker_engine: None, invoke_env_file: Path) -> Iterator[str]:
    try:
        image = containers.build_image("arm64")
    except containers.DockerError as error:
        pytest.fail(str(error))
    architecture = containers.docker("image", "inspect", "-f", "{{.Architecture}}", image).strip()
    assert architecture == "arm64"
    variables = json.loads(invoke_env_file.read_text())[sam_local.FUNCTION]
    with containers.function_container(
        image,
        containers.function_environment(variables, 2048),
        containers.LambdaLimits(2048),
        name="onnx-lambda-arm64",
        extra=["--platform", "linux/arm64", "--cpus", "2"],
        ready_seconds=60,
    ) as url:
        yield url


def test_the_arm64_image_runs_arm64_code(arm64_function: str) -> None:
    machine = containers.docker(
        "exec", "onnx-lambda-arm64", "python", "-c", "import platform; print(platform.machine())"
    )
    assert machine.strip() == "aarch64"


@pytest.mark.parametrize("name", EVENTS)
def test_the_arm64_image_answers_the_events(name: str, arm64_function: str, models_dir: Path) -> None:
    check_response(name, invoke(arm64_function, load_event(name)), models_dir)


def test_the_arm64_int8_embedder_matches_raw_onnxruntime_on_arm64(arm64_function: str, models_dir: Path) -> None:
    event = load_event("infer-minilm")
    response = invoke(arm64_function, event)
    assert response["statusCode"] == 200, response
    decoded = protocol.decode_infer_response(response_body(response), None)
    raw = subprocess.run(
        ["docker", "exec", "-i", "onnx-lambda-arm64", "python", "-c", RAW_ONNXRUNTIME],
        input=event["body"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    reference = {name: np.asarray(value) for name, value in json.loads(raw.stdout).items()}
    assert reference.keys() == decoded.outputs.keys()
    for name, want in reference.items():
        assert np.allclose(decoded.outputs[name], want, atol=1e-5), name
    # Against the x86_64 golden, the int8 model drifts a little, within the int8 parity bar against fp32.
    golden = read_manifest(models_dir / "all-minilm-l6-v2").golden.infer_response["outputs"][0]
    x86 = np.asarray(golden["data"]).reshape(golden["shape"])
    got = decoded.outputs[golden["name"]]
    cosine = np.sum(got * x86, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(x86, axis=1))
    assert cosine.min() >= 0.99, cosine
