"""Class images for prior preservation: those the dataset brings, topped up with images the base
model generates from `class_prompt` before training starts.

Generated images go to a folder beside the checkpoints (the dataset channel is read-only on
SageMaker), which SageMaker syncs to S3 with them: a spot job that restarts finds the images
there and generates only what is still missing. Image `i` is always drawn with the same seed,
and each file is written under a temporary name first, so a half-written PNG never counts.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

# From their modules rather than `diffusers`: its lazy top level shows type checkers stand-ins.
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_inpaint import (
    StableDiffusionInpaintPipeline,
)
from PIL import Image

LOG = logging.getLogger("dreambooth.class_images")

GENERATED_PREFIX = "class-"


def generated_path(directory: Path, index: int) -> Path:
    return directory / f"{GENERATED_PREFIX}{index:05d}.png"


def generation_seed(seed: int, index: int) -> int:
    """Image `index`'s seed: independent of the batch it lands in and of earlier attempts."""
    digest = hashlib.sha256(f"class-image:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def class_image_list(
    dataset_images: Sequence[Path], generated_dir: Path, wanted: int
) -> tuple[list[Path], list[int]]:
    """The first `wanted` class images (the dataset's first, then generated ones) and the
    indices of generated images still missing to reach `wanted`."""
    chosen = list(dataset_images[:wanted])
    needed = wanted - len(chosen)
    generated = [generated_path(generated_dir, index) for index in range(needed)]
    missing = [index for index, path in enumerate(generated) if not path.is_file()]
    return chosen + generated, missing


def generate_class_images(
    pipeline: StableDiffusionPipeline | StableDiffusionInpaintPipeline,
    *,
    prompt: str,
    indices: Sequence[int],
    directory: Path,
    resolution: int,
    inference_steps: int,
    batch_size: int,
    seed: int,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> list[Path]:
    """Generate the class images `indices` into `directory`; return their paths. `autocast`
    makes the context each batch runs in (mixed precision on a GPU)."""
    directory.mkdir(parents=True, exist_ok=True)
    pipeline.set_progress_bar_config(disable=True)
    inpainting = isinstance(pipeline, StableDiffusionInpaintPipeline)
    written: list[Path] = []
    for start in range(0, len(indices), batch_size):
        chunk = list(indices[start : start + batch_size])
        kwargs: dict[str, Any] = {}
        if inpainting:
            # A mask over the whole picture: the image underneath is never seen, so the model
            # draws the class from the prompt alone.
            kwargs["image"] = [Image.new("RGB", (resolution, resolution))] * len(chunk)
            kwargs["mask_image"] = [Image.new("L", (resolution, resolution), 255)] * len(chunk)
        with autocast():
            images = pipeline(
                prompt=[prompt] * len(chunk),
                height=resolution,
                width=resolution,
                num_inference_steps=inference_steps,
                generator=[
                    torch.Generator("cpu").manual_seed(generation_seed(seed, i)) for i in chunk
                ],
                output_type="pil",
                **kwargs,
            ).images
        for index, image in zip(chunk, images, strict=True):
            final = generated_path(directory, index)
            partial = final.with_name(f".{final.name}.partial")
            image.save(partial, format="PNG")
            os.replace(partial, final)
            written.append(final)
        LOG.info("class images: %d of %d generated", start + len(chunk), len(indices))
    return written
