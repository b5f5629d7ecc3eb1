"""Tiny Stable Diffusion XL pipelines (text-to-image and inpainting), from config.

The same classes and folder layout as `stabilityai/stable-diffusion-xl-base-1.0`: two CLIP text
encoders (`text_encoder` a CLIPTextModel, `text_encoder_2` a CLIPTextModelWithProjection whose
pooled, projected output conditions the UNet), two tokenizers, a UNet with SDXL's
`addition_embed_type="text_time"` conditioning (pooled text embedding + the six size/crop
numbers of `add_time_ids`), a VAE and an Euler scheduler. In miniature and randomly initialised,
so `sdxl_lora/train.py` and the serving handler load them exactly as they load the real one.
No download.

The tokenizers are the byte-level ones of `sd_model_support` (every byte a token).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.sd_model_support import MAX_TEXT_LENGTH, build_clip_tokenizer

# Pixels per side of the images the tiny pipelines make and train on: a multiple of the VAE's
# scale factor (2) times the UNet's (2).
IMAGE_SIZE = 32
# Each text encoder's hidden size; the UNet's cross-attention sees both side by side.
TEXT_HIDDEN_SIZE = 16
CROSS_ATTENTION_DIM = 2 * TEXT_HIDDEN_SIZE
# SDXL embeds each of the six add_time_ids numbers into this many channels (256 in the real one).
ADDITION_TIME_EMBED_DIM = 4
ADD_TIME_IDS = 6


def _text_config(vocab_size: int) -> dict[str, object]:
    return {
        "vocab_size": vocab_size,
        "hidden_size": TEXT_HIDDEN_SIZE,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": MAX_TEXT_LENGTH,
        "projection_dim": TEXT_HIDDEN_SIZE,
        "hidden_act": "gelu",
        "bos_token_id": vocab_size - 2,
        "eos_token_id": vocab_size - 1,
        "pad_token_id": 0,
    }


def build_tiny_sdxl(directory: Path, *, inpainting: bool = False, seed: int = 0) -> Path:
    """Save a tiny `StableDiffusionXLPipeline` (with `inpainting`, a
    `StableDiffusionXLInpaintPipeline` with a 9-channel UNet, as
    `diffusers/stable-diffusion-xl-1.0-inpainting-0.1`) in the hub layout to `directory`."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLInpaintPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
    )

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer_dir = build_clip_tokenizer(Path(scratch))
        tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
        tokenizer_2 = CLIPTokenizer.from_pretrained(tokenizer_dir)
    vocab_size = len(tokenizer.get_vocab())
    text_encoder = CLIPTextModel(CLIPTextConfig(**_text_config(vocab_size)))
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**_text_config(vocab_size)))
    unet = UNet2DConditionModel(
        sample_size=IMAGE_SIZE // 2,
        in_channels=9 if inpainting else 4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=CROSS_ATTENTION_DIM,
        attention_head_dim=2,
        norm_num_groups=4,
        use_linear_projection=True,
        # SDXL's micro-conditioning: the pooled text embedding of text_encoder_2 and the
        # embedded (original size, crop top-left, target size) numbers.
        addition_embed_type="text_time",
        addition_time_embed_dim=ADDITION_TIME_EMBED_DIM,
        projection_class_embeddings_input_dim=TEXT_HIDDEN_SIZE
        + ADD_TIME_IDS * ADDITION_TIME_EMBED_DIM,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=IMAGE_SIZE,
        # SDXL's VAE scale (SD 2 uses 0.18215).
        scaling_factor=0.13025,
    )
    # SDXL base's scheduler_config.json, in short.
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
        prediction_type="epsilon",
    )
    common = {
        "vae": vae,
        "text_encoder": text_encoder,
        "text_encoder_2": text_encoder_2,
        "tokenizer": tokenizer,
        "tokenizer_2": tokenizer_2,
        "unet": unet,
        "scheduler": scheduler,
        # The real pipeline adds an invisible watermark when the package is installed: off, so
        # outputs do not depend on what else is installed.
        "add_watermarker": False,
    }
    pipeline: StableDiffusionXLPipeline | StableDiffusionXLInpaintPipeline
    if inpainting:
        pipeline = StableDiffusionXLInpaintPipeline(**common, requires_aesthetics_score=False)
    else:
        pipeline = StableDiffusionXLPipeline(**common)
    pipeline.save_pretrained(directory)
    return directory


def tiny_sdxl_pipeline(tmp_path: Path, *, inpainting: bool = False) -> Path:
    """A tiny SDXL pipeline folder under `tmp_path` (`tiny-sdxl` or `tiny-sdxl-inpainting`)."""
    name = "tiny-sdxl-inpainting" if inpainting else "tiny-sdxl"
    return build_tiny_sdxl(tmp_path / name, inpainting=inpainting)
