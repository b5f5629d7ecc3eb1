"""The VQA attribute model's training workflow: BLIP-2 + LoRA fine-tuned by `vqa/train.py`.

    {"dataset": "vqa/<name>/", "hyperparameters": {"epochs": 3}, "baseModel": "org/model"}

`dataset` is a prefix of the datasets bucket holding `train/` and `validation/` (rows.jsonl and
images); the archive is recorded in `/<prefix>/<stage>/vqa/model-data-url` (vqa.hosting).
"""

from __future__ import annotations

from collections.abc import Iterable

from infra.config import VQA_HYPERPARAMETER_NAMES, ConfigError, StageConfig
from infra.constructs.training_workflow import InstanceChoice, TrainingWorkflowSpec, job_settings
from infra.models import VQA
from infra.training_specs.metrics import MAX_METRIC_DEFINITIONS, definitions

# Relative to the code archive's root, which the container extracts to /opt/ml/code.
VQA_PROGRAM = "vqa/train.py"
VQA_OUTPUT_PREFIX = "vqa/training/"
VQA_CHECKPOINTS_PREFIX = "vqa/checkpoints/"
CHANNELS = ("train", "validation")

# The metrics `vqa/train.py` logs (names as in training/vqa/metrics.py: infra does not import the
# training code; a test runs these regexes against lines made by that module).
BATCH_LOSS = "batch_loss"
TRAIN_LOSS = "train_loss"
VALIDATION_LOSS = "validation_loss"
VALIDATION_EXACT_MATCH = "validation_exact_match"
VQA_METRICS = (BATCH_LOSS, TRAIN_LOSS, VALIDATION_LOSS, VALIDATION_EXACT_MATCH)


def metric_definitions(attributes: Iterable[str]) -> list[dict[str, str]]:
    """The losses, and the validation exact match overall and per attribute."""
    names = [*VQA_METRICS, *(f"{VALIDATION_EXACT_MATCH}_{attribute}" for attribute in attributes)]
    if len(names) > MAX_METRIC_DEFINITIONS:
        raise ConfigError(
            f"descriptions.questions names {len(names) - len(VQA_METRICS)} attributes; a training "
            f"job takes at most {MAX_METRIC_DEFINITIONS} metric definitions, "
            f"{len(VQA_METRICS)} of them the losses: ask at most "
            f"{MAX_METRIC_DEFINITIONS - len(VQA_METRICS)}"
        )
    return definitions(names)


def workflow_spec(config: StageConfig) -> TrainingWorkflowSpec:
    training = VQA.training_section(config)
    assert VQA.training is not None
    return TrainingWorkflowSpec(
        id_prefix=VQA.training.construct_id,
        name=VQA.training.workflow,
        job_name_prefix=config.resource_name(VQA.training.workflow),
        title="VQA",
        comment="Fine-tunes the VQA attribute model and records its archive in SSM",
        program=VQA_PROGRAM,
        dataset_prefix=VQA.training.dataset_prefix,
        dataset_example="vqa/shirts/",
        dataset_holds="train/ and validation/",
        channels={channel: f"{channel}/" for channel in CHANNELS},
        output_prefix=VQA_OUTPUT_PREFIX,
        checkpoints_prefix=VQA_CHECKPOINTS_PREFIX,
        hyperparameter_names=VQA_HYPERPARAMETER_NAMES,
        hyperparameter_defaults=training.hyperparameters.as_strings(),
        base_model_example="Salesforce/blip2-flan-t5-xl",
        metric_definitions=metric_definitions(config.descriptions.questions),
        model_data_parameter=VQA.model_data_parameter(config),
        instance=InstanceChoice(default=training.instance_type),
        **job_settings(training),
        image_config_key="vqa.training.image_uri",
    )
