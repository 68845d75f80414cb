"""The runtime package is exactly what the image ships, and it imports only what the image installs.

The image copies ``src/onnx_lambda`` and installs ``requirements/runtime.txt`` on top of the base image's
own packages; ``src/onnx_lambda_tools`` never reaches it. These checks read the runtime's source (its AST,
not its imports at run time, so a lazy import inside a function counts too), independently of ruff's
TID251 list in pyproject.toml.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "src" / "onnx_lambda"
#: What the image is meant to ship: the Lambda handler, the FastAPI app and what they import.
RUNTIME_FILES = {
    "__init__.py",
    "apigateway_event.py",
    "app.py",
    "auth.py",
    "config.py",
    "embeddings.py",
    "errors.py",
    "handler.py",
    "inference.py",
    "manifest.py",
    "model.py",
    "model_store.py",
    "observability.py",
    "protocol.py",
    "py.typed",
    "registry.py",
    "s3.py",
    "schemas.py",
}
#: Imports that must never appear in the runtime, even for type checking only.
NEVER = {"onnx_lambda_tools", "moto", "uvicorn", "torch", "locust", "pytest", "yaml", "awslambdaric"}


def _runtime_modules() -> list[Path]:
    return sorted(RUNTIME.glob("*.py"))


def _imports(node: ast.AST, *, skip_type_checking: bool) -> Iterator[tuple[int, str]]:
    """(line, top-level name) of every absolute import under ``node``; relative ones are the package's own."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import):
            for alias in child.names:
                yield child.lineno, alias.name.split(".")[0]
        elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
            yield child.lineno, child.module.split(".")[0]
        elif skip_type_checking and isinstance(child, ast.If) and _is_type_checking(child.test):
            # The body only runs under a type checker; an else branch runs for real.
            yield from _imports(ast.Module(body=child.orelse, type_ignores=[]), skip_type_checking=True)
        else:
            yield from _imports(child, skip_type_checking=skip_type_checking)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _normalized(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def _image_distributions() -> set[str]:
    """The lock's pins, and what the Lambda base image already has (the Makefile's BASE_IMAGE_PACKAGES)."""
    lock = (ROOT / "requirements" / "runtime.txt").read_text()
    pinned = {_normalized(name) for name in re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", lock, flags=re.MULTILINE)}
    match = re.search(r"^BASE_IMAGE_PACKAGES\s*:=\s*(.+)$", (ROOT / "Makefile").read_text(), flags=re.MULTILINE)
    assert match, "the Makefile no longer names the base image's packages (BASE_IMAGE_PACKAGES)"
    return pinned | {_normalized(name) for name in match.group(1).split()}


def test_the_runtime_package_is_exactly_what_the_image_ships() -> None:
    files = [path for path in RUNTIME.rglob("*") if path.is_file() and "__pycache__" not in path.parts]
    shipped = {str(path.relative_to(RUNTIME)) for path in files}
    assert shipped == RUNTIME_FILES, (
        "src/onnx_lambda is what the Lambda image copies: developer tools belong in src/onnx_lambda_tools"
    )


@pytest.mark.parametrize("module", _runtime_modules(), ids=lambda path: path.name)
def test_the_runtime_never_imports_the_tools_or_dev_only_packages(module: Path) -> None:
    tree = ast.parse(module.read_text(), filename=str(module))
    found = [f"{module.name}:{line} imports {name}" for line, name in _imports(tree, skip_type_checking=False)]
    assert [entry for entry in found if entry.rsplit(" ", 1)[1] in NEVER] == []


@pytest.mark.parametrize("module", _runtime_modules(), ids=lambda path: path.name)
def test_every_import_the_runtime_runs_is_in_the_image(module: Path) -> None:
    """Standard library, the package itself, or a distribution the image installs; type-only imports aside."""
    image = _image_distributions()
    providers = packages_distributions()
    missing = []
    for line, name in _imports(ast.parse(module.read_text(), filename=str(module)), skip_type_checking=True):
        if name in sys.stdlib_module_names or name == "onnx_lambda":
            continue
        distributions = {_normalized(d) for d in providers.get(name, [])}
        if not distributions & image:
            provided_by = ", ".join(sorted(distributions)) or "not installed here"
            missing.append(f"{module.name}:{line} imports {name} ({provided_by})")
    assert missing == [], "not in requirements/runtime.txt or the base image"
