"""Just enough CloudFormation to read ``template.yaml`` and evaluate it the way CloudFormation would.

The template stays the one source of routes and settings. The API Gateway emulator reads its routes and
function settings through this module, the infra tests evaluate the transformed template with it, and
the architecture diagram reads the template with it. Short-form tags (``!Ref``, ``!Sub``, ``!GetAtt``,
...) become their long forms, parameters take their defaults (or the overrides given; list types are
split), and the intrinsic functions the template uses are evaluated. A resource's physical id or
attribute exists only once deployed: it resolves to the value the caller supplies in ``resources``, or
else is :class:`Unresolved`, so callers skip or replace such values instead of inventing them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import yaml

#: What the pseudo parameters stand for on a laptop.
PSEUDO_PARAMETERS: Final[Mapping[str, str]] = {
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::StackName": "onnx-lambda-local",
    "AWS::URLSuffix": "amazonaws.com",
}
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")
_FUNCTIONS_WITH_LIST_ARGUMENTS = frozenset(
    {"And", "Equals", "FindInMap", "If", "Join", "Not", "Or", "Select", "Split", "Cidr", "GetAZs"}
)


class Unresolved(Exception):
    """The value depends on something that exists only in a deployed stack."""


class NoValue:
    """``AWS::NoValue``: the property or list item is left out."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Final = NoValue()


class _TemplateLoader(yaml.SafeLoader):
    """A safe loader that turns CloudFormation's short-form tags into the long form."""


def _short_form(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = suffix if suffix == "Ref" or suffix == "Condition" else f"Fn::{suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_TemplateLoader.add_multi_constructor("!", _short_form)


def load_template(path: Path) -> dict[str, Any]:
    """The template as plain data, short-form tags included."""
    document = yaml.load(path.read_text(encoding="utf-8"), Loader=_TemplateLoader)  # noqa: S506  # nosec B506  # a SafeLoader
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise ValueError(f"{path} is not a CloudFormation template (no Resources)")
    return document


class Evaluator:
    """Evaluates intrinsic functions against parameter values and the resource values supplied.

    ``resources`` maps a logical id (``Ref``) or ``Id.Attribute`` (``GetAtt``) to its deployed value;
    any other resource reference is :class:`Unresolved`. Parameter values stay as given (a number stays
    a number); ``CommaDelimitedList`` and ``List<...>`` values given as text are split on commas.
    """

    def __init__(
        self,
        template: Mapping[str, Any],
        parameters: Mapping[str, Any] | None = None,
        resources: Mapping[str, Any] | None = None,
    ) -> None:
        self._template = template
        self._resources = dict(resources or {})
        self._conditions: dict[str, bool] = {}
        self.parameters: dict[str, Any] = {}
        overrides = dict(parameters or {})
        for name, definition in (template.get("Parameters") or {}).items():
            value = overrides.pop(name, definition.get("Default") if isinstance(definition, dict) else None)
            if value is None:
                continue
            kind = definition.get("Type", "String") if isinstance(definition, dict) else "String"
            if isinstance(value, str) and (kind == "CommaDelimitedList" or kind.startswith("List<")):
                value = [item.strip() for item in value.split(",")]
            self.parameters[name] = value
        if overrides:
            raise ValueError(f"unknown template parameters: {', '.join(sorted(overrides))}")

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            definitions = self._template.get("Conditions") or {}
            if name not in definitions:
                raise ValueError(f"the template has no condition {name!r}")
            self._conditions[name] = bool(self.evaluate(definitions[name]))
        return self._conditions[name]

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in PSEUDO_PARAMETERS:
            return PSEUDO_PARAMETERS[name]
        if name in self.parameters:
            return self.parameters[name]
        return self.resource(name)

    def resource(self, key: str) -> Any:
        """A resource's value (``Id``) or attribute (``Id.Attribute``), as supplied; else :class:`Unresolved`."""
        if key in self._resources:
            return self._resources[key]
        raise Unresolved(key)

    def evaluate(self, value: Any) -> Any:
        """``value`` with every intrinsic function applied; ``AWS::NoValue`` items and keys dropped."""
        if isinstance(value, list):
            return [item for item in (self.evaluate(item) for item in value) if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self.ref(str(argument))
            if key == "Condition":
                return self.condition(str(argument))
            if key.startswith("Fn::"):
                return self._function(key[4:], argument)
        evaluated = {key: self.evaluate(inner) for key, inner in value.items()}
        return {key: inner for key, inner in evaluated.items() if inner is not NO_VALUE}

    def _function(self, name: str, argument: Any) -> Any:
        if name in _FUNCTIONS_WITH_LIST_ARGUMENTS and not isinstance(argument, list):
            raise ValueError(f"Fn::{name} takes a list, got {argument!r}")
        match name:
            case "If":
                condition, if_true, if_false = argument
                return self.evaluate(if_true if self.condition(condition) else if_false)
            case "Equals":
                left, right = (self.evaluate(item) for item in argument)
                return str(left) == str(right)
            case "Not":
                return not self.evaluate(argument[0])
            case "And":
                return all(self.evaluate(item) for item in argument)
            case "Or":
                return any(self.evaluate(item) for item in argument)
            case "Join":
                separator, items = argument
                return str(separator).join(str(item) for item in self._list(items))
            case "Split":
                separator, text = argument
                return str(self.evaluate(text)).split(str(separator))
            case "Select":
                index, items = argument
                selected = self._list(items)
                position = int(self.evaluate(index))
                if not 0 <= position < len(selected):
                    raise ValueError(f"Fn::Select index {position} is outside the list {selected!r}")
                return selected[position]
            case "Sub":
                return self._sub(argument)
            case "GetAtt":
                resource, attribute = argument if isinstance(argument, list) else str(argument).split(".", 1)
                return self.resource(f"{resource}.{attribute}")
            case _:
                raise Unresolved(f"Fn::{name}")

    def _list(self, items: Any) -> list[Any]:
        evaluated = self.evaluate(items)
        if not isinstance(evaluated, list):
            raise ValueError(f"expected a list, got {evaluated!r}")
        return evaluated

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        values = {key: self.evaluate(inner) for key, inner in dict(variables).items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in values:
                return str(values[name])
            resolved = self.resource(name) if "." in name else self.ref(name)  # ${Resource.Attribute}
            return ",".join(resolved) if isinstance(resolved, list) else str(resolved)

        return _SUB_VARIABLE.sub(replace, str(text)).replace("${!", "${")
