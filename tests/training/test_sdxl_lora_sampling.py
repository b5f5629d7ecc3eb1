"""Drawing during a job: the UNet and text encoders in the training's reduced precision, the
VAE decoding in float32 (SDXL's VAE overflows in fp16). On CPU bfloat16 stands in for a GPU's
fp16: the same dtype mismatch, the same autocast."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionXLPipeline
from sdxl_lora.sampling import Float32Decoding

from tests.sdxl_model_support import IMAGE_SIZE, tiny_sdxl_pipeline


@pytest.fixture(scope="module")
def half_pipeline(tmp_path_factory: pytest.TempPathFactory) -> StableDiffusionXLPipeline:
    """As a job leaves it: UNet and text encoders in reduced precision, the VAE in float32."""
    pipeline = StableDiffusionXLPipeline.from_pretrained(
        tiny_sdxl_pipeline(tmp_path_factory.mktemp("sdxl"))
    )
    pipeline.set_progress_bar_config(disable=True)
    for module in (pipeline.unet, pipeline.text_encoder, pipeline.text_encoder_2):
        module.to(torch.bfloat16)
    return pipeline


def reduced_precision() -> Any:
    return torch.autocast("cpu", dtype=torch.bfloat16)


def request() -> dict[str, Any]:
    return {
        "prompt": "a photo of sks bag",
        "height": IMAGE_SIZE,
        "width": IMAGE_SIZE,
        "num_inference_steps": 2,
        "generator": torch.Generator("cpu").manual_seed(0),
    }


def decoder_dtypes(pipeline: StableDiffusionXLPipeline) -> tuple[list[torch.dtype], Any]:
    seen: list[torch.dtype] = []
    handle = pipeline.vae.decoder.register_forward_hook(
        lambda module, inputs, output: seen.append(output.dtype)
    )
    return seen, handle


def test_the_stock_call_cannot_decode_half_latents_with_a_float32_vae(
    half_pipeline: StableDiffusionXLPipeline,
) -> None:
    # Why the wrapper exists: outside autocast the VAE refuses the latents, inside it the VAE
    # would decode in reduced precision.
    with pytest.raises(RuntimeError, match="should be the same"):
        half_pipeline(**request())
    seen, handle = decoder_dtypes(half_pipeline)
    with reduced_precision():
        half_pipeline(**request())
    handle.remove()
    assert seen == [torch.bfloat16]


def test_the_vae_decodes_in_float32_outside_autocast(
    half_pipeline: StableDiffusionXLPipeline,
) -> None:
    seen, handle = decoder_dtypes(half_pipeline)
    images = Float32Decoding(half_pipeline, reduced_precision)(**request()).images
    handle.remove()
    assert seen == [torch.float32]
    assert half_pipeline.vae.dtype == torch.float32
    assert len(images) == 1
    assert images[0].size == (IMAGE_SIZE, IMAGE_SIZE)
    assert np.asarray(images[0]).std() > 0


def test_only_pil_images_are_drawn(half_pipeline: StableDiffusionXLPipeline) -> None:
    with pytest.raises(ValueError, match="only PIL images"):
        Float32Decoding(half_pipeline)(output_type="latent", **request())


def test_it_draws_what_the_float32_pipeline_draws(tmp_path: Path) -> None:
    # In full precision the wrapper and the stock pipeline agree.
    pipeline = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_pipeline(tmp_path))
    pipeline.set_progress_bar_config(disable=True)
    stock = np.asarray(pipeline(**request()).images[0], dtype=np.int16)
    wrapped = np.asarray(Float32Decoding(pipeline)(**request()).images[0], dtype=np.int16)
    assert np.abs(stock - wrapped).max() <= 1
