"""`lora`: DreamBooth-LoRA of Stable Diffusion XL for product images (`training/sdxl_lora/`).

A run trains a LoRA adapter (megabytes) on a product's photos instead of a whole Stable Diffusion
model; docs/product-images.md says why SDXL and how many products one endpoint serves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import ClassVar

from infra.config.dreambooth import DreamBoothHyperparameters
from infra.config.rules import Rule, custom, number, section, whole
from infra.config.training_jobs import TrainingJobConfig

# SDXL's VAE scales by 8 and its UNet halves the latents twice more: sides divide by 32.
_RESOLUTION_MULTIPLE = 32
_MAX_RANK = 256


@section
class LoraHyperparameters(DreamBoothHyperparameters):
    """Defaults of the hyperparameters `training/sdxl_lora/train.py` accepts: DreamBooth's, with
    the same names and meaning (LoRA-sized defaults in cdk.json), then the adapter's and the
    sample grid's. A training execution may override any of them."""

    resolution: int = custom(
        Rule(
            "training image side in pixels (SDXL is trained at 1024)",
            expected=f"expected a multiple of {_RESOLUTION_MULTIPLE} from 256 to 2048, such as "
            "1024",
            check=lambda value: 256 <= value <= 2048 and value % _RESOLUTION_MULTIPLE == 0,
            allowed=f"multiples of {_RESOLUTION_MULTIPLE}, 256 to 2048",
        )
    )
    rank: int = whole(1, _MAX_RANK, "LoRA rank (adapter size grows with it)")
    # None: alpha equals the rank (a scale of 1).
    lora_alpha: int | None = custom(
        Rule(
            "LoRA alpha; `null`: the rank",
            expected=f"expected null (the rank) or a whole number from 1 to {_MAX_RANK * 4}",
            check=lambda value: 1 <= value <= _MAX_RANK * 4,
            allowed=f"null or 1 to {_MAX_RANK * 4}",
        ),
        default=None,
    )
    sample_steps: int = whole(1, 1000, "denoising steps of the sample grid saved at the end")
    sample_guidance_scale: float = number(0.0, 30.0, "guidance scale of the sample grid")
    sample_seed: int = whole(0, 2**32 - 1, "seed of the sample grid (fixed: runs compare)")


@section
class LoraTrainingConfig(TrainingJobConfig):
    """A SageMaker training job that trains one SDXL LoRA adapter on one 24 GB GPU."""

    config_texts: ClassVar[Mapping[str, str]] = {
        "base_model_example": "stabilityai/stable-diffusion-xl-base-1.0"
    }
    hyperparameters: LoraHyperparameters

    @property
    def clipseg_model(self) -> str | None:
        """Only the styling training packs a segmentation model."""
        return None


@section
class LoraConfig:
    """SDXL LoRA product images: the adapter training."""

    training: LoraTrainingConfig


# What a user may set (config defaults, a workflow execution's `hyperparameters`); the workflow
# adds base_model(_revision), its manifest hash and start_from.
LORA_HYPERPARAMETER_NAMES = tuple(item.name for item in fields(LoraHyperparameters))
