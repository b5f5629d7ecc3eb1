"""Log groups with the stage's retention and removal policy (Lambda, API access logs, workflows),
encrypted with the stage's data key.

Logs carry execution data (workflow inputs and outputs, request summaries), so they are
encrypted like the data itself. The key lives in the Data stack; `encrypt_log_groups` sets it
on every log group of the app in one place, and `logs_key_policy_statement` is the key-policy
statement that lets CloudWatch Logs use it for this stage's log groups only.
"""

from __future__ import annotations

import jsii
from aws_cdk import Aspects, Aws, IAspect, RemovalPolicy, Token
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct, IConstruct

from infra.config import LOG_RETENTION_DAYS, StageConfig

# CDK's RetentionDays members, in the same order as the day counts CloudWatch accepts.
_RETENTION_BY_DAYS = dict(
    zip(
        LOG_RETENTION_DAYS,
        [member for member in logs.RetentionDays if member is not logs.RetentionDays.INFINITE],
        strict=True,
    )
)


def retention_for(days: int) -> logs.RetentionDays:
    return _RETENTION_BY_DAYS[days]


def removal_policy_for(config: StageConfig) -> RemovalPolicy:
    return RemovalPolicy.RETAIN if config.removal_policy == "retain" else RemovalPolicy.DESTROY


def create_log_group(scope: Construct, construct_id: str, *, config: StageConfig) -> logs.LogGroup:
    return logs.LogGroup(
        scope,
        construct_id,
        retention=retention_for(config.log_retention_days),
        removal_policy=removal_policy_for(config),
    )


def log_group_name_prefix(config: StageConfig) -> str:
    """Every log group of the stage is named `<prefix>-<stage>-...`: CloudFormation names an
    unnamed one `<stack name>-<logical id>-<suffix>`, and each stack is named
    `<prefix>-<stage>-<name>`."""
    return config.resource_name("")


def logs_key_policy_statement(config: StageConfig) -> iam.PolicyStatement:
    """Lets CloudWatch Logs of this account and region use the key for this stage's log groups.

    CloudWatch Logs puts the log group's ARN in the encryption context of every call, so the
    condition holds the key to those log groups; without the statement CreateLogGroup with a
    KMS key fails.
    """
    log_groups = (
        f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:"
        f"{log_group_name_prefix(config)}*"
    )
    return iam.PolicyStatement(
        sid="CloudWatchLogsOfThisStage",
        principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
        actions=[
            "kms:Encrypt*",
            "kms:Decrypt*",
            "kms:ReEncrypt*",
            "kms:GenerateDataKey*",
            "kms:Describe*",
        ],
        resources=["*"],
        conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn": log_groups}},
    )


@jsii.implements(IAspect)
class _EncryptLogGroups:
    def __init__(self, key: kms.IKey, name_prefix: str) -> None:
        self.key, self.name_prefix = key, name_prefix

    def visit(self, node: IConstruct) -> None:
        if not isinstance(node, logs.CfnLogGroup):
            return
        name = node.log_group_name
        named = name is not None and not Token.is_unresolved(name)
        if named and not str(name).startswith(self.name_prefix):
            # The key policy covers the stage's names only: CloudFormation would fail later.
            raise ValueError(
                f"log group {node.node.path} is named {name!r}; the data key's policy lets "
                f"CloudWatch Logs use it only for names starting {self.name_prefix!r}"
            )
        if node.kms_key_id is None:
            node.kms_key_id = self.key.key_arn


def encrypt_log_groups(scope: IConstruct, *, key: kms.IKey, config: StageConfig) -> None:
    """Encrypt every log group under `scope` (the whole app) with `key`."""
    Aspects.of(scope).add(_EncryptLogGroups(key, log_group_name_prefix(config)))
