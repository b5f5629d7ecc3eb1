"""The model registry: one declaration per model Atelier trains, customizes or hosts.

Everything that differs between models and is not the model's own code is read from here: the
config section, the SageMaker endpoint's name and CDK id, the names published in SSM, the training
workflow and the command line's names. The Hosting, Training, Api and Bedrock stacks, the
dashboard, the lifecycle check and the `atelier` command loop over `MODELS` instead of naming
models one by one, so adding a model is one `Model(...)` here plus its own code (training script,
workflow spec, handler, request model): see docs/adding-a-model.md.

One name per capability, in every layer: the key. `vqa` is the config section `vqa`, the endpoint
`<prefix>-<stage>-vqa`, the SSM names `/<prefix>/<stage>/hosting/vqa-endpoint-name` and
`/<prefix>/<stage>/vqa/model-data-url`, and `atelier train vqa` / `atelier endpoint use vqa`.

This module imports nothing beyond the standard library: the command line reads it without
loading the CDK (start-up time), and infra code reads the stage config through `StageConfig`
attributes only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infra.config import EndpointHostingConfig, StageConfig

# `<key>-model-data-url` under the model's own SSM section: where its training workflow records
# each archive it produces (`atelier endpoint use <key>` reads it).
MODEL_DATA_URL = "model-data-url"

# Base models staged into the models bucket (`atelier models stage`): the files of a Hub
# repository at one commit under `base-models/<org>/<name>/<commit>/`, with the manifest of their
# sizes and hashes, and a record of them at `/<prefix>/<stage>/base-models/<org>/<name>/<commit>`
# (JSON: uri, manifestSha256, files, bytes, model, revision). A training workflow refuses to start
# from a model that has no record; its job reads the files as the `model` input channel.
BASE_MODELS_PREFIX = "base-models/"
BASE_MODELS_PARAMETER_PATH = "base-models"


def staged_base_model_prefix(model: str, revision: str) -> str:
    """The models-bucket prefix a Hub model's files are staged under (ends in '/')."""
    return f"{BASE_MODELS_PREFIX}{model}/{revision}/"


def base_model_parameter(ssm_prefix: str, model: str, revision: str) -> str:
    """The SSM parameter recording a staged Hub model (`ssm_prefix` is `/<prefix>/<stage>`)."""
    return f"{ssm_prefix}/{BASE_MODELS_PARAMETER_PATH}/{model}/{revision}"


@dataclass(frozen=True)
class Training:
    """A SageMaker training workflow that produces the model's archive."""

    # `<prefix>-<stage>-<workflow>-training`, the CDK ids `<Workflow>...` and the SSM names
    # `training/<workflow>-state-machine-arn` ... of the deployed state machine. A rename here
    # replaces the state machine (and loses its execution history), so it stays what it was
    # deployed as even where it differs from the model's key.
    workflow: str
    # The CDK id prefix of the workflow's resources (same rule as `workflow`).
    construct_id: str
    # What the workflow trains, for descriptions ("DreamBooth text-to-image").
    title: str
    # `atelier train <command> --help`, one sentence.
    summary: str
    # The datasets bucket folder its datasets live under.
    dataset_prefix: str
    # A dotted path to `f(config) -> TrainingWorkflowSpec` (the model's own workflow code),
    # imported only by the Training stack so that this module stays free of the CDK.
    spec: str
    # The hyperparameter names an execution may set (the config section's `hyperparameters`;
    # a test keeps the two in step). The command line checks `--hp` against them.
    hyperparameters: tuple[str, ...]
    # `atelier train <command>`; the model's key unless a deployed name is kept.
    command: str
    # Old command names still accepted for one release (they print a deprecation notice).
    deprecated_commands: tuple[str, ...] = ()


