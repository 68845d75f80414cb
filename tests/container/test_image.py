"""The image ships the function and nothing else, and runs as Lambda runs it.

The limits are Lambda's: the template's MemorySize as the memory cap, MemorySize/1769 vCPU as a CFS
quota, a read-only root filesystem but /tmp, and an unprivileged user. The image's own entrypoint
starts the Runtime Interface Emulator (as `docker run` of AWS's base image does), so the events reach
the real runtime client over the real invoke API.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from onnx_lambda_tools.local import containers, sam_local
from tests.conftest import Handler
from tests.container.conftest import EVENT_NAMES, ROOT
from tests.container.same_response import assert_same_response
from tests.expected_events import check_response, load_event


def in_image(image: str, *command: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    user_arguments = ["--user", user] if user else []
    return subprocess.run(
        ["docker", "run", "--rm", *user_arguments, "--entrypoint", command[0], image, *command[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_var_task_holds_exactly_the_runtime_package(function_image: str) -> None:
    listed = in_image(function_image, "find", "/var/task", "-type", "f", "-not", "-name", "*.pyc")
    assert listed.returncode == 0, listed.stderr
    shipped = {line.removeprefix("/var/task/") for line in listed.stdout.split()}
    tracked = subprocess.run(
        ["git", "ls-files", "src/onnx_lambda"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert shipped == {path.removeprefix("src/") for path in tracked}


@pytest.mark.parametrize("module", ["onnx_lambda_tools", "torch", "moto", "uvicorn", "locust", "pytest", "samcli"])
def test_developer_tools_are_not_in_the_image(function_image: str, module: str) -> None:
    probe = in_image(function_image, "python", "-c", f"import {module}")
    assert probe.returncode != 0
    assert "ModuleNotFoundError" in probe.stderr, probe.stderr


def test_the_image_runs_python_313_like_its_base(function_image: str) -> None:
    probe = in_image(
        function_image, "python", "-c", "import sys, onnx_lambda; print(sys.version_info[:2], onnx_lambda.__version__)"
    )
    assert probe.stdout.split(")")[0] == "(3, 13", probe.stdout


def invoke(url: str, event: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(event).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=120) as response:
        return dict(json.loads(response.read()))


@pytest.mark.parametrize("name", EVENT_NAMES)
def test_under_lambda_limits_every_event_answers_as_in_process(
    name: str, limited_function: str, lambda_handler: Handler, models_dir: Path
) -> None:
    from onnx_lambda_tools.invoke import LambdaContext

    response = invoke(limited_function, load_event(name))
    check_response(name, response, models_dir)
    assert_same_response(name, response, lambda_handler(load_event(name), LambdaContext()))


def test_under_lambda_limits_the_root_is_read_only_and_the_user_unprivileged(limited_function: str) -> None:
    invoke(limited_function, load_event("health-live"))  # init has run
    name = "onnx-lambda-limited"
    assert containers.docker("exec", name, "id", "-u").strip() == containers.SANDBOX_USER.split(":")[0]
    for path in ("/var/task/planted", "/var/lang/planted", "/planted"):
        write = subprocess.run(
            ["docker", "exec", "--user", "0", name, "touch", path], capture_output=True, text=True, check=False
        )
        assert write.returncode != 0
        assert "Read-only file system" in write.stderr, (path, write.stderr)
    # /tmp is writable, and the model cache went there. It holds the optimized model that publish pins, not
    # model.onnx: the image's onnxruntime is the one that wrote it (else the function falls back).
    cached = containers.docker("exec", name, "find", "/tmp", "-name", "model*.onnx").split()
    assert cached, "the model cache is not in /tmp"
    assert {Path(path).name for path in cached} == {"model.optimized.onnx"}, cached
    limits = json.loads(containers.docker("inspect", name))[0]["HostConfig"]
    memory = sam_local.template_memory_size()
    assert limits["Memory"] == memory * 1024 * 1024
    assert limits["NanoCpus"] == int(round(memory / containers.MB_PER_VCPU, 3) * 1e9)
    assert limits["ReadonlyRootfs"] is True


@pytest.mark.parametrize("memory_mb", [1024, 3008])
def test_the_session_options_follow_the_cpu_quota_the_container_has(
    function_image: str, invoke_env_file: Path, memory_mb: int
) -> None:
    """The image under Lambda's quota for ``memory_mb`` picks the threads and spinning that measured fastest
    there (the table in tests/unit/test_thread_plan.py and docs/performance.md), from the cgroup it runs in."""
    from tests.unit.test_thread_plan import MEASURED

    variables = json.loads(invoke_env_file.read_text())[sam_local.FUNCTION]
    environment = containers.function_environment(variables, memory_mb)
    name = f"onnx-lambda-quota-{memory_mb}"
    with containers.function_container(
        function_image, environment, containers.LambdaLimits(memory_mb), name=name
    ) as url:
        invoke(url, load_event("health-ready"))
        logs = containers.container_logs(name)
    loaded = [json.loads(line) for line in logs.splitlines() if '"model loaded"' in line]
    assert loaded, logs[-2000:]
    expected = MEASURED[memory_mb]
    for line in loaded:
        assert (line["intra_op_threads"], line["intra_op_spinning"]) == (expected.threads, expected.spinning), line
