"""The Stable Diffusion DreamBooth workflows: `dreambooth/train.py` in text-to-image mode for the
`dreambooth` model, and in inpainting mode (CLIPSeg packed beside it) for the `styling` model.

    {"dataset": "dreambooth/<name>/", "hyperparameters": {"max_steps": 400}}

`dataset` is a prefix under `dreambooth/` in the JumpStart layout (instance images,
`dataset_info.json`, optional `class_data_dir/`), the one `training` channel. A run with
`with_prior_preservation` true gets the section's `prior_preservation_instance_type` (24 GB:
16 GB runs out of memory), every other run its `instance_type`. One execution role per workflow:
a text-to-image job cannot overwrite styling archives, nor the other way round.
"""

from __future__ import annotations

from dataclasses import fields

from infra.config import (
    DREAMBOOTH_HYPERPARAMETER_NAMES,
    DreamBoothHyperparameters,
    DreamBoothTrainingConfig,
    StageConfig,
)
from infra.constructs.training_workflow import (
    SCALAR_OR_BOOLEAN_TYPES,
    CompanionModel,
    InstanceChoice,
    TrainingWorkflowSpec,
    job_name_prefix,
    job_settings,
)
from infra.models import DREAMBOOTH, STYLING, Model
from infra.training_specs.metrics import definitions

DREAMBOOTH_PROGRAM = "dreambooth/train.py"
# Both modes read the whole datasets prefix as one `training` channel.
DREAMBOOTH_CHANNEL = "training"
# The styling run's CLIPSeg, staged like its base model (SM_CHANNEL_CLIPSEG in the job).
CLIPSEG_CHANNEL = "clipseg"
DREAMBOOTH_OUTPUT_PREFIX = "dreambooth/training/"
DREAMBOOTH_CHECKPOINTS_PREFIX = "dreambooth/checkpoints/"
INPAINTING_OUTPUT_PREFIX = "inpainting/training/"
INPAINTING_CHECKPOINTS_PREFIX = "inpainting/checkpoints/"
# `mode` hyperparameter of dreambooth/train.py.
TEXT_TO_IMAGE_MODE = "text-to-image"
INPAINTING_MODE = "inpainting"

# The metrics `dreambooth/train.py` logs in `[metric] name=value` lines; prior_loss only with
# prior preservation.
DREAMBOOTH_METRICS = ("step_loss", "instance_loss", "prior_loss", "epoch_loss", "learning_rate")

# Hyperparameters train.py reads as booleans: an execution must spell them as it does.
DREAMBOOTH_BOOLEAN_HYPERPARAMETERS = tuple(
    item.name for item in fields(DreamBoothHyperparameters) if item.type == "bool"
)
# JSONata over the merged hyperparameters (all strings by then: `True`, `true`, `1`, ...).
PRIOR_PRESERVATION_REQUESTED = (
    "$lowercase($hyperparameters.with_prior_preservation) in ['true', '1']"
)


def dreambooth_metric_definitions() -> list[dict[str, str]]:
    """The DreamBooth losses and learning rate (` step_loss=` is not the end of ` epoch_loss=`:
    the leading space)."""
    return definitions(DREAMBOOTH_METRICS)


def text_to_image_workflow_spec(config: StageConfig) -> TrainingWorkflowSpec:
    return _spec(
        config,
        model=DREAMBOOTH,
        training=DREAMBOOTH.training_section(config),
        config_key="dreambooth.training",
        fixed={"mode": TEXT_TO_IMAGE_MODE},
        output_prefix=DREAMBOOTH_OUTPUT_PREFIX,
        checkpoints_prefix=DREAMBOOTH_CHECKPOINTS_PREFIX,
        title="DreamBooth text-to-image",
        comment="Fine-tunes Stable Diffusion with DreamBooth and records its archive in SSM",
        short_name="db",
    )


def styling_workflow_spec(config: StageConfig) -> TrainingWorkflowSpec:
    """DreamBooth of an inpainting pipeline whose archive also carries CLIPSeg."""
    training = STYLING.training_section(config)
    return _spec(
        config,
        model=STYLING,
        training=training,
        config_key="styling.training",
        fixed={"mode": INPAINTING_MODE},
        companions=(
            CompanionModel(
                channel=CLIPSEG_CHANNEL,
                hyperparameter="clipseg_model",
                model=str(training.clipseg_model),
                revision=str(training.clipseg_model_revision),
                title="CLIPSeg",
            ),
        ),
        output_prefix=INPAINTING_OUTPUT_PREFIX,
        checkpoints_prefix=INPAINTING_CHECKPOINTS_PREFIX,
        title="DreamBooth inpainting (styling)",
        comment=(
            "Fine-tunes Stable Diffusion inpainting with DreamBooth, packs CLIPSeg beside it and "
            "records the styling archive in SSM"
        ),
        short_name="dbi",
    )


def _spec(
    config: StageConfig,
    *,
    model: Model,
    training: DreamBoothTrainingConfig,
    config_key: str,
    fixed: dict[str, str],
    output_prefix: str,
    checkpoints_prefix: str,
    title: str,
    comment: str,
    short_name: str,
    companions: tuple[CompanionModel, ...] = (),
) -> TrainingWorkflowSpec:
    assert model.training is not None
    workflow = model.training.workflow
    return TrainingWorkflowSpec(
        id_prefix=model.training.construct_id,
        name=workflow,
        job_name_prefix=job_name_prefix(config, workflow, short_name=short_name),
        title=title,
        comment=comment,
        program=DREAMBOOTH_PROGRAM,
        dataset_prefix=model.training.dataset_prefix,
        dataset_example="dreambooth/riobugger/",
        dataset_holds="the instance images and dataset_info.json",
        channels={DREAMBOOTH_CHANNEL: ""},
        output_prefix=output_prefix,
        checkpoints_prefix=checkpoints_prefix,
        hyperparameter_names=DREAMBOOTH_HYPERPARAMETER_NAMES,
        hyperparameter_defaults=training.hyperparameters.as_strings(),
        hyperparameter_types=SCALAR_OR_BOOLEAN_TYPES,
        boolean_hyperparameters=DREAMBOOTH_BOOLEAN_HYPERPARAMETERS,
        fixed_hyperparameters=fixed,
        base_model_example=training.base_model,
        metric_definitions=dreambooth_metric_definitions(),
        model_data_parameter=model.model_data_parameter(config),
        instance=InstanceChoice(
            default=training.instance_type,
            alternative=training.prior_preservation_instance_type,
            condition=PRIOR_PRESERVATION_REQUESTED,
        ),
        **job_settings(training),
        image_config_key=f"{config_key}.image_uri",
        companion_models=companions,
    )
