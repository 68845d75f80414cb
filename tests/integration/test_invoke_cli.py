"""`onnx-lambda invoke`, the sam-local-invoke look-alike, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.expected_events import EVENTS_DIR, check_response

ROOT = Path(__file__).resolve().parents[2]


def test_invoke_prints_the_response_and_logs_to_stderr(models_dir: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "onnx_lambda_tools.cli", "invoke", str(EVENTS_DIR / "embeddings.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    check_response("embeddings", json.loads(run.stdout), models_dir)
    stderr = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    assert any(line.get("message") == "model loaded" for line in stderr)
    assert any("_aws" in line and "InferenceTime" in line for line in stderr)
