"""Optional private networking (`network`): the section's checks, the helpers' output, and one
synthesized stage with the section set (SageMaker models, Batch Transform and every function in
the VPC, ENI permissions scoped or acknowledged, cdk-nag and cfn-lint clean); with it off,
nothing in the templates mentions a VPC."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator

from infra.config import StageConfig
from infra.config.errors import ConfigError
from infra.config.loading import load_stage_config
from infra.constructs.network import (
    LAMBDA_NETWORK_ACTIONS,
    NETWORK_ACKNOWLEDGMENTS,
    SAGEMAKER_NETWORK_ACTIONS,
    sagemaker_vpc_config,
)
from infra.summary import load_acknowledgments
from tests.infra.test_cfn_lint import _lint
from tests.support import VARIANT_OVERRIDES, SynthesizedApp, cdk_json_context, synthesize
from tests.templates import listed, render, render_definition, resources

VPC = "vpc-0a1b2c3d4e5f60718"
SUBNETS = ["subnet-0a1b2c3d4e5f60711", "subnet-0a1b2c3d4e5f60722"]
GROUPS = ["sg-0a1b2c3d4e5f60733"]
NETWORK = {"vpc_id": VPC, "subnet_ids": SUBNETS, "security_group_ids": GROUPS}
ALL_THREE = (
    "private networking needs vpc_id, subnet_ids and security_group_ids together "
    "(leave all three empty to keep it off)"
)


def _load(network: Any) -> StageConfig:
    context = copy.deepcopy(cdk_json_context())
    context["atelier"]["stages"]["dev"]["network"] = network
    return load_stage_config(context, "dev")


# --- the section -----------------------------------------------------------------------------


def test_the_shipped_stages_have_private_networking_off() -> None:
    for stage in cdk_json_context()["atelier"]["stages"]:
        config = load_stage_config(cdk_json_context(), stage)
        assert not config.network.enabled
        assert sagemaker_vpc_config(config) is None


def test_a_stage_without_the_section_has_it_off() -> None:
    context = copy.deepcopy(cdk_json_context())
    del context["atelier"]["defaults"]["network"]
    assert not load_stage_config(context, "dev").network.enabled


def test_all_three_keys_turn_it_on() -> None:
    network = _load(NETWORK).network
    assert network.enabled
    assert (network.vpc_id, network.subnet_ids, network.security_group_ids) == (
        VPC,
        tuple(SUBNETS),
        tuple(GROUPS),
    )


@pytest.mark.parametrize(
    ("network", "message"),
    [
        # Only some keys set: the first missing one is named.
        ({"vpc_id": VPC}, f"network.subnet_ids is missing; {ALL_THREE}"),
        ({"subnet_ids": SUBNETS}, f"network.vpc_id is missing; {ALL_THREE}"),
        (
            {"vpc_id": VPC, "subnet_ids": SUBNETS},
            f"network.security_group_ids is missing; {ALL_THREE}",
        ),
        ({"security_group_ids": GROUPS}, f"network.vpc_id is missing; {ALL_THREE}"),
        (
            {**NETWORK, "subnet_ids": SUBNETS[:1]},
            "network.subnet_ids = ['subnet-0a1b2c3d4e5f60711'] names 1 subnet; expected at "
            "least 2 private subnets in different Availability Zones",
        ),
        # Ids of the wrong kind or shape.
        (
            {**NETWORK, "vpc_id": "subnet-0a1b2c3d4e5f60711"},
            "network.vpc_id = 'subnet-0a1b2c3d4e5f60711' is not valid; expected a VPC id such "
            "as 'vpc-0123456789abcdef0' or null",
        ),
        (
            {**NETWORK, "subnet_ids": [SUBNETS[0], "subnet-XYZ"]},
            "network.subnet_ids[1] = 'subnet-XYZ' is not valid; expected subnet ids such as "
            "'subnet-0123456789abcdef0'",
        ),
        (
            {**NETWORK, "security_group_ids": "sg-0a1b2c3d4e5f60733"},
            "network.security_group_ids = 'sg-0a1b2c3d4e5f60733' is not valid; expected a list "
            "of 0-5 security group ids such as 'sg-0123456789abcdef0'",
        ),
        (
            {**NETWORK, "security_group_ids": [f"sg-0000000{n}" for n in range(6)]},
            "network.security_group_ids = ['sg-00000000', 'sg-00000001', 'sg-00000002', "
            "'sg-00000003', 'sg-00000004', 'sg-00000005'] is not valid; expected a list of 0-5 "
            "security group ids such as 'sg-0123456789abcdef0'",
        ),
        (
            {**NETWORK, "subnet_ids": [SUBNETS[0], SUBNETS[0]]},
            "network.subnet_ids = ['subnet-0a1b2c3d4e5f60711', 'subnet-0a1b2c3d4e5f60711'] "
            "lists a value twice",
        ),
        (
            {**NETWORK, "vpc": VPC},
            "network.vpc is not a known key; allowed keys: vpc_id, subnet_ids, security_group_ids",
        ),
        ("on", "network must be an object, got 'on'"),
    ],
)
def test_a_bad_network_section_is_refused_by_name(network: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(network)
    assert str(caught.value) == f"stage 'dev': {message}"


def test_the_vpc_config_is_what_sagemaker_accepts() -> None:
    config = _load(NETWORK)
    vpc_config = sagemaker_vpc_config(config)
    assert vpc_config == {"SecurityGroupIds": GROUPS, "Subnets": SUBNETS}
    # Validated against botocore's CreateModel and CreateTrainingJob shapes (1-5 groups, 1-16
    # subnets); the check itself refuses a malformed one.
    model = botocore.session.get_session().get_service_model("sagemaker")
    for operation in ("CreateModel", "CreateTrainingJob"):
        shape = model.operation_model(operation).input_shape.members["VpcConfig"]
        assert not ParamValidator().validate(vpc_config, shape).has_errors()
        broken = {"SecurityGroupIds": [], "Subnets": SUBNETS}
        assert ParamValidator().validate(broken, shape).has_errors()


# --- a synthesized stage with the section set -------------------------------------------------


@pytest.fixture(scope="module")
def network_app(tmp_path_factory: pytest.TempPathFactory) -> SynthesizedApp:
    """The variant stage (every endpoint hosted, so SageMaker models and the Batch Transform
    route exist) with private networking on; cdk-nag attached (a finding raises here)."""
    return synthesize(
        "dev",
        tmp_path_factory.mktemp("cdk-out-network"),
        stage_overrides={**copy.deepcopy(VARIANT_OVERRIDES), "network": NETWORK},
    )


def _all(app: SynthesizedApp, resource_type: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """`logical id` → (stack, resource) of every resource of this type in the app."""
    return {
        logical_id: (stack, resource)
        for stack, template in app.templates.items()
        for logical_id, resource in resources(template, resource_type).items()
    }


def _policies_of_role(app: SynthesizedApp, stack: str, role_id: str) -> list[dict[str, Any]]:
    """The inline policies (`AWS::IAM::Policy`) of the stack that attach to role `role_id`."""
    return [
        policy["Properties"]
        for policy in resources(app.templates[stack], "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
    ]


def _network_policy(app: SynthesizedApp, stack: str, role_id: str) -> tuple[str, dict[str, Any]]:
    """(logical id, properties) of the one policy on the role that grants EC2 actions."""
    found = [
        (logical_id, policy["Properties"])
        for logical_id, policy in resources(app.templates[stack], "AWS::IAM::Policy").items()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        and any(
            action.startswith("ec2:")
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]
            for action in listed(statement["Action"])
        )
    ]
    assert len(found) == 1, f"{stack}/{role_id}: {found}"
    return found[0]


def _granted(policy: dict[str, Any]) -> set[str]:
    return {
        action
        for statement in policy["PolicyDocument"]["Statement"]
        for action in listed(statement["Action"])
    }


def test_every_sagemaker_model_runs_in_the_vpc(network_app: SynthesizedApp) -> None:
    models = _all(network_app, "AWS::SageMaker::Model")
    assert len(models) == 3  # the VQA, DreamBooth and styling endpoints of the variant
    for logical_id, (stack, model) in models.items():
        properties = model["Properties"]
        assert properties["VpcConfig"] == {"SecurityGroupIds": GROUPS, "Subnets": SUBNETS}
        assert properties["EnableNetworkIsolation"] is True
        # Its role may create the interfaces, before the model (and so the endpoint) exists.
        role_id = properties["ExecutionRoleArn"]["Fn::GetAtt"][0]
        policy_id, policy = _network_policy(network_app, stack, role_id)
        assert _granted(policy) == set(SAGEMAKER_NETWORK_ACTIONS), logical_id
        assert policy_id in model["DependsOn"], logical_id


def test_the_batch_transform_model_runs_in_the_vpc(network_app: SynthesizedApp) -> None:
    (catalog,) = [name for name in network_app.templates if name.endswith("-catalog")]
    template = network_app.templates[catalog]
    (machine,) = [
        resource
        for resource in resources(template, "AWS::StepFunctions::StateMachine").values()
        if "Create transform model" in json.dumps(resource)
    ]
    definition = json.loads(render_definition(machine["Properties"]["DefinitionString"]))
    create_model = _find_state(definition, "Create transform model")
    assert create_model["Arguments"]["VpcConfig"] == {
        "SecurityGroupIds": GROUPS,
        "Subnets": SUBNETS,
    }
    # The role passed to CreateModel may create the transform jobs' interfaces.
    _, policy = _network_policy(network_app, catalog, _role_id(template, "TransformModelRole"))
    assert _granted(policy) == set(SAGEMAKER_NETWORK_ACTIONS)


def _find_state(node: Any, name: str) -> dict[str, Any]:
    """The state called `name` anywhere in a definition (nested Map processors included)."""
    if isinstance(node, dict):
        states = node.get("States", {})
        if name in states:
            found: dict[str, Any] = states[name]
            return found
        for value in node.values():
            try:
                return _find_state(value, name)
            except KeyError:
                continue
    if isinstance(node, list):
        for value in node:
            try:
                return _find_state(value, name)
            except KeyError:
                continue
    raise KeyError(name)


def _states(node: Any) -> list[dict[str, Any]]:
    """Every state of a definition, nested Map processors included."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        for state in node.get("States", {}).values():
            found.append(state)
        for value in node.values():
            found += _states(value)
    elif isinstance(node, list):
        for value in node:
            found += _states(value)
    return found


