"""The base model's modules: loaded at a pinned commit and checked against the mode, the frozen
ones in the training precision, and the pipeline around them."""

from __future__ import annotations

from dataclasses import dataclass

import torch

# From their modules rather than `diffusers`: its lazy top level shows type checkers stand-ins.
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_inpaint import (
    StableDiffusionInpaintPipeline,
)
from diffusers.schedulers.scheduling_ddpm import DDPMScheduler
from transformers import CLIPTextModel, CLIPTokenizer

from dreambooth.arguments import DEFAULT_BASE_MODELS
from dreambooth.export import INPAINTING, TEXT_TO_IMAGE, UNET_IN_CHANNELS
from sagemaker_job import TrainingError

PREDICTION_TYPES = ("epsilon", "v_prediction")


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
    """The base's modules from `source` at `revision` (None for a folder: a channel, see
    dreambooth.arguments.resolve_base_model)."""
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
    check_prediction_type(components.noise_scheduler, source)
    return components


def check_prediction_type(noise_scheduler: DDPMScheduler, source: str) -> None:
    """Refuse a base whose scheduler predicts something the training loss does not score."""
    prediction = noise_scheduler.config["prediction_type"]
    if prediction not in PREDICTION_TYPES:
        raise TrainingError(
            f"{source}'s scheduler predicts {prediction!r}; training supports "
            f"{' and '.join(PREDICTION_TYPES)}"
        )


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
