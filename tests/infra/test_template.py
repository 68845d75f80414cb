"""Assertions on template.yaml after the SAM transform: what CloudFormation would be asked to create."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from tests.infra.conftest import ALL_ON, Evaluator

#: The routes of the API contract: (method, path) -> needs a token.
ROUTES = {
    ("get", "/v2/health/live"): False,
    ("get", "/v2/health/ready"): False,
    ("get", "/v2"): True,
    ("post", "/v2/repository/index"): True,
    ("get", "/v2/models/{model_name}"): True,
    ("get", "/v2/models/{model_name}/ready"): True,
    ("get", "/v2/models/{model_name}/versions/{model_version}"): True,
    ("get", "/v2/models/{model_name}/versions/{model_version}/ready"): True,
    ("post", "/v2/models/{model_name}/infer"): True,
    ("post", "/v2/models/{model_name}/versions/{model_version}/infer"): True,
    ("post", "/v1/embeddings"): True,
    ("get", "/v1/models"): True,
}
DEFAULT_SCOPES = ["inference/invoke", "aws.cognito.signin.user.admin"]


def resources_of(template: Mapping[str, Any], resource_type: str) -> dict[str, Any]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == resource_type}


def api_operations(transformed: Mapping[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in transformed["Resources"]["HttpApi"]["Properties"]["Body"]["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def allow_statements(transformed: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every Allow statement of every identity policy and resource policy in the template."""
    for name, resource in transformed["Resources"].items():
        properties = resource.get("Properties", {})
        documents = []
        if resource["Type"] == "AWS::IAM::Role":
            documents = [policy["PolicyDocument"] for policy in properties.get("Policies", [])]
        elif resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::S3::BucketPolicy"):
            documents.append(properties["PolicyDocument"])
        for document in documents:
            statements = document["Statement"]
            for statement in statements if isinstance(statements, list) else [statements]:
                if statement["Effect"] == "Allow":
                    yield name, statement


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# ------------------------------------------------------------------------------------------------ routes


def test_routes_are_exactly_the_api_contract(transformed: dict[str, Any]) -> None:
    assert {(method, path) for method, path, _ in api_operations(transformed)} == set(ROUTES)


@pytest.mark.parametrize(
    ("route_scopes", "expected"),
    [
        (None, DEFAULT_SCOPES),
        ("inference/invoke", ["inference/invoke"]),
        (",".join(DEFAULT_SCOPES), DEFAULT_SCOPES),
    ],
)
def test_every_protected_route_has_the_authorizer_and_the_scopes(
    transformed: dict[str, Any], template: dict[str, Any], route_scopes: str | None, expected: list[str]
) -> None:
    """Evaluated as CloudFormation would, for one scope, two, and the default."""
    evaluator = Evaluator(transformed, {"RouteScopes": route_scopes} if route_scopes else {})
    if route_scopes is None:
        assert template["Parameters"]["RouteScopes"]["Default"] == ",".join(DEFAULT_SCOPES)
    for method, path, operation in api_operations(transformed):
        security = evaluator.evaluate(operation["security"])
        if ROUTES[(method, path)]:
            assert security == [{"CognitoJwt": expected}], f"{method.upper()} {path}"
        else:
            assert security == [{"NONE": []}], f"{method.upper()} {path} must carry no auth"


def test_route_scopes_are_machine_tokens_with_or_without_users(template: dict[str, Any]) -> None:
    """inference/invoke always: the machine client gets it by client_credentials, and the canary calls with it."""
    allowed = template["Parameters"]["RouteScopes"]["AllowedValues"]
    assert allowed == [",".join(DEFAULT_SCOPES), "inference/invoke"]
    canary = template["Resources"]["SyntheticCanaryFunction"]["Properties"]["Environment"]["Variables"]
    assert all(value.split(",")[0] == canary["TOKEN_SCOPE"] for value in allowed)


def test_the_function_applies_the_same_scopes(transformed: dict[str, Any]) -> None:
    environment = transformed["Resources"]["InferenceFunction"]["Properties"]["Environment"]["Variables"]
    for scopes in ("inference/invoke", ",".join(DEFAULT_SCOPES)):
        assert Evaluator(transformed, {"RouteScopes": scopes}).evaluate(environment["ONNX_LAMBDA_JWT_SCOPES"]) == scopes


