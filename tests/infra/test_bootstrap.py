"""The account's deploy roles (bootstrap/template.yaml, issue 11): what each may do, checked against references.

- The CloudFormation execution role grants every create, update, delete and tagging permission that the
  resource provider schemas cfn-lint ships list for each resource type of template.yaml after the SAM
  transform, and nothing no used type needs. The expected set is computed here from the schemas, not taken
  from scripts/bootstrap_policy.py, which only has to keep the committed block current.
- Every grant names resources of a kind its action acts on (AWS's IAM service reference, cfn-lint's copy),
  and * only where IAM has no resource-level permission; the stacks' own resources, as CloudFormation and
  SAM CLI name them, are inside the scopes and the bootstrap's roles and other names are not.
- The deployer may only drive change sets on the stacks as the execution role, upload artifacts, push the
  image and pass the execution role to CloudFormation; its trust names roles or one GitHub repository.
- The publisher is what the main stacks' ModelPublisherArn may name: the bucket policy then lets it write.

Policies are evaluated for concrete requests by the small IAM evaluator below (Allow and Deny, * and ? in
actions and resources, and the condition operators the bootstrap uses; an operator it doesn't model fails).
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest
import yaml
from cfnlint.data import AdditionalSpecs  # type: ignore[import-untyped]
from cfnlint.helpers import load_resource  # type: ignore[import-untyped]
from cfnlint.schema import PROVIDER_SCHEMA_MANAGER  # type: ignore[import-untyped]

from onnx_lambda_tools.local import cloudformation
from tests.infra.conftest import ALL_ON, ROOT, SAM_PYTHON, Evaluator, load_script
from tests.infra.test_iam import Request, bucket_policy, denied_by
from tests.infra.test_template import as_list

Transform = Callable[[Mapping[str, Any] | None], dict[str, Any]]

BOOTSTRAP = ROOT / "bootstrap" / "template.yaml"
ACCOUNT = "123456789012"
REGION = "us-east-1"
BOOTSTRAP_STACK = "onnx-lambda-bootstrap"
#: The main stacks' names in the tests that evaluate template.yaml (conftest's Evaluator names it so).
STACK = cloudformation.PSEUDO_PARAMETERS["AWS::StackName"]
SUFFIX = "1A2B3C4D5E6F"  # what CloudFormation appends to the names it generates
PSEUDO = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Partition": "aws",
    "AWS::Region": REGION,
    "AWS::StackName": BOOTSTRAP_STACK,
    "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{BOOTSTRAP_STACK}/0c1d2e3f",
    "AWS::URLSuffix": "amazonaws.com",
}
SSO_DEPLOYERS = f"arn:aws:iam::{ACCOUNT}:role/aws-reserved/sso.amazonaws.com/*/AWSReservedSSO_OnnxLambdaDeployer_*"
SSO_DEPLOYER = (
    f"arn:aws:iam::{ACCOUNT}:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_OnnxLambdaDeployer_0a1b"
)
SSO_ADMIN = (
    f"arn:aws:iam::{ACCOUNT}:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_AdministratorAccess_0a1b"
)
SSO_PUBLISHERS = f"arn:aws:iam::{ACCOUNT}:role/aws-reserved/sso.amazonaws.com/*/AWSReservedSSO_ModelPublisher_*"
SSO_PUBLISHER = (
    f"arn:aws:iam::{ACCOUNT}:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_ModelPublisher_9f8e"
)
PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
GITHUB = "token.actions.githubusercontent.com"
#: A bootstrap with people and CI deploying, and a publisher.
EVERYONE = {
    "DeployerPrincipalArns": SSO_DEPLOYERS,
    "PublisherPrincipalArns": SSO_PUBLISHERS,
    "GitHubRepository": "example-org/onnx-lambda",
    "GitHubDeployEnvironment": "production",
    "GitHubPublishEnvironment": "models",
    "GitHubOidcProviderArn": PROVIDER,
}
#: What CloudFormation's handlers use, of each schema (tagging too: samconfig.toml tags the stacks).
HANDLER_SECTIONS = ("create", "update", "delete")


# ------------------------------------------------------------------------------------------------ references


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    return load_script("bootstrap_policy")


@pytest.fixture(scope="module")
def bootstrap() -> dict[str, Any]:
    return cloudformation.load_template(BOOTSTRAP)


@cache
def iam_reference() -> Mapping[str, Any]:
    reference: Mapping[str, Any] = load_resource(AdditionalSpecs, "Policies.json")
    return reference


def is_iam_action(action: str) -> bool:
    service, name = action.lower().split(":", 1)
    return name in iam_reference().get(service, {}).get("Actions", {})


def action_kinds(action: str) -> list[str]:
    service, name = action.lower().split(":", 1)
    return [kind.lower() for kind in iam_reference()[service]["Actions"][name].get("Resources", [])]


def kind_arn_patterns(action: str) -> list[re.Pattern[str]]:
    service = action.lower().split(":", 1)[0]
    resources = {key.lower(): value for key, value in iam_reference()[service]["Resources"].items()}
    patterns = []
    for kind in action_kinds(action):
        for arn_format in resources[kind]["ARNFormats"]:
            text = arn_format.replace("${Partition}", "aws").replace("${Region}", REGION)
            patterns.append(re.compile(text.replace("${Account}", ACCOUNT)))
    return patterns


def deploy_regions() -> list[str]:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    return sorted(
        {
            section["global"]["parameters"]["region"]
            for section in config.values()
            if isinstance(section, dict) and "region" in section.get("global", {}).get("parameters", {})
        }
    )


def schema_needs(resource_types: Iterable[str]) -> dict[str, set[str]]:
    """Lower-case action -> the resource types whose schemas list it (in any region samconfig.toml deploys to)."""
    needs: dict[str, set[str]] = {}
    for region in deploy_regions():
        for resource_type in resource_types:
            schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema(region, resource_type).schema
            actions = [
                p for h in HANDLER_SECTIONS for p in schema.get("handlers", {}).get(h, {}).get("permissions", [])
            ]
            actions += schema.get("tagging", {}).get("permissions", [])
            for action in actions:
                needs.setdefault(action.lower(), set()).add(resource_type)
    return needs


@pytest.fixture(scope="module")
def used_types(sam_transform: Transform) -> list[str]:
    """The resource types of template.yaml after the SAM transform, at its defaults and all options on."""
    templates = [sam_transform({}), sam_transform(ALL_ON)]
    return sorted({r["Type"] for template in templates for r in template["Resources"].values()})


# ------------------------------------------------------------------------------------------------ an IAM evaluator


class BootstrapEvaluator(cloudformation.Evaluator):
    """bootstrap/template.yaml as CloudFormation would evaluate it in one account and region."""

    def ref(self, name: str) -> Any:
        return PSEUDO[name] if name in PSEUDO else super().ref(name)


class LongestEvaluator(cloudformation.Evaluator):
    """The longest values the pseudo parameters take (partition, region, URL suffix)."""

    LONGEST: ClassVar[dict[str, str]] = {
        "AWS::Partition": "aws-us-gov",
        "AWS::Region": "ap-southeast-3",
        "AWS::AccountId": ACCOUNT,
        "AWS::URLSuffix": "amazonaws.com.cn",
    }

    def ref(self, name: str) -> Any:
        return self.LONGEST[name] if name in self.LONGEST else super().ref(name)


def role_arns(bootstrap: Mapping[str, Any], parameters: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Each role's ARN from its name and path, as IAM forms it."""
    evaluator = BootstrapEvaluator(bootstrap, parameters)
    arns = {}
    for logical_id, resource in bootstrap["Resources"].items():
        if resource["Type"] == "AWS::IAM::Role":
            path, name = (evaluator.evaluate(resource["Properties"][key]) for key in ("Path", "RoleName"))
            arns[logical_id] = f"arn:aws:iam::{ACCOUNT}:role{path}{name}"
    return arns


