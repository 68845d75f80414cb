"""Fixtures shared by every test layer: the built models, the local AWS stand-in and the local stack."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import settings as hypothesis_settings

from onnx_lambda_tools.invoke import function_environment
from tests.servers import LambdaService, LocalService, running_serve

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]

# CI explores the same examples on every run, so a red CI always means a change broke something; a
# developer's runs stay random and keep finding new cases (each becomes a regression test).
hypothesis_settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / "models"


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The models `make model` builds (`make test` builds them first)."""
    for name in ("all-minilm-l6-v2", "all-minilm-l6-v2-fp32", "breast-cancer-classifier"):
        if not (MODELS_DIR / name / "manifest.json").is_file():
            pytest.fail(f"{MODELS_DIR / name} is missing: run `make model`")
    return MODELS_DIR


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The endpoint URL of one moto server (S3, Cognito, ...) on loopback, shared by the whole session.

    Tests share its state, so each creates its own buckets and pools under unique names.
    """
    from tests.integration.moto import start_moto_server

    with start_moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server.endpoint_url


@pytest.fixture(scope="session")
def local_service(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalService]:
    home = tmp_path_factory.mktemp("serve")
    with running_serve(home) as (url, token, env, _):
        yield LocalService(url=url, token=token, env=env, state_file=home / "local-stack.json")


@pytest.fixture(scope="session")
def lambda_service(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LambdaService]:
    home = tmp_path_factory.mktemp("serve-lambda")
    with running_serve(home, "--lambda", "--lambda-concurrency", "2") as (url, token, env, log):
        yield LambdaService(url=url, token=token, env=env, state_file=home / "local-stack.json", log=log)


@pytest.fixture
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Code under test builds its own AWS clients, as in Lambda; these are the only settings it may find."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture(scope="module")
def s3(moto_server: str) -> S3Client:
    from tests.integration.moto import s3_client

    return s3_client(moto_server)


@pytest.fixture
def bucket(s3: S3Client) -> str:
    """A fresh versioned bucket on the local S3, as the template creates it."""
    name = f"models-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


@pytest.fixture(scope="module")
def lambda_handler(models_dir: Path) -> Iterator[Handler]:
    """The Lambda handler module, imported in-process with the function's environment (local models)."""
    saved = dict(os.environ)
    os.environ.update(function_environment(models_dir))
    from onnx_lambda.config import get_settings

    get_settings.cache_clear()
    from onnx_lambda import handler

    yield handler.lambda_handler
    os.environ.clear()
    os.environ.update(saved)
    get_settings.cache_clear()
