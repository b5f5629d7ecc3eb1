"""Alarms that fire on the first occurrence of something that should never happen quietly."""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from infra.config import StageConfig

# (construct id, alarm name under the stage's prefix, metric, description)
AlarmSpec = tuple[str, str, cloudwatch.IMetric, str]


def occurrence_alarm(
    scope: Construct,
    construct_id: str,
    *,
    alarm_name: str,
    metric: cloudwatch.IMetric,
    description: str,
    action: cloudwatch.IAlarmAction,
) -> cloudwatch.Alarm:
    """An alarm in ALARM as soon as `metric` reaches 1 in one period (a failed run, an error, a
    model needing attention), notifying `action`. No data is not a breach: these metrics are
    only written when something happens, or once a day."""
    alarm = cloudwatch.Alarm(
        scope,
        construct_id,
        alarm_name=alarm_name,
        alarm_description=description,
        metric=metric,
        threshold=1,
        evaluation_periods=1,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )
    alarm.add_alarm_action(action)
    return alarm


def occurrence_alarms(
    scope: Construct,
    config: StageConfig,
    alarms: Iterable[AlarmSpec],
    action: cloudwatch.IAlarmAction,
) -> None:
    """An `occurrence_alarm` for each of `alarms`, named `<prefix>-<stage>-<name>`."""
    for construct_id, name, metric, description in alarms:
        occurrence_alarm(
            scope,
            construct_id,
            alarm_name=config.resource_name(name),
            metric=metric,
            description=description,
            action=action,
        )
