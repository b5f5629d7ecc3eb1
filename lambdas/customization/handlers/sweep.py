"""Scheduled task (EventBridge): release this deployment's expired provisioned throughputs.

See `customization.logic.expiry` for the rules. The function fails (and its error alarm notifies
the topic) when any throughput could not be handled, after handling all the others; the next
sweep tries again.

Each sweep records the cost guard's actions as metrics (namespace Atelier, service
titan-customization, dimension `deployment`; names in `shared.metric_names`, which the stage
dashboard reads): `ThroughputsReleased`, `ThroughputExpiryNotices`, `ThroughputSweepErrors`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from customization.logic.expiry import Sweeper, SweepReport
from shared import metric_names as names
from shared.adapters.bedrock_control import BedrockThroughputs
from shared.adapters.workflows import SnsNotifier, StepFunctionsWorkflow
from shared.environment import required
from shared.telemetry import emit_count, logger, step_handler


class SweepIncompleteError(RuntimeError):
    """Some throughputs could not be handled; the message lists them."""


@cache
def sweeper() -> Sweeper:
    """Built on first use, so importing this module stays cheap and tests can swap it."""
    return Sweeper(
        catalog=BedrockThroughputs(),
        releases=StepFunctionsWorkflow(required("RELEASE_STATE_MACHINE_ARN")),
        notifier=SnsNotifier(required("TOPIC_ARN")),
        deployment=required("DEPLOYMENT"),
    )


def scheduled_time(event: Any) -> datetime | None:
    """The EventBridge event's `time` (the schedule's, the same on every retry of that event);
    None when the function was invoked some other way."""
    raw = event.get("time") if isinstance(event, dict) else None
    if not isinstance(raw, str):
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def record_actions(report: SweepReport, *, deployment: str) -> None:
    """One data point per metric and sweep, zeros included: a flat line says the guard ran."""
    for name, value in (
        (names.THROUGHPUTS_RELEASED, len(report.released)),
        (names.THROUGHPUT_EXPIRY_NOTICES, len(report.notified)),
        (names.THROUGHPUT_SWEEP_ERRORS, len(report.errors)),
    ):
        emit_count(name, value, **{names.DEPLOYMENT_DIMENSION: deployment})


def run(sweeper_: Sweeper, now: datetime, scheduled: datetime | None = None) -> dict[str, Any]:
    report: SweepReport = sweeper_.sweep(now, scheduled=scheduled)
    logger.info("sweep done", **report.as_dict())
    record_actions(report, deployment=sweeper_.deployment)
    if report.errors:
        raise SweepIncompleteError("; ".join(report.errors)[:4000])
    return report.as_dict()


@step_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return run(sweeper(), datetime.now(UTC), scheduled_time(event))