@dataclass(frozen=True)
class Deployed:
    """The bootstrap evaluated for one set of parameters."""

    template: Mapping[str, Any]
    parameters: Mapping[str, Any]
    arns: Mapping[str, str] = field(default_factory=dict)

    @property
    def evaluator(self) -> BootstrapEvaluator:
        resources: dict[str, Any] = {f"{logical_id}.Arn": arn for logical_id, arn in self.arns.items()}
        resources |= {logical_id: arn.rsplit("/", 1)[1] for logical_id, arn in self.arns.items()}
        resources["GitHubOidcProvider"] = PROVIDER
        return BootstrapEvaluator(self.template, self.parameters, resources)

    def exists(self, logical_id: str) -> bool:
        condition = self.template["Resources"][logical_id].get("Condition")
        return condition is None or self.evaluator.condition(condition)

    def policy(self, role: str) -> list[dict[str, Any]]:
        """The statements of ``role``'s inline and managed policies."""
        evaluator = self.evaluator
        resources = self.template["Resources"]
        documents = [p["PolicyDocument"] for p in resources[role]["Properties"].get("Policies", [])]
        documents += [
            r["Properties"]["PolicyDocument"]
            for logical_id, r in resources.items()
            if r["Type"] == "AWS::IAM::ManagedPolicy"
            and {"Ref": role} in r["Properties"]["Roles"]
            and self.exists(logical_id)
        ]
        return [statement for document in documents for statement in as_list(evaluator.evaluate(document)["Statement"])]

    def trust(self, role: str) -> list[dict[str, Any]]:
        document = self.evaluator.evaluate(self.template["Resources"][role]["Properties"]["AssumeRolePolicyDocument"])
        return as_list(document["Statement"])


def deployed(bootstrap: Mapping[str, Any], parameters: Mapping[str, Any] | None = None) -> Deployed:
    parameters = dict(EVERYONE if parameters is None else parameters)
    return Deployed(bootstrap, parameters, role_arns(bootstrap, parameters))


