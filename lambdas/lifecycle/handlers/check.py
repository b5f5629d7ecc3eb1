"""Scheduled task (EventBridge, daily): the lifecycle of every Bedrock model the stage uses.

See `lifecycle.logic.checker`. Metrics go out as CloudWatch embedded metric format (namespace
Atelier, service model-lifecycle): per model `DaysToEndOfLife`, `LifecycleStage` (0 Active,
1 Legacy, 2 public extended access, 3 end of life or not found) and `NeedsAttention`; for the
stage `ModelsNeedingAttention`, which the stack's alarm watches. The function fails (and its
error alarm notifies) when some model could not be read, after checking all the others.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import TypeAdapter

from lifecycle.logic.assessment import PHASE_LEVEL, Assessment
from lifecycle.logic.checker import CheckReport, ConfiguredModel, LifecycleChecker
from shared import metric_names as names
from shared.adapters.bedrock_models import BedrockModels
from shared.adapters.lifecycle_state import ParameterStates
from shared.adapters.workflows import SnsNotifier
from shared.environment import DeploymentError, required
from shared.telemetry import emit_count, logger, step_handler

_MODELS = TypeAdapter(list[ConfiguredModel])
# What the stack's alarm watches (infra/constructs/model_lifecycle.py names the same).
ATTENTION_METRIC = names.MODELS_NEEDING_ATTENTION


class CheckIncompleteError(RuntimeError):
    """Some models could not be checked; the message lists them."""


class EmfMetrics:
    """The checker's metrics as embedded metric format lines (no CloudWatch API call), each with
    the `deployment` dimension (`<prefix>-<stage>`): stages may share an account."""

    def __init__(self, deployment: str) -> None:
        self.deployment = deployment

    def model(self, *, model_id: str, assessment: Assessment) -> None:
        values: list[tuple[str, float]] = [
            (names.LIFECYCLE_STAGE, PHASE_LEVEL[assessment.phase]),
            (names.NEEDS_ATTENTION, 1 if assessment.needs_attention else 0),
        ]
        if assessment.days_to_end_of_life is not None:
            values.append((names.DAYS_TO_END_OF_LIFE, round(assessment.days_to_end_of_life, 2)))
        for name, value in values:
            self._emit(name, value, model=model_id)

    def attention(self, count: int) -> None:
        self._emit(ATTENTION_METRIC, count)

    def _emit(self, name: str, value: float, **dimensions: str) -> None:
        emit_count(name, value, **{names.DEPLOYMENT_DIMENSION: self.deployment}, **dimensions)


def configured_models(raw: str) -> list[ConfiguredModel]:
    try:
        return _MODELS.validate_json(raw)
    except ValueError as error:
        raise DeploymentError(f"CONFIGURED_MODELS is not valid: {error}") from None


@cache
def checker() -> LifecycleChecker:
    """Built on first use, so importing this module stays cheap and tests can swap it."""
    return LifecycleChecker(
        catalog=BedrockModels(),
        states=ParameterStates(required("STATE_PARAMETER")),
        notifier=SnsNotifier(required("TOPIC_ARN")),
        metrics=EmfMetrics(required("DEPLOYMENT")),
        deployment=required("DEPLOYMENT"),
        warning_days=int(required("WARNING_DAYS")),
    )


def run(checker_: LifecycleChecker, models: list[ConfiguredModel], now: datetime) -> dict[str, Any]:
    report: CheckReport = checker_.check(models, now)
    logger.info("lifecycle checked", **report.as_dict())
    if report.errors:
        raise CheckIncompleteError("; ".join(report.errors)[:4000])
    return report.as_dict()


@step_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    models = configured_models(required("CONFIGURED_MODELS"))
    return run(checker(), models, datetime.now(UTC))
