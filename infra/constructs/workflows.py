"""A Step Functions state machine the way every Atelier workflow runs: JSONata, its own log group
with every event (execution data included), X-Ray tracing, and only the grants its policies hold.

The log-delivery and X-Ray actions support no resource-level permissions, so each sits in a
policy of its own with its own acknowledgment instead of widening the task policy.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.log_groups import create_log_group
from infra.nag import acknowledge

_LOG_DELIVERY_ACTIONS = [
    "logs:CreateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:DescribeLogGroups",
    "logs:DescribeResourcePolicies",
    "logs:GetLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:UpdateLogDelivery",
]
_TRACING_ACTIONS = [
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "xray:PutTelemetryRecords",
    "xray:PutTraceSegments",
]


def observed_state_machine(
    scope: Construct,
    construct_id: str,
    *,
    config: StageConfig,
    name: str,
    comment: str,
    definition: sfn.IChainable,
    role: iam.Role,
    policies: Sequence[iam.Policy],
    timeout: Duration,
    policy_prefix: str | None = None,
) -> sfn.StateMachine:
    """`role` gets the logging and tracing policies (`<policy_prefix>LoggingPolicy`,
    `<policy_prefix>TracingPolicy`; the prefix defaults to `construct_id`) beside `policies`, which
    must hold every task grant."""
    observability = observability_policies(scope, policy_prefix or construct_id, role)
    state_machine = sfn.StateMachine(
        scope,
        construct_id,
        state_machine_name=name,
        comment=comment,
        definition_body=sfn.DefinitionBody.from_chainable(definition),
        query_language=sfn.QueryLanguage.JSONATA,
        # Every grant is explicit in the policies, so CDK adds none of its own (its task,
        # log-delivery and X-Ray statements would share one policy).
        role=role.without_policy_updates(),
        logs=sfn.LogOptions(
            destination=create_log_group(scope, f"{construct_id}Logs", config=config),
            level=sfn.LogLevel.ALL,
            include_execution_data=True,
        ),
        tracing_enabled=True,
        timeout=timeout,
    )
    # Step Functions checks the log-delivery permissions when it creates the state machine.
    state_machine.node.add_dependency(*policies, *observability)
    # StateMachine makes itself depend on its whole role, which cfn-lint reports as redundant
    # with the RoleArn GetAtt (as for Lambda functions): harmless, CDK's to change.
    cfn_state_machine = state_machine.node.default_child
    assert isinstance(cfn_state_machine, sfn.CfnStateMachine)
    cfn_state_machine.add_metadata("cfn-lint", {"config": {"ignore_checks": ["W3005"]}})
    return state_machine


def observability_policies(scope: Construct, prefix: str, role: iam.Role) -> list[iam.Policy]:
    """The logging and tracing policies of a state machine's role: APIs without resource-level
    permissions, so each is acknowledged for its Resource '*'."""
    policies = []
    for name, actions, reason in (
        (
            "Logging",
            _LOG_DELIVERY_ACTIONS,
            "Step Functions log delivery to CloudWatch Logs uses the vended-logs APIs, which "
            "support no resource-level permissions; AWS documents Resource '*' for them.",
        ),
        (
            "Tracing",
            _TRACING_ACTIONS,
            "X-Ray PutTraceSegments, PutTelemetryRecords and the sampling APIs support no "
            "resource-level permissions; the service requires Resource '*'.",
        ),
    ):
        policy = iam.Policy(
            scope,
            f"{prefix}{name}Policy",
            roles=[role],
            statements=[iam.PolicyStatement(actions=actions, resources=["*"])],
        )
        acknowledge(policy, "AwsSolutions-IAM5[Resource::*]", reason)
        policies.append(policy)
    return policies


def pass_role_statement(role_arn: str, service: str) -> iam.PolicyStatement:
    """iam:PassRole on `role_arn`, only to `service` (e.g. `sagemaker.amazonaws.com`): a workflow
    hands its job that role and nothing else."""
    return iam.PolicyStatement(
        actions=["iam:PassRole"],
        resources=[role_arn],
        conditions={"StringEquals": {"iam:PassedToService": service}},
    )