def wildcard(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM's * and ? (actions, resources, the *Like operators)."""
    expression = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(expression, value, flags=re.IGNORECASE if ignore_case else 0) is not None


@dataclass(frozen=True)
class Call:
    action: str
    resource: str = "*"
    context: Mapping[str, str] = field(default_factory=dict)  # condition keys present in the request


def conditions_hold(conditions: Mapping[str, Mapping[str, Any]], context: Mapping[str, str]) -> bool:
    for operator, keys in conditions.items():
        for key, expected in keys.items():
            values = [str(value) for value in as_list(expected)]
            actual = context.get(key)
            match operator:
                case "StringEquals" | "ArnEquals":
                    holds = actual is not None and actual in values
                case "StringLike" | "ArnLike":
                    holds = actual is not None and any(wildcard(value, actual) for value in values)
                case "ArnNotLike":  # a negated operator holds when the key is absent
                    holds = actual is None or not any(wildcard(value, actual) for value in values)
                case "Null":
                    holds = (actual is None) == (values == ["true"])
                case _:
                    pytest.fail(f"the test doesn't model the condition operator {operator}")
            if not holds:
                return False
    return True


def allowed(statements: Iterable[Mapping[str, Any]], call: Call) -> bool:
    """IAM's evaluation of one identity policy: an explicit Deny wins, else any Allow."""
    allow = False
    for statement in statements:
        if not any(wildcard(action, call.action, ignore_case=True) for action in as_list(statement["Action"])):
            continue
        if not any(wildcard(resource, call.resource) for resource in as_list(statement["Resource"])):
            continue
        if not conditions_hold(statement.get("Condition", {}), call.context):
            continue
        if statement["Effect"] == "Deny":
            return False
        allow = True
    return allow


def may_assume(
    trust: Iterable[Mapping[str, Any]], *, principal: str | None = None, federated: str | None = None, **claims: str
) -> bool:
    """Whether a session of the role ``principal`` (same account), or a web identity, may assume the role."""
    context = {"aws:PrincipalArn": principal} if principal else {}
    context |= {f"{GITHUB}:{claim}": value for claim, value in claims.items()}
    for statement in trust:
        assert statement["Effect"] == "Allow"
        trusted = statement["Principal"]
        if principal and trusted.get("AWS") == f"arn:aws:iam::{ACCOUNT}:root":
            action = "sts:AssumeRole"
        elif federated and trusted.get("Federated") == federated:
            action = "sts:AssumeRoleWithWebIdentity"
        else:
            continue
        if action in as_list(statement["Action"]) and conditions_hold(statement.get("Condition", {}), context):
            return True
    return False


def test_the_evaluator_knows_allow_deny_and_conditions() -> None:
    """A check of the checker, on statements whose answers are known."""
    statements: list[dict[str, Any]] = [
        {"Effect": "Allow", "Action": "s3:Get*", "Resource": "arn:aws:s3:::b/*"},
        {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/secret"},
        {
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": "*",
            "Condition": {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}},
        },
    ]
    assert allowed(statements, Call("s3:getobject", "arn:aws:s3:::b/key"))
    assert not allowed(statements, Call("s3:GetObject", "arn:aws:s3:::b/secret"))
    assert not allowed(statements, Call("s3:PutObject", "arn:aws:s3:::b/key"))
    assert allowed(statements, Call("iam:PassRole", "r", {"iam:PassedToService": "lambda.amazonaws.com"}))
    assert not allowed(statements, Call("iam:PassRole", "r", {"iam:PassedToService": "ec2.amazonaws.com"}))
    assert not allowed(statements, Call("iam:PassRole", "r"))
    assert conditions_hold({"Null": {"k": "true"}}, {})
    assert not conditions_hold({"Null": {"k": "true"}}, {"k": "v"})


# ------------------------------------------------------------------------------------------------ the execution role


def granted(statements: Iterable[Mapping[str, Any]]) -> set[str]:
    return {action.lower() for s in statements if s["Effect"] == "Allow" for action in as_list(s["Action"])}


def missing_permissions(resource_types: Iterable[str], statements: list[dict[str, Any]]) -> dict[str, set[str]]:
    """The IAM actions the types' schemas list that the statements don't grant (with the types needing them)."""
    have = granted(statements)
    return {a: by for a, by in schema_needs(resource_types).items() if is_iam_action(a) and a not in have}


def test_the_generated_policies_are_current(generator: ModuleType) -> None:
    assert generator.main(["--check"]) == 0, "bootstrap/template.yaml is stale: run `make bootstrap-policy`"


def test_the_execution_role_may_manage_every_resource_type_the_template_uses(
    bootstrap: dict[str, Any], used_types: list[str]
) -> None:
    statements = deployed(bootstrap).policy("ExecutionRole")
    missing = missing_permissions(used_types, statements)
    assert not missing, "\n".join(f"{action}: {sorted(types)}" for action, types in sorted(missing.items()))
    assert {"AWS::Lambda::Function", "AWS::IAM::Role"} <= set(used_types)  # the transform ran


def test_a_new_resource_type_fails_the_check(bootstrap: dict[str, Any], used_types: list[str]) -> None:
    """The check above can fail: a queue added to the template needs permissions the role doesn't have."""
    statements = deployed(bootstrap).policy("ExecutionRole")
    missing = missing_permissions([*used_types, "AWS::SQS::Queue"], statements)
    assert "sqs:createqueue" in missing
    assert all(types == {"AWS::SQS::Queue"} for types in missing.values())


def test_the_execution_role_grants_nothing_that_no_used_type_needs(
    bootstrap: dict[str, Any], used_types: list[str], generator: ModuleType
) -> None:
    """Every grant is in a used type's schema, or is one of the few supplements (each with its source) for a
    used type or the template's transform. Nothing else, so no permission for a type the template doesn't use."""
    statements = deployed(bootstrap).policy("ExecutionRole")
    needs = schema_needs(used_types)
    transforms = as_list(cloudformation.load_template(ROOT / "template.yaml").get("Transform", []))
    used = {*used_types, *(f"Transform: {name}" for name in transforms)}
    supplements = {a.lower(): s for s in generator.SUPPLEMENTS for a in s.actions}
    for action in granted(statements) - set(needs):
        assert action in supplements, f"{action}: no used type's schema lists it, and no supplement says why"
        assert supplements[action].needed_by in used, (action, supplements[action].needed_by)
        assert supplements[action].source, action
    for supplement in generator.SUPPLEMENTS:
        assert all(is_iam_action(action) for action in supplement.actions), supplement
    # The schemas' other entries are API operation names, not IAM actions: nothing to grant there.
    not_granted = {action for action in needs if action not in granted(statements)}
    assert not any(is_iam_action(action) for action in not_granted), not_granted
    # And a few types the template doesn't have: none of their own permissions is granted.
    for other in ("AWS::DynamoDB::Table", "AWS::EC2::Instance", "AWS::IAM::User", "AWS::IAM::ManagedPolicy"):
        own = set(schema_needs([other])) - set(needs) - set(supplements)
        assert own, other
        assert not own & granted(statements), other


def test_the_execution_role_is_trusted_by_cloudformation_alone(bootstrap: dict[str, Any]) -> None:
    (statement,) = deployed(bootstrap).trust("ExecutionRole")
    assert statement["Principal"] == {"Service": "cloudformation.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"


@pytest.fixture(scope="module")
def stack_resources(transformed: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(logical id, action, ARN) for the main stack's resources that CloudFormation creates by name: the name
    the template gives, or the one CloudFormation generates (<stack>-<logical id>-<suffix>)."""
    evaluator = Evaluator(transformed)
    a = f"{REGION}:{ACCOUNT}"
    names = {  # type -> (the property that names it, the action that creates it, its ARN)
        "AWS::IAM::Role": ("RoleName", "iam:CreateRole", f"arn:aws:iam::{ACCOUNT}:role/{{}}"),
        "AWS::S3::Bucket": ("BucketName", "s3:CreateBucket", "arn:aws:s3:::{}"),
        "AWS::SNS::Topic": ("TopicName", "sns:CreateTopic", f"arn:aws:sns:{a}:{{}}"),
        "AWS::CloudWatch::Alarm": ("AlarmName", "cloudwatch:PutMetricAlarm", f"arn:aws:cloudwatch:{a}:alarm:{{}}"),
        "AWS::Events::Rule": ("Name", "events:PutRule", f"arn:aws:events:{a}:rule/{{}}"),
        "AWS::Lambda::Function": ("FunctionName", "lambda:CreateFunction", f"arn:aws:lambda:{a}:function:{{}}"),
        "AWS::Lambda::LayerVersion": ("LayerName", "lambda:PublishLayerVersion", f"arn:aws:lambda:{a}:layer:{{}}"),
        "AWS::Logs::LogGroup": ("LogGroupName", "logs:CreateLogGroup", f"arn:aws:logs:{a}:log-group:{{}}"),
        "AWS::CloudWatch::Dashboard": ("DashboardName", "cloudwatch:PutDashboard", f"arn:aws:cloudwatch::{ACCOUNT}:dashboard/{{}}"),  # noqa: E501
        "AWS::CodeDeploy::Application": ("ApplicationName", "codedeploy:CreateApplication", f"arn:aws:codedeploy:{a}:application:{{}}"),  # noqa: E501
    }  # fmt: skip
    found = []
    for logical_id, resource in transformed["Resources"].items():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::Budgets::Budget":
            name = evaluator.evaluate(properties["Budget"]["BudgetName"])
            found.append((logical_id, "budgets:ModifyBudget", f"arn:aws:budgets::{ACCOUNT}:budget/{name}"))
        if resource["Type"] not in names:
            continue
        name_property, action, arn = names[resource["Type"]]
        name = evaluator.evaluate(properties[name_property]) if name_property in properties else None
        if name is None:
            name = f"{STACK}-{logical_id}-{SUFFIX}"
            name = name.lower() if resource["Type"] == "AWS::S3::Bucket" else name
        found.append((logical_id, action, arn.format(name)))
    return found


def test_the_stacks_resources_are_inside_the_execution_roles_scopes(
    bootstrap: dict[str, Any], stack_resources: list[tuple[str, str, str]]
) -> None:
    statements = deployed(bootstrap).policy("ExecutionRole")
    kinds_seen = {action for _, action, _ in stack_resources}
    assert len(kinds_seen) >= 10, kinds_seen
    outside = [
        (logical_id, action, arn)
        for logical_id, action, arn in stack_resources
        if not allowed(statements, Call(action, arn))
    ]
    assert not outside, outside
    # Lambda reads the zip code `sam deploy` uploaded to SAM CLI's bucket, as the caller.
    artifact = f"arn:aws:s3:::aws-sam-cli-managed-default-samclisourcebucket-abc123/{STACK}/0123abcd"
    assert allowed(statements, Call("s3:GetObjectVersion", artifact))
    assert not allowed(statements, Call("s3:PutObject", artifact))


@pytest.mark.parametrize(
    "call",
    [
        Call("iam:CreateRole", f"arn:aws:iam::{ACCOUNT}:role/other-app-role"),
        Call("iam:PutRolePolicy", f"arn:aws:iam::{ACCOUNT}:role/OrganizationAccountAccessRole"),
        Call("s3:DeleteBucket", "arn:aws:s3:::other-app-data"),
        Call("s3:GetObject", "arn:aws:s3:::other-app-data/key"),
        Call("lambda:UpdateFunctionCode", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:other-app"),
        Call("logs:DeleteLogGroup", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/other-app"),
        Call("sns:DeleteTopic", f"arn:aws:sns:{REGION}:{ACCOUNT}:other-app-alerts"),
        Call("cloudwatch:DeleteAlarms", f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:other-app-alarm"),
        Call("events:PutTargets", f"arn:aws:events:{REGION}:{ACCOUNT}:rule/other-app-rule"),
        Call("budgets:ModifyBudget", f"arn:aws:budgets::{ACCOUNT}:budget/company-monthly"),
        Call("sts:AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/{STACK}-InferenceFunctionRole-{SUFFIX}"),
        Call("iam:CreateUser", f"arn:aws:iam::{ACCOUNT}:user/{STACK}-backdoor"),
        Call(
            "iam:CreatePolicyVersion", f"arn:aws:iam::{ACCOUNT}:policy/bootstrap/{BOOTSTRAP_STACK}-ExecutionPolicy1-X"
        ),
    ],
    ids=lambda call: call.action,
)
def test_the_execution_role_touches_nothing_of_other_apps(bootstrap: dict[str, Any], call: Call) -> None:
    assert not allowed(deployed(bootstrap).policy("ExecutionRole"), call)


def test_the_execution_role_may_change_no_role_of_the_bootstrap(bootstrap: dict[str, Any]) -> None:
    stack = deployed(bootstrap)
    statements = stack.policy("ExecutionRole")
    iam_actions = {action for action in granted(statements) if action.startswith("iam:")}
    others_arns = [*stack.arns.values(), f"arn:aws:iam::{ACCOUNT}:role/bootstrap/{BOOTSTRAP_STACK}-eu-west-1-deployer"]
    for arn in others_arns:
        for action in iam_actions:
            call = Call(action, arn, {"iam:PassedToService": "lambda.amazonaws.com"})
            assert not allowed(statements, call), (action, arn)
    # Even were a bootstrap role named after the stacks, the Deny on the path stands.
    assert not allowed(statements, Call("iam:PutRolePolicy", f"arn:aws:iam::{ACCOUNT}:role/bootstrap/{STACK}-x"))


def test_roles_pass_only_to_the_services_the_templates_roles_trust(
    bootstrap: dict[str, Any], transformed: dict[str, Any]
) -> None:
    statements = deployed(bootstrap).policy("ExecutionRole")
    trusted: set[str] = set()
    for resource in transformed["Resources"].values():
        if resource["Type"] == "AWS::IAM::Role":
            for statement in resource["Properties"]["AssumeRolePolicyDocument"]["Statement"]:
                trusted.update(as_list(statement["Principal"].get("Service", [])))
    role = f"arn:aws:iam::{ACCOUNT}:role/{STACK}-InferenceFunctionRole-{SUFFIX}"
    for service in trusted:
        assert allowed(statements, Call("iam:PassRole", role, {"iam:PassedToService": service})), service
    for service in ("ec2.amazonaws.com", "cloudformation.amazonaws.com", "ecs-tasks.amazonaws.com"):
        assert not allowed(statements, Call("iam:PassRole", role, {"iam:PassedToService": service})), service


def test_only_the_templates_managed_policies_may_be_attached(
    bootstrap: dict[str, Any], transformed: dict[str, Any]
) -> None:
    statements = deployed(bootstrap).policy("ExecutionRole")
    role = f"arn:aws:iam::{ACCOUNT}:role/{STACK}-CodeDeployServiceRole-{SUFFIX}"
    attached = {
        arn
        for resource in transformed["Resources"].values()
        if resource["Type"] == "AWS::IAM::Role"
        for arn in resource["Properties"].get("ManagedPolicyArns", [])
    }
    assert attached
    for arn in attached:
        assert allowed(statements, Call("iam:AttachRolePolicy", role, {"iam:PolicyARN": arn})), arn
    admin = "arn:aws:iam::aws:policy/AdministratorAccess"
    assert not allowed(statements, Call("iam:AttachRolePolicy", role, {"iam:PolicyARN": admin}))


# ------------------------------------------------------------------------------------------------ every policy


def all_statements(bootstrap: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    stack = deployed(bootstrap)
    roles = [logical_id for logical_id, r in bootstrap["Resources"].items() if r["Type"] == "AWS::IAM::Role"]
    return [(role, statement) for role in roles for statement in stack.policy(role)]


def test_every_grant_names_resources_of_its_actions_kind_and_star_only_where_iam_has_none(
    bootstrap: dict[str, Any], generator: ModuleType
) -> None:
    transform = f"arn:aws:cloudformation:{REGION}:aws:transform/Serverless-2016-10-31"
    statements = all_statements(bootstrap)
    assert len(statements) > 20
    for role, statement in statements:
        if statement["Effect"] != "Allow":
            continue
        resources = as_list(statement["Resource"])
        for action in as_list(statement["Action"]):
            assert is_iam_action(action), (role, action)
            if resources == ["*"]:
                assert not action_kinds(action) or action.lower() in generator.ANY_RESOURCE, (role, action)
                continue
            assert action_kinds(action), f"{role}: {action} has no resource-level permission: it needs *"
            for resource in resources:
                if resource == transform and action == "cloudformation:CreateChangeSet":
                    continue  # CloudFormation's guide names the transform's ARN; the reference has no such kind
                sample = resource.replace("*", "x")
                assert any(p.fullmatch(sample) for p in kind_arn_patterns(action)), (role, action, resource)


def test_every_policy_fits_iam(bootstrap: dict[str, Any]) -> None:
    """Managed policies at most 6,144 characters (without whitespace) at the variables' longest values; at most
    10 managed policies on a role; a trust policy within 2,048 with people, CI and the longest names."""
    resources = bootstrap["Resources"]
    longest = {"StackNamePrefix": "x" * bootstrap["Parameters"]["StackNamePrefix"]["MaxLength"]}
    evaluator = LongestEvaluator(bootstrap, longest, {"ExecutionRole.Arn": "x", "DeployerRole.Arn": "x"})
    managed = {logical_id: r for logical_id, r in resources.items() if r["Type"] == "AWS::IAM::ManagedPolicy"}
    assert managed
    for logical_id, policy in managed.items():
        size = len(json.dumps(evaluator.evaluate(policy["Properties"]["PolicyDocument"]), separators=(",", ":")))
        assert size <= 6144, (logical_id, size)
    for role in ("ExecutionRole", "DeployerRole"):
        assert sum({"Ref": role} in r["Properties"]["Roles"] for r in managed.values()) <= 10, role
    stack = deployed(bootstrap, {**EVERYONE, "DeployerPrincipalArns": ",".join([SSO_DEPLOYERS] * 4)})
    for role in ("DeployerRole", "ModelPublisherRole"):
        trust = json.dumps({"Version": "2012-10-17", "Statement": stack.trust(role)}, separators=(",", ":"))
        assert len(trust) <= 2048, (role, len(trust))
    for name in stack.arns.values():
        role_name = name.rsplit("/", 1)[1].replace(REGION, "ap-southeast-3")
        assert len(role_name) <= 64, role_name


# ------------------------------------------------------------------------------------------------ the deployer


def sam_cli(code: str) -> Any:
    """Run ``code`` in SAM CLI's interpreter; it prints JSON."""
    run = subprocess.run([str(SAM_PYTHON), "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def sam_names() -> dict[str, Any]:
    """What SAM CLI itself names, for the dev stack: its companion stack, the function's image repository, and
    the companion stack's template."""
    names: dict[str, Any] = sam_cli(
        "import json\n"
        "from samcli.lib.bootstrap.companion_stack.data_types import CompanionStack, ECRRepo\n"
        "from samcli.lib.bootstrap.companion_stack.companion_stack_builder import CompanionStackBuilder\n"
        "stack = CompanionStack('onnx-lambda-dev')\n"
        "builder = CompanionStackBuilder(stack)\n"
        "builder.add_function('InferenceFunction')\n"
        "repo = ECRRepo(stack, 'InferenceFunction')\n"
        "print(json.dumps({'companion': stack.stack_name, 'repository': repo.physical_id,\n"
        "                  'uri': repo.get_repo_uri('123456789012', 'us-east-1'), 'template': builder.build()}))\n"
    )
    return names


DEV_STACK = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/onnx-lambda-dev/1f2e3d4c"


def test_the_deployer_runs_change_sets_only_as_the_execution_role(bootstrap: dict[str, Any]) -> None:
    stack = deployed(bootstrap)
    statements = stack.policy("DeployerRole")
    execution = stack.arns["ExecutionRole"]
    as_execution = {"cloudformation:RoleArn": execution}
    assert allowed(statements, Call("cloudformation:CreateChangeSet", DEV_STACK, as_execution))
    assert not allowed(statements, Call("cloudformation:CreateChangeSet", DEV_STACK))  # its own credentials
    other_role = {"cloudformation:RoleArn": f"arn:aws:iam::{ACCOUNT}:role/Admin"}
    assert not allowed(statements, Call("cloudformation:CreateChangeSet", DEV_STACK, other_role))
    transform = f"arn:aws:cloudformation:{REGION}:aws:transform/Serverless-2016-10-31"
    assert allowed(statements, Call("cloudformation:CreateChangeSet", transform))
    for action in ("ExecuteChangeSet", "DescribeChangeSet", "DescribeStacks", "DescribeStackEvents", "GetTemplate"):
        assert allowed(statements, Call(f"cloudformation:{action}", DEV_STACK)), action
    # Not another application's stacks, not this stack, and no stack deletion.
    other = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/billing-prod/9a8b"
    assert not allowed(statements, Call("cloudformation:CreateChangeSet", other, as_execution))
    assert not allowed(statements, Call("cloudformation:ExecuteChangeSet", other))
    itself = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{BOOTSTRAP_STACK}/0c1d2e3f"
    for action in ("CreateChangeSet", "ExecuteChangeSet", "UpdateStack", "DeleteChangeSet"):
        assert not allowed(statements, Call(f"cloudformation:{action}", itself, as_execution)), action
    assert not allowed(statements, Call("cloudformation:DeleteStack", DEV_STACK, as_execution))
    # It passes the execution role, to CloudFormation only, and no other role.
    passed = {"iam:PassedToService": "cloudformation.amazonaws.com"}
    assert allowed(statements, Call("iam:PassRole", execution, passed))
    assert not allowed(statements, Call("iam:PassRole", execution, {"iam:PassedToService": "lambda.amazonaws.com"}))
    assert not allowed(statements, Call("iam:PassRole", stack.arns["DeployerRole"], passed))


def test_the_deployer_may_do_nothing_itself(bootstrap: dict[str, Any]) -> None:
    """No wildcard action, * only for ECR's sign-in, and none of what the execution role does for it."""
    statements = deployed(bootstrap).policy("DeployerRole")
    for statement in statements:
        if statement["Effect"] != "Allow":
            continue
        for action in as_list(statement["Action"]):
            assert not set("*?") & set(action), action
        if as_list(statement["Resource"]) == ["*"]:
            assert as_list(statement["Action"]) == ["ecr:GetAuthorizationToken"], statement
    services = {action.split(":")[0] for action in granted(statements)}
    assert services == {"cloudformation", "iam", "s3", "ecr", "kms"}, services
    assert {a for a in granted(statements) if a.startswith("iam:")} == {"iam:passrole"}
    model_object = f"arn:aws:s3:::{STACK}-modelbucket-abc/models/m/1-0123/model.onnx"
    assert not allowed(statements, Call("s3:PutObject", model_object))
    assert not allowed(
        statements, Call("lambda:UpdateFunctionCode", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{STACK}-x")
    )


def test_the_deployer_reaches_what_sam_cli_names(bootstrap: dict[str, Any], sam_names: dict[str, Any]) -> None:
    """The companion stack and image repository SAM CLI names for the dev stack, its bucket and its stack."""
    statements = deployed(bootstrap).policy("DeployerRole")
    companion = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{sam_names['companion']}/5e6f"
    assert allowed(statements, Call("cloudformation:CreateStack", companion))
    assert allowed(statements, Call("cloudformation:UpdateStack", companion))
    # Only without a role: with the execution role, CloudFormation would act as that instead.
    role = {"cloudformation:RoleArn": deployed(bootstrap).arns["ExecutionRole"]}
    assert not allowed(statements, Call("cloudformation:CreateStack", companion, role))
    assert not allowed(statements, Call("cloudformation:CreateStack", DEV_STACK))
    repository = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{sam_names['repository']}"
    for action in ("PutImage", "InitiateLayerUpload", "UploadLayerPart", "CompleteLayerUpload", "CreateRepository"):
        assert allowed(statements, Call(f"ecr:{action}", repository)), action
    assert not allowed(statements, Call("ecr:PutImage", f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/other-app"))
    sam_stack = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/aws-sam-cli-managed-default/7a8b"
    assert allowed(statements, Call("cloudformation:DescribeStacks", sam_stack))
    assert not allowed(statements, Call("cloudformation:CreateChangeSet", sam_stack, role))
    bucket = "arn:aws:s3:::aws-sam-cli-managed-default-samclisourcebucket-1x2y3z"
    assert allowed(statements, Call("s3:PutObject", f"{bucket}/onnx-lambda-dev/4f5e.template"))
    assert not allowed(statements, Call("s3:PutObject", f"{bucket}/other-app/4f5e.template"))


def test_the_companion_stack_holds_only_what_the_deployers_generated_policy_covers(
    bootstrap: dict[str, Any], sam_names: dict[str, Any], generator: ModuleType
) -> None:
    template = yaml.safe_load(sam_names["template"])
    types = sorted({r["Type"] for r in template["Resources"].values()})
    assert types == sorted(generator.COMPANION_STACK_TYPES)
    statements = deployed(bootstrap).policy("DeployerRole")
    assert not missing_permissions(types, statements)


def test_the_deployer_pushes_as_sam_clis_own_pipeline_role_does(bootstrap: dict[str, Any]) -> None:
    """SAM CLI's pipeline bootstrap (stage_resources.yaml, shipped with it) gives its deploy role these for the
    image and the artifacts; the deployer has every image action (but deleting images) and no more S3."""
    location = sam_cli("import json, samcli, pathlib; print(json.dumps(str(pathlib.Path(samcli.__file__).parent)))")
    stage = cloudformation.load_template(Path(location) / "lib" / "pipeline" / "bootstrap" / "stage_resources.yaml")
    pipeline = stage["Resources"]["PipelineExecutionRolePermissionPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    theirs = [a for s in pipeline for branch in _if_branches(s) for a in as_list(branch.get("Action", []))]
    image = {a.lower() for a in theirs if a.startswith("ecr:")} - {"ecr:batchdeleteimage"}
    ours = granted(deployed(bootstrap).policy("DeployerRole"))
    assert image <= ours, image - ours
    s3_ours = {a for a in ours if a.startswith("s3:")}
    assert all(any(wildcard(p, a, ignore_case=True) for p in theirs if p.startswith("s3:")) for a in s3_ours), s3_ours


def _if_branches(statement: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if "Fn::If" in statement:
        return [branch for branch in statement["Fn::If"][1:] if isinstance(branch, dict)]
    return [statement]


# ------------------------------------------------------------------------------------------------ trust


def test_people_assume_the_deployer_only_through_the_roles_named(bootstrap: dict[str, Any]) -> None:
    trust = deployed(bootstrap).trust("DeployerRole")
    assert may_assume(trust, principal=SSO_DEPLOYER)
    assert not may_assume(trust, principal=SSO_ADMIN)
    assert not may_assume(trust, principal=SSO_PUBLISHER)
    # A role the stacks have can't, whatever the patterns say (the execution role may write those roles).
    broad = deployed(bootstrap, {**EVERYONE, "DeployerPrincipalArns": f"arn:aws:iam::{ACCOUNT}:role/o*"})
    assert may_assume(broad.trust("DeployerRole"), principal=f"arn:aws:iam::{ACCOUNT}:role/ops-deploy")
    stacks_role = f"arn:aws:iam::{ACCOUNT}:role/{STACK}-InferenceFunctionRole-{SUFFIX}"
    assert not may_assume(broad.trust("DeployerRole"), principal=stacks_role)


def test_github_actions_assume_the_deployer_only_from_its_environment(bootstrap: dict[str, Any]) -> None:
    trust = deployed(bootstrap).trust("DeployerRole")
    right = {"aud": "sts.amazonaws.com", "sub": "repo:example-org/onnx-lambda:environment:production"}
    assert may_assume(trust, federated=PROVIDER, **right)
    assert not may_assume(trust, federated=PROVIDER, **{**right, "aud": "https://github.com/example-org"})
    for sub in (
        "repo:example-org/onnx-lambda:ref:refs/heads/main",
        "repo:example-org/onnx-lambda:environment:models",
        "repo:example-org/onnx-lambda-fork:environment:production",
        "repo:attacker/onnx-lambda:environment:production",
    ):
        assert not may_assume(trust, federated=PROVIDER, aud="sts.amazonaws.com", sub=sub), sub
    (web,) = [s for s in trust if "Federated" in s["Principal"]]
    assert web["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert set(web["Condition"]) == {"StringEquals"}, "exact claims, no wildcards"
    assert set(web["Condition"]["StringEquals"]) == {f"{GITHUB}:aud", f"{GITHUB}:sub"}
    # Without an environment, jobs on the branch.
    branch = deployed(bootstrap, {**EVERYONE, "GitHubDeployEnvironment": ""}).trust("DeployerRole")
    main = {"aud": "sts.amazonaws.com", "sub": "repo:example-org/onnx-lambda:ref:refs/heads/main"}
    assert may_assume(branch, federated=PROVIDER, **main)
    assert not may_assume(
        branch, federated=PROVIDER, **{**main, "sub": "repo:example-org/onnx-lambda:ref:refs/heads/dev"}
    )


def test_without_ci_no_web_identity_is_trusted_and_no_provider_is_created(bootstrap: dict[str, Any]) -> None:
    people = deployed(bootstrap, {"DeployerPrincipalArns": SSO_DEPLOYERS})
    assert all("Federated" not in s["Principal"] for s in people.trust("DeployerRole"))
    assert not people.exists("GitHubOidcProvider")
    assert not people.exists("ModelPublisherRole")
    ci = deployed(bootstrap, {"GitHubRepository": "example-org/onnx-lambda", "CreateGitHubOidcProvider": "true"})
    assert ci.exists("GitHubOidcProvider")
    assert all("AWS" not in s["Principal"] for s in ci.trust("DeployerRole"))
    provider = bootstrap["Resources"]["GitHubOidcProvider"]["Properties"]
    assert (provider["Url"], provider["ClientIdList"]) == (f"https://{GITHUB}", ["sts.amazonaws.com"])


def rules_hold(bootstrap: Mapping[str, Any], parameters: Mapping[str, Any]) -> list[str]:
    """The Rules whose assertions fail for these parameters (CloudFormation refuses the stack)."""
    evaluator = BootstrapEvaluator(bootstrap, parameters)
    failed = []
    for name, rule in bootstrap["Rules"].items():
        if "RuleCondition" in rule and not evaluator.evaluate(rule["RuleCondition"]):
            continue
        if not all(evaluator.evaluate(assertion["Assert"]) for assertion in rule["Assertions"]):
            failed.append(name)
    return failed


@pytest.mark.parametrize(
    ("parameters", "failed"),
    [
        ({}, ["SomeoneMayDeploy"]),
        ({"DeployerPrincipalArns": SSO_DEPLOYERS}, []),
        ({"GitHubRepository": "o/r"}, ["GitHubNeedsOneOidcProvider"]),
        ({"GitHubRepository": "o/r", "CreateGitHubOidcProvider": "true"}, []),
        ({"GitHubRepository": "o/r", "GitHubOidcProviderArn": PROVIDER}, []),
        ({"GitHubRepository": "o/r", "GitHubOidcProviderArn": PROVIDER, "CreateGitHubOidcProvider": "true"}, ["GitHubNeedsOneOidcProvider"]),  # noqa: E501
    ],
)  # fmt: skip
def test_the_rules_refuse_a_bootstrap_nobody_can_use(
    bootstrap: dict[str, Any], parameters: dict[str, Any], failed: list[str]
) -> None:
    assert rules_hold(bootstrap, parameters) == failed


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        (SSO_DEPLOYERS, True),
        (f"{SSO_DEPLOYERS},arn:aws:iam::{ACCOUNT}:role/ci/deployer", True),
        (f"arn:aws:iam::{ACCOUNT}:role/*", False),  # every role of the account
        (f"arn:aws:iam::{ACCOUNT}:user/alice", False),  # no IAM users
        ("arn:aws:iam::*:role/deployer", False),
        ("*", False),
    ],
)
def test_the_principal_parameters_take_roles_of_one_account(
    bootstrap: dict[str, Any], value: str, accepted: bool
) -> None:
    for name in ("DeployerPrincipalArns", "PublisherPrincipalArns"):
        assert bool(re.fullmatch(bootstrap["Parameters"][name]["AllowedPattern"], value)) == accepted, name


# ------------------------------------------------------------------------------------------------ the publisher


def test_the_publisher_is_what_the_main_stacks_model_publisher_arn_names(
    bootstrap: dict[str, Any], template: dict[str, Any], sam_transform: Transform
) -> None:
    stack = deployed(bootstrap)
    publisher, execution = stack.arns["ModelPublisherRole"], stack.arns["ExecutionRole"]
    for name, arn in (("ModelPublisherArn", publisher), ("CloudFormationExecutionRoleArn", execution)):
        assert re.fullmatch(template["Parameters"][name]["AllowedPattern"], arn), name
    # The main stack then lets the publisher write models and nobody else (the deployer and CloudFormation least).
    parameters = {"ModelPublisherArn": publisher, "CloudFormationExecutionRoleArn": execution}
    policy = bucket_policy(sam_transform(parameters), parameters)
    model = "arn:aws:s3:::onnx-lambda-dev-modelbucket-abc123/models/all-minilm-l6-v2/1-0123456789abcdef/model.onnx"
    assert denied_by(policy, Request("s3:PutObject", model, publisher)) == []
    for other in (stack.arns["DeployerRole"], execution, SSO_ADMIN):
        assert denied_by(policy, Request("s3:PutObject", model, other)), other
    # And its own policy lets it publish there, as the stack's own publisher role may: no more.
    statements = stack.policy("ModelPublisherRole")
    published_key = model.replace("onnx-lambda-dev", STACK)
    assert allowed(statements, Call("s3:PutObject", published_key))
    assert allowed(statements, Call("s3:GetObject", published_key))
    for action in (
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:BypassGovernanceRetention",
        "s3:PutObjectRetention",
    ):
        assert not allowed(statements, Call(action, published_key)), action
    assert not allowed(statements, Call("s3:PutObject", "arn:aws:s3:::other-app-bucket/models/x"))
    assert not allowed(statements, Call("s3:PutObject", published_key.replace("/models/", "/other-prefix/")))
    main_role = sam_transform({})["Resources"]["ModelPublisherRole"]["Properties"]["Policies"]
    main_actions = {
        a.lower() for p in main_role for s in p["PolicyDocument"]["Statement"] for a in as_list(s["Action"])
    }
    assert granted(statements) == main_actions


def test_people_and_ci_assume_the_publisher_only_as_named(bootstrap: dict[str, Any]) -> None:
    trust = deployed(bootstrap).trust("ModelPublisherRole")
    assert may_assume(trust, principal=SSO_PUBLISHER)
    assert not may_assume(trust, principal=SSO_DEPLOYER)
    ci = {"aud": "sts.amazonaws.com", "sub": "repo:example-org/onnx-lambda:environment:models"}
    assert may_assume(trust, federated=PROVIDER, **ci)
    assert not may_assume(
        trust, federated=PROVIDER, aud="sts.amazonaws.com", sub=ci["sub"].replace("models", "production")
    )


def test_the_outputs_name_each_role(bootstrap: dict[str, Any]) -> None:
    outputs = bootstrap["Outputs"]
    assert outputs["ExecutionRoleArn"]["Value"] == {"Fn::GetAtt": ["ExecutionRole", "Arn"]}
    assert outputs["DeployerRoleArn"]["Value"] == {"Fn::GetAtt": ["DeployerRole", "Arn"]}
    assert outputs["ModelPublisherArn"]["Value"] == {"Fn::GetAtt": ["ModelPublisherRole", "Arn"]}
    assert outputs["ModelPublisherArn"]["Condition"] == bootstrap["Resources"]["ModelPublisherRole"]["Condition"]
