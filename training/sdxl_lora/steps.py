"""The LoRA on the frozen SDXL base, the optimizer and schedule as Accelerate prepared them, and
the loss of one micro-batch.

Only LoRA weights train: the base UNet (and text encoders) are frozen and, under mixed
precision, stored in fp16/bf16, while the LoRA weights stay float32 for the optimizer. The VAE
always encodes in float32: SDXL's VAE overflows in fp16 (diffusers' script upcasts it too).
"""

# transformers, diffusers and peft leave most of their API unannotated.
# mypy: disallow-untyped-calls=False

from __future__ import annotations

import argparse
import contextlib
from dataclasses import dataclass
from typing import Any, cast

import torch
from accelerate import Accelerator
from diffusers.schedulers.scheduling_ddpm import DDPMScheduler
from diffusers.training_utils import cast_training_params
from peft import LoraConfig

from dreambooth.components import weight_dtype
from dreambooth.steps import (
    Losses,
    Plan,
    add_training_noise,
    diffusion_losses,
    encode_latents,
    make_accelerator,
    make_lr_scheduler,
    make_optimizer,
)
from sdxl_lora.components import SdxlComponents
from sdxl_lora.data import SdxlBatch

# The UNet's attention projections, as in diffusers' train_dreambooth_lora_sdxl.py.
UNET_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
# The CLIP text encoders' attention projections.
TEXT_ENCODER_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")


def lora_config(args: argparse.Namespace, targets: tuple[str, ...]) -> LoraConfig:
    # Gaussian A and zero B: the adapter starts as the identity, so step 0 is the base model.
    return LoraConfig(
        r=args.rank,
        lora_alpha=args.lora_alpha,
        init_lora_weights="gaussian",
        target_modules=list(targets),
    )


def trainable_parameters(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [parameter for parameter in module.parameters() if parameter.requires_grad]


@dataclass
class LoraTrainer:
    """The modules carrying LoRA layers (unwrapped), the optimizer and schedule as prepared,
    the accelerator, and the trained parameters (only LoRA weights)."""

    accelerator: Accelerator
    unet: torch.nn.Module
    text_encoder: torch.nn.Module
    text_encoder_2: torch.nn.Module
    optimizer: torch.optim.Optimizer
    lr_scheduler: Any
    parameters: list[torch.nn.Parameter]
    train_text_encoder: bool

    def trained_modules(self) -> dict[str, torch.nn.Module]:
        modules = {"unet": self.unet}
        if self.train_text_encoder:
            modules |= {"text_encoder": self.text_encoder, "text_encoder_2": self.text_encoder_2}
        return modules


@dataclass(frozen=True)
class SdxlModels:
    """What one training step runs; the trained modules as Accelerate prepared them."""

    unet: torch.nn.Module
    text_encoder: torch.nn.Module
    text_encoder_2: torch.nn.Module
    vae: torch.nn.Module
    noise_scheduler: DDPMScheduler
    train_text_encoder: bool
    prior_loss_weight: float


def make_trainer(
    components: SdxlComponents, args: argparse.Namespace, plan: Plan, mixed_precision: str
) -> tuple[LoraTrainer, SdxlModels]:
    accelerator = make_accelerator(args, mixed_precision)
    device = accelerator.device
    frozen_dtype = weight_dtype(mixed_precision)
    unet, vae = components.unet, components.vae
    text_encoders = (components.text_encoder, components.text_encoder_2)
    for module in (unet, vae, *text_encoders):
        module.requires_grad_(False)
    vae.to(device, dtype=torch.float32)
    unet.to(device, dtype=frozen_dtype)
    for encoder in text_encoders:
        encoder.to(device, dtype=frozen_dtype)
    unet.add_adapter(lora_config(args, UNET_LORA_TARGETS))
    trained: list[torch.nn.Module] = [unet]
    if args.train_text_encoder:
        for encoder in text_encoders:
            encoder.add_adapter(lora_config(args, TEXT_ENCODER_LORA_TARGETS))
        trained += list(text_encoders)
    # The LoRA layers were created in the base's dtype; the optimizer needs float32 weights.
    cast_training_params(trained, dtype=torch.float32)
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        if args.train_text_encoder:
            for encoder in text_encoders:
                encoder.gradient_checkpointing_enable()
    parameters = [parameter for module in trained for parameter in trainable_parameters(module)]
    optimizer = make_optimizer(parameters, args)
    lr_scheduler = make_lr_scheduler(optimizer, args, plan, accelerator)
    prepared = accelerator.prepare(*trained, optimizer, lr_scheduler)
    prepared_unet = prepared[0]
    prepared_text = prepared[1:3] if args.train_text_encoder else text_encoders
    optimizer, lr_scheduler = prepared[-2], prepared[-1]
    trainer = LoraTrainer(
        accelerator=accelerator,
        unet=unet,
        text_encoder=components.text_encoder,
        text_encoder_2=components.text_encoder_2,
        optimizer=optimizer,
        lr_scheduler=lr_scheduler,
        parameters=parameters,
        train_text_encoder=args.train_text_encoder,
    )
    models = SdxlModels(
        unet=prepared_unet,
        text_encoder=prepared_text[0],
        text_encoder_2=prepared_text[1],
        vae=vae,
        noise_scheduler=components.noise_scheduler,
        train_text_encoder=args.train_text_encoder,
        prior_loss_weight=args.prior_loss_weight,
    )
    return trainer, models


def encode_prompt(
    text_encoder: torch.nn.Module,
    text_encoder_2: torch.nn.Module,
    ids: torch.Tensor,
    ids_2: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SDXL's text conditioning: both encoders' penultimate hidden states side by side (the
    cross-attention context), and the second encoder's pooled, projected embedding."""
    device = next(text_encoder.parameters()).device
    first = text_encoder(ids.to(device), output_hidden_states=True)
    second = text_encoder_2(ids_2.to(device), output_hidden_states=True)
    context = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
    pooled: torch.Tensor = second.text_embeds
    return context, pooled


def training_step_loss(models: SdxlModels, batch: SdxlBatch, generator: torch.Generator) -> Losses:
    """One forward pass: noise the latents at random timesteps and score the UNet's prediction
    of the noise (or of v). Its own function so the tests can inject a NaN here."""
    scheduler = models.noise_scheduler
    latents = encode_latents(cast(Any, models.vae), batch.pixel_values, generator)
    device = latents.device
    noise, timesteps, noisy = add_training_noise(scheduler, latents, generator)
    with contextlib.nullcontext() if models.train_text_encoder else torch.no_grad():
        context, pooled = encode_prompt(
            models.text_encoder, models.text_encoder_2, batch.prompt_ids, batch.prompt_ids_2
        )
    prediction = models.unet(
        noisy,
        timesteps,
        context,
        added_cond_kwargs={"text_embeds": pooled, "time_ids": batch.time_ids.to(device)},
    ).sample.float()
    return diffusion_losses(
        prediction,
        scheduler,
        latents,
        noise,
        timesteps,
        instances=batch.instances,
        prior_loss_weight=models.prior_loss_weight,
    )
