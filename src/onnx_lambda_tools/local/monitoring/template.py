"""The dashboard and the alarms, as ``template.yaml`` declares them, resolved for the local stack.

The template stays the one definition: the ``DashboardBody`` and every ``AWS::CloudWatch::Alarm`` are read
from it and evaluated by :mod:`onnx_lambda_tools.local.cloudformation` (the evaluator the emulator reads its
routes with), with each ``${Resource}`` standing for what the local stack calls it:

* the HTTP API is the emulator's API (the ``apiId`` its events carry), stage ``$default``;
* a function is its local name (``<stack>-<LogicalId>``, or its ``FunctionName``); ``AutoPublishAlias``
  names the alias API Gateway invokes, and the local stack has one version of it, ``1``;
* an alarm is ``<stack>-<LogicalId>``, its ``Arn`` the ARN CloudWatch would give that name.

Resources the local stack has no stand-in for stay unresolved, and what depends on them says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from onnx_lambda_tools.local.cloudformation import NO_VALUE, PSEUDO_PARAMETERS, Evaluator, Unresolved, load_template
from onnx_lambda_tools.local.emulator.routes import HttpApi
from onnx_lambda_tools.local.events import API_ID

#: The stage an HTTP API's ``$default`` auto-deployed stage is called in metrics.
DEFAULT_STAGE: Final = "$default"
#: The version the local alias points at.
LOCAL_VERSION: Final = "1"


@dataclass(frozen=True, slots=True)
class LocalFunction:
    """A function the emulator runs, by the names its metrics carry."""

    logical_id: str
    name: str
    alias: str | None
    version: str = LOCAL_VERSION
    #: The namespace its Powertools metrics go to (``POWERTOOLS_METRICS_NAMESPACE``), if set.
    emf_namespace: str | None = None

    @property
    def resource(self) -> str:
        """The ``Resource`` dimension of the invocations API Gateway makes (through the alias, if any)."""
        return f"{self.name}:{self.alias}" if self.alias else self.name


@dataclass(frozen=True, slots=True)
class AlarmDefinition:
    """An alarm's properties, evaluated; ``unresolved`` names what only a deployed stack could fill in."""

    logical_id: str
    name: str
    arn: str
    properties: Mapping[str, Any]
    unresolved: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MonitoringTemplate:
    """What the local monitoring reads from the template."""

    api_id: str
    stage: str
    region: str
    functions: Mapping[str, LocalFunction]  # by logical id
    dashboard_name: str | None
    dashboard: Mapping[str, Any] | None  # the DashboardBody, parsed
    alarms: tuple[AlarmDefinition, ...] = ()
    problems: tuple[str, ...] = field(default=())

    @property
    def emf_namespaces(self) -> frozenset[str]:
        return frozenset(f.emf_namespace for f in self.functions.values() if f.emf_namespace)

    def alarm_by_arn(self, arn: str) -> AlarmDefinition | None:
        return next((alarm for alarm in self.alarms if arn in (alarm.arn, alarm.name)), None)


_ALARM_PROPERTIES: Final = (
    "AlarmName",
    "AlarmDescription",
    "Namespace",
    "MetricName",
    "Dimensions",
    "Statistic",
    "ExtendedStatistic",
    "Period",
    "EvaluationPeriods",
    "DatapointsToAlarm",
    "Threshold",
    "ComparisonOperator",
    "TreatMissingData",
    "Unit",
    "Metrics",
    "ThresholdMetricId",
    "ActionsEnabled",
)


