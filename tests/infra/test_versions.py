"""Lambda versions after the SAM transform: every change to what a version holds publishes one, and none is
ever deleted, so `live` always runs the settings of the last deploy and can be pointed back at any version.

CloudFormation publishes a new AWS::Lambda::Version when the version's logical id changes (SAM hashes the
function's properties into it, with parameter references unresolved) or when one of its create-only
properties changes on the same logical id (a replacement). The create-only properties and Lambda's
limits are read from the resource schemas cfn-lint ships, not written down here.
"""

from __future__ import annotations

import functools
import itertools
import json
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import ALL_ON, SAM_PYTHON, TEMPLATE, Evaluator
from tests.infra.parameter_values import BASE, CHANGED, violations

Transform = Callable[[Mapping[str, Any] | None], dict[str, Any]]

#: The parameters a version's configuration depends on: the model, memory, architecture, log level, scopes.
VERSION_PARAMETERS = {
    "ModelKey",
    "ModelVersionId",
    "ManifestSha256",
    "MemorySize",
    "Architecture",
    "LogLevel",
    "RouteScopes",
}
#: Pins that change a version's configuration but not its bytes: the manifest's sha256 (in the description) pins
#: the bytes these versions hold (the optimized model's too), so alone they can only name the same bytes again.
#: Lambda's 256 characters leave no room for them in the description (template.yaml, VersionDescription).
SAME_BYTES_PINS = {"ManifestVersionId", "TokenizerVersionId", "OptimizedModelVersionId"}
#: Function properties that belong to the function, not to a version (tags, reserved concurrency).
UNVERSIONED_PROPERTIES = {"Tags", "ReservedConcurrentExecutions"}


@functools.cache
def resource_schema(resource_type: str) -> dict[str, Any]:
    """CloudFormation's schema for a resource type, as cfn-lint (in aws-sam-cli's virtualenv) ships it."""
    code = (
        "import json, sys\n"
        "from cfnlint.schema import PROVIDER_SCHEMA_MANAGER as manager\n"
        "print(json.dumps(manager.get_resource_schema(region='us-east-1', resource_type=sys.argv[1]).schema))\n"
    )
    result = subprocess.run(
        [str(SAM_PYTHON), "-c", code, resource_type], capture_output=True, text=True, timeout=60, check=True
    )
    schema: dict[str, Any] = json.loads(result.stdout)
    return schema


def create_only(resource_type: str) -> list[str]:
    return [pointer.removeprefix("/properties/") for pointer in resource_schema(resource_type)["createOnlyProperties"]]


