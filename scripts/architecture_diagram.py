"""Draw the architecture as a Mermaid flowchart generated from template.yaml.

The diagram in docs/architecture.md is this script's output, so it can't drift from the template:
``--write`` regenerates it between the markers, ``--check`` fails when it is stale (a test runs that).
Nodes are the template's resources, grouped by kind; edges are the references between them, the HTTP
API and schedule events, and the CodeDeploy wiring that DeploymentPreference asks SAM to generate.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from onnx_lambda_tools.local import cloudformation

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
DOC = ROOT / "docs" / "architecture.md"
BEGIN = "<!-- BEGIN GENERATED DIAGRAM: make diagram (scripts/architecture_diagram.py) -->"
END = "<!-- END GENERATED DIAGRAM -->"

#: Subgraph per resource type prefix, in drawing order.
GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("identity", "Identity: Cognito", ("AWS::Cognito::",)),
    ("api", "API Gateway", ("AWS::Serverless::HttpApi",)),
    (
        "compute",
        "Lambda",
        ("AWS::Serverless::Function", "AWS::Serverless::LayerVersion", "AWS::ApplicationAutoScaling::"),
    ),
    ("storage", "Model storage", ("AWS::S3::",)),
    ("access", "IAM", ("AWS::IAM::",)),
    ("monitoring", "Monitoring", ("AWS::CloudWatch::", "AWS::SNS::", "AWS::Logs::")),
    ("cost", "Cost", ("AWS::Budgets::",)),
)
#: The dashboard refers to every alarm and metric source; drawing those edges would bury the rest.
NO_OUTGOING_EDGES = ("AWS::CloudWatch::Dashboard",)
_SUB_REFERENCE = re.compile(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z0-9.]+)?\}")


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    return cloudformation.load_template(path)


def references(value: Any) -> Iterator[str]:
    """Logical ids that ``value`` refers to through Ref, GetAtt or Sub (``X.Version`` counts as ``X``)."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                yield inner.split(".", 1)[0]
            elif key == "Fn::GetAtt":
                target = inner[0] if isinstance(inner, list) else str(inner).split(".", 1)[0]
                yield str(target)
            elif key == "Fn::Sub":
                text = inner[0] if isinstance(inner, list) else inner
                yield from _SUB_REFERENCE.findall(str(text))
                if isinstance(inner, list) and len(inner) > 1:
                    yield from references(inner[1])
            else:
                yield from references(inner)
    elif isinstance(value, list):
        for item in value:
            yield from references(item)


def _group_of(resource_type: str) -> str:
    for group, _, prefixes in GROUPS:
        if resource_type.startswith(prefixes):
            return group
    return "other"


def _owner(name: str, resources: Mapping[str, Any]) -> str | None:
    """A logical id in the template, or the resource that SAM generates it from (``FnAliaslive`` -> ``Fn``)."""
    if name in resources:
        return name
    owners = [logical_id for logical_id in resources if name.startswith(logical_id)]
    return max(owners, key=len) if owners else None


def _label(text: str) -> str:
    return text.replace('"', "'")


def mermaid(template: Mapping[str, Any]) -> str:
    resources: dict[str, Any] = template.get("Resources", {})
    lines = ["flowchart LR", '  client(["API client<br/>Authorization: Bearer JWT"])']
    by_group: dict[str, list[str]] = {}
    for logical_id in sorted(resources):
        by_group.setdefault(_group_of(resources[logical_id]["Type"]), []).append(logical_id)
    titles = {group: title for group, title, _ in GROUPS} | {"other": "Other"}
    for group in [*[g for g, _, _ in GROUPS], "other"]:
        if group not in by_group:
            continue
        lines.append(f'  subgraph {group}["{titles[group]}"]')
        for logical_id in by_group[group]:
            resource = resources[logical_id]
            kind = resource["Type"].replace("AWS::Serverless::", "SAM ").replace("AWS::", "").replace("::", " ")
            condition = f" · if {resource['Condition']}" if "Condition" in resource else ""
            lines.append(f'    {logical_id}["{logical_id}<br/><small>{_label(kind + condition)}</small>"]')
        lines.append("  end")

    edges: dict[tuple[str, str], str] = {}
    for logical_id in sorted(resources):
        resource = resources[logical_id]
        properties = resource.get("Properties", {})
        for event in properties.get("Events", {}).values():
            event_properties = event.get("Properties", {})
            if event["Type"] == "HttpApi":
                api = next(references(event_properties.get("ApiId")), None)
                if api:
                    open_routes = edges.get((api, logical_id), "")
                    edges[(api, logical_id)] = open_routes + (
                        "o" if event_properties.get("Auth", {}).get("Authorizer") == "NONE" else "j"
                    )
            elif event["Type"] == "Schedule":
                schedule = f"{logical_id}Schedule"
                lines.append(f'  {schedule}(["EventBridge {_label(str(event_properties.get("Schedule")))}"])')
                edges[(schedule, logical_id)] = "invokes"
        if resource["Type"] in NO_OUTGOING_EDGES:
            continue
        without_events = {key: value for key, value in properties.items() if key != "Events"}
        depends_on = resource.get("DependsOn", [])
        targets = [*references(without_events), *([depends_on] if isinstance(depends_on, str) else depends_on)]
        for target in targets:
            owner = _owner(target, resources)
            if owner and owner != logical_id and (logical_id, owner) not in edges:
                edges[(logical_id, owner)] = ""
        preference = properties.get("DeploymentPreference")
        if isinstance(preference, dict):
            codedeploy = f"{logical_id}CodeDeploy"
            lines.append(f'  {codedeploy}{{{{"CodeDeploy<br/>shifts alias live"}}}}')
            edges[(codedeploy, logical_id)] = "traffic shift"
            # The function doesn't use its hook and alarms; its deployment does.
            for hook in references(preference.get("Hooks", {})):
                edges.pop((logical_id, hook), None)
                edges[(codedeploy, hook)] = "pre-traffic hook"
            for alarm in references(preference.get("Alarms", [])):
                edges.pop((logical_id, alarm), None)
                edges[(codedeploy, alarm)] = "rollback alarm"

    apis = [logical_id for logical_id in resources if resources[logical_id]["Type"] == "AWS::Serverless::HttpApi"]
    for api in apis:
        lines.append(f"  client -->|HTTPS| {api}")
    for (source, target), label in sorted(edges.items()):
        if label and set(label) <= {"o", "j"}:
            label = f"{label.count('j')} JWT routes, {label.count('o')} open health routes"
        arrow = f"-->|{_label(label)}|" if label else "-.->"
        lines.append(f"  {source} {arrow} {target}")
    return "\n".join(lines) + "\n"


def render_block(template: Mapping[str, Any]) -> str:
    return f"{BEGIN}\n```mermaid\n{mermaid(template)}```\n{END}"


def replace_block(document: str, block: str) -> str:
    start, end = document.find(BEGIN), document.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{DOC.name} lacks the generated-diagram markers")
    return document[:start] + block + document[end + len(END) :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="regenerate the diagram in docs/architecture.md")
    action.add_argument("--check", action="store_true", help="fail if docs/architecture.md is stale")
    action.add_argument("--print", action="store_true", help="print the Mermaid source")
    args = parser.parse_args(argv)
    block = render_block(load_template())
    if args.print:
        print(block)
        return 0
    document = DOC.read_text()
    updated = replace_block(document, block)
    if args.check:
        if updated != document:
            print(f"{DOC.relative_to(ROOT)} is stale: run `make diagram`", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
