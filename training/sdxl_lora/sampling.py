"""Drawing with the SDXL pipeline during a training job (class images, the sample grid): the
UNet under the training's mixed precision, the VAE decoding in float32.

In a job the frozen UNet and text encoders are fp16 while the VAE stays float32 (it encodes the
training images; SDXL's VAE overflows in fp16). The stock pipeline call would hand the fp16
latents to the float32 VAE, which fails outside autocast and decodes in fp16 inside it; so the
pipeline stops at the latents and the VAE decodes them here, in float32, outside autocast.
"""

# diffusers leaves most of its API unannotated.
# mypy: disallow-untyped-calls=False

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

Autocast = Callable[[], contextlib.AbstractContextManager[Any]]


@dataclass(frozen=True)
class Drawn:
    images: list[Image.Image]


class Float32Decoding:
    """Called like the pipeline (`pipeline(prompt=..., ...).images`, PIL images), which is how
    dreambooth/class_images.py calls the pipeline it is given."""

    def __init__(self, pipeline: Any, autocast: Autocast = contextlib.nullcontext) -> None:
        self.pipeline = pipeline
        self.autocast = autocast

    def set_progress_bar_config(self, **kwargs: Any) -> None:
        self.pipeline.set_progress_bar_config(**kwargs)

    def __call__(self, *, output_type: str = "pil", **kwargs: Any) -> Drawn:
        if output_type != "pil":
            raise ValueError(f"only PIL images are drawn here, not {output_type!r}")
        vae = self.pipeline.vae
        with torch.no_grad():
            with self.autocast():
                latents = self.pipeline(output_type="latent", **kwargs).images
            latents = latents.to(vae.device, torch.float32)
            config = vae.config
            mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
            if mean is not None and std is not None:
                shape = (1, -1, 1, 1)
                mean_tensor = torch.tensor(mean).view(shape).to(latents)
                std_tensor = torch.tensor(std).view(shape).to(latents)
                latents = latents * std_tensor / config.scaling_factor + mean_tensor
            else:
                latents = latents / config.scaling_factor
            pixels = vae.decode(latents, return_dict=False)[0]
        images: list[Image.Image] = self.pipeline.image_processor.postprocess(
            pixels, output_type="pil"
        )
        return Drawn(images=images)