def test_jwt_authorizer_trusts_the_pool_and_both_clients(transformed: dict[str, Any]) -> None:
    scheme = transformed["Resources"]["HttpApi"]["Properties"]["Body"]["components"]["securitySchemes"]["CognitoJwt"]
    authorizer = scheme["x-amazon-apigateway-authorizer"]
    assert authorizer["type"] == "jwt"
    assert authorizer["identitySource"] == "$request.header.Authorization"
    own = Evaluator(
        transformed, resources={"UserPool": "us-east-1_pool", "UserClient": "users", "MachineClient": "m2m"}
    )
    assert own.evaluate(authorizer["jwtConfiguration"]) == {
        "issuer": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_pool",
        "audience": ["users", "m2m"],
    }
    # The second region trusts the primary's pool, so one token works in both.
    shared = Evaluator(
        transformed,
        {
            "IssuerUserPoolId": "us-east-1_primary",
            "IssuerRegion": "us-east-1",
            "IssuerUserClientId": "primaryusers",
            "IssuerMachineClientId": "primarym2m",
        },
    )
    assert shared.evaluate(authorizer["jwtConfiguration"]) == {
        "issuer": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_primary",
        "audience": ["primaryusers", "primarym2m"],
    }
    assert not shared.condition("CreateUserPool")