def the_version(transformed: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    (version,) = ((name, r) for name, r in transformed["Resources"].items() if r["Type"] == "AWS::Lambda::Version")
    return version


def version_identity(transformed: Mapping[str, Any], parameters: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """What decides whether CloudFormation publishes a new version: the logical id, and the create-only
    properties as CloudFormation evaluates them (a new value replaces the resource)."""
    name, version = the_version(transformed)
    properties = {key: value for key, value in version["Properties"].items() if key in create_only(version["Type"])}
    return name, Evaluator(transformed, parameters).evaluate(properties)


def version_configuration(transformed: Mapping[str, Any], parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The function's properties a published version snapshots, evaluated for these parameter values."""
    properties = transformed["Resources"]["InferenceFunction"]["Properties"]
    kept = {key: value for key, value in properties.items() if key not in UNVERSIONED_PROPERTIES}
    evaluated: dict[str, Any] = Evaluator(transformed, parameters).evaluate(kept)
    return evaluated


def test_every_parameter_has_a_changed_value(template: dict[str, Any]) -> None:
    assert set(CHANGED) == set(template["Parameters"])
    for name, value in CHANGED.items():
        definition = template["Parameters"][name]
        assert not violations(definition, value), (name, violations(definition, value))
        assert str(value) != str(BASE.get(name, definition.get("Default"))), f"{name}: not a change"


@pytest.mark.parametrize("parameter", sorted(CHANGED))
def test_a_parameter_publishes_a_version_exactly_when_it_changes_the_versions_configuration(
    sam_transform: Transform, parameter: str
) -> None:
    """Each parameter alone, through the transform: a new value that reaches what a version holds must give
    a new version (before, MemorySize, LogLevel or RouteScopes alone left `live` on the old settings), and
    one that doesn't must not (it would only republish the same configuration)."""
    changed = {**BASE, parameter: CHANGED[parameter]}
    before, after = sam_transform(BASE), sam_transform(changed)
    configuration_changed = version_configuration(before, BASE) != version_configuration(after, changed)
    new_version = version_identity(before, BASE) != version_identity(after, changed)
    assert configuration_changed == (parameter in VERSION_PARAMETERS | SAME_BYTES_PINS), "out of date"
    assert new_version == (parameter in VERSION_PARAMETERS), (
        f"{parameter}: configuration changed {configuration_changed}, new version {new_version}"
    )


def transform_with_image(image: str, directory: Path) -> dict[str, Any]:
    """template.yaml after `sam deploy` pushed ``image`` (it writes the image's URI into ImageUri)."""
    source = TEMPLATE.read_text()
    assert source.count("      PackageType: Image\n") == 1
    path = directory / f"template-{len(list(directory.iterdir()))}.yaml"
    path.write_text(
        source.replace("      PackageType: Image\n", f"      PackageType: Image\n      ImageUri: {image}\n")
    )
    result = subprocess.run(
        [str(SAM_PYTHON), str(TEMPLATE.parent / "tests" / "infra" / "sam_transform.py"), str(path), json.dumps(BASE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    transformed: dict[str, Any] = json.loads(result.stdout)
    return transformed


def test_an_image_change_publishes_a_version(template: dict[str, Any], tmp_path: Path) -> None:
    """A new image changes the properties SAM hashes: a new logical id (the old one is retained)."""
    properties = template["Resources"]["InferenceFunction"]["Properties"]
    assert properties["AutoPublishAliasAllProperties"] is True
    assert "AutoPublishCodeSha256" not in properties, "it replaces the properties hash: images would stop publishing"
    repository = "123456789012.dkr.ecr.us-east-1.amazonaws.com/onnx-lambda"
    first = transform_with_image(f"{repository}:inferencefunction-1111111111-python3.13", tmp_path)
    second = transform_with_image(f"{repository}:inferencefunction-2222222222-python3.13", tmp_path)
    assert the_version(first)[0] != the_version(second)[0]


def test_the_first_model_publishes_a_version(sam_transform: Transform) -> None:
    bare = sam_transform({})
    assert version_identity(bare, {}) != version_identity(sam_transform(BASE), BASE)
    assert version_identity(bare, {})[1]["Description"].startswith("no model ")


@pytest.mark.parametrize(
    "parameters", [{}, BASE, ALL_ON, {**BASE, **CHANGED}], ids=["no-model", "model", "all-on", "all-changed"]
)
def test_no_version_is_ever_deleted(sam_transform: Transform, parameters: dict[str, Any]) -> None:
    """A model or settings change replaces the version (same logical id, new Description), and an image
    change gives it a new logical id: CloudFormation deletes the old one in both cases unless the policies
    say Retain. The emergency rollback (update-alias to an older version) needs the old ones."""
    transformed = sam_transform(parameters)
    name, version = the_version(transformed)
    assert version["DeletionPolicy"] == "Retain", "an image change removes the old logical id"
    assert version["UpdateReplacePolicy"] == "Retain", "a model or settings change replaces the version"
    assert "Description" in create_only(version["Type"]), "the replacement this protects against"
    # The alias is what CodeDeploy moves; it is never replaced (its name and function are fixed).
    alias = transformed["Resources"]["InferenceFunctionAliaslive"]
    assert alias["Properties"]["Name"] == "live"
    assert alias["Properties"]["FunctionVersion"] == {"Fn::GetAtt": [name, "Version"]}


def test_a_model_only_rollout_replaces_the_version_and_keeps_the_old_one(sam_transform: Transform) -> None:
    """The case that used to delete the previous version: same logical id, new create-only Description."""
    changed = {**BASE, "ModelKey": CHANGED["ModelKey"], "ModelVersionId": CHANGED["ModelVersionId"]}
    before, after = sam_transform(BASE), sam_transform(changed)
    (old_id, old), (new_id, new) = version_identity(before, BASE), version_identity(after, changed)
    assert old_id == new_id, "SAM's hash doesn't see parameter values"
    assert old["Description"] != new["Description"]
    assert the_version(after)[1]["UpdateReplacePolicy"] == "Retain"


def test_the_description_names_the_model_for_a_roll_forward(sam_transform: Transform) -> None:
    """docs/operations.md rolls forward to an older model from `list-versions-by-function`'s descriptions."""
    _, identity = version_identity(sam_transform(ALL_ON), ALL_ON)
    key, version_id, sha256, memory, architecture, log_level, tokens = identity["Description"].split(" ")
    assert (key, version_id, sha256) == (ALL_ON["ModelKey"], ALL_ON["ModelVersionId"], ALL_ON["ManifestSha256"])
    assert (memory, architecture, log_level, tokens) == ("1769MB", "x86_64", "INFO", "machine+user")


def longest_values(template: Mapping[str, Any]) -> dict[str, list[Any]]:
    """The longest value each parameter in the description accepts (every one, for a list of allowed values)."""
    parameters = template["Parameters"]
    key_length = int(parameters["ModelKey"]["MaxLength"])
    longest = {
        "ModelKey": ["k" * (key_length - len("/model.onnx")) + "/model.onnx"],
        "ModelVersionId": ["v" * 64],
        "ManifestSha256": ["f" * 64],
        "MemorySize": [parameters["MemorySize"]["MaxValue"]],
    }
    for name in ("Architecture", "LogLevel", "RouteScopes"):
        longest[name] = list(parameters[name]["AllowedValues"])
    # Each is accepted, and one character more is not: these are the maxima.
    for name in ("ModelKey", "ModelVersionId", "ManifestSha256"):
        (value,) = longest[name]
        assert not violations(parameters[name], value), (name, violations(parameters[name], value))
        assert violations(parameters[name], value[0] + value), f"{name} accepts more than {len(value)} characters"
    assert violations(parameters["MemorySize"], int(parameters["MemorySize"]["MaxValue"]) + 1)
    return longest


def test_the_description_fits_lambdas_limit_at_the_parameters_maxima(
    sam_transform: Transform, template: dict[str, Any]
) -> None:
    limit = resource_schema("AWS::Lambda::Version")["properties"]["Description"]["maxLength"]
    transformed = sam_transform(BASE)
    _, version = the_version(transformed)
    longest = longest_values(template)
    lengths = []
    for values in itertools.product(*longest.values()):
        parameters = dict(zip(longest, values, strict=True))
        description = Evaluator(transformed, parameters).evaluate(version["Properties"]["Description"])
        lengths.append(len(description))
    assert max(lengths) <= limit, f"{max(lengths)} characters, over Lambda's {limit}"
    # And the version's other parameters stay within it too, without a model.
    assert len(Evaluator(transformed, {}).evaluate(version["Properties"]["Description"])) <= limit
