"""What ships, run for real: the image through Docker, `sam build`, `sam local invoke` and `start-api`.

Docker comes from Debian's packages (scripts/docker-up.sh installs and starts it); the AWS base images
can't be pulled here, so they are stand-ins built from Debian (containers/). Where Docker can't start,
these tests fail with the reason: they never skip.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from onnx_lambda_tools.local import containers, sam_local
from tests.expected_events import EVENTS_DIR

ROOT = Path(__file__).resolve().parents[2]
EVENT_NAMES = sorted(path.stem for path in EVENTS_DIR.glob("*.json"))


@pytest.fixture(scope="session")
def docker_engine() -> None:
    try:
        containers.ensure_docker()
    except containers.DockerError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="session")
def function_image(docker_engine: None) -> str:
    """`make image`: the Dockerfile built on the stand-in base, for the host's architecture."""
    try:
        return containers.build_image()
    except containers.DockerError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="session")
def local_cloud(docker_engine: None) -> containers.LocalCloudEndpoints:
    """moto in a container on the network that the function's containers join."""
    return containers.ensure_moto_container()


@pytest.fixture(scope="session")
def invoke_env_file(local_cloud: containers.LocalCloudEndpoints, models_dir: Path) -> Path:
    """The models published to that moto, and the `--env-vars` file that points the function at them."""
    _, env_file = sam_local.prepare(models_dir, int(local_cloud.host_url.rsplit(":", 1)[1]), verify_tokens=False)
    return env_file


@pytest.fixture(scope="session")
def sam_built(docker_engine: None) -> Path:
    """`sam build` of the whole template, as `make sam-build` runs it; the built template."""
    sam_local.sam_build()
    return ROOT / ".aws-sam" / "build" / "template.yaml"


def run_sam_invoke(event: Path, env_file: Path) -> tuple[dict[str, Any], str]:
    """`sam local invoke` of one event: the response (its last stdout line) and the function's log."""
    run = subprocess.run(
        sam_local.invoke_command(event, env_file),
        cwd=ROOT,
        env=sam_local.sam_environment(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = run.stdout.strip().splitlines()
    if run.returncode != 0 or not lines:
        pytest.fail(f"sam local invoke {event.name} failed ({run.returncode}):\n{run.stderr[-3000:]}")
    return json.loads(lines[-1]), run.stderr


@pytest.fixture(scope="session")
def sam_invoked(sam_built: Path, invoke_env_file: Path) -> dict[str, tuple[dict[str, Any], str]]:
    """Every committed event through `sam local invoke`, two at a time (one container each, as in Lambda)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = pool.map(lambda name: run_sam_invoke(EVENTS_DIR / f"{name}.json", invoke_env_file), EVENT_NAMES)
        return dict(zip(EVENT_NAMES, results, strict=True))


@pytest.fixture(scope="session")
def limited_function(
    function_image: str, invoke_env_file: Path, local_cloud: containers.LocalCloudEndpoints
) -> Iterator[str]:
    """The image run as Lambda runs it: the template's memory, its CPU share, read-only root, sandbox user.

    Yields the invoke URL of the Runtime Interface Emulator that the image's entrypoint starts.
    """
    variables = json.loads(invoke_env_file.read_text())[sam_local.FUNCTION]
    memory = sam_local.template_memory_size()
    environment = containers.function_environment(variables, memory)
    name = "onnx-lambda-limited"
    with containers.function_container(function_image, environment, containers.LambdaLimits(memory), name=name) as url:
        try:
            yield url
        finally:
            (ROOT / "build").mkdir(exist_ok=True)
            (ROOT / "build" / "limited-function.log").write_text(containers.container_logs(name))
