"""The SDXL base's modules (two tokenizers, two text encoders, VAE, UNet, noise schedule),
checked to be an SDXL text-to-image base, and the pipeline around them."""

# transformers and diffusers leave most of their API unannotated.
# mypy: disallow-untyped-calls=False

from __future__ import annotations

from dataclasses import dataclass

import torch

# From their modules rather than `diffusers`: its lazy top level shows type checkers stand-ins.
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import (
    StableDiffusionXLPipeline,
)
from diffusers.schedulers.scheduling_ddpm import DDPMScheduler
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from dreambooth.components import check_prediction_type, tokenize
from sagemaker_job import TrainingError

# What makes a UNet an SDXL one: conditioned on the pooled text embedding and add_time_ids.
SDXL_ADDITION_EMBED_TYPE = "text_time"
TEXT_TO_IMAGE_CHANNELS = 4


@dataclass
class SdxlComponents:
    tokenizer: CLIPTokenizer
    tokenizer_2: CLIPTokenizer
    text_encoder: CLIPTextModel
    text_encoder_2: CLIPTextModelWithProjection
    vae: AutoencoderKL
    unet: UNet2DConditionModel
    noise_scheduler: DDPMScheduler


def check_sdxl_unet(config: dict[str, object], source: str) -> None:
    """An SDXL text-to-image UNet: `text_time` conditioning and 4 input channels."""
    embed = config.get("addition_embed_type")
    if embed != SDXL_ADDITION_EMBED_TYPE:
        raise TrainingError(
            f"{source} is not a Stable Diffusion XL model (its UNet's addition_embed_type is "
            f"{embed!r}, SDXL's is {SDXL_ADDITION_EMBED_TYPE!r}): use an SDXL base such as "
            "stabilityai/stable-diffusion-xl-base-1.0, or dreambooth/train.py for SD 2"
        )
    channels = config.get("in_channels")
    if channels != TEXT_TO_IMAGE_CHANNELS:
        raise TrainingError(
            f"{source}'s UNet has {channels} input channels (an inpainting model?); the LoRA "
            f"is trained on the text-to-image base ({TEXT_TO_IMAGE_CHANNELS} channels)"
        )


def load_components(source: str, revision: str | None) -> SdxlComponents:
    """The base's modules from `source` at `revision` (None for a folder: a channel)."""
    try:
        unet_config = UNet2DConditionModel.load_config(source, subfolder="unet", revision=revision)
    except (OSError, ValueError) as error:
        raise TrainingError(f"cannot read the base model's UNet from {source}: {error}") from error
    check_sdxl_unet(dict(unet_config), source)
    try:
        components = SdxlComponents(
            # A folder has no revision (None): the library's default, ignored for folders.
            tokenizer=CLIPTokenizer.from_pretrained(
                source, subfolder="tokenizer", revision=revision or "main"
            ),
            tokenizer_2=CLIPTokenizer.from_pretrained(
                source, subfolder="tokenizer_2", revision=revision or "main"
            ),
            text_encoder=CLIPTextModel.from_pretrained(
                source, subfolder="text_encoder", revision=revision
            ),
            text_encoder_2=CLIPTextModelWithProjection.from_pretrained(
                source, subfolder="text_encoder_2", revision=revision
            ),
            vae=AutoencoderKL.from_pretrained(source, subfolder="vae", revision=revision),
            unet=UNet2DConditionModel.from_pretrained(source, subfolder="unet", revision=revision),
            noise_scheduler=DDPMScheduler.from_pretrained(
                source, subfolder="scheduler", revision=revision
            ),
        )
    except (OSError, ValueError) as error:
        raise TrainingError(f"cannot load the base model from {source}: {error}") from error
    check_prediction_type(components.noise_scheduler, source)
    return components


def build_pipeline(
    components: SdxlComponents, source: str, revision: str | None
) -> StableDiffusionXLPipeline:
    """The base's pipeline (its own inference scheduler) around these components, without the
    invisible watermark: samples and class images must not depend on an optional package."""
    pipeline: StableDiffusionXLPipeline = StableDiffusionXLPipeline.from_pretrained(
        source,
        revision=revision,
        unet=components.unet,
        vae=components.vae,
        text_encoder=components.text_encoder,
        text_encoder_2=components.text_encoder_2,
        tokenizer=components.tokenizer,
        tokenizer_2=components.tokenizer_2,
        add_watermarker=False,
    )
    return pipeline


def tokenize_pair(components: SdxlComponents, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompt's token ids for each of the two text encoders."""
    return (
        tokenize(components.tokenizer, prompt),
        tokenize(components.tokenizer_2, prompt),
    )