@dataclass(frozen=True)
class Model:
    key: str
    # What it is, in a sentence fragment ("VQA attribute model").
    title: str
    # The CDK id prefix of its resources (the endpoint is `<construct_id>Endpoint`). Changing it
    # replaces the deployed resources.
    construct_id: str
    # How its endpoint's alarms name it (the dashboard uses `title`).
    label: str
    training: Training | None = None
    # Whether the Hosting stack serves it on a SageMaker endpoint (from `<key>.hosting`).
    hosted: bool = True
    # The API route whose function calls the endpoint, if any (for readers and the docs).
    route: str | None = None
    # Where its settings come from, by default `config.<key>.hosting` and `config.<key>.training`.
    # A model whose settings live elsewhere (or a test's toy model) passes its own.
    hosting_from: Callable[[StageConfig], EndpointHostingConfig] | None = None
    training_from: Callable[[StageConfig], Any] | None = None

    @property
    def config_key(self) -> str:
        """Its hosting section's dotted key, as errors and the lifecycle check name it."""
        return f"{self.key}.hosting"

    def hosting(self, config: StageConfig) -> EndpointHostingConfig:
        if self.hosting_from is not None:
            return self.hosting_from(config)
        section: Any = getattr(config, self.key)
        hosting: EndpointHostingConfig = section.hosting
        return hosting

    def training_section(self, config: StageConfig) -> Any:
        """Its training job's settings: `config.<key>.training` (base model, instance, ...)."""
        if self.training_from is not None:
            return self.training_from(config)
        return getattr(config, self.key).training

    def endpoint_name(self, config: StageConfig) -> str:
        """`<prefix>-<stage>-<key>`, unless its hosting section names an endpoint of its own (an
        endpoint deployed outside this app)."""
        override = getattr(self.hosting(config), "endpoint_name", None)
        return override or config.resource_name(self.key)

    def model_data_parameter(self, config: StageConfig) -> str:
        """The SSM parameter where its training workflow records each archive."""
        return f"{config.ssm_prefix}/{self.key}/{MODEL_DATA_URL}"

    def is_hosted(self, config: StageConfig) -> bool:
        """Whether the Hosting stack creates its endpoint: a model archive is configured."""
        return self.hosted and self.hosting(config).model_data_url is not None


VQA_HYPERPARAMETERS = (
    "epochs", "batch_size", "eval_batch_size", "learning_rate", "weight_decay",
    "gradient_accumulation_steps", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules",
    "seed", "precision", "max_answer_tokens", "max_grad_norm", "checkpoint_steps",
)  # fmt: skip
DREAMBOOTH_HYPERPARAMETERS = (
    "with_prior_preservation", "num_class_images", "epochs", "max_steps", "batch_size",
    "learning_rate", "prior_loss_weight", "center_crop", "lr_scheduler", "adam_weight_decay",
    "adam_beta1", "adam_beta2", "adam_epsilon", "gradient_accumulation_steps", "max_grad_norm",
    "seed", "train_text_encoder", "resolution", "gradient_checkpointing", "use_8bit_adam",
    "mixed_precision", "lr_warmup_steps", "checkpoint_steps", "class_image_inference_steps",
    "class_image_batch_size",
)  # fmt: skip