def test_routes_invoke_the_live_alias(transformed: dict[str, Any]) -> None:
    for method, path, operation in api_operations(transformed):
        uri = operation["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
        assert "${InferenceFunctionAliaslive}" in uri, f"{method.upper()} {path}"


# ------------------------------------------------------------------------------------------------ IAM


def test_no_policy_grants_s3_wildcards(transformed: dict[str, Any]) -> None:
    statements = list(allow_statements(transformed))
    assert statements, "expected some policies to inspect"
    for owner, statement in statements:
        actions = [str(action).lower() for action in as_list(statement.get("Action", []))]
        assert not {"*", "s3:*"} & set(actions), f"{owner}: {statement}"
        if any(action.startswith("s3:") for action in actions):
            for resource in as_list(statement["Resource"]):
                assert json.dumps(resource) not in ('"*"', '"arn:aws:s3:::*"', '"arn:aws:s3:::*/*"'), owner


def test_the_inference_function_reads_only_the_model_objects(transformed: dict[str, Any]) -> None:
    role = transformed["Resources"]["InferenceFunctionRole"]["Properties"]
    statements = [s for policy in role["Policies"] for s in as_list(policy["PolicyDocument"]["Statement"])]
    s3 = [s for s in statements if any(str(a).startswith("s3:") for a in as_list(s["Action"]))]
    assert s3 == [
        {
            "Sid": "ReadModelObjects",
            "Effect": "Allow",
            # Every read names its VersionId, which needs s3:GetObjectVersion only: not even the latest version.
            "Action": "s3:GetObjectVersion",
            "Resource": {"Fn::Sub": "arn:${AWS::Partition}:s3:::${ModelBucket}/${ModelKeyPrefix}/*"},
        }
    ]
    # No managed policy: its logs and traces are in the statements above (tests/infra/test_iam.py).
    assert "ManagedPolicyArns" not in role


def test_the_hook_may_invoke_only_the_function_versions_read_models_and_report(transformed: dict[str, Any]) -> None:
    role = transformed["Resources"]["PreTrafficHookFunctionRole"]["Properties"]
    statements = {s["Sid"]: s for policy in role["Policies"] for s in as_list(policy["PolicyDocument"]["Statement"])}
    # Its logs and traces (WriteOwnLogs, WriteTraces): tests/infra/test_iam.py.
    assert set(statements) == {
        "InvokeInferenceVersions",
        "ReadModelManifests",
        "ReportToCodeDeploy",
        "WriteOwnLogs",
        "WriteTraces",
    }
    assert statements["InvokeInferenceVersions"]["Action"] == "lambda:InvokeFunction"
    assert statements["InvokeInferenceVersions"]["Resource"] == {"Fn::Sub": "${InferenceFunction.Arn}:*"}
    assert statements["ReadModelManifests"]["Action"] == "s3:GetObjectVersion"
    assert statements["ReportToCodeDeploy"]["Action"] == "codedeploy:PutLifecycleEventHookExecutionStatus"
    assert "${InferenceFunctionDeploymentGroup}" in statements["ReportToCodeDeploy"]["Resource"]["Fn::Sub"]
    # SAM's CodeDeploy role may invoke only hooks named CodeDeployHook_*.
    name = transformed["Resources"]["PreTrafficHookFunction"]["Properties"]["FunctionName"]
    assert Evaluator(transformed).evaluate(name).startswith("CodeDeployHook_")


def test_the_canary_reads_the_client_secret_from_its_pool_only(transformed: dict[str, Any]) -> None:
    role = transformed["Resources"]["SyntheticCanaryFunctionRole"]["Properties"]
    statements = {s["Sid"]: s for policy in role["Policies"] for s in as_list(policy["PolicyDocument"]["Statement"])}
    # Its logs and traces (WriteOwnLogs, WriteTraces): tests/infra/test_iam.py.
    assert set(statements) == {"ReadModelManifests", "ReadMachineClientSecret", "WriteOwnLogs", "WriteTraces"}
    secret = statements["ReadMachineClientSecret"]
    assert secret["Action"] == "cognito-idp:DescribeUserPoolClient"
    own = Evaluator(transformed, resources={"UserPool.Arn": "arn:aws:cognito-idp:us-east-1:123456789012:userpool/p"})
    assert own.evaluate(secret["Resource"]) == "arn:aws:cognito-idp:us-east-1:123456789012:userpool/p"
    shared = Evaluator(transformed, {"IssuerUserPoolId": "us-east-1_primary", "IssuerRegion": "us-east-1"})
    assert (
        shared.evaluate(secret["Resource"]) == "arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_primary"
    )


# ------------------------------------------------------------------------------------------------ bucket


def test_model_bucket_is_encrypted_versioned_private_and_expires_old_versions(transformed: dict[str, Any]) -> None:
    bucket = transformed["Resources"]["ModelBucket"]
    properties = bucket["Properties"]
    assert bucket["DeletionPolicy"] == "Retain"
    rule = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    assert properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    rules = properties["LifecycleConfiguration"]["Rules"]
    noncurrent = [r for r in rules if "NoncurrentVersionExpiration" in r]
    assert noncurrent
    assert noncurrent[0]["Status"] == "Enabled"
    assert Evaluator(transformed).evaluate(noncurrent[0]["NoncurrentVersionExpiration"]["NoncurrentDays"]) >= 1


def test_model_bucket_denies_requests_without_tls(transformed: dict[str, Any]) -> None:
    policies = [
        p
        for p in resources_of(transformed, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": "ModelBucket"}
    ]
    assert len(policies) == 1
    statements = as_list(policies[0]["Properties"]["PolicyDocument"]["Statement"])
    deny = [
        s
        for s in statements
        if s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert len(deny) == 1
    assert deny[0]["Principal"] == "*"
    assert deny[0]["Action"] == "s3:*"
    resources = Evaluator(transformed, resources={"ModelBucket.Arn": "arn:aws:s3:::b"}).evaluate(deny[0]["Resource"])
    assert sorted(resources) == ["arn:aws:s3:::b", "arn:aws:s3:::b/*"]


# ------------------------------------------------------------------------------------------------ rollout


def test_rollback_alarms_and_the_pre_traffic_hook_are_wired_into_the_deployment(transformed: dict[str, Any]) -> None:
    group = transformed["Resources"]["InferenceFunctionDeploymentGroup"]["Properties"]
    assert group["AlarmConfiguration"]["Enabled"] is True
    wired = {alarm["Name"]["Ref"] for alarm in group["AlarmConfiguration"]["Alarms"]}
    assert wired == {"NewVersionErrorsAlarm", "ModelLoadFailureAlarm", "Api5xxAlarm"}
    for alarm in wired:
        assert transformed["Resources"][alarm]["Type"] == "AWS::CloudWatch::Alarm"
    assert group["AutoRollbackConfiguration"]["Enabled"] is True
    assert "DEPLOYMENT_STOP_ON_ALARM" in group["AutoRollbackConfiguration"]["Events"]
    alias = transformed["Resources"]["InferenceFunctionAliaslive"]
    update = alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
    assert update["BeforeAllowTrafficHook"] == {"Ref": "PreTrafficHookFunction"}
    assert update["DeploymentGroupName"] == {"Ref": "InferenceFunctionDeploymentGroup"}


def test_the_rollback_error_alarm_watches_the_version_being_deployed(transformed: dict[str, Any]) -> None:
    version = next(iter(resources_of(transformed, "AWS::Lambda::Version")))
    dimensions = {
        d["Name"]: d["Value"] for d in transformed["Resources"]["NewVersionErrorsAlarm"]["Properties"]["Dimensions"]
    }
    assert dimensions["ExecutedVersion"] == {"Fn::GetAtt": [version, "Version"]}
    assert dimensions["Resource"] == {"Fn::Sub": "${InferenceFunction}:live"}


@pytest.mark.parametrize("deployment_type", ["AllAtOnce", "Canary10Percent5Minutes", "Linear10PercentEvery1Minute"])
def test_the_deployment_type_is_a_parameter(
    sam_transform: Callable[[Mapping[str, Any] | None], dict[str, Any]], deployment_type: str
) -> None:
    # The transform inlines the parameter's value, as CloudFormation's transform does at deploy time.
    group = sam_transform({**ALL_ON, "DeploymentType": deployment_type})["Resources"][
        "InferenceFunctionDeploymentGroup"
    ]
    config = Evaluator({}).evaluate(group["Properties"]["DeploymentConfigName"])
    assert config == f"CodeDeployDefault.Lambda{deployment_type}"


def test_a_model_only_change_publishes_a_new_version(transformed: dict[str, Any], template: dict[str, Any]) -> None:
    """SAM hashes properties with parameter references unresolved, so a new model alone must still
    change the version: its Description (creation-only in Lambda) names the model object."""
    function = template["Resources"]["InferenceFunction"]["Properties"]
    assert function["AutoPublishAlias"] == "live"
    assert function["AutoPublishAliasAllProperties"] is True
    assert "AutoPublishCodeSha256" not in function, "it would stop image-only changes from publishing"
    (version,) = resources_of(transformed, "AWS::Lambda::Version").values()
    description = version["Properties"]["Description"]
    first = Evaluator(transformed, {"ModelKey": "models/m/1-aa/model.onnx", "ModelVersionId": "v1"})
    second = Evaluator(transformed, {"ModelKey": "models/m/1-aa/model.onnx", "ModelVersionId": "v2"})
    third = Evaluator(transformed, {"ModelKey": "models/m/2-bb/model.onnx", "ModelVersionId": "v1"})
    assert len({first.evaluate(description), second.evaluate(description), third.evaluate(description)}) == 3


def test_the_function_environment_pins_the_model(transformed: dict[str, Any]) -> None:
    variables = transformed["Resources"]["InferenceFunction"]["Properties"]["Environment"]["Variables"]
    evaluator = Evaluator(transformed, ALL_ON, resources={"ModelBucket": "model-bucket"})
    environment = evaluator.evaluate(variables)
    assert json.loads(environment["ONNX_LAMBDA_MODELS"]) == [
        {
            "uri": f"s3://model-bucket/{ALL_ON['ModelKey']}?versionId={ALL_ON['ModelVersionId']}",
            "manifest_version_id": ALL_ON["ManifestVersionId"],
            "manifest_sha256": ALL_ON["ManifestSha256"],
            "tokenizer_version_id": ALL_ON["TokenizerVersionId"],
            "optimized_version_id": ALL_ON["OptimizedModelVersionId"],
        }
    ]
    assert environment["ONNX_LAMBDA_AUTH_MODE"] == "apigateway"
    assert environment["POWERTOOLS_SERVICE_NAME"] == "onnx-lambda"
    assert environment["POWERTOOLS_METRICS_NAMESPACE"] == "OnnxLambda"
    assert environment["POWERTOOLS_LOG_LEVEL"] == "INFO"
    # The hook and the canary check the same model the function pins.
    for function in ("PreTrafficHookFunction", "SyntheticCanaryFunction"):
        other = evaluator.evaluate(transformed["Resources"][function]["Properties"]["Environment"]["Variables"])
        pinned = json.loads(environment["ONNX_LAMBDA_MODELS"])[0]
        assert other["MODEL_URI"] == pinned["uri"]
        assert (other["MANIFEST_VERSION_ID"], other["MANIFEST_SHA256"]) == (
            pinned["manifest_version_id"],
            pinned["manifest_sha256"],
        )


def test_the_function_is_an_image_with_tracing(template: dict[str, Any], transformed: dict[str, Any]) -> None:
    source = template["Resources"]["InferenceFunction"]
    assert source["Properties"]["PackageType"] == "Image"
    assert source["Metadata"]["Dockerfile"] == "Dockerfile"
    assert source["Metadata"]["DockerContext"] == "."
    function = transformed["Resources"]["InferenceFunction"]["Properties"]
    assert function["TracingConfig"] == {"Mode": "Active"}
    for name in ("MemorySize", "Architectures"):
        assert json.dumps(function[name]).count("Ref") == 1, f"{name} comes from a parameter"


# ------------------------------------------------------------------------------------------------ operations


def test_every_log_group_has_retention_and_every_function_logs_to_one(transformed: dict[str, Any]) -> None:
    log_groups = resources_of(transformed, "AWS::Logs::LogGroup")
    assert len(log_groups) >= 4
    for name, group in log_groups.items():
        assert "RetentionInDays" in group["Properties"], name
    for name, function in resources_of(transformed, "AWS::Lambda::Function").items():
        target = function["Properties"].get("LoggingConfig", {}).get("LogGroup")
        assert (target or {}).get("Ref") in log_groups, f"{name} must log to a log group with retention"
    stage = transformed["Resources"]["HttpApiApiGatewayDefaultStage"]["Properties"]
    assert stage["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"][0] in log_groups
    access_log = json.loads(stage["AccessLogSettings"]["Format"])
    assert {"requestId", "status", "routeKey", "latencyMs"} <= set(access_log)


def test_throttling_is_set_and_lower_on_the_open_routes(transformed: dict[str, Any]) -> None:
    stage = transformed["Resources"]["HttpApiApiGatewayDefaultStage"]["Properties"]
    evaluator = Evaluator(transformed)
    default = evaluator.evaluate(stage["DefaultRouteSettings"])
    assert default["ThrottlingRateLimit"] > 0
    assert default["ThrottlingBurstLimit"] > 0
    for route in ("GET /v2/health/live", "GET /v2/health/ready"):
        health = evaluator.evaluate(stage["RouteSettings"][route])
        assert 0 < health["ThrottlingRateLimit"] < default["ThrottlingRateLimit"]
        assert 0 < health["ThrottlingBurstLimit"] < default["ThrottlingBurstLimit"]


def test_alarms_cover_the_failure_modes_and_notify(transformed: dict[str, Any]) -> None:
    alarms = resources_of(transformed, "AWS::CloudWatch::Alarm")
    watched = {(a["Properties"]["Namespace"], a["Properties"]["MetricName"]) for a in alarms.values()}
    assert {
        ("AWS/Lambda", "Errors"),
        ("AWS/Lambda", "Throttles"),
        ("AWS/Lambda", "Duration"),
        ("AWS/ApiGateway", "5xx"),
        ("AWS/ApiGateway", "Latency"),
        ("OnnxLambda", "ModelLoadFailure"),
        ("OnnxLambda/Canary", "Availability"),
    } <= watched
    for name, alarm in alarms.items():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
    percentiles = [a for a in alarms.values() if a["Properties"]["MetricName"] in ("Duration", "Latency")]
    assert all(a["Properties"]["ExtendedStatistic"] == "p99" for a in percentiles)
    # The service emits ModelLoadFailure with the service dimension only.
    model_load = alarms["ModelLoadFailureAlarm"]["Properties"]["Dimensions"]
    assert model_load == [{"Name": "service", "Value": "onnx-lambda"}]
    subscription = transformed["Resources"]["AlarmEmailSubscription"]
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Condition"] == "HasAlarmEmail"


def test_the_canary_runs_every_five_minutes(transformed: dict[str, Any]) -> None:
    rule = transformed["Resources"]["SyntheticCanaryFunctionEveryFiveMinutes"]["Properties"]
    assert rule["ScheduleExpression"] == "rate(5 minutes)"
    assert Evaluator(transformed, ALL_ON).evaluate(rule["State"]) == "ENABLED"
    # Nothing to probe before the first model is deployed.
    assert Evaluator(transformed, {"ModelKey": ""}).evaluate(rule["State"]) == "DISABLED"


def test_dashboard_shows_latency_traffic_cold_starts_model_load_errors_and_concurrency(
    transformed: dict[str, Any],
) -> None:
    body = Evaluator(transformed, ALL_ON).evaluate(transformed["Resources"]["Dashboard"]["Properties"]["DashboardBody"])
    dashboard = json.loads(body)
    text = json.dumps(dashboard)
    for metric in (
        "Latency",
        "Invocations",
        "ColdStart",
        "ModelLoadTime",
        "Errors",
        "Throttles",
        "ConcurrentExecutions",
    ):
        assert metric in text, metric
    assert '"p50"' in text
    assert '"p99"' in text


def test_budget_alerts_at_80_percent_actual_and_100_percent_forecast(transformed: dict[str, Any]) -> None:
    budget = transformed["Resources"]["MonthlyBudget"]
    assert budget["Condition"] == "HasBudget"
    notifications = {
        (n["Notification"]["NotificationType"], n["Notification"]["Threshold"])
        for n in budget["Properties"]["NotificationsWithSubscribers"]
    }
    assert notifications == {("ACTUAL", 80), ("FORECASTED", 100)}


def test_provisioned_concurrency_autoscales_on_utilisation(transformed: dict[str, Any]) -> None:
    alias = transformed["Resources"]["InferenceFunctionAliaslive"]["Properties"]
    on = Evaluator(transformed, ALL_ON)
    assert on.evaluate(alias["ProvisionedConcurrencyConfig"]) == {"ProvisionedConcurrentExecutions": 2}
    assert "ProvisionedConcurrencyConfig" not in Evaluator(
        transformed, {**ALL_ON, "ProvisionedConcurrency": 0}
    ).evaluate(alias)
    target = transformed["Resources"]["ProvisionedConcurrencyScalableTarget"]
    assert target["Condition"] == "HasProvisionedConcurrencyAutoscaling"
    assert on.evaluate(target["Properties"]["ResourceId"]) == "function:<Ref InferenceFunction>:live"
    assert on.evaluate(target["Properties"]["MaxCapacity"]) == 10
    policy = transformed["Resources"]["ProvisionedConcurrencyScalingPolicy"]["Properties"]
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert (
        tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == "LambdaProvisionedConcurrencyUtilization"
    )
    assert tracking["TargetValue"] == pytest.approx(0.7)
    assert on.condition("HasProvisionedConcurrencyAutoscaling")
    assert not Evaluator(transformed, {**ALL_ON, "ProvisionedConcurrencyMax": 0}).condition(
        "HasProvisionedConcurrencyAutoscaling"
    )


def test_user_pool_is_admin_only_with_a_strong_password_policy(transformed: dict[str, Any]) -> None:
    pool = transformed["Resources"]["UserPool"]["Properties"]
    assert pool["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    password = pool["Policies"]["PasswordPolicy"]
    assert password["MinimumLength"] >= 12
    assert all(password[key] for key in ("RequireLowercase", "RequireUppercase", "RequireNumbers", "RequireSymbols"))
    users = transformed["Resources"]["UserClient"]["Properties"]
    assert users["GenerateSecret"] is False
    assert set(users["ExplicitAuthFlows"]) == {"ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"}
    machines = transformed["Resources"]["MachineClient"]["Properties"]
    assert machines["GenerateSecret"] is True
    assert machines["AllowedOAuthFlows"] == ["client_credentials"]
    assert machines["AllowedOAuthScopes"] == ["inference/invoke"]
    server = transformed["Resources"]["InferenceResourceServer"]["Properties"]
    assert server["Identifier"] == "inference"
    assert server["Scopes"][0]["ScopeName"] == "invoke"
    assert "UserPoolDomain" in transformed["Resources"]


def test_outputs_exist(transformed: dict[str, Any]) -> None:
    outputs = transformed["Outputs"]
    for name in (
        "ApiUrl",
        "UserPoolId",
        "UserClientId",
        "MachineClientId",
        "TokenUrl",
        "ModelBucketName",
        "DashboardUrl",
    ):
        assert name in outputs, name
    evaluator = Evaluator(transformed, resources={"HttpApi": "abc123", "Dashboard": "dash"})
    assert evaluator.evaluate(outputs["ApiUrl"]["Value"]) == "https://abc123.execute-api.us-east-1.amazonaws.com"
    assert evaluator.evaluate(outputs["TokenUrl"]["Value"]) == (
        "https://onnx-lambda-local-123456789012.auth.us-east-1.amazoncognito.com/oauth2/token"
    )
    assert "#dashboards:name=dash" in evaluator.evaluate(outputs["DashboardUrl"]["Value"])


def test_the_first_deploy_needs_no_model(sam_transform: Callable[[Mapping[str, Any] | None], dict[str, Any]]) -> None:
    """The bucket the first model is published to comes from the first deploy; it must transform without one."""
    bare = sam_transform({})
    evaluator = Evaluator(bare)
    assert not evaluator.condition("HasModel")
    assert not evaluator.condition("HasProvisionedConcurrency")
