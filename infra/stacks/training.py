"""Training workflows: one per model of the registry (`infra/models.py`) that has `training`.

Each workflow (Step Functions, JSONata; see `infra/constructs/training_workflow.py`) checks its
input, runs one SageMaker training job to completion (`createTrainingJob.sync`) and records the
model archive in the model's SSM parameter `/<prefix>/<stage>/<model>/model-data-url`, which its
`<model>.hosting.model_data_url` is then set from. What each job runs, reads and logs is the
model's own spec in `infra/training_specs/` (its input format is documented there):

- `<prefix>-<stage>-vqa-training`: the VQA attribute model (BLIP-2 + LoRA);
- `<prefix>-<stage>-dreambooth-training`: Stable Diffusion DreamBooth, text to image;
- `<prefix>-<stage>-inpainting-training`: DreamBooth of the inpainting pipeline that, with CLIPSeg,
  is the `styling` model (the workflow keeps the name it was first deployed with).

Compute only: the datasets, models, checkpoints and the key stay in the Data stack. The training
code travels as one .tar.gz asset (see `source_archive`), run by the Hugging Face PyTorch training
container with `/opt/ml/code` (the `training/` folder) on its Python path.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from infra.config import StageConfig
from infra.constructs.hf_images import training_image_python
from infra.constructs.publishing import publish_names
from infra.constructs.source_archive import source_archive_asset
from infra.constructs.training_wheels import TrainingWheels
from infra.constructs.training_workflow import TrainingWorkflow, TrainingWorkflowSpec
from infra.models import Model, trained_models
from infra.stacks.stage_stack import StageStack

# Where the catalog stack finds VQA archives (it imports the name from here).
from infra.training_specs.vqa import VQA_OUTPUT_PREFIX as VQA_OUTPUT_PREFIX

TRAINING_DIR = Path(__file__).resolve().parents[2] / "training"

# SSM names under `/<name_prefix>/<stage>/training/`, per workflow.
WORKFLOW_NAMES = ("state-machine-arn", "execution-role-arn", "model-data-url-parameter")
# The one training code archive every workflow runs (named when VQA was the only workflow).
CODE_URI_NAME = "vqa-code-uri"


def published_names() -> tuple[str, ...]:
    return (
        *(
            f"{model.training.workflow}-{name}"
            for model in trained_models()
            if model.training is not None
            for name in WORKFLOW_NAMES
        ),
        CODE_URI_NAME,
    )


PUBLISHED_NAMES = published_names()


def workflow_spec(model: Model, config: StageConfig) -> TrainingWorkflowSpec:
    """The model's own spec function, named in the registry as `module:function`."""
    assert model.training is not None
    module, function = model.training.spec.split(":")
    build = getattr(importlib.import_module(module), function)
    spec: TrainingWorkflowSpec = build(config)
    return spec


class TrainingStack(StageStack):
    def build(self) -> None:
        config, data = self.config, self.data
        # Jobs run without internet: the packages requirements.txt pins travel as wheels, built
        # for the training image's Python.
        self.code = source_archive_asset(
            self,
            "TrainingCode",
            source_dir=TRAINING_DIR,
            wheels=TrainingWheels(
                requirements_file=TRAINING_DIR / "requirements.txt",
                python_version=training_image_python(),
            ),
        )
        # One workflow per trained model of the registry, by model key.
        self.workflows: dict[str, TrainingWorkflow] = {}
        values: dict[str, str] = {}
        for model in trained_models():
            assert model.training is not None
            workflow = TrainingWorkflow(
                self,
                spec=workflow_spec(model, config),
                config=config,
                datasets=data.datasets_bucket,
                models=data.models_bucket,
                key=data.key,
                code=self.code,
            )
            self.workflows[model.key] = workflow
            name = model.training.workflow
            values[f"{name}-state-machine-arn"] = workflow.state_machine.state_machine_arn
            values[f"{name}-execution-role-arn"] = workflow.execution_role.role_arn
            values[f"{name}-model-data-url-parameter"] = model.model_data_parameter(config)
        values[CODE_URI_NAME] = self.code.s3_object_url
        publish_names(
            self, config=config, section="training", names=published_names(), values=values
        )
