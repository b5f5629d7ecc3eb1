"""DreamBooth fine-tuning of Stable Diffusion, text-to-image or inpainting (SageMaker entry point).

SageMaker runs `python dreambooth/train.py --max_steps 400 ...` with the JumpStart-style
hyperparameters as arguments and the dataset in the `training` channel (instance images and
`dataset_info.json` at the top, optional `class_data_dir/`); locally,
`cd training && python -m dreambooth.train --dataset_dir ...` runs the same code. The whole UNet
(and with `train_text_encoder` the text encoder) is trained; the VAE stays frozen.

`mode=inpainting` fine-tunes an inpainting model (9-channel UNet) for virtual styling: every
example gets a random mask (rectangles, brush strokes, sometimes the whole picture), and the
UNet sees the noisy latents, the mask and the latents of the masked picture, as at inference.

Prior preservation trains on the class images alongside the subject (loss = instance loss +
prior_loss_weight x prior loss) so the class keeps its variety; missing class images are
generated from `class_prompt` with the base model before training.

Output in `SM_MODEL_DIR` (`dreambooth.export`): the diffusers pipeline, `clipseg/` for
inpainting, `code/inference.py`, `code/requirements.txt` and `training_summary.json`.
Checkpoints (trained weights, optimizer, learning-rate schedule, progress, RNG) go to
`/opt/ml/checkpoints` with the generated class images; a restarted spot job resumes from the
newest readable one. A non-finite loss or gradient stops training before the bad update, the
last good weights are exported and the summary says so.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # SageMaker runs this file as a script from /opt/ml/code: make `dreambooth` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import contextlib
import hashlib
import logging
import math
import os
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import torch
import torch.nn.functional as F  # noqa: N812
from accelerate import Accelerator

# From their modules rather than `diffusers`: its lazy top level shows type checkers stand-ins.
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.optimization import SchedulerType, get_scheduler
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_inpaint import (
    StableDiffusionInpaintPipeline,
)
from diffusers.schedulers.scheduling_ddpm import DDPMScheduler
from hub_pins import UnpinnedModelError, hub_revision
from transformers import CLIPTextModel, CLIPTokenizer

from checkpoint_dirs import atomic_checkpoint, checkpoint_name, restore_newest
from dreambooth.base_models import (
    CLIPSEG_MODEL,
    CLIPSEG_REVISION,
    INPAINTING_BASE_MODEL,
    INPAINTING_BASE_REVISION,
    TEXT_TO_IMAGE_BASE_MODEL,
    TEXT_TO_IMAGE_BASE_REVISION,
)
from dreambooth.class_images import class_image_list, generate_class_images
from dreambooth.data import Batch, Examples, epoch_batches, make_batch, masked_image
from dreambooth.export import (
    INPAINTING,
    MODES,
    TEXT_TO_IMAGE,
    UNET_IN_CHANNELS,
    ExportError,
    export_archive,
    serving_files,
    write_summary,
)
from dreambooth.layout import (
    DatasetError,
    class_image_paths,
    instance_image_paths,
    read_dataset_info,
)
from dreambooth.metrics import EPOCH_LOSS, INSTANCE_LOSS, LEARNING_RATE, PRIOR_LOSS, STEP_LOSS
from metric_lines import metric_line
from sagemaker_job import (
    TrainingError,
    add_output_arguments,
    boolean,
    configure_logging,
    fraction,
    non_negative_float,
    non_negative_int,
    optional_positive_int,
    parse_ignoring_sagemaker_keys,
    positive_float,
    positive_int,
    write_failure,
)

LOG = logging.getLogger("dreambooth.train")

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
PREDICTION_TYPES = ("epsilon", "v_prediction")
CHECKPOINT_FILE = "checkpoint.pt"
# Beside the checkpoints, so SageMaker syncs them too and a restarted job does not regenerate.
GENERATED_CLASS_DIR = "class_images"
# Pixels per side must be a multiple of the VAE's downscaling (8 for Stable Diffusion).
RESOLUTION_MULTIPLE = 8
# With fp16 the loss scaler skips a step whose gradients overflowed and halves its scale; this
# many in a row means the scale is down by 2**N and the run is diverging, not warming up.
MAX_SKIPPED_STEPS_IN_A_ROW = 25
GPU_MEMORY_HINT = (
    "turn on gradient_checkpointing and use_8bit_adam, lower batch_size or resolution, or use a "
    "24 GB GPU (ml.g5.2xlarge): prior preservation does not fit in 16 GB (ml.g4dn.2xlarge)"
)


# --------------------------------------------------------------------------------------------
# Arguments


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
    parser = argparse.ArgumentParser(
        description="DreamBooth fine-tuning of Stable Diffusion (text-to-image or inpainting).",
        # A misspelt hyperparameter must fail the job, not silently match a longer name.
        allow_abbrev=False,
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
        "in sd2-community at a pinned commit); a `model` channel, when attached, is loaded instead",
    )
    parser.add_argument(
        "--base_model_revision",
        default=None,
        help="the 40-hex Hub commit of --base_model; required for a hub id (hub_pins.py)",
    )
    parser.add_argument("--clipseg_model", default=None, help="hub id or local directory")
    parser.add_argument("--clipseg_model_revision", default=None)
    # Paths: SageMaker's environment, /opt/ml defaults.
    channel = env.get("SM_CHANNEL_MODEL")
    parser.add_argument("--model_channel", type=Path, default=Path(channel) if channel else None)
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


def model_source(args: argparse.Namespace) -> str:
    """Where the base's weights load from: the `model` channel when attached (no internet
    needed), otherwise `base_model` (a hub id or a directory)."""
    return str(args.model_channel) if args.model_channel else str(args.base_model)


def model_revision(args: argparse.Namespace) -> str | None:
    """The commit `model_source` loads at: None for a folder (the channel, a local copy); a hub
    id without a 40-hex `base_model_revision` is refused (hub_pins.py says why)."""
    if args.model_channel:
        return None
    return _pinned(str(args.base_model), args.base_model_revision, "base_model_revision")


def clipseg_revision(args: argparse.Namespace) -> str | None:
    """The commit CLIPSeg loads at, as `model_revision` (only inpainting packs CLIPSeg)."""
    return _pinned(str(args.clipseg_model), args.clipseg_model_revision, "clipseg_model_revision")


def _pinned(model: str, revision: str | None, flag: str) -> str | None:
    try:
        return hub_revision(model, revision, flag=flag)
    except UnpinnedModelError as error:
        raise TrainingError(str(error)) from error


# --------------------------------------------------------------------------------------------
# Device and precision


def resolve_mixed_precision(requested: str) -> str:
    cuda = torch.cuda.is_available()
    if requested == "auto":
        return "fp16" if cuda else "no"
    if requested == "fp16" and not cuda:
        raise TrainingError("mixed_precision fp16 needs a CUDA GPU: use auto or no on CPU")
    if requested == "bf16" and not (cuda and torch.cuda.is_bf16_supported()):
        raise TrainingError(
            "mixed_precision bf16 needs a GPU with bfloat16 support (A10G, A100, ...): "
            "use fp16 or auto"
        )
    return requested


def weight_dtype(mixed_precision: str) -> torch.dtype:
    """The dtype of the frozen modules; the trained ones stay float32 under autocast."""
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mixed_precision, torch.float32)


# --------------------------------------------------------------------------------------------
# Model


@dataclass
class Components:
    tokenizer: CLIPTokenizer
    text_encoder: CLIPTextModel
    vae: AutoencoderKL
    unet: UNet2DConditionModel
    noise_scheduler: DDPMScheduler


def check_unet_channels(in_channels: int, mode: str, source: str) -> None:
    """Text-to-image needs the 4-channel UNet, inpainting the 9-channel one."""
    if in_channels == UNET_IN_CHANNELS[mode]:
        return
    if mode == TEXT_TO_IMAGE:
        raise TrainingError(
            f"mode text-to-image needs a UNet with 4 input channels, but {source} has "
            f"{in_channels} (an inpainting model?): use mode inpainting for it, or a "
            f"text-to-image base such as {DEFAULT_BASE_MODELS[TEXT_TO_IMAGE][0]}"
        )
    raise TrainingError(
        f"mode inpainting needs an inpainting UNet with 9 input channels (latents, mask, "
        f"masked-image latents), but {source} has {in_channels}: use an inpainting base such "
        f"as {DEFAULT_BASE_MODELS[INPAINTING][0]}, or mode text-to-image"
    )


def load_components(source: str, mode: str, revision: str | None) -> Components:
    """The base's modules from `source` at `revision` (None for a folder, see model_revision)."""
    try:
        unet_config = UNet2DConditionModel.load_config(source, subfolder="unet", revision=revision)
    except (OSError, ValueError) as error:
        raise TrainingError(f"cannot read the base model's UNet from {source}: {error}") from error
    check_unet_channels(int(unet_config["in_channels"]), mode, source)
    try:
        noise_scheduler = DDPMScheduler.from_pretrained(
            source, subfolder="scheduler", revision=revision
        )
        components = Components(
            # A folder has no revision (None): the library's default, ignored for folders.
            tokenizer=CLIPTokenizer.from_pretrained(
                source, subfolder="tokenizer", revision=revision or "main"
            ),
            text_encoder=CLIPTextModel.from_pretrained(
                source, subfolder="text_encoder", revision=revision
            ),
            vae=AutoencoderKL.from_pretrained(source, subfolder="vae", revision=revision),
            unet=UNet2DConditionModel.from_pretrained(source, subfolder="unet", revision=revision),
            noise_scheduler=noise_scheduler,
        )
    except (OSError, ValueError) as error:
        raise TrainingError(f"cannot load the base model from {source}: {error}") from error
    prediction = components.noise_scheduler.config["prediction_type"]
    if prediction not in PREDICTION_TYPES:
        raise TrainingError(
            f"{source}'s scheduler predicts {prediction!r}; training supports "
            f"{' and '.join(PREDICTION_TYPES)}"
        )
    return components


