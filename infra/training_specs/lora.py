"""The SDXL LoRA workflow: `sdxl_lora/train.py` trains one product's adapter.

    {"dataset": "dreambooth/<name>/", "hyperparameters": {"max_steps": 500, "rank": 8}}

`dataset` is a prefix under `dreambooth/` in the JumpStart layout DreamBooth uses (instance
images, `dataset_info.json`, optional `class_data_dir/`: `atelier dataset dreambooth` builds it),
the one `training` channel. The archive is the adapter (`adapter_model.safetensors`, its
`adapter.json`, the sample grid and the manifest: megabytes), recorded in
`/<prefix>/<stage>/lora/model-data-url`. One execution role of its own: it writes only `lora/`.
"""

from __future__ import annotations

from infra.config import StageConfig
from infra.constructs.training_workflow import (
    SCALAR_OR_BOOLEAN_TYPES,
    InstanceChoice,
    TrainingWorkflowSpec,
    job_name_prefix,
    job_settings,
)
from infra.models import LORA
from infra.training_specs.dreambooth import (
    DREAMBOOTH_BOOLEAN_HYPERPARAMETERS,
    DREAMBOOTH_CHANNEL,
    dreambooth_metric_definitions,
)

LORA_PROGRAM = "sdxl_lora/train.py"
LORA_OUTPUT_PREFIX = "lora/training/"
LORA_CHECKPOINTS_PREFIX = "lora/checkpoints/"


def workflow_spec(config: StageConfig) -> TrainingWorkflowSpec:
    training = LORA.training_section(config)
    assert LORA.training is not None
    workflow = LORA.training.workflow
    return TrainingWorkflowSpec(
        id_prefix=LORA.training.construct_id,
        name=workflow,
        job_name_prefix=job_name_prefix(config, workflow, short_name="lr"),
        title="SDXL LoRA",
        comment="Trains an SDXL LoRA adapter for one product and records it in SSM",
        program=LORA_PROGRAM,
        dataset_prefix=LORA.training.dataset_prefix,
        dataset_example="dreambooth/red-dress/",
        dataset_holds="the instance images and dataset_info.json",
        channels={DREAMBOOTH_CHANNEL: ""},
        output_prefix=LORA_OUTPUT_PREFIX,
        checkpoints_prefix=LORA_CHECKPOINTS_PREFIX,
        hyperparameter_names=LORA.training.hyperparameters,
        hyperparameter_defaults=training.hyperparameters.as_strings(),
        hyperparameter_types=SCALAR_OR_BOOLEAN_TYPES,
        # The same booleans as DreamBooth's (the LoRA adds none).
        boolean_hyperparameters=DREAMBOOTH_BOOLEAN_HYPERPARAMETERS,
        base_model_example=training.base_model,
        # train.py logs DreamBooth's metric lines (step, instance, prior and epoch losses, lr).
        metric_definitions=dreambooth_metric_definitions(),
        model_data_parameter=LORA.model_data_parameter(config),
        # A LoRA with prior preservation still fits the 24 GB GPU: one instance type.
        instance=InstanceChoice(default=training.instance_type),
        **job_settings(training),
        image_config_key="lora.training.image_uri",
        # sdxl_lora/train.py trains every adapter from the base model.
        start_from_supported=False,
    )
