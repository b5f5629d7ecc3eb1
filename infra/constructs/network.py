"""The `network` section turned into what SageMaker, Lambda and IAM take.

Off (the default), every helper returns nothing and the templates are unchanged. On, SageMaker
training jobs and models get a `VpcConfig`, every Lambda function gets the VPC's subnets and
security groups, and each execution role gets a policy of its own with the EC2 network-interface
actions its service performs with the role:

* SageMaker (training jobs, models behind endpoints and Batch Transform): the nine actions the
  SageMaker developer guide lists for an execution role with a private VPC, and
  ec2:DescribeVpcEndpoints, which its hosting guide adds for models (checked 2026-12-08).
* Lambda: the actions of AWSLambdaVPCAccessExecutionRole other than logs (the function already
  writes its own log group), inline rather than the managed policy (cdk-nag IAM4, and the managed
  policy allows every subnet of every VPC).

Scoping, per the EC2 service authorization reference (checked 2026-12-08):

* ec2:CreateNetworkInterface authorizes the new interface, the subnet and the security groups: the
  subnets and security groups are named exactly, so interfaces can be created only there; the new
  interface's id is not known in advance (`network-interface/*`, acknowledged).
* SageMaker's ec2:CreateNetworkInterfacePermission and ec2:DeleteNetworkInterface take a network
  interface and support the ec2:Vpc condition key: interfaces of the configured VPC only.
* Lambda deletes and re-addresses its own interfaces; its documentation asks for every interface
  id on DeleteNetworkInterface (it checks the permission when the function is created), so those
  stay on `network-interface/*` of the account and region, without a condition.
* The Describe actions support no resource-level permissions, and
  ec2:DeleteNetworkInterfacePermission names a permission, not a required resource: `*`,
  acknowledged.

Synthesis needs no AWS access: the VPC, subnets and security groups are imported by id
(`Vpc.from_vpc_attributes`, `Subnet.from_subnet_id`, `SecurityGroup.from_security_group_id`),
never looked up.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Annotations, Aws, Fn
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from infra.config import StageConfig
from infra.nag import acknowledge

# What the SageMaker developer guide lists for an execution role whose job or model runs in a VPC
# (DescribeVpcEndpoints: its hosting guide's list for models).
SAGEMAKER_NETWORK_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:CreateNetworkInterfacePermission",
    "ec2:DeleteNetworkInterface",
    "ec2:DeleteNetworkInterfacePermission",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeVpcs",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeVpcEndpoints",
)
# AWSLambdaVPCAccessExecutionRole's EC2 actions (its logs actions are the function's own grant).
LAMBDA_NETWORK_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
)
_DESCRIBE_REASON = (
    "EC2 Describe actions support no resource-level permissions (the {service} needs them to "
    "read the configured VPC, subnets and security groups){extra}."
)
_NEW_INTERFACE_REASON = (
    "The id of a network interface {service} creates is not known in advance; creation is "
    "limited to the configured subnets and security groups, named exactly{extra}."
)


def _ec2_arn(resource: str) -> str:
    """An EC2 ARN of the stack's account and region (pseudo parameters: the same names as the
    nag acknowledgments use whether or not the stage pins an account)."""
    return f"arn:{Aws.PARTITION}:ec2:{Aws.REGION}:{Aws.ACCOUNT_ID}:{resource}"


def _nag_ec2_arn(resource: str) -> str:
    """`_ec2_arn(resource)` as cdk-nag names it in a finding id."""
    return f"arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:{resource}"


NETWORK_INTERFACES = _ec2_arn("network-interface/*")
NAG_NETWORK_INTERFACES = _nag_ec2_arn("network-interface/*")
# The two findings a network policy acknowledges (`AwsSolutions-IAM5[...]`).
NETWORK_ACKNOWLEDGMENTS = (
    "AwsSolutions-IAM5[Resource::*]",
    f"AwsSolutions-IAM5[Resource::{NAG_NETWORK_INTERFACES}]",
)


def network_enabled(config: StageConfig) -> bool:
    return config.network.enabled


def sagemaker_vpc_config(config: StageConfig) -> dict[str, list[str]] | None:
    """The `VpcConfig` of a CreateTrainingJob or CreateModel request (Step Functions parameters),
    or None when private networking is off (leave the key out then)."""
    network = config.network
    if not network.enabled:
        return None
    return {
        "SecurityGroupIds": list(network.security_group_ids),
        "Subnets": list(network.subnet_ids),
    }


def cfn_model_vpc_config(config: StageConfig) -> sagemaker.CfnModel.VpcConfigProperty | None:
    """`AWS::SageMaker::Model`'s VpcConfig, or None when private networking is off."""
    network = config.network
    if not network.enabled:
        return None
    return sagemaker.CfnModel.VpcConfigProperty(
        security_group_ids=list(network.security_group_ids), subnets=list(network.subnet_ids)
    )


def _create_interface_statement(config: StageConfig) -> iam.PolicyStatement:
    network = config.network
    return iam.PolicyStatement(
        actions=["ec2:CreateNetworkInterface"],
        resources=[
            NETWORK_INTERFACES,
            *(_ec2_arn(f"subnet/{subnet}") for subnet in network.subnet_ids),
            *(_ec2_arn(f"security-group/{group}") for group in network.security_group_ids),
        ],
    )


