"""The SDXL LoRA script's command line: the DreamBooth hyperparameters it shares with
`dreambooth/train.py` (same names, LoRA-sized defaults), the LoRA's own, the sample grid's, the
paths SageMaker sets, and the `model` channel (common/base_model_channel.py)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence

from common.base_model_channel import (
    ModelInput,
    add_model_channel_arguments,
    resolve_model_input,
)
from dreambooth.arguments import (
    add_dataset_and_output_arguments,
    add_hyperparameters,
    base_model_request,
    check_warmup,
    resolution_type,
)
from sagemaker_job import (
    boolean,
    hyperparameter_parser,
    non_negative_float,
    optional_positive_int,
    parse_ignoring_sagemaker_keys,
    positive_int,
)
from sdxl_lora.base_models import SDXL_BASE_MODEL, SDXL_BASE_REVISION

# SDXL's VAE scales by 8 and its UNet halves the latents twice more: a side must divide by 32
# for the UNet's skip connections to line up.
RESOLUTION_MULTIPLE = 32


_resolution = resolution_type(RESOLUTION_MULTIPLE, "1024 or 768")


def parse_args(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> argparse.Namespace:
    env = os.environ if env is None else env
    parser = hyperparameter_parser("DreamBooth-LoRA fine-tuning of Stable Diffusion XL.")
    add_hyperparameters(
        parser,
        {
            # Shared with dreambooth/train.py; defaults after diffusers'
            # train_dreambooth_lora_sdxl.py README (1024 px, lr 1e-4, 500 steps, accumulation 4).
            "with_prior_preservation": False,
            "num_class_images": 100,
            "epochs": 100,
            "max_steps": 500,
            "batch_size": 1,
            "learning_rate": 1e-4,
            "prior_loss_weight": 1.0,
            "center_crop": False,
            "lr_scheduler": "constant",
            "lr_warmup_steps": 0,
            "adam_weight_decay": 1e-4,
            "adam_beta1": 0.9,
            "adam_beta2": 0.999,
            "adam_epsilon": 1e-8,
            "gradient_accumulation_steps": 4,
            "max_grad_norm": 1.0,
            "seed": 0,
            "resolution": 1024,
            # On by default: 1024 px activations, not the LoRA's few MB of optimizer state, are
            # what fill a 24 GB A10G.
            "gradient_checkpointing": True,
            "use_8bit_adam": False,
            "mixed_precision": "auto",
            "checkpoint_steps": 100,
            "keep_checkpoints": 2,
            "class_image_inference_steps": 30,
            "class_image_batch_size": 2,
        },
        resolution=_resolution,
        helps={
            "use_8bit_adam": "bitsandbytes' AdamW8bit; saves little for a LoRA (its optimizer "
            "state is MBs)",
            "mixed_precision": "auto: fp16 on a CUDA GPU, no on CPU; the VAE always runs in "
            "float32",
        },
    )
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
    add_dataset_and_output_arguments(parser, env)
    args = parse_ignoring_sagemaker_keys(parser, argv)
    if args.base_model is None:
        if args.base_model_revision is not None:
            parser.error("--base_model_revision needs --base_model: the model it is a commit of")
        args.base_model, args.base_model_revision = SDXL_BASE_MODEL, SDXL_BASE_REVISION
    check_warmup(parser, args)
    if args.lora_alpha is None:
        args.lora_alpha = args.rank
    return args


def resolve_base_model(args: argparse.Namespace) -> ModelInput:
    """The verified base: the `model` channel in a job, a pinned hub id or a folder by hand.
    An adapter is trained on a base, never on another adapter, so `start_from` is not taken."""
    return resolve_model_input(base_model_request(args))
