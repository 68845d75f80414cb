"""`onnx-lambda publish` prints the `sam deploy` line that rolls its model out, and it runs as printed.

AWS is moto's server (CloudFormation with the stack's ModelBucketName output, and S3), reached through
the standard ``AWS_ENDPOINT_URL``; the command is the one docs/operations.md prints, run in the
repository so it reads samconfig.toml as `sam deploy --config-env` does. The printed line then goes
through SAM CLI's own parser with samconfig.toml loaded: what it would deploy, short of AWS.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from onnx_lambda_tools.cli import main
from tests.infra.conftest import LOCAL_CREDENTIALS, ROOT, SAM_PYTHON

SAM_DEPLOY_SETTINGS = """
import json, sys
import click
from samcli.cli.main import cli

ctx = cli.make_context("sam", sys.argv[1:])
name, command, rest = cli.resolve_command(ctx, ctx.protected_args + ctx.args)
deploy = command.make_context(name, rest, parent=ctx)
print(json.dumps({"stack_name": deploy.params["stack_name"], "region": deploy.default_map["region"],
                  "parameter_overrides": deploy.params["parameter_overrides"]}))
"""


def stack_with_a_bucket(endpoint_url: str, stack_name: str, region: str) -> str:
    """A stack in moto's CloudFormation with the template's ModelBucketName output; returns the bucket."""
    cloudformation = boto3.client("cloudformation", endpoint_url=endpoint_url, region_name=region,
                                  aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
    bucket = f"models-{uuid.uuid4().hex[:12]}"
    template = {
        "Resources": {
            "ModelBucket": {
                "Type": "AWS::S3::Bucket",
                "Properties": {"BucketName": bucket},
            }
        },
        "Outputs": {"ModelBucketName": {"Value": {"Ref": "ModelBucket"}}},
    }
    existing = {s["StackName"] for s in cloudformation.describe_stacks()["Stacks"]}
    if stack_name in existing:
        cloudformation.delete_stack(StackName=stack_name)
    cloudformation.create_stack(StackName=stack_name, TemplateBody=json.dumps(template))
    # As the template's bucket is (moto's CloudFormation leaves versioning off).
    s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name=region,
                      aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return bucket


@pytest.fixture
def aws_is_moto(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in {**LOCAL_CREDENTIALS, "AWS_ENDPOINT_URL": moto_server}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(ROOT)
    return moto_server


def published_parameters(bucket: str, model_dir: Path) -> dict[str, str]:
    """The model parameters, read back from the bucket as it is after publishing, and the manifest on disk."""
    s3 = boto3.client("s3", region_name="us-east-1")
    latest = {
        version["Key"].rsplit("/", 1)[1]: version
        for version in s3.list_object_versions(Bucket=bucket)["Versions"]
        if version["IsLatest"]
    }
    return {
        "ModelKey": latest["model.onnx"]["Key"],
        "ModelVersionId": latest["model.onnx"]["VersionId"],
        "ManifestVersionId": latest["manifest.json"]["VersionId"],
        "ManifestSha256": hashlib.sha256((model_dir / "manifest.json").read_bytes()).hexdigest(),
        "TokenizerVersionId": latest["tokenizer.json"]["VersionId"] if "tokenizer.json" in latest else "",
        "OptimizedModelVersionId": latest["model.optimized.onnx"]["VersionId"],
    }


def sam_deploy_settings(line: str) -> dict[str, Any]:
    words = shlex.split(line)
    assert words[:2] == ["sam", "deploy"], line
    run = subprocess.run(
        [str(SAM_PYTHON), "-c", SAM_DEPLOY_SETTINGS, *words[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    settings: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return settings


@pytest.mark.parametrize(
    ("arguments", "stack_name", "region", "config_env"),
    [
        (["--config-env", "dev"], "onnx-lambda-dev", "us-east-1", "dev"),
        (
            ["--stack-name", "onnx-lambda-prod", "--region", "eu-west-1"],
            "onnx-lambda-prod",
            "eu-west-1",
            "prod-secondary",
        ),
    ],
    ids=["config-env", "stack-and-region"],
)
def test_publish_prints_a_sam_deploy_line_that_runs_as_printed(
    aws_is_moto: str,
    models_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    stack_name: str,
    region: str,
    config_env: str,
) -> None:
    bucket = stack_with_a_bucket(aws_is_moto, stack_name, region)
    overrides_file = tmp_path / "build" / "model.overrides"
    code = main(["publish", str(models_dir / "all-minilm-l6-v2"), *arguments, "--write-overrides", str(overrides_file)])
    assert code == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert f"s3://{bucket}/" in printed[0]
    overrides = overrides_file.read_text().strip()
    assert printed[-1] == f"sam deploy --config-env {config_env} --parameter-overrides {overrides}"
    settings = sam_deploy_settings(printed[-1])
    assert settings["stack_name"] == stack_name
    assert settings["region"] == region
    assert settings["parameter_overrides"] == published_parameters(bucket, models_dir / "all-minilm-l6-v2")


def test_without_an_environment_it_prints_the_overrides_not_a_command(
    aws_is_moto: str, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = f"models-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert main(["publish", str(models_dir / "breast-cancer-classifier"), "--bucket", bucket]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert not last.startswith("sam deploy")
    assert last.startswith("parameter overrides for `sam deploy --config-env <environment> --parameter-overrides`: ")
    # A model without a tokenizer passes TokenizerVersionId as SAM's empty string, so a stack that served a
    # text model before doesn't keep its tokenizer pin.
    overrides = last.split(": ", 1)[1]
    settings = sam_deploy_settings(f"sam deploy --config-env dev --parameter-overrides {overrides}")
    expected = published_parameters(bucket, models_dir / "breast-cancer-classifier")
    assert expected["TokenizerVersionId"] == ""
    assert settings["parameter_overrides"] == expected


def test_a_principal_that_is_not_the_publisher_gets_told_whom_to_publish_as(
    aws_is_moto: str, models_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bucket policy denies uploads to everyone but the model publisher (tests/infra/test_iam.py); moto
    doesn't evaluate bucket policies, so S3's answer to anyone else stands in: AccessDenied on PutObject."""
    import botocore.exceptions

    from onnx_lambda_tools import publish as publish_module

    def denied(*args: object, **kwargs: object) -> None:
        error = {"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}
        raise botocore.exceptions.ClientError(error, "PutObject")  # type: ignore[arg-type]

    stack_with_a_bucket(aws_is_moto, "onnx-lambda-dev", "us-east-1")
    monkeypatch.setattr(publish_module, "publish", denied)
    assert main(["publish", str(models_dir / "all-minilm-l6-v2"), "--config-env", "dev"]) == 2
    out = capsys.readouterr().out
    assert "AccessDenied" in out
    assert "ModelPublisherPrincipalArn" in out
    assert "AWS_PROFILE=onnx-lambda-<environment>-publisher onnx-lambda publish" in out
    assert "Traceback" not in out
