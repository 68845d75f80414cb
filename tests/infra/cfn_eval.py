"""Evaluate CloudFormation intrinsic functions the way the service does, for assertions on a template.

Enough of the language for this template: parameters (with defaults, lists split), pseudo parameters,
conditions, Ref, GetAtt, Sub, Join, Split, Select, If and AWS::NoValue. References to resources resolve
to the values a test provides, or to a readable ``<Ref X>`` / ``<X.Attr>`` placeholder.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_SUB = re.compile(r"\$\{([^}!][^}]*)\}")
PSEUDO = {
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "onnx-lambda-test",
}


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


class Evaluator:
    def __init__(
        self,
        template: Mapping[str, Any],
        parameters: Mapping[str, Any] | None = None,
        resources: Mapping[str, str] | None = None,
    ) -> None:
        self.template = template
        self.resources = dict(resources or {})
        self.parameters: dict[str, Any] = {}
        for name, definition in template.get("Parameters", {}).items():
            value = (parameters or {}).get(name, definition.get("Default"))
            if value is None:
                continue
            if definition.get("Type") == "CommaDelimitedList" and isinstance(value, str):
                value = [item.strip() for item in value.split(",")] if value else [""]
            self.parameters[name] = value
        self._conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self.evaluate(self.template["Conditions"][name]))
        return self._conditions[name]

    def ref(self, name: str) -> Any:
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.parameters:
            return self.parameters[name]
        return self.resources.get(name, f"<Ref {name}>")

    def evaluate(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.evaluate(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return NO_VALUE if argument == "AWS::NoValue" else self.ref(argument)
            if key == "Condition":
                return self.condition(argument)
            if key.startswith("Fn::"):
                return self._function(key, argument)
        result = {key: self.evaluate(inner) for key, inner in value.items()}
        return {key: inner for key, inner in result.items() if inner is not NO_VALUE}

    def _function(self, name: str, argument: Any) -> Any:
        if name == "Fn::If":
            condition, if_true, if_false = argument
            return self.evaluate(if_true if self.condition(condition) else if_false)
        if name == "Fn::Equals":
            left, right = (self.evaluate(item) for item in argument)
            return str(left) == str(right)
        if name == "Fn::Not":
            return not self.evaluate(argument[0])
        if name == "Fn::And":
            return all(self.evaluate(item) for item in argument)
        if name == "Fn::Or":
            return any(self.evaluate(item) for item in argument)
        if name == "Fn::Join":
            separator, items = argument
            return separator.join(str(item) for item in self.evaluate(items))
        if name == "Fn::Split":
            separator, text = argument
            return str(self.evaluate(text)).split(separator)
        if name == "Fn::Select":
            index, items = argument
            return self.evaluate(items)[int(self.evaluate(index))]
        if name == "Fn::GetAtt":
            resource, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            return self.resources.get(f"{resource}.{attribute}", f"<{resource}.{attribute}>")
        if name == "Fn::Sub":
            text, variables = (argument, {}) if isinstance(argument, str) else argument
            values = {key: self.evaluate(inner) for key, inner in variables.items()}
            return _SUB.sub(lambda match: str(self._sub_value(match.group(1), values)), text)
        raise NotImplementedError(name)

    def _sub_value(self, name: str, variables: Mapping[str, Any]) -> Any:
        if name in variables:
            return variables[name]
        if "." in name and name.split(".", 1)[0] not in self.parameters:
            resource, attribute = name.split(".", 1)
            return self.resources.get(name, f"<{resource}.{attribute}>")
        return self.ref(name)
