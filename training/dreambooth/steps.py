"""Training steps: how many to run, the models as Accelerate prepared them with the optimizer
and schedule, and the loss of one micro-batch (instance loss, plus the weighted prior loss with
prior preservation)."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import torch
import torch.nn.functional as F  # noqa: N812
from accelerate import Accelerator

# From their modules rather than `diffusers`: its lazy top level shows type checkers stand-ins.
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.optimization import SchedulerType, get_scheduler
from diffusers.schedulers.scheduling_ddpm import DDPMScheduler
from transformers import CLIPTextModel

from dreambooth.components import Components, weight_dtype
from dreambooth.data import Batch, masked_image
from sagemaker_job import TrainingError


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


class LoopTrainer(Protocol):
    """What the loop steps and a checkpoint saves beside the weights: DreamBooth's `Trainer` and
    the SDXL LoRA's `LoraTrainer` both are one."""

    accelerator: Accelerator
    optimizer: torch.optim.Optimizer
    lr_scheduler: Any
    parameters: list[torch.nn.Parameter]


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


def make_trainer(
    components: Components, args: argparse.Namespace, plan: Plan, mixed_precision: str
) -> tuple[Trainer, Models]:
    accelerator = make_accelerator(args, mixed_precision)
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
    lr_scheduler = make_lr_scheduler(optimizer, args, plan, accelerator)
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


def make_accelerator(args: argparse.Namespace, mixed_precision: str) -> Accelerator:
    return Accelerator(
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
    )


def make_lr_scheduler(
    optimizer: torch.optim.Optimizer, args: argparse.Namespace, plan: Plan, accelerator: Accelerator
) -> Any:
    """`lr_scheduler` over the plan's steps; a schedule diffusers refuses is a TrainingError."""
    try:
        return get_scheduler(
            SchedulerType(args.lr_scheduler),
            optimizer,
            num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
            num_training_steps=plan.total_steps * accelerator.num_processes,
        )
    except ValueError as error:
        raise TrainingError(f"lr_scheduler {args.lr_scheduler}: {error}") from error


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


def add_training_noise(
    scheduler: DDPMScheduler, latents: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.IntTensor, torch.Tensor]:
    """The noise and timesteps of one micro-batch, and the latents noised with them."""
    device = latents.device
    # Drawn on the CPU from the step's own generator: the same numbers on any device.
    noise = torch.randn(latents.shape, generator=generator).to(device)
    timesteps = cast(
        torch.IntTensor,
        torch.randint(
            0, scheduler.config["num_train_timesteps"], (latents.shape[0],), generator=generator
        ).to(device),
    )
    return noise, timesteps, scheduler.add_noise(latents, noise, timesteps)


def diffusion_losses(
    prediction: torch.Tensor,
    scheduler: DDPMScheduler,
    latents: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.IntTensor,
    *,
    instances: int,
    prior_loss_weight: float,
) -> Losses:
    """The UNet's prediction scored against the noise (or v, for a v-prediction base): the
    first `instances` rows are the instance loss, the rest (class images) the prior loss."""
    if scheduler.config["prediction_type"] == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps).float()
    else:
        target = noise.float()
    instance = F.mse_loss(prediction[:instances], target[:instances])
    if instances == prediction.shape[0]:
        return Losses(total=instance, instance=instance, prior=None)
    prior = F.mse_loss(prediction[instances:], target[instances:])
    return Losses(total=instance + prior_loss_weight * prior, instance=instance, prior=prior)


def training_step_loss(models: Models, batch: Batch, generator: torch.Generator) -> Losses:
    """One forward pass: noise the latents at random timesteps and score the UNet's prediction
    of the noise (or of v, for a v-prediction base). Its own function so the tests can inject a
    NaN or an interruption here."""
    vae, scheduler = models.vae, models.noise_scheduler
    latents = encode_latents(vae, batch.pixel_values, generator)
    device = latents.device
    noise, timesteps, noisy = add_training_noise(scheduler, latents, generator)
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
    return diffusion_losses(
        prediction,
        scheduler,
        latents,
        noise,
        timesteps,
        instances=batch.instances,
        prior_loss_weight=models.prior_loss_weight,
    )


def step_generator(seed: int, epoch: int, batch_index: int) -> torch.Generator:
    """The noise, timesteps and VAE samples of one micro-batch come from this generator alone,
    so a resumed job draws exactly what the interrupted one would have."""
    digest = hashlib.sha256(f"step:{seed}:{epoch}:{batch_index}".encode()).digest()
    return torch.Generator("cpu").manual_seed(int.from_bytes(digest[:8], "little") >> 1)
