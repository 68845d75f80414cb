"""`sam build` then `sam local invoke` of every committed event, against the local S3 in a container.

The reference is the same handler in-process (`onnx-lambda invoke`): the image must answer each event
with the same status and body. Before the fixes of issue 10 each of these failed in the image: the
metadata, health and OpenAPI routes answered 500 (no distribution metadata in /var/task), `sam build`
needed python3.12 on PATH or a pullable build image, `sam local invoke` read the source template
("ImageUri not provided"), and the function could not be pointed at a local S3.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from onnx_lambda_tools.local.cloudformation import load_template
from tests.conftest import Handler
from tests.container.conftest import EVENT_NAMES, ROOT
from tests.container.same_response import assert_same_response
from tests.expected_events import EXPECTED, check_response, load_event


def test_every_committed_event_has_an_expectation() -> None:
    assert set(EVENT_NAMES) == set(EXPECTED)


def test_sam_build_builds_the_image_and_the_zip_functions(sam_built: Path) -> None:
    built = load_template(sam_built)
    resources = built["Resources"]
    assert resources["InferenceFunction"]["Properties"]["ImageUri"].startswith("inferencefunction:")
    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::Serverless::Function" and "CodeUri" in resource["Properties"]:
            assert (sam_built.parent / resource["Properties"]["CodeUri"]).is_dir(), logical_id
    layer = resources["HelperLayer"]["Properties"]["ContentUri"]
    assert (sam_built.parent / layer / "python" / "onnx_lambda_helpers" / "golden.py").is_file()


@pytest.mark.parametrize("name", EVENT_NAMES)
def test_sam_local_invoke_answers_as_the_handler_in_process(
    name: str,
    sam_invoked: dict[str, tuple[dict[str, Any], str]],
    lambda_handler: Handler,
    models_dir: Path,
) -> None:
    from onnx_lambda_tools.invoke import LambdaContext

    response, log = sam_invoked[name]
    check_response(name, response, models_dir)
    assert_same_response(name, response, lambda_handler(load_event(name), LambdaContext()))
    # After END, SAM stops the emulator under the runtime client, which logs its own failed poll for the
    # next event; only what came before is the function's.
    assert "Traceback" not in log.split("END RequestId")[0]


def test_the_function_read_its_models_from_the_local_s3(sam_invoked: dict[str, tuple[dict[str, Any], str]]) -> None:
    _, log = sam_invoked["embeddings"]
    loaded = [json.loads(line) for line in log.splitlines() if line.startswith("{") and '"model loaded"' in line]
    assert {line["model"] for line in loaded} == {"all-minilm-l6-v2", "breast-cancer-classifier"}
    assert all(line["uri"].startswith("s3://") and "versionId=" in line["uri"] for line in loaded)


def test_make_sam_invoke_prints_the_response_last(sam_built: Path, invoke_env_file: Path, models_dir: Path) -> None:
    run = subprocess.run(
        ["make", "--no-print-directory", "sam-invoke", "EVENT=events/embeddings.json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    check_response("embeddings", json.loads(run.stdout.strip().splitlines()[-1]), models_dir)
