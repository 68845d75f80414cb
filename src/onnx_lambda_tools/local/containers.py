"""The function's image, and the local cloud it needs, under Docker on this machine.

Nothing can be pulled from a registry here, so every base image is built locally: Debian root
filesystems made with debootstrap stand in for AWS's Lambda and SAM build images
(``containers/build-standins.sh``). moto's server runs in a container on a user-defined network, so
that the function's containers (``sam local``, or ``docker run`` under Lambda's limits) reach it by
name, while the host's tools reach it on a loopback port.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from onnx_lambda_tools.local.cloud import LOCAL_CREDENTIALS_ENVIRONMENT, free_port

#: The repository root: the scripts, Dockerfiles and template live there.
ROOT: Final = Path(__file__).resolve().parents[3]
#: What ``make image`` tags.
IMAGE_TAG: Final = "onnx-lambda:local"
#: The user-defined network that the function's containers and moto share.
NETWORK: Final = "onnx-lambda-local"
MOTO_CONTAINER: Final = "onnx-lambda-moto"
#: moto's port inside its container, and its address from the function's containers.
MOTO_PORT_IN_NETWORK: Final = 5000
MOTO_NETWORK_URL: Final = f"http://{MOTO_CONTAINER}:{MOTO_PORT_IN_NETWORK}"
DEFAULT_MOTO_HOST_PORT: Final = 8010
#: Lambda's CPU share: one vCPU for every 1,769 MB of memory.
MB_PER_VCPU: Final = 1769
#: Lambda's sandbox user and group (``sbx_user1051``), as the image runs in Lambda.
SANDBOX_USER: Final = "993:990"
#: The Docker build that doesn't ask a registry for a BuildKit frontend.
DOCKER_ENV: Final = {"DOCKER_BUILDKIT": "0"}


class DockerError(RuntimeError):
    """Docker is missing, could not start, or a container did not come up."""


def host_architecture() -> str:
    """The host's architecture, named as Lambda names it."""
    return "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"


def docker_platform(architecture: str) -> str:
    return "linux/arm64" if architecture == "arm64" else "linux/amd64"


def docker(*args: str, check: bool = True, quiet: bool = True) -> str:
    """Run the docker client; its stdout, or a :class:`DockerError` that carries its stderr."""
    result = subprocess.run(  # noqa: S603 - argv from this module
        ["docker", *args],  # noqa: S607  # nosec B607  # the docker client on PATH, as a user runs it
        capture_output=quiet,
        text=True,
        env={**os.environ, **DOCKER_ENV},
        check=False,
    )
    if check and result.returncode != 0:
        detail = (result.stderr or "").strip().splitlines()[-5:] if quiet else []
        raise DockerError(f"docker {' '.join(args[:3])} failed: {' '.join(detail) or f'exit {result.returncode}'}")
    return result.stdout or ""


