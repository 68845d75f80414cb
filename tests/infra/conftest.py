"""Fixtures for the infrastructure tests: the template before and after the SAM transform.

The transform runs offline in aws-sam-cli's own virtualenv (the project's doesn't carry samtranslator;
aws-sam-cli pins it), through ``sam_transform.py`` in a subprocess.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

from onnx_lambda_tools.local import cloudformation
from onnx_lambda_tools.local.events import build_event
from onnx_lambda_tools.local.lambda_runtime import LambdaEnvironment
from onnx_lambda_tools.publish import PublishedModel, publish

ROOT = Path(__file__).resolve().parents[2]
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
TEMPLATE = ROOT / "template.yaml"
#: Every optional resource switched on: a model, provisioned concurrency with autoscaling, alarm e-mail.
ALL_ON: dict[str, Any] = {
    "ModelKey": "models/all-minilm-l6-v2/1-0123456789abcdef/model.onnx",
    "ModelVersionId": "3sL4kqtJlcpXroDTDmJ-rmSpXd3dIbrH",
    "ManifestVersionId": "Gq0Dw3Hs1dM5k9lPv7Tr2Yx8Zc4Nb6Ju",
    "ManifestSha256": "0123456789abcdef" + "ab" * 24,
    "TokenizerVersionId": "nP5Lr8Kt2Wq7Vx3Bz9Mc4Hd6Fj1Gs0Ae",
    "OptimizedModelVersionId": "Wd4Tq7Lm1Zs8Kx2Vb5Nh9Pc3Jf6Ry0Gu",
    "ProvisionedConcurrency": 2,
    "ProvisionedConcurrencyMax": 10,
    "AlarmEmail": "ops@example.com",
    "CorsAllowOrigins": "https://app.example.com",
}


class Evaluator(cloudformation.Evaluator):
    """The template evaluated as CloudFormation would, for assertions: a resource the test doesn't supply
    reads as a placeholder (``<Ref X>``, ``<X.Arn>``) instead of being :class:`~cloudformation.Unresolved`."""

    def resource(self, key: str) -> Any:
        try:
            return super().resource(key)
        except cloudformation.Unresolved:
            return f"<{key}>" if "." in key else f"<Ref {key}>"


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
    assert spec is not None
    assert spec.loader is not None
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


# ------------------------------------------------------------------------------------------------ a local deployment

#: The model the local deployment serves: the default one, which has both golden requests.
DEPLOYED_MODEL = "all-minilm-l6-v2"
LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class LocalDeployment:
    """What `sam deploy` would have set up, on loopback: the bucket with a published model, and the
    inference function (the image's CMD under the Runtime Interface Emulator) pinned to it."""

    endpoint_url: str
    bucket: str
    model: PublishedModel
    function: LambdaEnvironment
    transformed: dict[str, Any]
    manifest: dict[str, Any]

    @property
    def model_parameters(self) -> dict[str, str]:
        return self.model.parameters()

    @property
    def lambda_endpoint(self) -> str:
        """Where the emulator serves the Lambda Invoke API (FunctionName ``function``)."""
        return f"http://127.0.0.1:{self.function.port}"

    def environment_of(self, function: str, resources: Mapping[str, str]) -> dict[str, str]:
        """A function's environment as the template gives it, for this deployment's model."""
        evaluator = Evaluator(self.transformed, self.model_parameters, {"ModelBucket": self.bucket, **resources})
        variables = self.transformed["Resources"][function]["Properties"]["Environment"]["Variables"]
        return {name: str(value) for name, value in evaluator.evaluate(variables).items()}

    def put_manifest_beside(self, prefix: str, manifest: Mapping[str, Any]) -> dict[str, str]:
        """Upload a manifest under another prefix; return the variables that pin it (as the template's)."""
        s3 = boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
        body = json.dumps(manifest).encode()
        put = s3.put_object(Bucket=self.bucket, Key=f"{prefix}/manifest.json", Body=body)
        return {
            "MODEL_URI": f"s3://{self.bucket}/{prefix}/model.onnx?versionId={self.model.version_id}",
            "MANIFEST_VERSION_ID": put["VersionId"],
            "MANIFEST_SHA256": hashlib.sha256(body).hexdigest(),
        }


@pytest.fixture(scope="session")
def local_deployment(
    moto_server: str,
    models_dir: Path,
    transformed: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LocalDeployment]:
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
    bucket = f"infra-models-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    model = publish(models_dir / DEPLOYED_MODEL, bucket, s3)
    home = tmp_path_factory.mktemp("function")
    evaluator = Evaluator(
        transformed,
        model.parameters(),
        {"ModelBucket": bucket},
    )
    variables = transformed["Resources"]["InferenceFunction"]["Properties"]["Environment"]["Variables"]
    environment = {name: str(value) for name, value in evaluator.evaluate(variables).items()}
    # Local-only additions: where S3 is, credentials moto accepts, and a fresh /tmp cache.
    environment |= {
        **LOCAL_CREDENTIALS,
        "AWS_REGION": "us-east-1",
        "ONNX_LAMBDA_S3_ENDPOINT_URL": moto_server,
        "ONNX_LAMBDA_CACHE_DIR": str(home / "cache"),
    }
    with LambdaEnvironment(environment, log_path=home / "function.log") as function:
        ready = function.invoke(
            build_event(method="GET", path="/v2/health/ready", route_key="GET /v2/health/ready"), timeout=120
        )
        if ready.function_error or not isinstance(ready.payload, dict) or ready.payload.get("statusCode") != 200:
            pytest.fail(f"the function did not become ready: {ready.payload}\n{(home / 'function.log').read_text()}")
        yield LocalDeployment(
            endpoint_url=moto_server,
            bucket=bucket,
            model=model,
            function=function,
            transformed=transformed,
            manifest=json.loads((models_dir / DEPLOYED_MODEL / "manifest.json").read_text()),
        )
