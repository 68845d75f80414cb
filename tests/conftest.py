"""Fixtures shared by every test layer: where the built models are."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / "models"


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The models `make model` builds (`make test` builds them first)."""
    for name in ("all-minilm-l6-v2", "all-minilm-l6-v2-fp32", "breast-cancer-classifier"):
        if not (MODELS_DIR / name / "manifest.json").is_file():
            pytest.fail(f"{MODELS_DIR / name} is missing: run `make model`")
    return MODELS_DIR