def load_monitoring(
    template_path: Path, api: HttpApi, parameters: Mapping[str, str] | None = None
) -> MonitoringTemplate:
    """The dashboard and alarms of ``template_path`` for the local stack whose API is ``api``."""
    template = load_template(template_path)
    plain = Evaluator(template, parameters)
    stack = PSEUDO_PARAMETERS["AWS::StackName"]
    region = PSEUDO_PARAMETERS["AWS::Region"]
    account = PSEUDO_PARAMETERS["AWS::AccountId"]
    resources: dict[str, Any] = {}
    functions: dict[str, LocalFunction] = {}
    declared: dict[str, Any] = template["Resources"]
    for logical_id, spec in api.functions.items():
        properties = (declared.get(logical_id) or {}).get("Properties") or {}
        alias = _optional(plain, properties.get("AutoPublishAlias"))
        functions[logical_id] = LocalFunction(
            logical_id,
            spec.function_name,
            str(alias) if alias else None,
            emf_namespace=spec.environment.get("POWERTOOLS_METRICS_NAMESPACE"),
        )
        resources[logical_id] = spec.function_name
        resources[f"{logical_id}.Arn"] = f"arn:aws:lambda:{region}:{account}:function:{spec.function_name}"
        resources[f"{logical_id}.Version.Version"] = LOCAL_VERSION
    alarm_ids: list[str] = []
    dashboard_id: str | None = None
    for logical_id, resource in declared.items():
        kind = resource.get("Type") if isinstance(resource, dict) else None
        if kind in ("AWS::Serverless::HttpApi", "AWS::ApiGatewayV2::Api"):
            resources[logical_id] = API_ID
        elif kind == "AWS::CloudWatch::Alarm" and _present(plain, resource):
            name = _optional(plain, (resource.get("Properties") or {}).get("AlarmName")) or f"{stack}-{logical_id}"
            resources[logical_id] = str(name)
            resources[f"{logical_id}.Arn"] = f"arn:aws:cloudwatch:{region}:{account}:alarm:{name}"
            alarm_ids.append(logical_id)
        elif kind == "AWS::CloudWatch::Dashboard" and _present(plain, resource) and dashboard_id is None:
            dashboard_id = logical_id
    evaluator = Evaluator(template, parameters, resources)
    problems: list[str] = []
    alarms = tuple(_alarm(evaluator, logical_id, declared[logical_id], resources) for logical_id in alarm_ids)
    dashboard: Mapping[str, Any] | None = None
    dashboard_name: str | None = None
    if dashboard_id is not None:
        properties = declared[dashboard_id].get("Properties") or {}
        try:
            body = evaluator.evaluate(properties.get("DashboardBody"))
            dashboard = json.loads(body) if isinstance(body, str) else body
            dashboard_name = str(_optional(evaluator, properties.get("DashboardName")) or dashboard_id)
        except Unresolved as missing:
            problems.append(f"{dashboard_id}: its body refers to {missing}, which the local stack doesn't have")
        except ValueError as error:
            problems.append(f"{dashboard_id}: its DashboardBody is not JSON: {error}")
    return MonitoringTemplate(
        api_id=API_ID,
        stage=DEFAULT_STAGE,
        region=region,
        functions=functions,
        dashboard_name=dashboard_name,
        dashboard=dashboard,
        alarms=alarms,
        problems=tuple(problems),
    )


def _alarm(
    evaluator: Evaluator, logical_id: str, resource: Mapping[str, Any], resources: Mapping[str, Any]
) -> AlarmDefinition:
    declared = resource.get("Properties") or {}
    properties: dict[str, Any] = {}
    unresolved: list[str] = []
    for key in _ALARM_PROPERTIES:
        if key not in declared:
            continue
        try:
            value = evaluator.evaluate(declared[key])
        except Unresolved as missing:
            unresolved.append(f"{key} ({missing})")
            continue
        if value is not NO_VALUE:
            properties[key] = value
    return AlarmDefinition(
        logical_id=logical_id,
        name=str(resources[logical_id]),
        arn=str(resources[f"{logical_id}.Arn"]),
        properties=properties,
        unresolved=tuple(unresolved),
    )


def _present(evaluator: Evaluator, resource: Mapping[str, Any]) -> bool:
    condition = resource.get("Condition")
    return condition is None or evaluator.condition(str(condition))


def _optional(evaluator: Evaluator, value: Any) -> Any:
    if value is None:
        return None
    try:
        resolved = evaluator.evaluate(value)
    except Unresolved:
        return None
    return None if resolved is NO_VALUE else resolved