def container_logs(name: str) -> str:
    """A container's output, both streams interleaved (the emulator logs to stderr, the function to stdout)."""
    result = subprocess.run(  # noqa: S603 - argv from this module
        ["docker", "logs", name],  # noqa: S607  # nosec B607  # the docker client on PATH
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    return result.stdout


def ensure_docker() -> None:
    """Install and start Docker where it isn't running (``scripts/docker-up.sh``)."""
    result = subprocess.run(  # noqa: S603 - the project's own script
        [str(ROOT / "scripts" / "docker-up.sh")], capture_output=True, text=True, check=False, cwd=ROOT
    )
    if result.returncode != 0:
        raise DockerError(f"Docker is not available: {result.stderr.strip()}")


@functools.cache
def build_standins(architecture: str = "x86_64") -> None:
    """The stand-in base images for one architecture (``containers/build-standins.sh``), once per process."""
    result = subprocess.run(  # noqa: S603 - the project's own script
        [str(ROOT / "containers" / "build-standins.sh"), architecture],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={**os.environ, "SAM_PYTHON": sam_python()},
    )
    if result.returncode != 0:
        raise DockerError(f"building the stand-in images failed: {result.stderr.strip()[-2000:]}")


def standin_base(architecture: str) -> str:
    return f"onnx-lambda-standin/lambda-python:3.13-{architecture}"


def image_tag(architecture: str) -> str:
    """``onnx-lambda:local`` for the host's architecture, ``onnx-lambda:local-arm64`` for another."""
    return IMAGE_TAG if architecture == host_architecture() else f"{IMAGE_TAG}-{architecture}"


def build_image(architecture: str | None = None) -> str:
    """Build the function's image from the Dockerfile on the stand-in base; returns its tag."""
    architecture = architecture or host_architecture()
    tag = image_tag(architecture)
    ensure_docker()
    build_standins(architecture)
    docker(
        "build",
        "-q",
        "--platform",
        docker_platform(architecture),
        "--build-arg",
        f"BASE_IMAGE={standin_base(architecture)}",
        "-t",
        tag,
        str(ROOT),
    )
    return tag


def sam_python() -> str:
    """The interpreter of SAM CLI's own virtualenv (it ships the Runtime Interface Emulator)."""
    candidate = ROOT / ".venv-sam" / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


def sam_executable() -> str:
    candidate = ROOT / ".venv-sam" / "bin" / "sam"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("sam")
    if found is None:
        raise DockerError("SAM CLI not found: run `make sam-venv`")
    return found


# --------------------------------------------------------------------------------------------- moto
@dataclass(frozen=True)
class LocalCloudEndpoints:
    """One moto server, as the host's tools and as the function's containers reach it."""

    host_url: str
    network_url: str = MOTO_NETWORK_URL

    def for_network(self, url: str) -> str:
        """A URL on the host's endpoint (moto's JWKS URL, say), rewritten for the containers."""
        return self.network_url + url.removeprefix(self.host_url) if url.startswith(self.host_url) else url


def ensure_network() -> None:
    if not docker("network", "ls", "-q", "--filter", f"name=^{NETWORK}$").strip():
        docker("network", "create", NETWORK)


def ensure_moto_container(host_port: int = DEFAULT_MOTO_HOST_PORT) -> LocalCloudEndpoints:
    """moto in a container on :data:`NETWORK`, published on 127.0.0.1:``host_port``; started if not running."""
    from importlib.metadata import version

    ensure_docker()
    build_standins(host_architecture())
    ensure_network()
    moto_version = version("moto")
    image = f"onnx-lambda-standin/moto:{moto_version}"
    if not docker("images", "-q", image).strip():
        docker(
            "build",
            "-q",
            "--build-arg",
            f"BASE={standin_base(host_architecture())}",
            "--build-arg",
            f"MOTO_VERSION={moto_version}",
            "-t",
            image,
            str(ROOT / "containers" / "moto"),
        )
    running = docker("ps", "-q", "--filter", f"name=^{MOTO_CONTAINER}$").strip()
    published = docker("port", MOTO_CONTAINER, f"{MOTO_PORT_IN_NETWORK}/tcp", check=False).strip() if running else ""
    if not running or not published.endswith(f":{host_port}"):
        docker("rm", "-f", MOTO_CONTAINER, check=False)
        docker(
            "run",
            "-d",
            "--name",
            MOTO_CONTAINER,
            "--network",
            NETWORK,
            "-p",
            f"127.0.0.1:{host_port}:{MOTO_PORT_IN_NETWORK}",
            image,
        )
    endpoints = LocalCloudEndpoints(host_url=f"http://127.0.0.1:{host_port}")
    wait_for_http(endpoints.host_url + "/moto-api/", timeout_seconds=30)
    return endpoints


def stop_moto_container() -> None:
    docker("rm", "-f", MOTO_CONTAINER, check=False)


def wait_for_http(url: str, timeout_seconds: float) -> None:
    deadline = time.monotonic() + timeout_seconds
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310  # nosec B310  # a loopback URL built here
                return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError as error:
            last = error
            time.sleep(0.2)
    raise DockerError(f"{url} did not answer within {timeout_seconds:.0f} s: {last}")


# ------------------------------------------------------------------------------ Lambda's limits
@dataclass(frozen=True)
class LambdaLimits:
    """How Lambda confines a function of ``memory_mb``: memory cap, CPU quota, read-only root, sandbox user."""

    memory_mb: int

    @property
    def cpus(self) -> float:
        """Lambda's share, capped at this machine's CPUs (Docker refuses a quota over them)."""
        return min(round(self.memory_mb / MB_PER_VCPU, 3), float(os.cpu_count() or 1))

    def docker_arguments(self) -> list[str]:
        return [
            "--memory",
            f"{self.memory_mb}m",
            "--memory-swap",
            f"{self.memory_mb}m",
            "--cpus",
            str(self.cpus),
            "--read-only",
            "--tmpfs",
            "/tmp:rw,size=512m,mode=1777",  # noqa: S108  # nosec B108  # Lambda's writable /tmp, in the container
            "--user",
            SANDBOX_USER,
        ]


@contextlib.contextmanager
def function_container(
    image: str,
    environment: Mapping[str, str],
    limits: LambdaLimits,
    *,
    name: str,
    extra: Sequence[str] = (),
    ready_seconds: float = 30,
) -> Iterator[str]:
    """The image run as Lambda runs it; yields the invoke URL of its Runtime Interface Emulator.

    The container is removed on exit; read its logs (:func:`container_logs`) before then.
    """
    docker("rm", "-f", name, check=False)
    port = free_port()
    env_arguments = [argument for key, value in environment.items() for argument in ("-e", f"{key}={value}")]
    docker(
        "run",
        "-d",
        "--name",
        name,
        "--network",
        NETWORK,
        "-p",
        f"127.0.0.1:{port}:8080",
        *limits.docker_arguments(),
        *env_arguments,
        *extra,
        image,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", timeout_seconds=ready_seconds)
        yield f"http://127.0.0.1:{port}/2015-03-31/functions/function/invocations"
    finally:
        docker("rm", "-f", name, check=False)


def function_environment(settings_environment: Mapping[str, str], memory_mb: int) -> dict[str, str]:
    """What Lambda sets for every function, plus the function's own settings."""
    return {
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        **LOCAL_CREDENTIALS_ENVIRONMENT,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "AWS_LAMBDA_FUNCTION_NAME": "onnx-lambda-inference",
        "POWERTOOLS_SERVICE_NAME": "onnx-lambda",
        "POWERTOOLS_METRICS_NAMESPACE": "OnnxLambda",
        **settings_environment,
    }


def json_env_file(path: Path, function: str, environment: Mapping[str, str]) -> Path:
    """An ``--env-vars`` file for ``sam local``: the function's variables, by its logical id."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({function: dict(environment)}, indent=2) + "\n", encoding="utf-8")
    return path
