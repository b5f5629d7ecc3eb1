"""Training workflows: the VQA attribute model (BLIP-2 + LoRA) and Stable Diffusion DreamBooth
(text-to-image, and inpainting for virtual styling), each on a SageMaker training job.

Each workflow (Step Functions, JSONata; see `infra/constructs/training_workflow.py`) checks its
input, runs one training job to completion (`createTrainingJob.sync`) and records the model
archive in an SSM parameter, which the matching `hosting.model_data_url` is then set from:

- `<prefix>-<stage>-vqa-training` → `/<prefix>/<stage>/vqa/model-data-url` (vqa.hosting)

      {"dataset": "vqa/<name>/", "hyperparameters": {"epochs": 3}, "baseModel": "org/model"}

  `dataset` is a prefix of the datasets bucket holding `train/` and `validation/` (rows.jsonl and
  images).
- `<prefix>-<stage>-dreambooth-training` → `/<prefix>/<stage>/dreambooth/model-data-url`
  (dreambooth.hosting) and `<prefix>-<stage>-inpainting-training` →
  `/<prefix>/<stage>/styling/model-data-url` (styling.hosting):

      {"dataset": "dreambooth/<name>/", "hyperparameters": {"max_steps": 400}}

  `dataset` is a prefix under `dreambooth/` in the JumpStart layout (instance images,
  `dataset_info.json`, optional `class_data_dir/`), the one `training` channel. A run with
  `with_prior_preservation` true gets the section's `prior_preservation_instance_type` (24 GB:
  16 GB runs out of memory), every other run its `instance_type`.

`hyperparameters` (names from the section's `hyperparameters`) and `baseModel` are optional
overrides of the configured defaults; `mode` and `clipseg_model` are fixed by the workflow.

Compute only: the datasets, models, checkpoints and the key stay in the Data stack. The training
code travels as one .tar.gz asset (see `source_archive`), run by the Hugging Face PyTorch training
container as `vqa/train.py` or `dreambooth/train.py` with `/opt/ml/code` (the `training/` folder)
on its Python path.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any

from aws_cdk import Stack
from constructs import Construct

from infra.config import (
    DREAMBOOTH_HYPERPARAMETER_NAMES,
    VQA_HYPERPARAMETER_NAMES,
    ConfigError,
    DreamBoothHyperparameters,
    DreamBoothTrainingConfig,
    StageConfig,
)
from infra.constructs.publishing import publish_names
from infra.constructs.source_archive import source_archive_asset
from infra.constructs.training_workflow import (
    SCALAR_OR_BOOLEAN_TYPES,
    InstanceChoice,
    TrainingWorkflow,
    TrainingWorkflowSpec,
    job_name_prefix,
)
from infra.stacks.data import DataStack

TRAINING_DIR = Path(__file__).resolve().parents[2] / "training"
# Relative to the code archive's root, which the container extracts to /opt/ml/code.
VQA_PROGRAM = "vqa/train.py"
DREAMBOOTH_PROGRAM = "dreambooth/train.py"

VQA_DATASETS_PREFIX = "vqa/"
VQA_OUTPUT_PREFIX = "vqa/training/"
VQA_CHECKPOINTS_PREFIX = "vqa/checkpoints/"
CHANNELS = ("train", "validation")
# Both DreamBooth modes read their datasets from here (one `training` channel: the whole prefix).
DREAMBOOTH_DATASETS_PREFIX = "dreambooth/"
DREAMBOOTH_CHANNEL = "training"
DREAMBOOTH_OUTPUT_PREFIX = "dreambooth/training/"
DREAMBOOTH_CHECKPOINTS_PREFIX = "dreambooth/checkpoints/"
INPAINTING_OUTPUT_PREFIX = "inpainting/training/"
INPAINTING_CHECKPOINTS_PREFIX = "inpainting/checkpoints/"
# `mode` hyperparameter of dreambooth/train.py.
TEXT_TO_IMAGE_MODE = "text-to-image"
INPAINTING_MODE = "inpainting"

# The metrics `vqa/train.py` logs (names as in training/vqa/metrics.py: infra does not import the
# training code; a test runs these regexes against lines made by that module).
BATCH_LOSS = "batch_loss"
TRAIN_LOSS = "train_loss"
VALIDATION_LOSS = "validation_loss"
VALIDATION_EXACT_MATCH = "validation_exact_match"
VQA_METRICS = (BATCH_LOSS, TRAIN_LOSS, VALIDATION_LOSS, VALIDATION_EXACT_MATCH)
# The metrics `dreambooth/train.py` logs in the same `[metric] name=value` lines; prior_loss only
# with prior preservation.
DREAMBOOTH_METRICS = ("step_loss", "instance_loss", "prior_loss", "epoch_loss", "learning_rate")
# A training job accepts at most 40 metric definitions.
MAX_METRIC_DEFINITIONS = 40

# Hyperparameters train.py reads as booleans: an execution must spell them as it does.
DREAMBOOTH_BOOLEAN_HYPERPARAMETERS = tuple(
    item.name for item in fields(DreamBoothHyperparameters) if item.type == "bool"
)
# JSONata over the merged hyperparameters (all strings by then: `True`, `true`, `1`, ...).
PRIOR_PRESERVATION_REQUESTED = (
    "$lowercase($hyperparameters.with_prior_preservation) in ['true', '1']"
)

# SSM parameter names under `/<name_prefix>/<stage>/training/`.
PUBLISHED_NAMES = (
    "vqa-state-machine-arn",
    "vqa-execution-role-arn",
    "vqa-model-data-url-parameter",
    "vqa-code-uri",
    "dreambooth-state-machine-arn",
    "dreambooth-execution-role-arn",
    "dreambooth-model-data-url-parameter",
    "inpainting-state-machine-arn",
    "inpainting-execution-role-arn",
    "inpainting-model-data-url-parameter",
)


def _definitions(names: Iterable[str]) -> list[dict[str, str]]:
    return [{"Name": name, "Regex": rf" {name}=(\S+)"} for name in names]


def metric_definitions(attributes: Iterable[str]) -> list[dict[str, str]]:
    """One definition per logged metric: the value token after ` <name>=`, taken as it is.

    The leading space keeps `fit` from matching `fit_type=`, and `=` right after the name keeps
    `validation_exact_match` from matching `validation_exact_match_fabric`; a NaN loss shows as
    `nan` instead of the previous value.
    """
    names = [*VQA_METRICS, *(f"{VALIDATION_EXACT_MATCH}_{attribute}" for attribute in attributes)]
    if len(names) > MAX_METRIC_DEFINITIONS:
        raise ConfigError(
            f"descriptions.questions names {len(names) - len(VQA_METRICS)} attributes; a training "
            f"job takes at most {MAX_METRIC_DEFINITIONS} metric definitions, "
            f"{len(VQA_METRICS)} of them the losses: ask at most "
            f"{MAX_METRIC_DEFINITIONS - len(VQA_METRICS)}"
        )
    return _definitions(names)


def dreambooth_metric_definitions() -> list[dict[str, str]]:
    """The DreamBooth losses and learning rate (` step_loss=` is not the end of ` epoch_loss=`:
    the leading space)."""
    return _definitions(DREAMBOOTH_METRICS)


def vqa_workflow_spec(config: StageConfig) -> TrainingWorkflowSpec:
    training = config.vqa.training
    return TrainingWorkflowSpec(
        id_prefix="Vqa",
        name="vqa",
        job_name_prefix=config.resource_name("vqa"),
        title="VQA",
        comment="Fine-tunes the VQA attribute model and records its archive in SSM",
        program=VQA_PROGRAM,
        dataset_prefix=VQA_DATASETS_PREFIX,
        dataset_example="vqa/shirts/",
        dataset_holds="train/ and validation/",
        channels={channel: f"{channel}/" for channel in CHANNELS},
        output_prefix=VQA_OUTPUT_PREFIX,
        checkpoints_prefix=VQA_CHECKPOINTS_PREFIX,
        hyperparameter_names=VQA_HYPERPARAMETER_NAMES,
        hyperparameter_defaults=training.hyperparameters.as_strings(),
        base_model=training.base_model,
        base_model_revision=training.base_model_revision,
        base_model_example="Salesforce/blip2-flan-t5-xl",
        metric_definitions=metric_definitions(config.descriptions.questions),
        model_data_parameter=config.vqa_model_data_parameter,
        instance=InstanceChoice(default=training.instance_type),
        instance_count=training.instance_count,
        volume_size_gb=training.volume_size_gb,
        max_runtime_hours=training.max_runtime_hours,
        use_spot=training.use_spot,
        max_wait_hours=training.max_wait_hours,
        image_uri=training.image_uri,
        image_config_key="vqa.training.image_uri",
    )


def dreambooth_workflow_spec(config: StageConfig, *, inpainting: bool) -> TrainingWorkflowSpec:
    """Text-to-image DreamBooth, or (`inpainting`) DreamBooth of an inpainting pipeline whose
    archive also carries CLIPSeg for the styling endpoint."""
    training: DreamBoothTrainingConfig
    if inpainting:
        training, section, name = config.dreambooth.inpainting_training, "inpainting", "inpainting"
        fixed = {
            "mode": INPAINTING_MODE,
            "clipseg_model": str(training.clipseg_model),
            "clipseg_model_revision": str(training.clipseg_model_revision),
        }
        output, checkpoints = INPAINTING_OUTPUT_PREFIX, INPAINTING_CHECKPOINTS_PREFIX
        parameter = config.styling_model_data_parameter
        title = "DreamBooth inpainting (styling)"
        comment = (
            "Fine-tunes Stable Diffusion inpainting with DreamBooth, packs CLIPSeg beside it and "
            "records the styling archive in SSM"
        )
        short_name = "dbi"
    else:
        training, section, name = config.dreambooth.training, "training", "dreambooth"
        fixed = {"mode": TEXT_TO_IMAGE_MODE}
        output, checkpoints = DREAMBOOTH_OUTPUT_PREFIX, DREAMBOOTH_CHECKPOINTS_PREFIX
        parameter = config.dreambooth_model_data_parameter
        title = "DreamBooth text-to-image"
        comment = "Fine-tunes Stable Diffusion with DreamBooth and records its archive in SSM"
        short_name = "db"
    return TrainingWorkflowSpec(
        id_prefix="Inpainting" if inpainting else "Dreambooth",
        name=name,
        job_name_prefix=job_name_prefix(config, name, short_name=short_name),
        title=title,
        comment=comment,
        program=DREAMBOOTH_PROGRAM,
        dataset_prefix=DREAMBOOTH_DATASETS_PREFIX,
        dataset_example="dreambooth/riobugger/",
        dataset_holds="the instance images and dataset_info.json",
        channels={DREAMBOOTH_CHANNEL: ""},
        output_prefix=output,
        checkpoints_prefix=checkpoints,
        hyperparameter_names=DREAMBOOTH_HYPERPARAMETER_NAMES,
        hyperparameter_defaults=training.hyperparameters.as_strings(),
        hyperparameter_types=SCALAR_OR_BOOLEAN_TYPES,
        boolean_hyperparameters=DREAMBOOTH_BOOLEAN_HYPERPARAMETERS,
        fixed_hyperparameters=fixed,
        base_model=training.base_model,
        base_model_revision=training.base_model_revision,
        base_model_example=training.base_model,
        metric_definitions=dreambooth_metric_definitions(),
        model_data_parameter=parameter,
        instance=InstanceChoice(
            default=training.instance_type,
            alternative=training.prior_preservation_instance_type,
            condition=PRIOR_PRESERVATION_REQUESTED,
        ),
        instance_count=training.instance_count,
        volume_size_gb=training.volume_size_gb,
        max_runtime_hours=training.max_runtime_hours,
        use_spot=training.use_spot,
        max_wait_hours=training.max_wait_hours,
        image_uri=training.image_uri,
        image_config_key=f"dreambooth.{section}.image_uri",
    )


class TrainingStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        data: DataStack,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.code = source_archive_asset(self, "TrainingCode", source_dir=TRAINING_DIR)

        def workflow(spec: TrainingWorkflowSpec) -> TrainingWorkflow:
            return TrainingWorkflow(
                self,
                spec=spec,
                config=config,
                datasets=data.datasets_bucket,
                models=data.models_bucket,
                key=data.key,
                code=self.code,
            )

        self.vqa = workflow(vqa_workflow_spec(config))
        # One execution role each: a text-to-image job cannot overwrite styling archives, nor
        # the other way round.
        self.dreambooth = workflow(dreambooth_workflow_spec(config, inpainting=False))
        self.inpainting = workflow(dreambooth_workflow_spec(config, inpainting=True))
        self.image = self.vqa.image
        self.execution_role = self.vqa.execution_role
        self.state_machine = self.vqa.state_machine
        publish_names(
            self,
            config=config,
            section="training",
            names=PUBLISHED_NAMES,
            values={
                "vqa-state-machine-arn": self.vqa.state_machine.state_machine_arn,
                "vqa-execution-role-arn": self.vqa.execution_role.role_arn,
                "vqa-model-data-url-parameter": config.vqa_model_data_parameter,
                "vqa-code-uri": self.code.s3_object_url,
                "dreambooth-state-machine-arn": self.dreambooth.state_machine.state_machine_arn,
                "dreambooth-execution-role-arn": self.dreambooth.execution_role.role_arn,
                "dreambooth-model-data-url-parameter": config.dreambooth_model_data_parameter,
                "inpainting-state-machine-arn": self.inpainting.state_machine.state_machine_arn,
                "inpainting-execution-role-arn": self.inpainting.execution_role.role_arn,
                "inpainting-model-data-url-parameter": config.styling_model_data_parameter,
            },
        )
