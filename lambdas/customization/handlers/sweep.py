"""Scheduled task (EventBridge): release this deployment's expired provisioned throughputs.

See `customization.logic.expiry` for the rules. The function fails (and its error alarm notifies
the topic) when any throughput could not be handled, after handling all the others; the next
sweep tries again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from customization.logic.expiry import Sweeper, SweepReport
from shared.adapters.bedrock_control import BedrockThroughputs
from shared.adapters.workflows import SnsNotifier, StepFunctionsWorkflow
from shared.environment import required

logger = Logger()
tracer = Tracer()


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


def run(sweeper_: Sweeper, now: datetime, scheduled: datetime | None = None) -> dict[str, Any]:
    report: SweepReport = sweeper_.sweep(now, scheduled=scheduled)
    logger.info("sweep done", **report.as_dict())
    if report.errors:
        raise SweepIncompleteError("; ".join(report.errors)[:4000])
    return report.as_dict()


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return run(sweeper(), datetime.now(UTC), scheduled_time(event))