def test_every_training_job_runs_in_the_vpc(network_app: SynthesizedApp) -> None:
    jobs = []
    for stack, template in network_app.templates.items():
        for machine in resources(template, "AWS::StepFunctions::StateMachine").values():
            definition = json.loads(render_definition(machine["Properties"]["DefinitionString"]))
            jobs += [
                (stack, state, machine)
                for state in _states(definition)
                if "sagemaker:createTrainingJob" in str(state.get("Resource", ""))
            ]
    assert len(jobs) >= 3  # VQA, DreamBooth and styling training
    for stack, state, machine in jobs:
        assert state["Arguments"]["VpcConfig"] == {
            "SecurityGroupIds": GROUPS,
            "Subnets": SUBNETS,
        }, stack
        role_id = state["Arguments"]["RoleArn"].removeprefix("${").removesuffix(".Arn}")
        policy_id, policy = _network_policy(network_app, stack, role_id)
        assert _granted(policy) == set(SAGEMAKER_NETWORK_ACTIONS), stack
        # A run may start as soon as the workflow exists: the interfaces' grant comes first.
        assert policy_id in machine["DependsOn"], stack


def _role_id(template: dict[str, Any], prefix: str) -> str:
    (role_id,) = [
        logical_id
        for logical_id in resources(template, "AWS::IAM::Role")
        if logical_id.startswith(prefix)
    ]
    return role_id


