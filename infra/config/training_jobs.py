"""The SageMaker training job settings every trained model's `training` section shares."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import ValidationInfo, model_validator

from infra.config.constants import (
    ECR_IMAGE_URI_PATTERN,
    HUB_MODEL_ID_PATTERN,
    HUB_REVISION_PATTERN,
    MAX_TRAINING_HOURS,
    ML_INSTANCE_TYPE_PATTERN,
)
from infra.config.hosting import IMAGE_URI_TEXT, INSTANCE_TYPE_TEXT
from infra.config.rules import (
    HERE,
    Rule,
    custom,
    flag,
    is_loading,
    matching,
    refuse_section,
    section,
    whole,
)


def hub_revision_text(model_key: str) -> str:
    """A branch or tag can move or vanish (Stability AI removed the SD 2 repositories in November
    2025), so training loads hub ids only at a commit (docs/base-models.md)."""
    return (
        f"the 40-hex Hugging Face Hub commit of {model_key} (not a branch or tag, which can "
        'move or vanish); look it up with `python -c "from huggingface_hub import HfApi; '
        "print(HfApi().model_info('<model id>').sha)\"`"
    )


def _hours(description: str) -> Any:
    return whole(1, MAX_TRAINING_HOURS, description)


@section
class TrainingJobConfig:
    """A SageMaker training job on one instance; `config_texts` name each model's example."""

    config_texts: ClassVar[Mapping[str, str]] = {"base_model_example": "organization/name"}

    # None: the Hugging Face PyTorch training DLC of the deployment region.
    image_uri: str | None = matching(
        ECR_IMAGE_URI_PATTERN,
        IMAGE_URI_TEXT,
        "training image; `null`: the Hugging Face PyTorch training DLC of the region",
        allowed="an ECR image URI with a tag, or null",
        default=None,
    )
    instance_type: str = matching(
        ML_INSTANCE_TYPE_PATTERN,
        INSTANCE_TYPE_TEXT,
        "training instance type (NVMe types get no volume key: their storage is "
        "hardware-encrypted)",
    )
    # The training scripts have no distributed code and every channel is FullyReplicated:
    # N instances would train N identical models at N times the cost.
    instance_count: int = custom(
        Rule(
            "training instances; must be 1",
            expected="expected 1; train.py trains on one instance; multi-instance training is "
            "not implemented",
            refusal="train.py trains on one instance; multi-instance training is not implemented",
            check=lambda value: value == 1,
            allowed="1",
        )
    )
    volume_size_gb: int = whole(
        1, 16_384, "ML storage volume per instance (EBS-backed types; NVMe types use their own)"
    )
    max_runtime_hours: int = _hours("longest a job may train (accounts start with a 5-day quota)")
    use_spot: bool = flag("managed spot training, with checkpoints in the models bucket")
    # With spot: how long the job may wait for capacity and run, in total.
    max_wait_hours: int = _hours(
        "with spot: capacity wait plus run time (at least `max_runtime_hours`)"
    )
    base_model: str = matching(
        HUB_MODEL_ID_PATTERN,
        "a Hugging Face model id such as '{base_model_example}'",
        "Hugging Face model id fine-tuned (a run's `baseModel` overrides it)",
    )
    base_model_revision: str = matching(
        HUB_REVISION_PATTERN,
        hub_revision_text("base_model"),
        "its 40-hex Hub commit (a run's `baseModelRevision` overrides it; docs/base-models.md)",
        allowed="a 40-hex Hub commit (not a branch or tag)",
    )

    @model_validator(mode="after")
    def _spot_wait_covers_the_run(self, info: ValidationInfo) -> TrainingJobConfig:
        # SageMaker refuses a spot job whose wait (capacity wait + run) is shorter than its run.
        if is_loading(info) and self.use_spot and self.max_wait_hours < self.max_runtime_hours:
            raise refuse_section(
                f"{HERE}max_wait_hours = {self.max_wait_hours} is less than "
                f"{HERE}max_runtime_hours = {self.max_runtime_hours}; a spot job's wait includes "
                "its run time"
            )
        return self
