"""Alarms that fire on the first occurrence of something that should never happen quietly."""

from __future__ import annotations

from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct


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
