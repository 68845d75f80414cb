"""Image weight: the runtime dependencies as the Dockerfile installs them, in MB.

The Dockerfile runs ``pip install`` of ``[project].dependencies`` into the Lambda Python 3.13 base image,
which already has boto3 and its dependencies, so pip adds everything but those. Here pip installs the
same requirement list with ``--target`` into an empty directory, for CPython 3.13 on this machine's
architecture (manylinux wheels only, as the image's ``--only-binary=:all:``), compiles the bytecode as
pip does in the image, and the base image's packages are then subtracted.

``installed`` mode needs no network: it sums the files of the same distributions as installed in this
virtualenv (this Python's wheels), for ``--quick`` runs.
"""

from __future__ import annotations

import compileall
import json
import platform
import re
import subprocess
import sys
import tempfile
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

#: What the public.ecr.aws/lambda/python:3.13 base image already has (boto3 and its dependencies).
BASE_IMAGE_PACKAGES = frozenset({"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six"})
IMAGE_PYTHON = "3.13"
_MANYLINUX = ("manylinux_2_28", "manylinux_2_17", "manylinux2014", "manylinux_2_5", "manylinux1")


def runtime_requirements(source: Path) -> list[str]:
    """``[project].dependencies`` of a pyproject.toml, or ``-r FILE`` for a requirements file (a lock)."""
    if source.suffix != ".toml":
        # As the Dockerfile installs it: exactly the pinned set, nothing the lock leaves out.
        return ["--no-deps", "--require-hashes", "-r", str(source)]
    document = tomllib.loads(source.read_text())
    requirements: list[str] = document["project"]["dependencies"]
    return requirements


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _platform_arguments() -> list[str]:
    machine = "aarch64" if platform.machine() in ("aarch64", "arm64") else "x86_64"
    arguments = []
    for tag in _MANYLINUX:
        if machine == "aarch64" and tag in ("manylinux_2_5", "manylinux1"):
            continue
        arguments += ["--platform", f"{tag}_{machine}"]
    return arguments


def _sizes_by_distribution(target: Path) -> dict[str, int]:
    """Bytes on disk per distribution, from each ``*.dist-info/RECORD`` (bytecode caches included)."""
    sizes: dict[str, int] = {}
    claimed: set[Path] = set()
    for dist_info in sorted(target.glob("*.dist-info")):
        name = _canonical(dist_info.name.removesuffix(".dist-info").rsplit("-", 1)[0])
        total = 0
        record = dist_info / "RECORD"
        roots: set[Path] = set()
        for line in record.read_text().splitlines() if record.exists() else ():
            relative = line.split(",", 1)[0]
            path = (target / relative).resolve()
            if path.is_file() and path not in claimed:
                claimed.add(path)
                total += path.stat().st_size
                roots.add(path.parent)
        # Bytecode written after install (compileall) is not in RECORD: count the __pycache__ beside each file.
        for root in roots:
            cache = root / "__pycache__"
            if cache.is_dir():
                for compiled in cache.iterdir():
                    resolved = compiled.resolve()
                    if resolved not in claimed:
                        claimed.add(resolved)
                        total += resolved.stat().st_size
        sizes[name] = sizes.get(name, 0) + total
    unclaimed = sum(p.stat().st_size for p in target.rglob("*") if p.is_file() and p.resolve() not in claimed)
    if unclaimed:
        sizes["(unlisted files)"] = unclaimed
    return sizes


def _summary(sizes: dict[str, int], method: str, used: set[str] | None, **extra: Any) -> dict[str, Any]:
    runtime = {name: size for name, size in sizes.items() if name not in BASE_IMAGE_PACKAGES}
    base = {name: size for name, size in sizes.items() if name in BASE_IMAGE_PACKAGES}
    top = sorted(runtime.items(), key=lambda item: item[1], reverse=True)
    summary: dict[str, Any] = {
        "method": method,
        "runtime_mb": round(sum(runtime.values()) / 1e6, 1),
        "with_base_image_packages_mb": round(sum(sizes.values()) / 1e6, 1),
        "excluded_base_image_packages": sorted(base),
        "largest_mb": {name: round(size / 1e6, 1) for name, size in top[:12]},
    }
    if used is not None:
        # Distributions that pip installs but the service never imports (dependencies of dependencies).
        unused = {name: size for name, size in runtime.items() if name not in used and not name.startswith("(")}
        summary["never_imported_mb"] = {
            name: round(size / 1e6, 1) for name, size in sorted(unused.items(), key=lambda i: i[1], reverse=True)
        }
        summary["runtime_mb_without_never_imported"] = round((sum(runtime.values()) - sum(unused.values())) / 1e6, 1)
    return {**summary, **extra}


