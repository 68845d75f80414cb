"""Parameter values for the template tests that vary one parameter at a time.

``BASE`` is a stack with a model and every other parameter at its default; ``CHANGED`` gives each
parameter of template.yaml another valid value. A test that goes through ``CHANGED`` covers every
parameter, including ones added later: ``test_every_parameter_has_a_changed_value`` fails until the new
one gets a value here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tests.infra.conftest import ALL_ON

MODEL_PARAMETERS = (
    "ModelKey",
    "ModelVersionId",
    "ManifestVersionId",
    "ManifestSha256",
    "TokenizerVersionId",
    "OptimizedModelVersionId",
)
BASE: dict[str, Any] = {name: ALL_ON[name] for name in MODEL_PARAMETERS}

CHANGED: dict[str, Any] = {
    "Stage": "prod",
    "ModelKeyPrefix": "team-models",
    "ModelKey": "models/all-minilm-l6-v2/2-fedcba9876543210/model.onnx",
    "ModelVersionId": "Xw0Bq1bd8PRzBlHsb6Hj3s0H2.Fy0k1N",
    "ManifestVersionId": "Rt7Yh2Nm5Kq9Wv3Xc8Bz1Ld4Fg6Jp0Se",
    "ManifestSha256": "fedcba9876543210" + "cd" * 24,
    "TokenizerVersionId": "Hs3Kd8Pq1Zx6Vn9Wm2Ct5Lb7Jr4Gf0Ya",
    "OptimizedModelVersionId": "Mb6Gx1Rk9Qt3Hw7Zp2Dn5Ls8Vc0Fj4Ye",
    "ModelPublisherArn": "arn:aws:iam::123456789012:role/ci/model-publisher",
    "ModelObjectLockDays": 30,
    "CloudFormationExecutionRoleArn": "arn:aws:iam::123456789012:role/cfn-execution",
    "MemorySize": 3008,
    "Architecture": "arm64",
    "ReservedConcurrency": 20,
    "ProvisionedConcurrency": 2,
    "ProvisionedConcurrencyMax": 10,
    "DeploymentType": "Canary10Percent5Minutes",
    "LogLevel": "DEBUG",
    "RouteScopes": "inference/invoke",
    "CorsAllowOrigins": "https://app.example.com",
    "ThrottlingRateLimit": 50,
    "ThrottlingBurstLimit": 100,
    "HealthThrottlingRateLimit": 2,
    "HealthThrottlingBurstLimit": 4,
    "IssuerUserPoolId": "us-east-1_Primary1",
    "IssuerRegion": "us-east-1",
    "IssuerUserClientId": "primaryusers",
    "IssuerMachineClientId": "primarymachines",
    "IssuerDomainPrefix": "onnx-lambda-prod-123456789012",
    "AlarmEmail": "ops@example.com",
    "MonthlyBudgetUsd": 0,
    "LogRetentionDays": 90,
    "DurationP99ThresholdMs": 500,
    "ApiLatencyP99ThresholdMs": 800,
    "NoncurrentModelVersionDays": 30,
}


def violations(definition: Mapping[str, Any], value: Any) -> list[str]:
    """Why CloudFormation would refuse ``value`` for a parameter so defined (empty when it accepts it)."""
    problems = []
    if "AllowedValues" in definition and str(value) not in [str(allowed) for allowed in definition["AllowedValues"]]:
        problems.append(f"{value!r} is not one of {definition['AllowedValues']}")
    if definition.get("Type", "String") == "Number":
        number = float(value)
        if "MinValue" in definition and number < float(definition["MinValue"]):
            problems.append(f"{value} < MinValue {definition['MinValue']}")
        if "MaxValue" in definition and number > float(definition["MaxValue"]):
            problems.append(f"{value} > MaxValue {definition['MaxValue']}")
        return problems
    text = str(value)
    if "AllowedPattern" in definition and re.fullmatch(definition["AllowedPattern"], text) is None:
        problems.append(f"{text!r} does not match {definition['AllowedPattern']}")
    if "MaxLength" in definition and len(text) > int(definition["MaxLength"]):
        problems.append(f"{len(text)} characters, over MaxLength {definition['MaxLength']}")
    if "MinLength" in definition and len(text) < int(definition["MinLength"]):
        problems.append(f"{len(text)} characters, under MinLength {definition['MinLength']}")
    return problems
