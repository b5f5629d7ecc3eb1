"""The daily lifecycle check: every configured Bedrock model, a metric each, a notice per change.

The stack passes the models from the stage's configuration (`CONFIGURED_MODELS`): each with the
cdk.json key that sets it. An inference profile (`global.anthropic...`) is resolved to the
foundation models it routes to, and each of those is checked. For each model the checker

- records metrics (days to end of life, lifecycle stage, needs attention), every run;
- compares the state key (see `assessment`) with the one it remembered, and when it changed to
  one that needs attention, notifies the topic once, naming the model, the dates and the key to
  change; then remembers the new key. A model that goes back to Active is remembered silently.

A model whose lifecycle cannot be read (throttled, denied) is reported as an error after the
others are done; its remembered state is kept, so the next run notices the change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from lifecycle.logic.assessment import PHASE_LEVEL, Assessment, assess
from shared.models.lifecycle import Lifecycle


class ConfiguredModel(BaseModel):
    """One model setting of the stage: `descriptions.model_id`, `titan.base_model_id`..."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    config_key: str = Field(alias="configKey")
    model_id: str = Field(alias="modelId")
    # Where the stage uses it ("descriptions (online and catalog)", "Titan customization").
    used_for: str = Field(alias="usedFor")


class ModelCatalog(Protocol):
    def foundation_models(self, model_id: str) -> list[str]:
        """The foundation model ids behind `model_id` (itself, or an inference profile's)."""
        ...

    def lifecycle(self, model_id: str) -> Lifecycle: ...


class StateStore(Protocol):
    def load(self) -> dict[str, str]: ...

    def save(self, states: Mapping[str, str]) -> None: ...


class Notifier(Protocol):
    def publish(self, *, subject: str, message: str) -> None: ...


class MetricSink(Protocol):
    def model(self, *, model_id: str, assessment: Assessment) -> None: ...

    def attention(self, count: int) -> None: ...


@dataclass
class CheckedModel:
    configured: ConfiguredModel
    foundation_model_id: str
    assessment: Assessment
    notified: bool

    def as_dict(self) -> dict[str, Any]:
        a = self.assessment
        return {
            "configKey": self.configured.config_key,
            "modelId": self.configured.model_id,
            "foundationModelId": self.foundation_model_id,
            "state": a.state_key,
            "stage": PHASE_LEVEL[a.phase],
            "daysToEndOfLife": None
            if a.days_to_end_of_life is None
            else round(a.days_to_end_of_life, 1),
            "needsAttention": a.needs_attention,
            "notified": self.notified,
        }


@dataclass
class CheckReport:
    models: list[CheckedModel] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def needing_attention(self) -> int:
        return sum(1 for model in self.models if model.assessment.needs_attention)

    def as_dict(self) -> dict[str, Any]:
        return {
            "models": [model.as_dict() for model in self.models],
            "needingAttention": self.needing_attention,
            "errors": self.errors,
        }


class LifecycleChecker:
    def __init__(
        self,
        *,
        catalog: ModelCatalog,
        states: StateStore,
        notifier: Notifier,
        metrics: MetricSink,
        deployment: str,
        warning_days: int,
        warning_days_key: str = "lifecycle.warning_days",
    ) -> None:
        self.catalog = catalog
        self.states = states
        self.notifier = notifier
        self.metrics = metrics
        self.deployment = deployment
        self.warning_days = warning_days
        self.warning_days_key = warning_days_key

    def check(self, models: Sequence[ConfiguredModel], now: datetime) -> CheckReport:
        report = CheckReport()
        remembered = self.states.load()
        states = dict(remembered)
        for configured in _unique(models):
            try:
                foundation_ids = self.catalog.foundation_models(configured.model_id)
            except Exception as error:  # reported; the other models go on
                report.errors.append(f"{configured.config_key} ({configured.model_id}): {error}")
                continue
            for foundation_id in foundation_ids:
                try:
                    lifecycle = self.catalog.lifecycle(foundation_id)
                except Exception as error:  # reported; the other models go on
                    report.errors.append(f"{configured.config_key} ({foundation_id}): {error}")
                    continue
                assessment = assess(lifecycle, now=now, warning_days=self.warning_days)
                self.metrics.model(model_id=foundation_id, assessment=assessment)
                key = _state_name(configured, foundation_id)
                changed = remembered.get(key) != assessment.state_key
                notify = changed and assessment.needs_attention
                if notify:
                    try:
                        self.notifier.publish(
                            subject=self._subject(configured, assessment),
                            message=self._message(configured, foundation_id, assessment),
                        )
                    except Exception as error:  # not remembered: sent next run
                        report.errors.append(f"notifying about {foundation_id}: {error}")
                        report.models.append(
                            CheckedModel(configured, foundation_id, assessment, notified=False)
                        )
                        continue
                states[key] = assessment.state_key
                report.models.append(CheckedModel(configured, foundation_id, assessment, notify))
        self.metrics.attention(report.needing_attention)
        if states != remembered:
            self.states.save(states)
        return report

    def _subject(self, configured: ConfiguredModel, assessment: Assessment) -> str:
        return (
            f"[{self.deployment}] Bedrock model {assessment.lifecycle.model_id}: "
            f"{assessment.phase.value.replace('_', ' ')}"
        )

    def _message(
        self, configured: ConfiguredModel, foundation_id: str, assessment: Assessment
    ) -> str:
        via = (
            f" (through inference profile {configured.model_id})"
            if foundation_id != configured.model_id
            else ""
        )
        lines = [
            f"Atelier {self.deployment} uses Bedrock model {foundation_id}{via} for "
            f"{configured.used_for}.",
            "",
            f"Its lifecycle: {assessment.describe()}.",
        ]
        if assessment.ends_soon and assessment.lifecycle.found:
            lines.append(
                f"Its end of life is within {self.warning_days} days ({self.warning_days_key})."
            )
        lines += [
            "",
            "Legacy models take no new customization jobs or provisioned throughput, may be "
            "closed to accounts that have not used them recently, and every call fails after "
            "the end of life.",
            "",
            f"What to change: {configured.config_key} in cdk.json (an Active model; Bedrock's "
            "model lifecycle page and model cards list them), then make deploy. "
            "`atelier doctor` shows every model of the stage with its state.",
        ]
        return "\n".join(lines)


def _state_name(configured: ConfiguredModel, foundation_id: str) -> str:
    """Per setting and model: changing the setting to another model starts afresh."""
    return f"{configured.config_key}|{configured.model_id}|{foundation_id}"


def _unique(models: Iterable[ConfiguredModel]) -> list[ConfiguredModel]:
    seen: set[tuple[str, str]] = set()
    unique = []
    for model in models:
        if (model.config_key, model.model_id) not in seen:
            seen.add((model.config_key, model.model_id))
            unique.append(model)
    return unique