@dataclass(frozen=True)
class FrozenComponents:
    vae: AutoencoderKL
    text_encoder: CLIPTextModel | None


def load_frozen_components(
    source: str, revision: str | None, *, train_text_encoder: bool
) -> FrozenComponents:
    """The base's untrained modules as stored, in float32 (both libraries' default), for the
    archive; the text encoder only when it was not trained."""
    try:
        vae = AutoencoderKL.from_pretrained(source, subfolder="vae", revision=revision)
        text_encoder = (
            None
            if train_text_encoder
            else CLIPTextModel.from_pretrained(source, subfolder="text_encoder", revision=revision)
        )
    except (OSError, ValueError) as error:
        raise TrainingError(f"cannot reload the base model from {source}: {error}") from error
    return FrozenComponents(vae=vae, text_encoder=text_encoder)


def build_pipeline(
    components: Components, source: str, mode: str, revision: str | None
) -> StableDiffusionPipeline | StableDiffusionInpaintPipeline:
    """The base's pipeline around these components (its own inference scheduler), without a
    safety checker: the archive must not need one, and a generated class image is never shown."""
    pipeline_class = (
        StableDiffusionInpaintPipeline if mode == INPAINTING else StableDiffusionPipeline
    )
    return pipeline_class.from_pretrained(
        source,
        revision=revision,
        unet=components.unet,
        vae=components.vae,
        text_encoder=components.text_encoder,
        tokenizer=components.tokenizer,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def tokenize(tokenizer: CLIPTokenizer, prompt: str) -> torch.Tensor:
    ids: torch.Tensor = tokenizer(
        prompt,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    return ids


def make_optimizer(
    parameters: Sequence[torch.nn.Parameter], args: argparse.Namespace
) -> torch.optim.Optimizer:
    kwargs: dict[str, Any] = {
        "lr": args.learning_rate,
        "betas": (args.adam_beta1, args.adam_beta2),
        "weight_decay": args.adam_weight_decay,
        "eps": args.adam_epsilon,
    }
    if not args.use_8bit_adam:
        return torch.optim.AdamW(parameters, **kwargs)
    # Refused rather than quietly replaced by AdamW: the memory budget was planned around it.
    if not torch.cuda.is_available():
        raise TrainingError("use_8bit_adam needs a CUDA GPU (bitsandbytes); set it false on CPU")
    try:
        import bitsandbytes
    except ImportError as error:
        raise TrainingError(
            "use_8bit_adam needs bitsandbytes: add it to training/requirements.txt"
        ) from error
    optimizer: torch.optim.Optimizer = bitsandbytes.optim.AdamW8bit(parameters, **kwargs)
    return optimizer


# --------------------------------------------------------------------------------------------
# Loss


@dataclass(frozen=True)
class Models:
    """What one training step runs; `unet` and `text_encoder` as Accelerate prepared them."""

    unet: torch.nn.Module
    text_encoder: torch.nn.Module
    vae: AutoencoderKL
    noise_scheduler: DDPMScheduler
    train_text_encoder: bool
    prior_loss_weight: float


@dataclass(frozen=True)
class Losses:
    total: torch.Tensor
    instance: torch.Tensor
    prior: torch.Tensor | None


def encode_latents(
    vae: AutoencoderKL, pixels: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    with torch.no_grad():
        distribution = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist
        latents: torch.Tensor = distribution.sample(generator=generator).float()
    return latents * float(vae.config["scaling_factor"])


def training_step_loss(models: Models, batch: Batch, generator: torch.Generator) -> Losses:
    """One forward pass: noise the latents at random timesteps and score the UNet's prediction
    of the noise (or of v, for a v-prediction base). Its own function so the tests can inject a
    NaN or an interruption here."""
    vae, scheduler = models.vae, models.noise_scheduler
    latents = encode_latents(vae, batch.pixel_values, generator)
    device = latents.device
    # Drawn on the CPU from the step's own generator: the same numbers on any device.
    noise = torch.randn(latents.shape, generator=generator).to(device)
    timesteps = cast(
        torch.IntTensor,
        torch.randint(
            0, scheduler.config["num_train_timesteps"], (latents.shape[0],), generator=generator
        ).to(device),
    )
    noisy = scheduler.add_noise(latents, noise, timesteps)
    unet_input = noisy
    if batch.masks is not None:
        masks = batch.masks.to(device)
        masked_latents = encode_latents(
            vae, masked_image(batch.pixel_values.to(device), masks), generator
        )
        latent_masks = F.interpolate(masks, size=latents.shape[-2:])
        unet_input = torch.cat([noisy, latent_masks, masked_latents], dim=1)
    with contextlib.nullcontext() if models.train_text_encoder else torch.no_grad():
        hidden_states = models.text_encoder(batch.prompt_ids.to(device))[0]
    prediction = models.unet(unet_input, timesteps, hidden_states).sample.float()
    if scheduler.config["prediction_type"] == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps).float()
    else:
        target = noise.float()
    instances = batch.instances
    instance = F.mse_loss(prediction[:instances], target[:instances])
    if instances == prediction.shape[0]:
        return Losses(total=instance, instance=instance, prior=None)
    prior = F.mse_loss(prediction[instances:], target[instances:])
    return Losses(total=instance + models.prior_loss_weight * prior, instance=instance, prior=prior)


def step_generator(seed: int, epoch: int, batch_index: int) -> torch.Generator:
    """The noise, timesteps and VAE samples of one micro-batch come from this generator alone,
    so a resumed job draws exactly what the interrupted one would have."""
    digest = hashlib.sha256(f"step:{seed}:{epoch}:{batch_index}".encode()).digest()
    return torch.Generator("cpu").manual_seed(int.from_bytes(digest[:8], "little") >> 1)


# --------------------------------------------------------------------------------------------
# Checkpoints


@dataclass
class Progress:
    """Where training stands: the next micro-batch to train is `batch_in_epoch` of `epoch`."""

    epoch: int = 1
    batch_in_epoch: int = 0
    optimizer_steps: int = 0
    skipped_in_a_row: int = 0
    # The current epoch's loss so far, so that a job resumed mid-epoch (or from a checkpoint at an
    # epoch's last step, the common case) still logs the whole epoch's mean.
    epoch_loss_sum: float = 0.0
    epoch_batches_seen: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    last_losses: dict[str, float] = field(default_factory=dict)


@dataclass
class Trainer:
    """The trained modules (unwrapped), the optimizer and schedule as prepared, the accelerator."""

    accelerator: Accelerator
    unet: UNet2DConditionModel
    text_encoder: CLIPTextModel
    optimizer: torch.optim.Optimizer
    lr_scheduler: Any
    parameters: list[torch.nn.Parameter]
    train_text_encoder: bool


def _fingerprint(args: argparse.Namespace) -> dict[str, Any]:
    # A checkpoint is only resumed by the same kind of run.
    return {
        "mode": args.mode,
        "base_model": model_source(args),
        "base_model_revision": model_revision(args),
        "train_text_encoder": args.train_text_encoder,
    }


def save_checkpoint(trainer: Trainer, progress: Progress, args: argparse.Namespace) -> Path:
    scaler = trainer.accelerator.scaler
    with atomic_checkpoint(
        args.checkpoint_dir,
        progress.optimizer_steps,
        marker=CHECKPOINT_FILE,
        keep=args.keep_checkpoints,
    ) as partial:
        torch.save(
            {
                "fingerprint": _fingerprint(args),
                "unet": trainer.unet.state_dict(),
                "text_encoder": (
                    trainer.text_encoder.state_dict() if trainer.train_text_encoder else None
                ),
                "optimizer": trainer.optimizer.state_dict(),
                "lr_scheduler": trainer.lr_scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "progress": asdict(progress),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            partial / CHECKPOINT_FILE,
        )
    return Path(args.checkpoint_dir) / checkpoint_name(progress.optimizer_steps)


def restore_checkpoint(trainer: Trainer, args: argparse.Namespace) -> Progress | None:
    """Load the newest readable checkpoint; an unreadable one (a sync cut short) is skipped."""
    fingerprint = _fingerprint(args)

    def load(path: Path) -> Progress:
        state = torch.load(path / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
        if state["fingerprint"] != fingerprint:
            raise ValueError(f"it belongs to another run ({state['fingerprint']})")
        trainer.unet.load_state_dict(state["unet"])
        if trainer.train_text_encoder:
            trainer.text_encoder.load_state_dict(state["text_encoder"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.lr_scheduler.load_state_dict(state["lr_scheduler"])
        if trainer.accelerator.scaler is not None and state["scaler"] is not None:
            trainer.accelerator.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        if torch.cuda.is_available() and state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        return Progress(**state["progress"])

    restored = restore_newest(args.checkpoint_dir, CHECKPOINT_FILE, load)
    if restored is None:
        return None
    path, progress = restored
    LOG.info(
        "resuming from %s: epoch %d, batch %d, %d optimizer steps done",
        path,
        progress.epoch,
        progress.batch_in_epoch,
        progress.optimizer_steps,
    )
    return progress


# --------------------------------------------------------------------------------------------
# Training


@dataclass(frozen=True)
class Plan:
    batches_per_epoch: int
    steps_per_epoch: int
    total_steps: int
    epochs: int


def plan_steps(
    examples: int, batch_size: int, accumulation: int, epochs: int, max_steps: int | None
) -> Plan:
    """Optimizer steps to run: `max_steps` when set (as many epochs as that takes, the last one
    cut short), otherwise `epochs` full epochs."""
    batches = math.ceil(examples / batch_size)
    per_epoch = math.ceil(batches / accumulation)
    if max_steps is not None:
        return Plan(batches, per_epoch, max_steps, math.ceil(max_steps / per_epoch))
    return Plan(batches, per_epoch, epochs * per_epoch, epochs)


@dataclass
class Outcome:
    progress: Progress
    stopped_reason: str | None = None


@dataclass
class _StepTotals:
    """Sums over the micro-batches of one optimizer step."""

    batches: int = 0
    total: float = 0.0
    instance: float = 0.0
    prior: float = 0.0

    def add(self, losses: Losses) -> None:
        self.batches += 1
        self.total += float(losses.total.detach())
        self.instance += float(losses.instance.detach())
        if losses.prior is not None:
            self.prior += float(losses.prior.detach())

    def means(self, prior: bool) -> dict[str, float]:
        means = {STEP_LOSS: self.total / self.batches, INSTANCE_LOSS: self.instance / self.batches}
        if prior:
            means[PRIOR_LOSS] = self.prior / self.batches
        return means


def train(
    trainer: Trainer,
    models: Models,
    examples: Examples,
    batch_args: Mapping[str, Any],
    plan: Plan,
    args: argparse.Namespace,
) -> Outcome:
    progress = restore_checkpoint(trainer, args) or Progress()
    accumulation = args.gradient_accumulation_steps
    prior = args.with_prior_preservation
    accelerator, optimizer = trainer.accelerator, trainer.optimizer
    while progress.optimizer_steps < plan.total_steps and progress.epoch <= plan.epochs:
        epoch = progress.epoch
        batches = epoch_batches(len(examples), args.batch_size, args.seed, epoch)
        trainer.unet.train()
        if trainer.train_text_encoder:
            trainer.text_encoder.train()
        totals = _StepTotals()
        for index in range(progress.batch_in_epoch, len(batches)):
            group_start = index - index % accumulation
            group_size = min(accumulation, len(batches) - group_start)
            batch = make_batch(examples, batches[index], epoch=epoch, **batch_args)
            losses = training_step_loss(models, batch, step_generator(args.seed, epoch, index))
            if not torch.isfinite(losses.total):
                return _stop_non_finite(
                    optimizer, progress, epoch, index, "loss", float(losses.total.detach())
                )
            # Accelerate divides by gradient_accumulation_steps; an epoch's last group may be
            # shorter, and its mean must still be a mean.
            accelerator.backward(
                losses.total * accelerator.gradient_accumulation_steps / group_size
            )
            totals.add(losses)
            progress.epoch_loss_sum += float(losses.total.detach())
            progress.epoch_batches_seen += 1
            if index + 1 < group_start + group_size:
                continue
            grad_norm = accelerator.clip_grad_norm_(trainer.parameters, args.max_grad_norm)
            if not torch.isfinite(grad_norm):
                if accelerator.scaler is None:
                    return _stop_non_finite(
                        optimizer, progress, epoch, index, "gradient norm", float(grad_norm)
                    )
                # fp16: an overflow is the loss scaler's business; it skips this step and lowers
                # its scale. Only a long run of them means the training itself has diverged.
                progress.skipped_in_a_row += 1
                LOG.warning(
                    "fp16 gradient overflow at step %d: step skipped", progress.optimizer_steps + 1
                )
                if progress.skipped_in_a_row > MAX_SKIPPED_STEPS_IN_A_ROW:
                    return _stop_non_finite(
                        optimizer, progress, epoch, index, "gradient norm", float(grad_norm)
                    )
            else:
                progress.skipped_in_a_row = 0
            optimizer.step()
            trainer.lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            progress.optimizer_steps += 1
            progress.batch_in_epoch = index + 1
            progress.last_losses = totals.means(prior)
            totals = _StepTotals()
            print(
                metric_line(
                    epoch=epoch,
                    step=progress.optimizer_steps,
                    **progress.last_losses,
                    **{LEARNING_RATE: float(trainer.lr_scheduler.get_last_lr()[0])},
                ),
                flush=True,
            )
            finished = progress.optimizer_steps >= plan.total_steps
            if finished:
                break
            if args.checkpoint_steps and progress.optimizer_steps % args.checkpoint_steps == 0:
                save_checkpoint(trainer, progress, args)
        # A cut-short epoch (max_steps) only saw some of its batches; the mean is over those.
        if progress.epoch_batches_seen:
            record = {
                "epoch": epoch,
                EPOCH_LOSS: progress.epoch_loss_sum / progress.epoch_batches_seen,
            }
            print(metric_line(**record), flush=True)
            progress.history.append(record)
        if progress.batch_in_epoch >= len(batches):
            progress.epoch += 1
            progress.batch_in_epoch = 0
            progress.epoch_loss_sum, progress.epoch_batches_seen = 0.0, 0
    return Outcome(progress=progress)


def _stop_non_finite(
    optimizer: torch.optim.Optimizer,
    progress: Progress,
    epoch: int,
    batch: int,
    what: str,
    value: float,
) -> Outcome:
    # The bad gradients are dropped before any optimizer step, so the weights in memory are the
    # last good ones: those are what gets exported.
    optimizer.zero_grad(set_to_none=True)
    print(metric_line(epoch=epoch, step=progress.optimizer_steps, **{STEP_LOSS: value}), flush=True)
    reason = (
        f"non-finite {what} ({value}) at epoch {epoch}, batch {batch}: training stopped, "
        f"keeping the weights after {progress.optimizer_steps} good optimizer steps"
    )
    LOG.error(reason)
    return Outcome(progress=progress, stopped_reason=reason)


# --------------------------------------------------------------------------------------------
# Setup


def read_dataset(args: argparse.Namespace) -> tuple[list[Path], str, str | None, list[Path]]:
    """Instance images, instance prompt, class prompt and the dataset's own class images."""
    if not args.dataset_dir.is_dir():
        raise TrainingError(
            f"{args.dataset_dir} is not a directory: attach the dataset as the `training` channel"
        )
    try:
        info = read_dataset_info(args.dataset_dir, prior_preservation=args.with_prior_preservation)
        instances = instance_image_paths(args.dataset_dir)
        dataset_class_images = class_image_paths(args.dataset_dir)
    except DatasetError as error:
        raise TrainingError(str(error)) from error
    if not instances:
        raise TrainingError(
            f"{args.dataset_dir} holds no instance images: put 4-20 .png/.jpg/.jpeg pictures "
            "of the subject at its top level"
        )
    return instances, info.instance_prompt, info.class_prompt, dataset_class_images


def prepare_class_images(
    args: argparse.Namespace,
    components: Components,
    class_prompt: str,
    dataset_class_images: Sequence[Path],
    accelerator: Accelerator,
) -> tuple[list[Path], int]:
    """The class images to train on, generating the missing ones; and how many were generated."""
    generated_dir = args.checkpoint_dir / GENERATED_CLASS_DIR
    images, missing = class_image_list(dataset_class_images, generated_dir, args.num_class_images)
    LOG.info(
        "prior preservation: %d class images wanted, %d in the dataset, %d to generate",
        args.num_class_images,
        min(len(dataset_class_images), args.num_class_images),
        len(missing),
    )
    if missing:
        pipeline = build_pipeline(components, model_source(args), args.mode, model_revision(args))
        generate_class_images(
            pipeline,
            prompt=class_prompt,
            indices=missing,
            directory=generated_dir,
            resolution=args.resolution,
            inference_steps=args.class_image_inference_steps,
            batch_size=args.class_image_batch_size,
            seed=args.seed,
            autocast=accelerator.autocast,
        )
    return images, len(missing)


def make_trainer(
    components: Components, args: argparse.Namespace, plan: Plan, mixed_precision: str
) -> tuple[Trainer, Models]:
    accelerator = Accelerator(
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
    )
    device = accelerator.device
    frozen_dtype = weight_dtype(mixed_precision)
    unet, text_encoder, vae = components.unet, components.text_encoder, components.vae
    vae.requires_grad_(False)
    vae.to(device, dtype=frozen_dtype)
    text_encoder.requires_grad_(args.train_text_encoder)
    text_encoder.to(device, dtype=torch.float32 if args.train_text_encoder else frozen_dtype)
    unet.to(device)
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        if args.train_text_encoder:
            text_encoder.gradient_checkpointing_enable()
    parameters = list(unet.parameters())
    if args.train_text_encoder:
        parameters += list(text_encoder.parameters())
    optimizer = make_optimizer(parameters, args)
    try:
        lr_scheduler = get_scheduler(
            SchedulerType(args.lr_scheduler),
            optimizer,
            num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
            num_training_steps=plan.total_steps * accelerator.num_processes,
        )
    except ValueError as error:
        raise TrainingError(f"lr_scheduler {args.lr_scheduler}: {error}") from error
    if args.train_text_encoder:
        prepared_unet, prepared_text, optimizer, lr_scheduler = accelerator.prepare(
            unet, text_encoder, optimizer, lr_scheduler
        )
    else:
        prepared_unet, optimizer, lr_scheduler = accelerator.prepare(unet, optimizer, lr_scheduler)
        prepared_text = text_encoder
    trainer = Trainer(
        accelerator=accelerator,
        unet=unet,
        text_encoder=text_encoder,
        optimizer=optimizer,
        lr_scheduler=lr_scheduler,
        parameters=parameters,
        train_text_encoder=args.train_text_encoder,
    )
    models = Models(
        unet=prepared_unet,
        text_encoder=prepared_text,
        vae=vae,
        noise_scheduler=components.noise_scheduler,
        train_text_encoder=args.train_text_encoder,
        prior_loss_weight=args.prior_loss_weight,
    )
    return trainer, models


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def _timed(label: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    LOG.info("%s took %.1f s", label, time.monotonic() - started)


# --------------------------------------------------------------------------------------------
# Entry points


def main(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    seed_everything(args.seed)
    mixed_precision = resolve_mixed_precision(args.mixed_precision)
    instances, instance_prompt, class_prompt, dataset_class_images = read_dataset(args)
    source = model_source(args)
    LOG.info(
        "%s DreamBooth of %s on %d instance images (%r), mixed precision %s",
        args.mode,
        source,
        len(instances),
        instance_prompt,
        mixed_precision,
    )
    # Fail before minutes of loading, class-image generation and training, not after.
    if args.use_8bit_adam and not torch.cuda.is_available():
        raise TrainingError("use_8bit_adam needs a CUDA GPU (bitsandbytes); set it false on CPU")
    try:
        serving_files(args.mode)
    except ExportError as error:
        raise TrainingError(str(error)) from error
    revision = model_revision(args)
    clipseg_at = clipseg_revision(args) if args.mode == INPAINTING else None
    LOG.info("base model %s at %s", source, revision or "the folder's files")
    components = load_components(source, args.mode, revision)
    class_images: list[Path] = []
    generated = 0
    examples_count = len(instances)
    if args.with_prior_preservation:
        examples_count = max(len(instances), args.num_class_images)
    plan = plan_steps(
        examples_count,
        args.batch_size,
        args.gradient_accumulation_steps,
        args.epochs,
        args.max_steps,
    )
    # Before class-image generation, which runs on the accelerator's device and autocast.
    trainer, models = make_trainer(components, args, plan, mixed_precision)
    if args.with_prior_preservation:
        if class_prompt is None:  # read_dataset_info demands it; this keeps the types honest
            raise TrainingError("prior preservation needs class_prompt in dataset_info.json")
        with _timed("class image generation"):
            class_images, generated = prepare_class_images(
                args, components, class_prompt, dataset_class_images, trainer.accelerator
            )
    examples = Examples(instance_images=instances, class_images=class_images)
    tokenizer = components.tokenizer
    batch_args = {
        "seed": args.seed,
        "resolution": args.resolution,
        "center_crop": args.center_crop,
        "instance_ids": tokenize(tokenizer, instance_prompt),
        "class_ids": tokenize(tokenizer, class_prompt)
        if args.with_prior_preservation and class_prompt
        else None,
        "inpainting": args.mode == INPAINTING,
    }
    LOG.info(
        "%d examples per epoch, %d optimizer steps per epoch, %d steps in all",
        len(examples),
        plan.steps_per_epoch,
        plan.total_steps,
    )
    with _timed("training"):
        outcome = train(trainer, models, examples, batch_args, plan, args)
    if outcome.stopped_reason and outcome.progress.optimizer_steps == 0:
        raise TrainingError(f"{outcome.stopped_reason}; nothing was learned, no model saved")
    summary = build_summary(
        args,
        outcome,
        plan,
        mixed_precision=mixed_precision,
        instances=len(instances),
        class_images={"used": len(class_images), "generated": generated},
        seconds=time.monotonic() - started,
    )
    components.unet = trainer.accelerator.unwrap_model(trainer.unet)
    components.text_encoder = trainer.accelerator.unwrap_model(trainer.text_encoder)
    # The archive holds float32 weights whatever the training precision; the endpoint picks its
    # own dtype when it loads them. The frozen modules were cast to the training precision, and
    # casting them back would export fp16-rounded copies: the base's own weights go instead.
    frozen = load_frozen_components(source, revision, train_text_encoder=args.train_text_encoder)
    components.vae = frozen.vae
    if frozen.text_encoder is not None:
        components.text_encoder = frozen.text_encoder
    components.text_encoder.float()
    pipeline = build_pipeline(components, source, args.mode, revision)
    try:
        with _timed("export"):
            export_archive(
                args.model_dir,
                pipeline,
                mode=args.mode,
                clipseg_source=args.clipseg_model if args.mode == INPAINTING else None,
                clipseg_revision=clipseg_at,
                summary=summary,
            )
    except ExportError as error:
        raise TrainingError(f"export failed: {error}") from error
    write_summary(args.output_data_dir, summary)
    return summary


def build_summary(
    args: argparse.Namespace,
    outcome: Outcome,
    plan: Plan,
    *,
    mixed_precision: str,
    instances: int,
    class_images: Mapping[str, int],
    seconds: float,
) -> dict[str, Any]:
    stopped = outcome.stopped_reason is not None
    return {
        "status": "stopped_non_finite" if stopped else "completed",
        "stopped_non_finite": stopped,
        "stopped_reason": outcome.stopped_reason,
        "mode": args.mode,
        "base_model": args.base_model,
        "base_model_revision": args.base_model_revision,
        "model_source": model_source(args),
        "mixed_precision": mixed_precision,
        "hyperparameters": {
            key: value if isinstance(value, int | float | str | None) else str(value)
            for key, value in vars(args).items()
            if not key.endswith(("_dir", "_file", "_channel"))
        },
        "instance_images": instances,
        "class_images": dict(class_images),
        "optimizer_steps": outcome.progress.optimizer_steps,
        "planned_steps": plan.total_steps,
        "final_losses": outcome.progress.last_losses,
        "epochs": outcome.progress.history,
        "seconds": round(seconds, 1),
    }


def run(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    return run_with_args(parse_args(argv))


def run_with_args(args: argparse.Namespace) -> int:
    """Train; 0 when a model was saved, 1 (and SageMaker's failure file) when none could be."""
    try:
        summary = main(args)
    except TrainingError as error:
        LOG.error("%s", error)
        write_failure(args.failure_file, str(error))
        return 1
    except torch.cuda.OutOfMemoryError as error:
        LOG.error("GPU out of memory: %s", error)
        write_failure(args.failure_file, f"GPU out of memory: {GPU_MEMORY_HINT}")
        return 1
    except Exception as error:
        # Still a failure reason for the console, then the traceback in the log.
        write_failure(args.failure_file, f"unexpected {type(error).__name__}: {error}")
        raise
    if summary["stopped_reason"]:
        LOG.warning("model saved from the last good step: %s", summary["stopped_reason"])
    return 0


if __name__ == "__main__":
    sys.exit(run())
