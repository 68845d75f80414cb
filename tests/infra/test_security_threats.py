"""SECURITY.md's threat table names, for each control, the test that proves it: those tests must exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.infra.conftest import ROOT

SECTION = "## Threats, their controls, and the tests that prove them"


def threat_rows() -> list[str]:
    text = (ROOT / "SECURITY.md").read_text()
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| Threat")]


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def test_every_threat_names_a_control_and_a_test_that_exists() -> None:
    rows = threat_rows()
    assert len(rows) >= 20
    for row in rows:
        threat, control, tests = (cell.strip() for cell in row.strip("|").split(" | "))
        assert all((threat, control, tests)), row
        current: Path | None = None
        for reference in re.findall(r"`([^`]+)`", tests):
            if reference.startswith("make "):
                continue
            path_part, _, name = reference.partition("::")
            if path_part.endswith(".py"):
                current = ROOT / "tests" / path_part
                assert current.is_file(), f"{reference}: no such test file"
            else:  # a bare name continues the file named before it
                assert current is not None, reference
                name = path_part
            if name:
                assert name in defined_tests(current), f"{reference}: no such test in {current.name}"
