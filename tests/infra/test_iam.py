"""Who may change the models, and who may invoke the function (issue 11, finding 5), after the SAM transform.

- Model objects are written and deleted by the publisher principal only: ``ModelPublisherArn``, or the
  ``ModelPublisherRole`` the stack creates when that is empty. The bucket's protections (its policy,
  lifecycle, versioning, Object Lock) change only through CloudFormation.
- S3 Object Lock in governance mode exactly when ``ModelObjectLockDays`` > 0, without replacing the bucket.
- Every function (inference, pre-traffic hook, canary) writes only to its own log group: no
  ``AWSLambdaBasicExecutionRole``, no managed policy at all, no log permission on ``*``.
- Only API Gateway, through the routes, and the pre-traffic hook may invoke the function: whoever may invoke
  it directly can skip the authorizer (the function trusts the claims in the event).

The bucket policy is checked by evaluating its Deny statements for concrete requests (principal, action,
resource, call chain), with the condition operators it uses implemented below; a new operator fails the
test until it is modelled here.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from tests.infra.conftest import Evaluator
from tests.infra.parameter_values import BASE, CHANGED, violations
from tests.infra.test_template import allow_statements, api_operations, as_list, resources_of
from tests.infra.test_versions import create_only

Transform = Callable[[Mapping[str, Any] | None], dict[str, Any]]

ACCOUNT = "123456789012"
BUCKET = "onnx-lambda-dev-modelbucket-abc123"
BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"
MODEL_OBJECT = f"{BUCKET_ARN}/models/all-minilm-l6-v2/1-0123456789abcdef/model.onnx"
#: What the roles' ARNs would be once deployed (CloudFormation names them <stack>-<logical id>-<suffix>).
CREATED_PUBLISHER = f"arn:aws:iam::{ACCOUNT}:role/onnx-lambda-dev-ModelPublisherRole-AAAA"
FUNCTION_ROLE = f"arn:aws:iam::{ACCOUNT}:role/onnx-lambda-dev-InferenceFunctionRole-BBBB"
HOOK_ROLE = f"arn:aws:iam::{ACCOUNT}:role/onnx-lambda-dev-PreTrafficHookFunctionRole-CCCC"
CANARY_ROLE = f"arn:aws:iam::{ACCOUNT}:role/onnx-lambda-dev-SyntheticCanaryFunctionRole-DDDD"
SSO_ROLES = f"arn:aws:iam::{ACCOUNT}:role/aws-reserved/sso.amazonaws.com"
ADMIN = f"{SSO_ROLES}/AWSReservedSSO_AdministratorAccess_0123456789abcdef"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
OWN_PUBLISHER = f"arn:aws:iam::{ACCOUNT}:role/ci/model-publisher"
SSO_PUBLISHERS = f"{SSO_ROLES}/*/AWSReservedSSO_ModelPublisher_*"
SSO_PUBLISHER = f"{SSO_ROLES}/eu-west-1/AWSReservedSSO_ModelPublisher_fedcba9876543210"
EXECUTION_ROLE = f"arn:aws:iam::{ACCOUNT}:role/cfn-execution"
CLOUDFORMATION = "cloudformation.amazonaws.com"

#: Every request that writes, overwrites or deletes a model object version, or loosens its retention.
MODEL_CHANGES = (
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:PutObjectRetention",
    "s3:PutObjectLegalHold",
    "s3:BypassGovernanceRetention",
    "s3:ReplicateObject",
    "s3:ReplicateDelete",
)
#: The bucket settings that could undo the above: the policy itself, an expiring lifecycle rule, versioning,
#: Object Lock.
PROTECTION_CHANGES = (
    "s3:PutBucketPolicy",
    "s3:DeleteBucketPolicy",
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketVersioning",
    "s3:PutBucketObjectLockConfiguration",
)

#: (name, parameters, who the publisher is, a deployed principal that is the publisher)
PUBLISHERS = [
    ("created-role", {}, CREATED_PUBLISHER),
    ("own-role", {"ModelPublisherArn": OWN_PUBLISHER}, OWN_PUBLISHER),
    ("identity-center", {"ModelPublisherArn": SSO_PUBLISHERS}, SSO_PUBLISHER),
    ("all-changed", {**BASE, **CHANGED}, CHANGED["ModelPublisherArn"]),
]


# ------------------------------------------------------------------------------------------------ a Deny evaluator


@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    principal: str | None  # aws:PrincipalArn (a role's ARN for each of its sessions); None = anonymous
    called_via_first: str | None = None  # aws:CalledViaFirst: the service that made the call with these credentials


def _wildcard(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM's * and ? (ArnLike, Action, Resource)."""
    expression = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(expression, value, flags=re.IGNORECASE if ignore_case else 0) is not None


