"""Fixtures for the infrastructure tests: the template before and after the SAM transform.

The transform runs offline in aws-sam-cli's own virtualenv (the project's doesn't carry samtranslator;
aws-sam-cli pins it), through ``sam_transform.py`` in a subprocess.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
TEMPLATE = ROOT / "template.yaml"
#: Every optional resource switched on: a model, provisioned concurrency with autoscaling, alarm e-mail.
ALL_ON: dict[str, Any] = {
    "ModelKey": "models/all-minilm-l6-v2/1-0123456789abcdef/model.onnx",
    "ModelVersionId": "3sL4kqtJlcpXroDTDmJ-rmSpXd3dIbrH",
    "ModelSha256": "ab" * 32,
    "ProvisionedConcurrency": 2,
    "ProvisionedConcurrencyMax": 10,
    "AlarmEmail": "ops@example.com",
    "CorsAllowOrigins": "https://app.example.com",
}

# The zip functions import their module and the helper layer by name, as in Lambda (layer code lands in
# /opt/python, function code in /var/task).
for _path in (
    ROOT / "layers" / "helpers",
    ROOT / "functions" / "pre_traffic_hook",
    ROOT / "functions" / "synthetic_canary",
):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


def load_module(name: str) -> ModuleType:
    """A zip function's or the layer's module (typed loosely: they live outside the package)."""
    return importlib.import_module(name)


def load_script(name: str) -> ModuleType:
    path = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def diagram_script() -> ModuleType:
    return load_script("architecture_diagram")


@pytest.fixture(scope="session")
def template(diagram_script: ModuleType) -> dict[str, Any]:
    """template.yaml as written (short tags read as their long forms)."""
    loaded: dict[str, Any] = diagram_script.load_template(TEMPLATE)
    return loaded


@pytest.fixture(scope="session")
def sam_transform() -> Callable[[Mapping[str, Any] | None], dict[str, Any]]:
    """Transform template.yaml with these parameter values (cached per value set)."""
    if not SAM_PYTHON.is_file():
        pytest.fail(f"{SAM_PYTHON.relative_to(ROOT)} is missing: run `make sam-venv`")
    cache: dict[str, dict[str, Any]] = {}

    def run(parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        key = json.dumps(dict(parameters or {}), sort_keys=True)
        if key not in cache:
            result = subprocess.run(
                [str(SAM_PYTHON), str(ROOT / "tests" / "infra" / "sam_transform.py"), str(TEMPLATE), key],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if result.returncode != 0:
                pytest.fail(f"the SAM transform failed:\n{result.stderr}")
            cache[key] = json.loads(result.stdout)
        return cache[key]

    return run


@pytest.fixture(scope="session")
def transformed(sam_transform: Callable[[Mapping[str, Any] | None], dict[str, Any]]) -> dict[str, Any]:
    """The CloudFormation template after the SAM transform, every optional resource on."""
    return sam_transform(ALL_ON)
