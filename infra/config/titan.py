"""`titan`: customize a Bedrock image model, serve it through Provisioned Throughput, and
release every throughput the stage creates when its time is up."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationInfo, field_validator, model_validator

from infra.config.constants import (
    EMAIL_PATTERN,
    MAX_TITAN_MODEL_UNITS,
    MAX_WORKFLOW_POLLS,
    TITAN_COMMITMENTS,
    Commitment,
)
from infra.config.errors import section_fields
from infra.config.rules import (
    HERE,
    Rule,
    choice,
    custom,
    is_loading,
    matching,
    parsed,
    refuse,
    refuse_section,
    section,
    show,
    whole,
)
from infra.image_models import (
    ImageModelLimits,
    image_model,
    known_image_model_ids,
    shared_image_model_limits,
)

_BASE_MODEL_TEXT = (
    "expected null (no image model to customize: the customize workflow is not built) or the id "
    "of a Bedrock image model that takes fine-tuning: "
    + ", ".join(known_image_model_ids())
    + " (infra/image_models.py; see docs/image-customization.md for which can be customized today)"
)
_COMMITMENTS_TEXT = (
    'expected a non-empty list of commitments among none, OneMonth, SixMonths, e.g. ["none"]'
)
_STEPS_TEXT = "expected null (chosen from the number of images) or a whole number"


def _commitments(value: Any) -> tuple[Commitment, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise refuse(f"= {show(value)} is not valid; {_COMMITMENTS_TEXT}")
    for index, item in enumerate(value):
        if not isinstance(item, str) or item not in TITAN_COMMITMENTS:
            raise refuse(f"= {show(item)} is not valid; {_COMMITMENTS_TEXT}", f"[{index}]")
    if len(set(value)) != len(value):
        raise refuse(f"= {show(value)} lists a commitment twice")
    return tuple(value)


@section
class TitanHyperparameters:
    """Defaults of the image model's fine-tuning hyperparameters (Bedrock's own names in
    cdk.json); an execution may override each. Their ranges are the base model's
    (`TitanConfig.limits`), checked by the `titan` section."""

    # None: chosen from the number of images by the recommended-steps table
    # (docs/image-customization.md) when the manifest is checked.
    step_count: int | None = custom(
        Rule(
            "training steps, within the base model's range; `null`: from the number of images "
            "by the recommended steps",
            expected=f"{_STEPS_TEXT} in the range of titan.base_model_id",
            allowed="null or the base model's range",
        ),
        default=None,
        alias="stepCount",
    )
    batch_size: int = custom(
        Rule(
            "images per step, within the base model's range",
            expected="expected a whole number in the range of titan.base_model_id",
            allowed="the base model's range",
        ),
        alias="batchSize",
    )
    learning_rate: float = custom(
        Rule(
            "learning rate, within the base model's range",
            expected="expected a number in the range of titan.base_model_id",
            allowed="the base model's range",
        ),
        alias="learningRate",
    )


@section
class TitanConfig:
    """The Bedrock stack: customize an image model, serve it through Provisioned Throughput, and
    release every throughput it creates when its time is up."""

    # None (the shipped default): no Bedrock image model can be fine-tuned today, so the customize
    # workflow is not built; the throughput cost guard and POST /images still are.
    base_model_id: str | None = custom(
        Rule(
            "base model the customize workflow fine-tunes; `null`: no customize workflow (the "
            "release workflow and cost guard are still built)",
            expected=_BASE_MODEL_TEXT,
            check=lambda value: image_model(value) is not None,
            allowed="null or " + ", ".join(known_image_model_ids()),
        ),
        default=None,
    )
    hyperparameters: TitanHyperparameters
    model_units: int = whole(1, MAX_TITAN_MODEL_UNITS, "model units of each throughput")
    commitment: Commitment = choice(
        TITAN_COMMITMENTS,
        "`none` (hourly, deletable any time) or a term billed in full; must be in "
        "`allowed_commitments`",
    )
    # What an execution may ask for: a commitment term and model units are billed whatever the
    # cost guard does (a term in full), so only these are let through.
    allowed_commitments: tuple[Commitment, ...] = parsed(
        _COMMITMENTS_TEXT,
        _commitments,
        "commitment terms an execution may ask for; anything else fails the run before it costs",
        "a non-empty list of none, OneMonth, SixMonths",
    )
    max_model_units: int = whole(
        1, MAX_TITAN_MODEL_UNITS, "most model units an execution may ask for"
    )
    # The cost guard: hours a throughput lives unless its `atelier:expires-at` tag is moved.
    throughput_ttl_hours: int = whole(
        1, 8760, "the cost guard: hours from a throughput being in service until its release"
    )
    max_throughput_ttl_hours: int = whole(1, 8760, "largest `ttlHours` an execution may ask for")
    job_poll_seconds: int = whole(60, 3600, "how often the workflow checks the customization job")
    # Bedrock customization jobs are not bounded by a runtime of their own.
    max_job_runtime_hours: int = whole(
        1, 720, "a job still running after this long is stopped and the run fails"
    )
    throughput_poll_seconds: int = whole(
        30, 3600, "how often the workflow checks the new throughput"
    )
    max_throughput_wait_hours: int = whole(
        1, 24, "a throughput not in service after this long is released and the run fails"
    )
    # The sweeper's own timeout (one minute) must end before the next sweep starts.
    sweep_interval_minutes: int = whole(5, 60, "how often the sweeper releases expired throughputs")
    # Subscribed to the notifications topic (it must confirm); None: subscribe yourself.
    notification_email: str | None = matching(
        EMAIL_PATTERN,
        "an email address or null",
        "address subscribed to the notifications topic; `null`: subscribe yourself",
        default=None,
    )

    @property
    def customizable(self) -> bool:
        """Whether a base model is configured, i.e. the customize workflow exists."""
        return self.base_model_id is not None

    @property
    def limits(self) -> ImageModelLimits:
        """The base model's hyperparameter ranges, dataset rules and regions; with no base model,
        the ranges every model of the table shares (what the defaults are checked against)."""
        return _limits(self.base_model_id)

    @field_validator("hyperparameters")
    @classmethod
    def _in_the_base_models_range(
        cls, value: TitanHyperparameters, info: ValidationInfo
    ) -> TitanHyperparameters:
        base_model_id = info.data.get("base_model_id", "")
        if not is_loading(info) or base_model_id == "":  # the base model itself was refused
            return value
        limits = _limits(base_model_id)
        low, high = limits.step_count
        step_count = value.step_count
        if step_count is not None and not low <= step_count <= high:
            raise refuse(
                f"= {show(step_count)} is not valid; {_STEPS_TEXT} from {low} to {high} "
                f"({limits.name}, titan.base_model_id)",
                ".stepCount",
            )
        range_note = f"({limits.name}'s range, titan.base_model_id)"
        low, high = limits.batch_size
        if not low <= value.batch_size <= high:
            raise refuse(
                f"= {show(value.batch_size)} is not valid; expected a whole number from {low} to "
                f"{high} {range_note}",
                ".batchSize",
            )
        low_rate, high_rate = limits.learning_rate
        if not low_rate <= value.learning_rate <= high_rate:
            raise refuse(
                f"= {show(value.learning_rate)} is not valid; expected a number from {low_rate} "
                f"to {high_rate} {range_note}",
                ".learningRate",
            )
        return value

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> TitanConfig:
        if not is_loading(info):
            return self
        if self.model_units > self.max_model_units:
            raise refuse_section(
                f"{HERE}model_units = {self.model_units} is larger than "
                f"{HERE}max_model_units = {self.max_model_units}"
            )
        if self.commitment not in self.allowed_commitments:
            raise refuse_section(
                f"{HERE}commitment = {self.commitment!r} is not in "
                f"{HERE}allowed_commitments = {list(self.allowed_commitments)}"
            )
        if self.throughput_ttl_hours > self.max_throughput_ttl_hours:
            raise refuse_section(
                f"{HERE}throughput_ttl_hours = {self.throughput_ttl_hours} is larger than "
                f"{HERE}max_throughput_ttl_hours = {self.max_throughput_ttl_hours}"
            )
        polls = (
            self.max_job_runtime_hours * 3600 // self.job_poll_seconds
            + self.max_throughput_wait_hours * 3600 // self.throughput_poll_seconds
        )
        if polls > MAX_WORKFLOW_POLLS:
            raise refuse_section(
                f"{HERE}max_job_runtime_hours and {HERE}max_throughput_wait_hours at these poll "
                f"intervals make {polls} polls; at most {MAX_WORKFLOW_POLLS} fit in a Step "
                "Functions execution's history (25,000 events): poll less often"
            )
        return self


def _limits(base_model_id: str | None) -> ImageModelLimits:
    # No base model: the defaults must still suit every model a stage could switch to.
    if base_model_id is None:
        return shared_image_model_limits()
    limits = image_model(base_model_id)
    assert limits is not None, "the titan section admits only the table's models"
    return limits


# Bedrock's names, as an execution's `hyperparameters` input names them too.
TITAN_HYPERPARAMETER_NAMES = tuple(section_fields(TitanHyperparameters))