def test_every_function_runs_in_the_vpc(network_app: SynthesizedApp) -> None:
    functions = _all(network_app, "AWS::Lambda::Function")
    assert len(functions) > 10
    for logical_id, (stack, function) in functions.items():
        properties = function["Properties"]
        assert properties["VpcConfig"] == {"SecurityGroupIds": GROUPS, "SubnetIds": SUBNETS}
        role_id = properties["Role"]["Fn::GetAtt"][0]
        policy_id, policy = _network_policy(network_app, stack, role_id)
        assert _granted(policy) == set(LAMBDA_NETWORK_ACTIONS), logical_id
        # Lambda checks the interface permissions when it creates the function.
        assert policy_id in function["DependsOn"], logical_id
        # Not the managed AWSLambdaVPCAccessExecutionRole (every subnet of every VPC).
        role = network_app.templates[stack]["Resources"][role_id]["Properties"]
        assert "ManagedPolicyArns" not in role, logical_id
        # checkov's "function in a VPC" check now passes: no skip claims there is no VPC.
        skips = function.get("Metadata", {}).get("checkov", {}).get("skip", [])
        assert "CKV_AWS_117" not in {skip["id"] for skip in skips}, logical_id


def _ec2_statements(app: SynthesizedApp) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{stack}/{logical_id}", statement)
        for stack, template in app.templates.items()
        for logical_id, policy in resources(template, "AWS::IAM::Policy").items()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if any(action.startswith("ec2:") for action in listed(statement["Action"]))
    ]


# Actions with no resource-level permissions (or, DeleteNetworkInterfacePermission, no required
# resource): the only ones on `*`.
_ANY_RESOURCE_ACTIONS = {
    "ec2:DeleteNetworkInterfacePermission",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSubnets",
    "ec2:DescribeVpcEndpoints",
    "ec2:DescribeVpcs",
}
_INTERFACES = "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:network-interface/*"


