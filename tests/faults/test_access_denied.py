"""S3 refusing the function's role at init: a real AccessDenied, and a hint that names the missing permission.

The refusal is real: a moto server of its own (so no other test sees it) enforcing IAM, which it does for
every request once ``/moto-api/reset-auth`` is given a count of 0. Like S3, moto then checks the request's
signature against an IAM user's access key and that user's policies, and tells ``GetObject`` from
``GetObjectVersion`` (a GET with ``versionId``). The function runs under the real Lambda runtime as that
user, with a policy that allows only ``s3:GetObject``: the classic mistake, since the deployment pins
every object by VersionId.
"""

from __future__ import annotations

import json
import re
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from onnx_lambda_tools.local.lambda_runtime import LambdaEnvironment
from tests.faults.support import (
    TABULAR,
    Published,
    emf_metric_names,
    function_environment,
    health_event,
    infer_event,
    init_error,
    json_lines,
    publish_model,
    tabular_body,
)
from tests.integration.moto import ACCESS_KEY, REGION, s3_client, start_moto_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FUNCTION_USER = "inference-function"


@dataclass(frozen=True)
class EnforcingS3:
    endpoint_url: str
    iam: Any  # an IAM client signed by an administrator of the moto account (no IAM stubs installed)
    published: Published
    function_keys: dict[str, str]  # the function's AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY

    def allow_function(self, actions: list[str]) -> None:
        """The function's whole policy: ``actions`` on the published model's prefix, nothing else."""
        resource = f"arn:aws:s3:::{self.published.bucket}/{self.published.prefix}/*"
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resource}]}
        self.iam.put_user_policy(UserName=FUNCTION_USER, PolicyName="model-read", PolicyDocument=json.dumps(policy))


def access_key(iam: Any, user: str, policy: dict[str, object] | None = None) -> dict[str, str]:
    iam.create_user(UserName=user)
    if policy is not None:
        iam.put_user_policy(UserName=user, PolicyName="policy", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}


@pytest.fixture(scope="module")
def enforcing_s3(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnforcingS3]:
    with start_moto_server(tmp_path_factory.mktemp("moto-iam") / "moto.log") as server:
        url = server.endpoint_url
        s3 = s3_client(url)
        bucket = f"models-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        published = publish_model(s3, bucket, models_dir)
        setup_iam = boto3.client(
            "iam", endpoint_url=url, region_name=REGION, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=ACCESS_KEY
        )
        admin = access_key(
            setup_iam,
            "admin",
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]},
        )
        function_keys = access_key(setup_iam, FUNCTION_USER)
        # From here on, every request must be signed by an IAM user's key and allowed by its policies.
        enforce = urllib.request.Request(
            f"{url}/moto-api/reset-auth", data=b"0", method="POST", headers={"content-type": "text/plain"}
        )
        with urllib.request.urlopen(enforce) as response:  # nosec B310  # loopback
            assert json.loads(response.read())["status"] == "ok"
        iam = boto3.client(
            "iam",
            endpoint_url=url,
            region_name=REGION,
            aws_access_key_id=admin["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=admin["AWS_SECRET_ACCESS_KEY"],
        )
        yield EnforcingS3(url, iam, published, function_keys)


def test_access_denied_names_the_permission_and_granting_it_is_enough(
    enforcing_s3: EnforcingS3, tmp_path: Path
) -> None:
    published = enforcing_s3.published
    enforcing_s3.allow_function(["s3:GetObject"])
    environment = function_environment(
        [published.source()], enforcing_s3.endpoint_url, tmp_path / "cache", **enforcing_s3.function_keys
    )
    log = tmp_path / "function.log"
    with LambdaEnvironment(environment, log_path=log, function_name=f"denied-{uuid.uuid4().hex[:6]}") as fn:
        message = init_error(fn.invoke(health_event()))
        assert init_error(fn.invoke(infer_event(TABULAR, tabular_body()))) == message, "no request is ever served"

        # The hint: which object, and the IAM permissions the role needs (botocore's own message names none).
        assert f"s3://{published.bucket}/{published.prefix}/" in message
        named = sorted(set(re.findall(r"\bs3:[A-Za-z]+\b", message)))
        assert "s3:GetObjectVersion" in named, message
        failures = [line for line in json_lines(log) if line.get("message") == "model load failed"]
        assert [line["reason"] for line in failures] == [message, message]
        assert "ModelLoadFailure" in emf_metric_names(log)

        # The permissions it names are the fix: granted (and nothing more), the next init serves.
        enforcing_s3.allow_function(named)
        ready = fn.invoke(health_event())
        assert not ready.function_error, ready.payload
        assert ready.payload["statusCode"] == 200
        answer = fn.invoke(infer_event(TABULAR, tabular_body()))
        assert answer.payload["statusCode"] == 200, answer.payload
