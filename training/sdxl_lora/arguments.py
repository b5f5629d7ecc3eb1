"""The SDXL LoRA script's command line: the DreamBooth hyperparameters it shares with
`dreambooth/train.py` (same names, LoRA-sized defaults), the LoRA's own, the sample grid's, the
paths SageMaker sets, and the `model` channel (common/base_model_channel.py)."""

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
from dreambooth.arguments import LR_SCHEDULERS, MIXED_PRECISIONS
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
from sdxl_lora.base_models import SDXL_BASE_MODEL, SDXL_BASE_REVISION

# SDXL's VAE scales by 8 and its UNet halves the latents twice more: a side must divide by 32
# for the UNet's skip connections to line up.
RESOLUTION_MULTIPLE = 32


def _resolution(value: str) -> int:
    number = positive_int(value)
    if number % RESOLUTION_MULTIPLE:
        raise argparse.ArgumentTypeError(
            f"must be a multiple of {RESOLUTION_MULTIPLE} (e.g. 1024 or 768), got {number}"
        )
    return number


def parse_args(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> argparse.Namespace:
    env = os.environ if env is None else env
    parser = hyperparameter_parser("DreamBooth-LoRA fine-tuning of Stable Diffusion XL.")
    # Shared with dreambooth/train.py; defaults after diffusers' train_dreambooth_lora_sdxl.py
    # README (1024 px, lr 1e-4, 500 steps, accumulation 4).
    parser.add_argument("--with_prior_preservation", type=boolean, default=False)
    parser.add_argument("--num_class_images", type=positive_int, default=100)
    parser.add_argument("--epochs", type=positive_int, default=100)
    parser.add_argument(
        "--max_steps",
        type=optional_positive_int,
        default=500,
        help="optimizer steps to train; overrides epochs (None: use epochs)",
    )
    parser.add_argument("--batch_size", type=positive_int, default=1)
    parser.add_argument("--learning_rate", type=positive_float, default=1e-4)
    parser.add_argument("--prior_loss_weight", type=non_negative_float, default=1.0)
    parser.add_argument("--center_crop", type=boolean, default=False)
    parser.add_argument("--lr_scheduler", choices=LR_SCHEDULERS, default="constant")
    parser.add_argument("--lr_warmup_steps", type=non_negative_int, default=0)
    parser.add_argument("--adam_weight_decay", type=non_negative_float, default=1e-4)
    parser.add_argument("--adam_beta1", type=fraction, default=0.9)
    parser.add_argument("--adam_beta2", type=fraction, default=0.999)
    parser.add_argument("--adam_epsilon", type=positive_float, default=1e-8)
    parser.add_argument("--gradient_accumulation_steps", type=positive_int, default=4)
    parser.add_argument("--max_grad_norm", type=positive_float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resolution", type=_resolution, default=1024)
    # On by default: 1024 px activations, not the LoRA's few MB of optimizer state, are what
    # fill a 24 GB A10G.
    parser.add_argument("--gradient_checkpointing", type=boolean, default=True)
    parser.add_argument(
        "--use_8bit_adam",
        type=boolean,
        default=False,
        help="bitsandbytes' AdamW8bit; saves little for a LoRA (its optimizer state is MBs)",
    )
    parser.add_argument(
        "--mixed_precision",
        choices=MIXED_PRECISIONS,
        default="auto",
        help="auto: fp16 on a CUDA GPU, no on CPU; the VAE always runs in float32",
    )
    parser.add_argument(
        "--checkpoint_steps",
        type=non_negative_int,
        default=100,
        help="checkpoint every N optimizer steps (0: never)",
    )
    parser.add_argument("--keep_checkpoints", type=positive_int, default=2)
    parser.add_argument("--class_image_inference_steps", type=positive_int, default=30)
    parser.add_argument("--class_image_batch_size", type=positive_int, default=2)
    # The LoRA.
    parser.add_argument("--rank", type=positive_int, default=4, help="LoRA rank")
    parser.add_argument(
        "--lora_alpha",
        type=optional_positive_int,
        default=None,
        help="LoRA alpha (None: the rank, a scale of 1)",
    )
    parser.add_argument(
        "--train_text_encoder",
        type=boolean,
        default=False,
        help="also train a LoRA on both text encoders (bigger adapter, more memory)",
    )
    # The sample grid written at the end.
    parser.add_argument("--sample_steps", type=positive_int, default=30)
    parser.add_argument("--sample_guidance_scale", type=non_negative_float, default=5.0)
    parser.add_argument("--sample_seed", type=int, default=1234)
    # Set by the training workflow.
    parser.add_argument(
        "--base_model",
        default=None,
        help=f"hub id or local directory (default: {SDXL_BASE_MODEL} at a pinned commit); a "
        "`model` channel, when attached, is loaded instead (a job must have one)",
    )
    parser.add_argument(
        "--base_model_revision",
        default=None,
        help="the 40-hex Hub commit of --base_model; required for a hub id (hub_pins.py)",
    )
    add_model_channel_arguments(parser, env)
    parser.add_argument(
        "--dataset_dir",
        type=Path,
        default=env.get("SM_CHANNEL_TRAINING", "/opt/ml/input/data/training"),
    )
    add_output_arguments(parser, env)
    args = parse_ignoring_sagemaker_keys(parser, argv)
    if args.base_model is None:
        if args.base_model_revision is not None:
            parser.error("--base_model_revision needs --base_model: the model it is a commit of")
        args.base_model, args.base_model_revision = SDXL_BASE_MODEL, SDXL_BASE_REVISION
    if args.lr_warmup_steps and args.lr_scheduler == "constant":
        parser.error(
            f"--lr_warmup_steps {args.lr_warmup_steps} has no effect with --lr_scheduler "
            "constant: use constant_with_warmup (or another schedule)"
        )
    if args.lora_alpha is None:
        args.lora_alpha = args.rank
    return args


def resolve_base_model(args: argparse.Namespace) -> ModelInput:
    """The verified base: the `model` channel in a job, a pinned hub id or a folder by hand.
    An adapter is trained on a base, never on another adapter, so `start_from` is not taken."""
    return resolve_model_input(
        ModelRequest(
            role="base model",
            channel_name="model",
            channel=args.model_channel,
            model=str(args.base_model),
            revision=args.base_model_revision,
            manifest_sha256=args.base_model_manifest_sha256,
            flag="base_model",
        )
    )