#: Exercises every import the service makes: init, both direct routes, the FastAPI app, JWT verification,
#: and the X-Ray SDK that tracing loads in Lambda.
_IMPORT_PROBE = """
import importlib, json, os, sys
from pathlib import Path
from onnx_lambda_tools.invoke import LambdaContext, function_environment
os.environ.update(function_environment(Path(sys.argv[1])))
sys.stdout = open(os.devnull, "w")
import onnx_lambda.handler as handler
from onnx_lambda_tools.bench import workloads
handler.lambda_handler(workloads.embeddings_event("all-minilm-l6-v2", "warm"), LambdaContext())
handler.lambda_handler(workloads.lambda_event("GET", "/v2/health/ready", "GET /v2/health/ready"), LambdaContext())
import jwt.algorithms, uvicorn, onnx_lambda_tools.serve
assert jwt.algorithms.has_crypto
import aws_xray_sdk.core  # what Powertools' tracer loads in Lambda, where tracing is on
names = set()
for module in list(sys.modules.values()):
    top = (getattr(module, "__name__", "") or "").split(".")[0]
    names.add(top)
mapping = importlib.metadata.packages_distributions()
used = sorted({d for top in names for d in mapping.get(top, [])})
sys.stdout = sys.__stdout__
print(json.dumps(used))
"""


def used_distributions(models_dir: Path) -> set[str]:
    """Distributions the service imports when it runs (measured in this environment, not the image's)."""
    completed = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", _IMPORT_PROBE, str(models_dir)], capture_output=True, text=True, timeout=120, check=True
    )
    used: list[str] = json.loads(completed.stdout.strip().splitlines()[-1])
    return {_canonical(name) for name in used}


def measure_with_pip(source: Path, used: set[str] | None = None, *, timeout: float = 420.0) -> dict[str, Any]:
    """``pip install --target`` of the runtime dependencies for the image's Python and architecture."""
    requirements = runtime_requirements(source)
    with tempfile.TemporaryDirectory(prefix="onnx-lambda-bench-image-") as scratch:
        target = Path(scratch) / "site-packages"
        command = [
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
            "--target", str(target), "--only-binary=:all:", "--implementation", "cp",
            "--python-version", IMAGE_PYTHON, *_platform_arguments(), *requirements,
        ]  # fmt: skip
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)  # noqa: S603
        if completed.returncode != 0:
            raise RuntimeError(f"pip install --target failed: {completed.stderr.strip()[-1500:]}")
        # pip compiles bytecode in the image; Python 3.13's .pyc files are within a few % of this one's.
        compileall.compile_dir(str(target), quiet=2, workers=1)
        return _summary(
            _sizes_by_distribution(target),
            "pip install --target",
            used,
            python=IMAGE_PYTHON,
            platform=platform.machine(),
            bytecode=f"compiled by Python {platform.python_version()}",
            requirements=requirements,
        )


def measure_installed(source: Path, used: set[str] | None = None) -> dict[str, Any]:
    """The same distributions as installed in this environment (no network; this Python's wheels)."""
    requirements = runtime_requirements(source)
    if source.suffix != ".toml":  # a lock: one "name==version \" line per package
        lines = source.read_text().splitlines()
        requirements = [line.split()[0] for line in lines if line[:1].isalnum()]
    wanted = [_canonical(re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0]) for requirement in requirements]
    seen: set[str] = set()
    sizes: dict[str, int] = {}
    while wanted:
        name = wanted.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        total = 0
        for file in distribution.files or ():
            path = Path(str(distribution.locate_file(file)))
            if path.is_file():
                total += path.stat().st_size
        sizes[name] = total
        for requirement in distribution.requires or ():
            if "extra ==" in requirement and not any(f'extra == "{e}"' in requirement for e in ("crypto", "tracer")):
                continue
            wanted.append(_canonical(re.split(r"[\[<>=!~; (]", requirement, maxsplit=1)[0]))
    return _summary(sizes, "installed distributions", used, python=platform.python_version(), requirements=requirements)


def measure(source: Path, models_dir: Path, *, use_pip: bool) -> dict[str, Any]:
    """With pip when asked (falling back to the installed distributions, saying why), else without."""
    used = used_distributions(models_dir)
    if not use_pip:
        return measure_installed(source, used)
    try:
        return measure_with_pip(source, used)
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as error:
        result = measure_installed(source, used)
        result["pip_error"] = str(error)[-500:]
        return result
