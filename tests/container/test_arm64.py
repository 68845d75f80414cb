"""The arm64 image, which the template offers (Architecture=arm64), built and run under QEMU.

binfmt_misc hands arm64 binaries to Debian's qemu-user-static, so the stand-in base, the image's pip
install and the function itself all run emulated. Its speed means nothing; its answers must be right.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from onnx_lambda_tools.local import containers, sam_local
from onnx_lambda_tools.local.cloud import free_port
from tests.container.test_image import invoke
from tests.expected_events import check_response, load_event

pytestmark = pytest.mark.arm64

EVENTS = ["health-ready", "model-metadata", "embeddings-batch", "infer-minilm", "infer-tabular-binary", "bad-shape"]


@pytest.fixture(scope="module")
def arm64_function(docker_engine: None, invoke_env_file: Path) -> Iterator[str]:
    try:
        image = containers.build_image("arm64")
    except containers.DockerError as error:
        pytest.fail(str(error))
    architecture = containers.docker("image", "inspect", "-f", "{{.Architecture}}", image).strip()
    assert architecture == "arm64"
    variables = json.loads(invoke_env_file.read_text())[sam_local.FUNCTION]
    port = free_port()
    name = containers.run_function_container(
        image,
        containers.function_environment(variables, 2048),
        containers.LambdaLimits(2048),
        name="onnx-lambda-arm64",
        host_port=port,
        extra=["--platform", "linux/arm64", "--cpus", "2"],
    )
    try:
        containers.wait_for_http(f"http://127.0.0.1:{port}/", timeout_seconds=60)
        yield f"http://127.0.0.1:{port}/2015-03-31/functions/function/invocations"
    finally:
        containers.docker("rm", "-f", name, check=False)


def test_the_arm64_image_runs_arm64_code(arm64_function: str) -> None:
    machine = containers.docker(
        "exec", "onnx-lambda-arm64", "python", "-c", "import platform; print(platform.machine())"
    )
    assert machine.strip() == "aarch64"


@pytest.mark.parametrize("name", EVENTS)
def test_the_arm64_image_answers_the_events(name: str, arm64_function: str, models_dir: Path) -> None:
    check_response(name, invoke(arm64_function, load_event(name)), models_dir)