def sagemaker_network_statements(config: StageConfig) -> list[iam.PolicyStatement]:
    """What a SageMaker execution role needs for a job or model in the configured VPC (empty when
    off). Two of them have wildcard resources: `sagemaker_network_policy` acknowledges them."""
    network = config.network
    if not network.enabled:
        return []
    assert network.vpc_id is not None  # enabled: all three keys are set
    return [
        _create_interface_statement(config),
        iam.PolicyStatement(
            actions=["ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface"],
            resources=[NETWORK_INTERFACES],
            conditions={"ArnEquals": {"ec2:Vpc": _ec2_arn(f"vpc/{network.vpc_id}")}},
        ),
        iam.PolicyStatement(
            actions=[
                "ec2:DeleteNetworkInterfacePermission",
                "ec2:DescribeDhcpOptions",
                "ec2:DescribeNetworkInterfaces",
                "ec2:DescribeSecurityGroups",
                "ec2:DescribeSubnets",
                "ec2:DescribeVpcEndpoints",
                "ec2:DescribeVpcs",
            ],
            resources=["*"],
        ),
    ]


def lambda_network_statements(config: StageConfig) -> list[iam.PolicyStatement]:
    """What a Lambda execution role needs for a function in the configured VPC (empty when off)."""
    if not config.network.enabled:
        return []
    return [
        _create_interface_statement(config),
        iam.PolicyStatement(
            actions=[
                "ec2:AssignPrivateIpAddresses",
                "ec2:DeleteNetworkInterface",
                "ec2:UnassignPrivateIpAddresses",
            ],
            resources=[NETWORK_INTERFACES],
        ),
        iam.PolicyStatement(
            actions=["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"],
            resources=["*"],
        ),
    ]


def _network_policy(
    scope: Construct,
    construct_id: str,
    *,
    role: iam.IRole,
    statements: list[iam.PolicyStatement],
    service: str,
    describe_extra: str,
    interface_extra: str,
) -> iam.Policy:
    policy = iam.Policy(scope, construct_id, roles=[role], statements=statements)
    acknowledge(
        policy,
        NETWORK_ACKNOWLEDGMENTS[0],
        _DESCRIBE_REASON.format(service=service, extra=describe_extra),
    )
    acknowledge(
        policy,
        NETWORK_ACKNOWLEDGMENTS[1],
        _NEW_INTERFACE_REASON.format(service=service, extra=interface_extra),
    )
    return policy


def sagemaker_network_policy(
    scope: Construct, construct_id: str, *, config: StageConfig, role: iam.IRole
) -> iam.Policy | None:
    """A policy of its own on `role` (a SageMaker execution role) with
    `sagemaker_network_statements`, its two wildcard findings acknowledged; None when off.
    Make the job's or model's resource depend on it: SageMaker creates the interfaces with the
    role as soon as the job or endpoint starts."""
    if not network_enabled(config):
        return None
    return _network_policy(
        scope,
        construct_id,
        role=role,
        statements=sagemaker_network_statements(config),
        service="SageMaker",
        describe_extra=(
            "; ec2:DeleteNetworkInterfacePermission takes a permission id, no required resource"
        ),
        interface_extra=(
            "; adding a permission to or deleting an interface is limited to interfaces in the "
            "configured VPC by the ec2:Vpc condition"
        ),
    )


def lambda_network_policy(
    scope: Construct, construct_id: str, *, config: StageConfig, role: iam.IRole
) -> iam.Policy | None:
    """A policy of its own on `role` (a Lambda execution role) with `lambda_network_statements`,
    its two wildcard findings acknowledged; None when off. The function must depend on it: Lambda
    checks the permissions when the function is created or its VPC settings change."""
    if not network_enabled(config):
        return None
    return _network_policy(
        scope,
        construct_id,
        role=role,
        statements=lambda_network_statements(config),
        service="Lambda service",
        describe_extra="",
        interface_extra=(
            "; Lambda deletes and re-addresses its own interfaces and, per its documentation, "
            "needs every interface id of the account and region on DeleteNetworkInterface"
        ),
    )


def lambda_network_props(scope: Construct, config: StageConfig) -> dict[str, Any]:
    """`vpc`, `vpc_subnets` and `security_groups` for a `lambda_.Function` created in `scope`
    (empty when off). Imported by id under `scope`/Network, no lookup: synthesis needs no AWS
    access, and imports add nothing to the template."""
    network = config.network
    if not network.enabled:
        return {}
    assert network.vpc_id is not None  # enabled: all three keys are set
    holder = Construct(scope, "Network")
    # Imports warn of what they do not know (the subnets' route tables, the VPC's AZs as a
    # literal list): nothing here reads either, the subnets are named in the VPC settings only.
    annotations = Annotations.of(holder)
    for warning in ("noSubnetRouteTableId", "vpcAttributeIsListTokenavailabilityZones"):
        annotations.acknowledge_warning(
            f"@aws-cdk/aws-ec2:{warning}",
            "the VPC and subnets are imported only to name them in the function's VPC settings",
        )
    return {
        # The AZs are never read: the subnets are named explicitly.
        "vpc": ec2.Vpc.from_vpc_attributes(
            holder,
            "Vpc",
            vpc_id=network.vpc_id,
            availability_zones=Fn.get_azs(),
        ),
        "vpc_subnets": ec2.SubnetSelection(
            subnets=[
                ec2.Subnet.from_subnet_id(holder, f"Subnet{index}", subnet)
                for index, subnet in enumerate(network.subnet_ids)
            ]
        ),
        # Immutable: a stack never adds rules to a group it does not own.
        "security_groups": [
            ec2.SecurityGroup.from_security_group_id(
                holder, f"SecurityGroup{index}", group, mutable=False
            )
            for index, group in enumerate(network.security_group_ids)
        ],
    }