def test_network_permissions_are_scoped_where_ec2_allows(network_app: SynthesizedApp) -> None:
    statements = _ec2_statements(network_app)
    assert statements
    region_account = "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}"
    for where, statement in statements:
        actions = set(listed(statement["Action"]))
        targets = {render(resource) for resource in listed(statement["Resource"])}
        if targets == {"*"}:
            assert actions <= _ANY_RESOURCE_ACTIONS, where
        elif "ec2:CreateNetworkInterface" in actions:
            # New interfaces only in the configured subnets, with the configured groups.
            assert actions == {"ec2:CreateNetworkInterface"}, where
            assert targets == {
                _INTERFACES,
                *(f"{region_account}:subnet/{subnet}" for subnet in SUBNETS),
                *(f"{region_account}:security-group/{group}" for group in GROUPS),
            }, where
        else:
            assert targets == {_INTERFACES}, where
            if "ec2:CreateNetworkInterfacePermission" in actions:
                # SageMaker's: only interfaces of the configured VPC.
                condition = statement["Condition"]["ArnEquals"]["ec2:Vpc"]
                assert render(condition) == f"{region_account}:vpc/{VPC}", where
            else:  # Lambda's own interfaces (its documentation asks for every interface id)
                assert actions == {
                    "ec2:AssignPrivateIpAddresses",
                    "ec2:DeleteNetworkInterface",
                    "ec2:UnassignPrivateIpAddresses",
                }, where


def test_only_the_network_policies_acknowledge_network_findings(
    network_app: SynthesizedApp,
) -> None:
    # cdk-nag ran in the fixture (a finding raises there); its report concludes success.
    report = json.loads((network_app.assembly_dir / "validation-report.json").read_text())
    conclusions = {r["pluginName"]: r["conclusion"] for r in report["pluginReports"]}
    assert conclusions["AwsSolutions"] == "success"
    acknowledged = [
        (path, rule) for path, rule, _ in load_acknowledgments(network_app.assembly_dir)
    ]
    paths = {path for path, _ in acknowledged if path.endswith("NetworkPolicy")}
    rules = {f"AwsSolutions::{rule}" for rule in NETWORK_ACKNOWLEDGMENTS}
    # Each network policy acknowledges exactly its two wildcard findings...
    assert {(path, rule) for path, rule in acknowledged if path in paths} == {
        (path, rule) for path in paths for rule in rules
    }
    # ...no other acknowledgment names an EC2 resource, and every EC2 grant is in one of them
    # (so no other policy's `*` acknowledgment can cover an EC2 action).
    assert not [(p, r) for p, r in acknowledged if p not in paths and ":ec2:" in r]
    assert all("NetworkPolicy" in where for where, _ in _ec2_statements(network_app))
    # One per function and per SageMaker execution role: three endpoints' models and the
    # Batch Transform model (and the training roles once their jobs take the VPC too).
    functions = len(_all(network_app, "AWS::Lambda::Function"))
    assert len(paths) >= functions + 3 + 1


def test_the_network_stage_synthesizes_without_warnings(network_app: SynthesizedApp) -> None:
    # The imported VPC and subnets would warn once per function (unknown route tables, AZs as a
    # token list); nothing reads either, so the warnings are acknowledged where they arise.
    assembly = network_app.assembly_dir
    manifest = json.loads((assembly / "manifest.json").read_text())
    warnings = []
    for artifact in manifest["artifacts"].values():
        metadata = dict(artifact.get("metadata", {}))
        if "additionalMetadataFile" in artifact:
            metadata.update(json.loads((assembly / artifact["additionalMetadataFile"]).read_text()))
        warnings += [
            (path, entry["data"])
            for path, entries in metadata.items()
            for entry in entries
            if entry["type"] == "aws:cdk:warning"
        ]
    assert warnings == []


def test_the_network_stage_is_cfn_lint_clean(network_app: SynthesizedApp) -> None:
    linted = 0
    for template_file in sorted(Path(network_app.assembly_dir).glob("*.template.json")):
        findings = _lint(json.loads(template_file.read_text()))
        assert findings == [], f"{template_file.name}: {findings}"
        linted += 1
    assert linted == len(network_app.templates)


# --- off: nothing changes ---------------------------------------------------------------------


def test_with_the_section_off_no_template_mentions_a_vpc(
    synthesized_apps: dict[str, SynthesizedApp],
) -> None:
    for app in synthesized_apps.values():
        for stack, template in app.templates.items():
            text = json.dumps(template)
            assert "VpcConfig" not in text, stack
            assert '"ec2:' not in text, stack
