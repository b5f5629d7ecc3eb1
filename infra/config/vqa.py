"""`vqa`: the attribute model (BLIP-2 visual question answering), its training and hosting."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import ClassVar

from infra.config.constants import MODULE_NAMES_PATTERN, VQA_PRECISIONS, VqaPrecision
from infra.config.hosting import VqaHostingConfig
from infra.config.rules import choice, matching, number, section, whole
from infra.config.training_jobs import TrainingJobConfig


@section
class VqaHyperparameters:
    """Defaults of the hyperparameters `training/vqa/train.py` accepts (one field per flag).

    A training execution may override any of them; SageMaker passes every value as a string.
    """

    epochs: int = whole(1, 1000, "passes over the training rows")
    batch_size: int = whole(1, 1024, "training rows per step")
    eval_batch_size: int = whole(1, 1024, "validation rows per step")
    learning_rate: float = number(1e-8, 1.0, "AdamW learning rate (over the LoRA weights only)")
    weight_decay: float = number(0.0, 1.0, "AdamW weight decay")
    gradient_accumulation_steps: int = whole(
        1, 1024, "steps whose gradients add up before an update"
    )
    lora_r: int = whole(1, 1024, "LoRA rank")
    lora_alpha: int = whole(1, 4096, "LoRA scaling")
    lora_dropout: float = number(0.0, 0.9, "LoRA dropout")
    # `q,v`: T5 attention query and value.
    lora_target_modules: str = matching(
        MODULE_NAMES_PATTERN,
        "comma-separated module names such as 'q,v'",
        "comma-separated module names LoRA adapts",
    )
    seed: int = whole(0, 2**32 - 1, "random seed")
    precision: VqaPrecision = choice(
        VQA_PRECISIONS, "`auto` (bf16 on GPUs that have it), `fp32`, `bf16`, `8bit`"
    )
    max_answer_tokens: int = whole(1, 512, "longest answer generated in validation")
    max_grad_norm: float = number(0.001, 1000.0, "gradient clipping norm")
    checkpoint_steps: int = whole(
        0, 1_000_000, "also checkpoint every N optimizer steps (0: once per epoch)"
    )

    def as_strings(self) -> dict[str, str]:
        """The values as SageMaker hyperparameters (strings), in field order."""
        return {item.name: str(getattr(self, item.name)) for item in fields(self)}


@section
class VqaTrainingConfig(TrainingJobConfig):
    """The SageMaker training job that fine-tunes BLIP-2 with LoRA."""

    config_texts: ClassVar[Mapping[str, str]] = {
        "base_model_example": "Salesforce/blip2-flan-t5-xl"
    }

    hyperparameters: VqaHyperparameters


@section
class VqaConfig:
    """The attribute model (BLIP-2 visual question answering): training and hosting."""

    training: VqaTrainingConfig
    hosting: VqaHostingConfig


VQA_HYPERPARAMETER_NAMES = tuple(item.name for item in fields(VqaHyperparameters))