def _condition_holds(condition: Mapping[str, Any], request: Request) -> bool:
    context: dict[str, str | None] = {
        "aws:PrincipalArn": request.principal,
        "aws:CalledViaFirst": request.called_via_first,
        "aws:SecureTransport": "true",  # every request below is over TLS
    }
    for operator, keys in condition.items():
        for key, expected in keys.items():
            assert key in context, f"the test doesn't model the condition key {key}"
            actual, values = context[key], [str(value) for value in as_list(expected)]
            match operator:
                case "Bool":
                    holds = actual is not None and actual in [value.lower() for value in values]
                case "ArnNotLike":  # a negated operator holds when the key is absent
                    holds = actual is None or not any(_wildcard(value, actual) for value in values)
                case "StringNotEquals":
                    holds = actual is None or actual not in values
                case _:
                    pytest.fail(f"the test doesn't model the condition operator {operator}")
            if not holds:
                return False
    return True


def bucket_policy(transformed: Mapping[str, Any], parameters: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The model bucket's policy statements as CloudFormation would deploy them for these parameters."""
    (policy,) = (
        p
        for p in resources_of(transformed, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": "ModelBucket"}
    )
    evaluator = Evaluator(
        transformed,
        parameters,
        {"ModelBucket": BUCKET, "ModelBucket.Arn": BUCKET_ARN, "ModelPublisherRole.Arn": CREATED_PUBLISHER},
    )
    return as_list(evaluator.evaluate(policy["Properties"]["PolicyDocument"])["Statement"])


def denied_by(statements: list[dict[str, Any]], request: Request) -> list[str]:
    """The Sids of the Deny statements that apply to ``request``."""
    sids = []
    for statement in statements:
        if statement["Effect"] != "Deny":
            continue
        assert statement["Principal"] == "*", statement["Sid"]
        if not any(_wildcard(action, request.action, ignore_case=True) for action in as_list(statement["Action"])):
            continue
        if not any(_wildcard(resource, request.resource) for resource in as_list(statement["Resource"])):
            continue
        if _condition_holds(statement.get("Condition", {}), request):
            sids.append(statement["Sid"])
    return sids


def test_the_evaluator_sees_the_tls_deny(transformed: dict[str, Any]) -> None:
    """A check of the checker: a statement it knows must deny what it says, and only that."""
    plain = [
        {
            "Sid": "NoTls",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": f"{BUCKET_ARN}/*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    ]
    assert denied_by(plain, Request("s3:GetObjectVersion", MODEL_OBJECT, FUNCTION_ROLE)) == []  # over TLS
    statements = bucket_policy(transformed, {})
    assert denied_by(statements, Request("s3:GetObjectVersion", MODEL_OBJECT, FUNCTION_ROLE)) == []
    assert denied_by(statements, Request("s3:GetObjectVersion", MODEL_OBJECT, HOOK_ROLE)) == []
    assert _wildcard(SSO_PUBLISHERS, SSO_PUBLISHER)
    assert not _wildcard(SSO_PUBLISHERS, ADMIN)


# ------------------------------------------------------------------------------------------------ the publisher


@pytest.mark.parametrize(("parameters", "publisher"), [p[1:] for p in PUBLISHERS], ids=[p[0] for p in PUBLISHERS])
def test_only_the_publisher_may_write_or_delete_model_objects(
    sam_transform: Transform, parameters: dict[str, Any], publisher: str
) -> None:
    statements = bucket_policy(sam_transform(parameters), parameters)
    (deny,) = (s for s in statements if s["Sid"] == "DenyModelChangesExceptByThePublisher")
    assert sorted(as_list(deny["Action"])) == sorted(MODEL_CHANGES)
    assert deny["Resource"] == f"{BUCKET_ARN}/*", "every object in the bucket, not only the model prefix"
    others = [FUNCTION_ROLE, HOOK_ROLE, CANARY_ROLE, ADMIN, ROOT, EXECUTION_ROLE, None]
    others += [CREATED_PUBLISHER] if publisher != CREATED_PUBLISHER else []
    for action in MODEL_CHANGES:
        assert denied_by(statements, Request(action, MODEL_OBJECT, publisher)) == [], action
        for principal in others:
            assert denied_by(statements, Request(action, MODEL_OBJECT, principal)) == [deny["Sid"]], (action, principal)
            # CloudFormation never writes model objects: no exemption for it here.
            via = Request(action, MODEL_OBJECT, principal, called_via_first=CLOUDFORMATION)
            assert deny["Sid"] in denied_by(statements, via), (action, principal)
    # The pinned version in particular: nobody but the publisher deletes it, the function least of all.
    pinned = Request("s3:DeleteObjectVersion", MODEL_OBJECT, FUNCTION_ROLE)
    assert denied_by(statements, pinned) == ["DenyModelChangesExceptByThePublisher"]


@pytest.mark.parametrize(("parameters", "publisher"), [p[1:] for p in PUBLISHERS], ids=[p[0] for p in PUBLISHERS])
def test_the_protections_change_only_through_cloudformation(
    sam_transform: Transform, parameters: dict[str, Any], publisher: str
) -> None:
    """Not the publisher, not an administrator directly: CloudFormation with the deployer's credentials (or
    its service role, when the stack names one). The account's root user can always replace a bucket policy
    (S3 allows it whatever the policy says), so this cannot lock the account out."""
    statements = bucket_policy(sam_transform(parameters), parameters)
    (deny,) = (s for s in statements if s["Sid"] == "DenyProtectionChangesOutsideCloudFormation")
    assert sorted(as_list(deny["Action"])) == sorted(PROTECTION_CHANGES)
    assert deny["Resource"] == BUCKET_ARN
    execution_role = parameters.get("CloudFormationExecutionRoleArn")
    for action in PROTECTION_CHANGES:
        for principal in (publisher, ADMIN, FUNCTION_ROLE, None):
            assert denied_by(statements, Request(action, BUCKET_ARN, principal)) == [deny["Sid"]], (action, principal)
        # `sam deploy` with the deployer's own credentials: CloudFormation calls S3 with them.
        assert denied_by(statements, Request(action, BUCKET_ARN, ADMIN, called_via_first=CLOUDFORMATION)) == []
        # `sam deploy --role-arn`: CloudFormation calls S3 as its service role, which must be named.
        as_execution_role = denied_by(statements, Request(action, BUCKET_ARN, EXECUTION_ROLE))
        assert as_execution_role == ([] if execution_role == EXECUTION_ROLE else [deny["Sid"]]), action


def test_a_named_execution_role_is_exempt_and_no_other(sam_transform: Transform) -> None:
    parameters = {"CloudFormationExecutionRoleArn": EXECUTION_ROLE}
    statements = bucket_policy(sam_transform(parameters), parameters)
    assert denied_by(statements, Request("s3:PutBucketPolicy", BUCKET_ARN, EXECUTION_ROLE)) == []
    other = f"arn:aws:iam::{ACCOUNT}:role/cfn-execution-other"
    assert denied_by(statements, Request("s3:PutBucketPolicy", BUCKET_ARN, other)) == [
        "DenyProtectionChangesOutsideCloudFormation"
    ]
    # It is a deployer, not a publisher.
    assert denied_by(statements, Request("s3:PutObject", MODEL_OBJECT, EXECUTION_ROLE)) == [
        "DenyModelChangesExceptByThePublisher"
    ]


def test_the_created_publisher_role_may_publish_and_nothing_else(sam_transform: Transform) -> None:
    transformed = sam_transform({})
    evaluator = Evaluator(transformed, {}, {"ModelBucket": BUCKET, "ModelPublisherRole.Arn": CREATED_PUBLISHER})
    role = transformed["Resources"]["ModelPublisherRole"]
    assert role["Condition"] == "CreateModelPublisherRole"
    assert evaluator.condition("CreateModelPublisherRole")
    assert not Evaluator(transformed, {"ModelPublisherArn": OWN_PUBLISHER}).condition("CreateModelPublisherRole")
    properties = evaluator.evaluate(role["Properties"])
    # Assumed by a principal of this account whose own IAM policy allows it (IAM decides), nobody outside it.
    (trust,) = properties["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": ROOT}
    assert trust["Action"] == "sts:AssumeRole"
    assert "ManagedPolicyArns" not in properties
    statements = {s["Sid"]: s for p in properties["Policies"] for s in as_list(p["PolicyDocument"]["Statement"])}
    assert set(statements) == {"UploadModelObjects", "ReadThisStacksOutputs"}
    assert all(s["Effect"] == "Allow" for s in statements.values())
    assert sorted(statements["UploadModelObjects"]["Action"]) == ["s3:GetObject", "s3:PutObject"]
    assert statements["UploadModelObjects"]["Resource"] == f"{BUCKET_ARN}/models/*"
    assert statements["ReadThisStacksOutputs"]["Action"] == "cloudformation:DescribeStacks"
    assert statements["ReadThisStacksOutputs"]["Resource"] == (
        f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/onnx-lambda-local/*"
    )
    # The output names the publisher, created or given.
    output = transformed["Outputs"]["ModelPublisherPrincipalArn"]["Value"]
    assert evaluator.evaluate(output) == CREATED_PUBLISHER
    assert Evaluator(transformed, {"ModelPublisherArn": OWN_PUBLISHER}).evaluate(output) == OWN_PUBLISHER


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("", True),
        (OWN_PUBLISHER, True),
        (f"arn:aws:iam::{ACCOUNT}:user/release-bot", True),
        (SSO_PUBLISHERS, True),
        (f"arn:aws-cn:iam::{ACCOUNT}:role/publisher", True),
        # aws:PrincipalArn is the role's ARN, never a session's: this would match nobody.
        (f"arn:aws:sts::{ACCOUNT}:assumed-role/publisher/session", False),
        # Every role or user of the account, or the whole account.
        (f"arn:aws:iam::{ACCOUNT}:role/*", False),
        (f"arn:aws:iam::{ACCOUNT}:user/*", False),
        (ROOT, False),
        ("*", False),
    ],
)
def test_the_publisher_parameter_takes_one_role_or_user(template: dict[str, Any], value: str, accepted: bool) -> None:
    assert (not violations(template["Parameters"]["ModelPublisherArn"], value)) == accepted


# ------------------------------------------------------------------------------------------------ Object Lock


@pytest.mark.parametrize("days", [0, 1, 30, 36500])
def test_object_lock_is_on_in_governance_mode_exactly_when_days_are_set(
    sam_transform: Transform, template: dict[str, Any], days: int
) -> None:
    assert not violations(template["Parameters"]["ModelObjectLockDays"], days)
    parameters = {**BASE, "ModelObjectLockDays": days}
    transformed = sam_transform(parameters)
    bucket = Evaluator(transformed, parameters).evaluate(transformed["Resources"]["ModelBucket"]["Properties"])
    if days == 0:
        assert "ObjectLockEnabled" not in bucket
        assert "ObjectLockConfiguration" not in bucket
    else:
        assert bucket["ObjectLockEnabled"] is True
        assert bucket["ObjectLockConfiguration"] == {
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": days}},
        }
    # Object Lock needs versioning, which is always on.
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}


def test_object_lock_defaults_to_off_and_refuses_negative_days(template: dict[str, Any]) -> None:
    definition = template["Parameters"]["ModelObjectLockDays"]
    assert definition["Default"] == 0
    assert violations(definition, -1)


def test_turning_object_lock_on_later_keeps_the_bucket() -> None:
    """Replacing the bucket would give it a new name and strand every pinned VersionId in the old one (which
    is retained): turning Object Lock on for a deployed stack must update the bucket in place."""
    replaced_by = create_only("AWS::S3::Bucket")
    for name in ("ObjectLockEnabled", "ObjectLockConfiguration", "VersioningConfiguration"):
        assert not any(pointer.split("/")[0] == name for pointer in replaced_by), name


# ------------------------------------------------------------------------------------------------ the function's logs


def role_statements(transformed: Mapping[str, Any], role: str) -> list[dict[str, Any]]:
    properties = transformed["Resources"][role]["Properties"]
    return [s for policy in properties.get("Policies", []) for s in as_list(policy["PolicyDocument"]["Statement"])]


@pytest.mark.parametrize("parameters", [{}, BASE, {**BASE, **CHANGED}], ids=["no-model", "model", "all-changed"])
def test_the_function_writes_only_to_its_own_log_group(sam_transform: Transform, parameters: dict[str, Any]) -> None:
    transformed = sam_transform(parameters)
    function = transformed["Resources"]["InferenceFunction"]["Properties"]
    assert function["Role"] == {"Fn::GetAtt": ["InferenceFunctionRole", "Arn"]}
    assert function["LoggingConfig"]["LogGroup"] == {"Ref": "InferenceLogGroup"}
    role = transformed["Resources"]["InferenceFunctionRole"]
    assert role["Type"] == "AWS::IAM::Role"
    # No managed policy at all: AWSLambdaBasicExecutionRole allows logs:CreateLogGroup, CreateLogStream and
    # PutLogEvents on every log group of the account.
    assert "ManagedPolicyArns" not in role["Properties"]
    assert "PermissionsBoundary" not in role["Properties"]
    statements = role_statements(transformed, "InferenceFunctionRole")
    logs = [s for s in statements if any(str(a).lower().startswith("logs:") for a in as_list(s["Action"]))]
    assert logs == [
        {
            "Sid": "WriteOwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            # The Arn attribute is arn:...:log-group:<name>:*, the group's streams.
            "Resource": {"Fn::GetAtt": ["InferenceLogGroup", "Arn"]},
        }
    ]
    # Everything the role may do, and nothing on * but X-Ray's writes (which have no resource-level permissions).
    assert {s["Sid"] for s in statements} == {"ReadModelObjects", "WriteOwnLogs", "WriteTraces"}
    assert all(s["Effect"] == "Allow" for s in statements)
    for statement in statements:
        if "*" in as_list(statement["Resource"]):
            assert sorted(statement["Action"]) == ["xray:PutTelemetryRecords", "xray:PutTraceSegments"]
    # Tracing stays on, and the role carries what it needs.
    assert function["TracingConfig"] == {"Mode": "Active"}
    # Only Lambda assumes it.
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert trust["Action"] == "sts:AssumeRole"


#: Each Lambda function of the stack and the log group its LoggingConfig names.
FUNCTION_LOG_GROUPS = {
    "InferenceFunction": "InferenceLogGroup",
    "PreTrafficHookFunction": "PreTrafficHookLogGroup",
    "SyntheticCanaryFunction": "SyntheticCanaryLogGroup",
}
XRAY_WRITES = ["xray:PutTelemetryRecords", "xray:PutTraceSegments"]


@pytest.mark.parametrize("parameters", [{}, BASE, {**BASE, **CHANGED}], ids=["no-model", "model", "all-changed"])
def test_every_function_role_writes_only_its_own_log_group(
    sam_transform: Transform, parameters: dict[str, Any]
) -> None:
    """SAM gives a role it generates AWSLambdaBasicExecutionRole whatever ``Policies`` says (samtranslator's
    ``_construct_role``), which allows logs:CreateLogGroup, CreateLogStream and PutLogEvents on every log group
    of the account. So each function names a role of its own, written out with no managed policy."""
    transformed = sam_transform(parameters)
    functions = resources_of(transformed, "AWS::Lambda::Function")
    assert set(functions) == set(FUNCTION_LOG_GROUPS), "a new function: give it its own role and log group here"
    roles = {}
    for name, function in functions.items():
        properties = function["Properties"]
        group = FUNCTION_LOG_GROUPS[name]
        assert properties["LoggingConfig"]["LogGroup"] == {"Ref": group}, name
        assert transformed["Resources"][group]["Type"] == "AWS::Logs::LogGroup", name
        # A role of the stack's, not one SAM generates (SAM would reference <function>Role the same way, so
        # the role itself must show it: no managed policy).
        roles[name] = properties["Role"]["Fn::GetAtt"][0]
        role = transformed["Resources"][roles[name]]
        assert role["Type"] == "AWS::IAM::Role", name
        assert "ManagedPolicyArns" not in role["Properties"], f"{name}: {role['Properties'].get('ManagedPolicyArns')}"
        (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {"Service": "lambda.amazonaws.com"}, name
        statements = role_statements(transformed, roles[name])
        logs = [s for s in statements if any(str(a).lower().startswith("logs:") for a in as_list(s["Action"]))]
        assert logs == [
            {
                "Sid": "WriteOwnLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": {"Fn::GetAtt": [group, "Arn"]},
            }
        ], name
        # Tracing: Active needs X-Ray's two writes, which have no resource-level permissions; nothing else on *.
        assert properties["TracingConfig"] == {"Mode": "Active"}, name
        on_anything = [s for s in statements if "*" in as_list(s["Resource"])]
        assert [sorted(as_list(s["Action"])) for s in on_anything] == [XRAY_WRITES], name
    # One role per function: the hook's invoke and the canary's secret stay with each.
    assert len(set(roles.values())) == len(roles), roles
    # No other policy in the stack grants a log permission at all.
    for owner, statement in allow_statements(transformed):
        if any(str(a).lower().startswith("logs:") for a in as_list(statement.get("Action", []))):
            assert owner in roles.values(), owner
            assert statement["Resource"] in [{"Fn::GetAtt": [g, "Arn"]} for g in FUNCTION_LOG_GROUPS.values()], owner


@pytest.mark.parametrize("group", sorted(FUNCTION_LOG_GROUPS.values()))
def test_each_functions_log_group_is_the_stacks_own(transformed: dict[str, Any], group: str) -> None:
    """The log group exists before its function writes (so no logs:CreateLogGroup), with retention."""
    properties = transformed["Resources"][group]["Properties"]
    name = Evaluator(transformed).evaluate(properties["LogGroupName"])
    assert name.startswith("/aws/lambda/onnx-lambda-local/")
    assert properties["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_the_log_group_is_the_stacks_own(transformed: dict[str, Any]) -> None:
    """The log group exists before the function writes (no logs:CreateLogGroup needed), with retention."""
    group = transformed["Resources"]["InferenceLogGroup"]
    assert group["Type"] == "AWS::Logs::LogGroup"
    name = Evaluator(transformed).evaluate(group["Properties"]["LogGroupName"])
    assert name == "/aws/lambda/onnx-lambda-local/inference"
    assert "RetentionInDays" in group["Properties"]


# ------------------------------------------------------------------------------------------------ who may invoke


def _invokes(action: str) -> bool:
    return _wildcard(action, "lambda:InvokeFunction", ignore_case=True)


def inference_permissions(transformed: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every resource-based permission on the inference function, its versions or its alias."""
    for name, permission in resources_of(transformed, "AWS::Lambda::Permission").items():
        target = permission["Properties"]["FunctionName"]
        if any(ref.startswith("InferenceFunction") for ref in _references(target)):
            yield name, permission["Properties"]


def _references(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref":
                yield str(inner)
            elif key == "Fn::GetAtt":
                yield str(inner[0])
            elif key == "Fn::Sub":
                text = inner[0] if isinstance(inner, list) else inner
                yield from re.findall(r"\$\{([A-Za-z0-9]+)", str(text))
                if isinstance(inner, list):
                    yield from _references(inner[1])
            else:
                yield from _references(inner)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


@pytest.mark.parametrize("parameters", [BASE, {**BASE, **CHANGED}], ids=["model", "all-changed"])
def test_only_api_gateway_routes_and_the_hook_may_invoke_the_function(
    sam_transform: Transform, parameters: dict[str, Any]
) -> None:
    transformed = sam_transform(parameters)
    # Resource-based: one permission per route, for API Gateway, on the live alias, from this API only.
    permissions = dict(inference_permissions(transformed))
    assert len(permissions) == len(list(api_operations(transformed)))
    for name, permission in permissions.items():
        assert permission["Action"] == "lambda:InvokeFunction", name
        assert permission["Principal"] == "apigateway.amazonaws.com", name
        assert permission["FunctionName"] == {"Ref": "InferenceFunctionAliaslive"}, name
        text, variables = permission["SourceArn"]["Fn::Sub"]
        assert text.startswith("arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${__ApiId__}/")
        assert variables["__ApiId__"] == {"Ref": "HttpApi"}, name
        assert "SourceAccount" not in permission or permission["SourceAccount"] == {"Ref": "AWS::AccountId"}
    # Nothing else can reach it: no function URL, no event source, no rule that targets it.
    for kind in ("AWS::Lambda::Url", "AWS::Lambda::EventSourceMapping", "AWS::Lambda::EventInvokeConfig"):
        assert not resources_of(transformed, kind), kind
    for name, rule in resources_of(transformed, "AWS::Events::Rule").items():
        targets = rule["Properties"].get("Targets", [])
        assert not any(ref.startswith("InferenceFunction") for ref in _references(targets)), name
    # Identity-based: of every policy in the template, only the hook's role may invoke, and only the
    # function's versions and aliases (a qualified ARN).
    invokers = [
        (owner, statement)
        for owner, statement in allow_statements(transformed)
        if any(_invokes(str(action)) for action in as_list(statement.get("Action", [])))
    ]
    assert [owner for owner, _ in invokers] == ["PreTrafficHookFunctionRole"]
    (_, hook) = invokers[0]
    assert hook["Action"] == "lambda:InvokeFunction"
    assert hook["Resource"] == {"Fn::Sub": "${InferenceFunction.Arn}:*"}
    # Managed policies: AWS's, and of those only CodeDeploy's invokes, and only functions named
    # CodeDeployHook_*. The inference function has no name of its own: CloudFormation names it
    # <stack>-InferenceFunction-<suffix>, and a stack name can't hold "_".
    managed = {
        arn
        for role in resources_of(transformed, "AWS::IAM::Role").values()
        for arn in role["Properties"].get("ManagedPolicyArns", [])
    }
    assert managed <= {"arn:aws:iam::aws:policy/service-role/AWSCodeDeployRoleForLambda"}, managed
    assert not resources_of(transformed, "AWS::IAM::ManagedPolicy")
    assert "FunctionName" not in transformed["Resources"]["InferenceFunction"]["Properties"]
    hook_name = Evaluator(transformed, parameters).evaluate(
        transformed["Resources"]["PreTrafficHookFunction"]["Properties"]["FunctionName"]
    )
    assert fnmatch.fnmatchcase(hook_name, "CodeDeployHook_*")
