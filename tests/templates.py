"""Reading synthesized CloudFormation templates in tests: resources, policies, readable ARNs."""

from __future__ import annotations

import json
from typing import Any

from tests.support import SynthesizedApp

Template = dict[str, Any]


def resources(template: Template, resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def one(template: Template, resource_type: str, prefix: str = "") -> tuple[str, Any]:
    """(logical id, properties) of the only resource of this type whose id starts with prefix."""
    matches = [
        (logical_id, resource.get("Properties", {}))
        for logical_id, resource in resources(template, resource_type).items()
        if logical_id.startswith(prefix)
    ]
    assert len(matches) == 1, f"expected one {resource_type} {prefix!r}, got {matches}"
    return matches[0]


def ssm_parameters(template: Template) -> dict[str, dict[str, Any]]:
    """The template's SSM parameters by name: their properties."""
    return {
        p["Properties"]["Name"]: p["Properties"]
        for p in resources(template, "AWS::SSM::Parameter").values()
    }


def assembly_artifacts(app: SynthesizedApp) -> dict[str, Any]:
    """The cloud assembly's artifacts (stacks with their dependencies and properties) by id."""
    artifacts: dict[str, Any] = json.loads((app.assembly_dir / "manifest.json").read_text())[
        "artifacts"
    ]
    return artifacts


def stack_dependencies(app: SynthesizedApp, stack_id: str) -> list[str]:
    """The stacks `stack_id` depends on (its asset manifests left out)."""
    dependencies: list[str] = assembly_artifacts(app)[stack_id]["dependencies"]
    return [name for name in dependencies if not name.endswith(".assets")]


def published_output_id(name: str) -> str:
    """The stack output that publishes `name` beside its SSM parameter: `vqa-code-uri` →
    `VqaCodeUri`."""
    return "".join(part.capitalize() for part in name.split("-"))


def exports(app: SynthesizedApp) -> dict[str, Any]:
    """Export name → exported value, over every stack of the app."""
    found = {}
    for template in app.templates.values():
        for output in template.get("Outputs", {}).values():
            if "Export" in output:
                found[output["Export"]["Name"]] = output["Value"]
    return found


def render(value: Any, exported: dict[str, Any] | None = None) -> str:
    """An intrinsic as one readable string: `${AWS::Region}`, `Models1234.Arn/vqa/*`."""
    if isinstance(value, str | int | float):
        return str(value)
    ((function, argument),) = value.items()
    if function == "Ref":
        return f"${{{argument}}}" if argument.startswith("AWS::") else argument
    if function == "Fn::GetAtt":
        return ".".join(argument)
    if function == "Fn::Join":
        separator, parts = argument
        return str(separator).join(render(part, exported) for part in parts)
    if function == "Fn::ImportValue":
        assert exported is not None, f"pass the app's exports to follow {argument}"
        return render(exported[argument], exported)
    if function == "Fn::FindInMap":
        name, key, attribute = argument
        return f"${{{name}[{render(key)}].{attribute}}}"
    if function == "Fn::Sub" and isinstance(argument, str):
        return argument
    raise AssertionError(f"unexpected intrinsic {value}")


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def role_statements(template: Template, role_prefix: str) -> dict[str, list[dict[str, Any]]]:
    """Policy logical id → statements, for every policy attached to the role."""
    role_id, _ = one(template, "AWS::IAM::Role", role_prefix)
    return {
        logical_id: policy["Properties"]["PolicyDocument"]["Statement"]
        for logical_id, policy in resources(template, "AWS::IAM::Policy").items()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
    }


def statements_granting(template: Template, role_prefix: str, action: str) -> list[dict[str, Any]]:
    return [
        statement
        for statements in role_statements(template, role_prefix).values()
        for statement in statements
        if action in listed(statement["Action"])
    ]


def state_machine_definition(template: Template, prefix: str = "") -> dict[str, Any]:
    """The definition of the template's only state machine whose logical id starts with prefix,
    intrinsics rendered as text."""
    _, properties = one(template, "AWS::StepFunctions::StateMachine", prefix)
    definition: dict[str, Any] = json.loads(render_definition(properties["DefinitionString"]))
    return definition


def render_definition(value: Any) -> str:
    # Tokens inside the JSON text become `${...}` markers that cannot break the JSON.
    if isinstance(value, str):
        return value
    ((function, argument),) = value.items()
    if function == "Fn::Join":
        return "".join(render_definition(part) for part in argument[1])
    if function == "Ref":
        return f"${{{argument}}}"
    if function == "Fn::GetAtt":
        return f"${{{'.'.join(argument)}}}"
    if function == "Fn::ImportValue":
        return f"${{import:{argument}}}"
    if function == "Fn::FindInMap":
        name, key, attribute = argument
        return f"${{{name}[{render(key)}].{attribute}}}"
    if function == "Fn::Sub" and isinstance(argument, str):
        return argument
    raise AssertionError(f"unexpected intrinsic {value}")
