"""The image's pinned requirements and the pip-audit wrapper, checked offline.

``requirements/runtime.txt`` is generated (``make requirements``); these tests catch a lock that drifted
from pyproject, lost its hashes, or leaked a machine path, and pin down how the audit wrapper tells
"vulnerable" from "could not check".
"""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "runtime.txt"
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)")


def pins() -> dict[str, tuple[Version, list[str]]]:
    """Each pinned package (canonical name) with its version and its hashes."""
    found: dict[str, tuple[Version, list[str]]] = {}
    current: str | None = None
    for line in LOCK.read_text().splitlines():
        match = PIN.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            found[current] = (Version(match.group(2)), [])
        elif current and line.strip().startswith("--hash=sha256:"):
            found[current][1].append(line.strip().removeprefix("--hash=sha256:").rstrip(" \\"))
        elif not line.startswith(" "):
            current = None
    return found


def base_image_packages() -> set[str]:
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(r"^BASE_IMAGE_PACKAGES := (.+)$", makefile, flags=re.MULTILINE)
    assert match, "the Makefile names the packages the base image provides"
    return {canonicalize_name(name) for name in match.group(1).split()}


def test_every_runtime_dependency_is_pinned_within_its_specifier() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    locked = pins()
    provided = base_image_packages()
    for dependency in map(Requirement, dependencies):
        name = canonicalize_name(dependency.name)
        if name in provided:
            assert name not in locked, f"{name} comes with the base image; the lock must leave it out"
            continue
        assert name in locked, f"{name} is a runtime dependency but not in {LOCK.name}: run `make requirements`"
        version, _ = locked[name]
        assert dependency.specifier.contains(version, prereleases=True), f"{name}=={version} vs {dependency}"


def test_every_pin_carries_sha256_hashes_and_nothing_else_is_unpinned() -> None:
    locked = pins()
    assert len(locked) > 10
    for name, (_, hashes) in locked.items():
        assert hashes, f"{name} has no --hash: pip --require-hashes would refuse the file"
        assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in hashes), name
    requirement_lines = [line for line in LOCK.read_text().splitlines() if line and line[0].isalnum()]
    assert all(PIN.match(line) for line in requirement_lines), "every requirement is an exact == pin"
    assert not set(locked) & base_image_packages()


def test_the_lock_names_its_generator_and_no_machine_or_index() -> None:
    text = LOCK.read_text()
    assert "make requirements" in text.splitlines()[1]
    assert "--index-url" not in text
    assert "--extra-index-url" not in text
    assert "file://" not in text
    assert str(ROOT) not in text


# --- the pip-audit wrapper ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def audit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit_requirements", ROOT / "scripts" / "audit_requirements.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def report(*dependencies: dict[str, Any]) -> dict[str, Any]:
    """A document shaped like ``pip-audit --format json``'s."""
    return {"dependencies": list(dependencies), "fixes": []}


def test_a_known_vulnerability_is_reported_with_its_fix(audit: ModuleType) -> None:
    document = report(
        {"name": "pyjwt", "version": "2.3.0", "vulns": [{"id": "PYSEC-2022-202", "fix_versions": ["2.4.0"]}]},
        {"name": "numpy", "version": "2.5.5", "vulns": []},
    )
    assert audit.vulnerabilities(document) == ["pyjwt 2.3.0: PYSEC-2022-202 (fixed in 2.4.0)"]
    assert audit.skipped(document) == (0, 2)


def test_every_release_unknown_is_the_offline_case(audit: ModuleType) -> None:
    document = report(
        {"name": "numpy", "skip_reason": "Dependency not found on PyPI and could not be audited: numpy (2.5.5)"},
        {"name": "orjson", "skip_reason": "Dependency not found on PyPI and could not be audited: orjson (3.13.0)"},
    )
    assert audit.vulnerabilities(document) == []
    assert audit.skipped(document) == (2, 2)


def test_the_wrapper_runs_on_the_real_lock(audit: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    """Offline or online, it either audits every pin or says plainly that it could not; it never crashes."""
    status = audit.main([str(LOCK), "--timeout", "5"])
    output = capsys.readouterr()
    if status == 0:
        assert "none vulnerable" in output.out or "could NOT check" in output.out, output
    else:
        assert "known vulnerabilities" in output.err, output