VQA = Model(
    key="vqa",
    title="VQA attribute model",
    construct_id="Vqa",
    label="VQA endpoint",
    route="/descriptions",
    training=Training(
        workflow="vqa",
        construct_id="Vqa",
        title="VQA",
        summary="Fine-tune the BLIP-2 attribute model on a `vqa/` dataset.",
        dataset_prefix="vqa/",
        spec="infra.training_specs.vqa:workflow_spec",
        hyperparameters=VQA_HYPERPARAMETERS,
        command="vqa",
    ),
)
DREAMBOOTH = Model(
    key="dreambooth",
    title="DreamBooth text-to-image model",
    construct_id="Dreambooth",
    label="DreamBooth text-to-image endpoint",
    route="/generations",
    training=Training(
        workflow="dreambooth",
        construct_id="Dreambooth",
        title="DreamBooth text-to-image",
        summary="DreamBooth-tune Stable Diffusion (text to image) on a `dreambooth/` dataset.",
        dataset_prefix="dreambooth/",
        spec="infra.training_specs.dreambooth:text_to_image_workflow_spec",
        hyperparameters=DREAMBOOTH_HYPERPARAMETERS,
        command="dreambooth",
    ),
)
STYLING = Model(
    key="styling",
    title="CLIPSeg + inpainting styling model",
    construct_id="Styling",
    label="styling endpoint",
    route="/styling",
    training=Training(
        # Deployed as the inpainting workflow before the names were made one: kept (see Training).
        workflow="inpainting",
        construct_id="Inpainting",
        title="DreamBooth inpainting",
        summary="DreamBooth-tune the inpainting model of virtual styling on a `dreambooth/` "
        "dataset.",
        dataset_prefix="dreambooth/",
        spec="infra.training_specs.dreambooth:styling_workflow_spec",
        hyperparameters=DREAMBOOTH_HYPERPARAMETERS,
        command="styling",
        deprecated_commands=("inpainting",),
    ),
)
LORA_HYPERPARAMETERS = (
    *DREAMBOOTH_HYPERPARAMETERS,
    "rank", "lora_alpha", "sample_steps", "sample_guidance_scale", "sample_seed",
)  # fmt: skip
LORA = Model(
    key="lora",
    title="SDXL LoRA product-image adapter",
    construct_id="Lora",
    label="LoRA endpoint",
    # The adapters' endpoint (one SDXL endpoint, many adapters) is not part of the app yet: a
    # run records its adapter archive in SSM like the other workflows.
    hosted=False,
    training=Training(
        workflow="lora",
        construct_id="Lora",
        title="SDXL LoRA",
        summary="Train an SDXL LoRA adapter for one product on a `dreambooth/` dataset.",
        # The same JumpStart-layout datasets as DreamBooth (`atelier dataset dreambooth`).
        dataset_prefix="dreambooth/",
        spec="infra.training_specs.lora:workflow_spec",
        hyperparameters=LORA_HYPERPARAMETERS,
        command="lora",
    ),
)

# In deployment and publishing order.
_MODELS: list[Model] = [VQA, DREAMBOOTH, STYLING, LORA]


def models() -> tuple[Model, ...]:
    return tuple(_MODELS)


def hosted_models() -> tuple[Model, ...]:
    """The models the Hosting stack may serve, whether or not a stage configures an archive."""
    return tuple(model for model in _MODELS if model.hosted)


def trained_models() -> tuple[Model, ...]:
    return tuple(model for model in _MODELS if model.training is not None)


def model(key: str) -> Model:
    for candidate in _MODELS:
        if candidate.key == key:
            return candidate
    raise KeyError(f"no model {key!r} in the registry; known: {', '.join(m.key for m in _MODELS)}")


def register(new: Model) -> None:
    """Add a model (after the built-in ones). Keys, CDK ids and workflow names must be new: two
    models sharing one would share resources."""
    for existing in _MODELS:
        clashes = {
            "key": existing.key == new.key,
            "construct_id": existing.construct_id == new.construct_id,
            "training workflow": bool(
                existing.training
                and new.training
                and existing.training.workflow == new.training.workflow
            ),
        }
        for what, clash in clashes.items():
            if clash:
                raise ValueError(f"model {new.key!r} has the same {what} as model {existing.key!r}")
    _MODELS.append(new)


def unregister(key: str) -> None:
    """Remove a model added by `register` (tests)."""
    _MODELS.remove(model(key))


def listed(words: list[str]) -> str:
    """`a`, `a and b`, `a, b and c`: registry names in descriptions."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def training_commands() -> Iterator[tuple[str, Model]]:
    """`atelier train` command names (current and deprecated) and the model each trains."""
    for entry in trained_models():
        assert entry.training is not None
        yield entry.training.command, entry
        for old in entry.training.deprecated_commands:
            yield old, entry
