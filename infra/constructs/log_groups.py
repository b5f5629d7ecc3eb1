"""Log groups with the stage's retention and removal policy (Lambda, API access logs, workflows)."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs
from constructs import Construct

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
