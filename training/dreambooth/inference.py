"""Serving handler of a DreamBooth-tuned Stable Diffusion (SageMaker HF inference toolkit contract).

Shipped as `code/inference.py` inside the model archive that `train.py` writes, with
`code/sd_serving.py` (what it shares with the styling handler) beside it; nothing else from this
repository: the standard library, torch, diffusers and Pillow. The Hugging
Face PyTorch inference container we target (`2.6.0-transformers4.51.3-gpu-py312-cu124`) ships
diffusers 0.33.1; the tests also run it under the training group's 0.35.2.

Contract (the `dreambooth` endpoint of `infra/models.py`, called by the Api stack's
POST /generations):
- `{"prompt": "a photo of a riobugger cat on a beach", "negative_prompt"?, "width"?, "height"?,
  "num_images_per_prompt"?, "num_inference_steps"?, "guidance_scale"?, "seed"?}`
  → `{"generated_images": [<base64 JPEG>, ...]}`;
- or a plain-text body (`text/plain`, `application/x-text`): the prompt, every other field at
  its default.

Choices a caller can rely on:
- `num_inference_steps` defaults to 50, or to the endpoint's `SD_DEFAULT_INFERENCE_STEPS`.
- width and height default to the model's own resolution (512 for SD 2.1 base); requested sizes
  are multiples of 8 from 64 to 1024, and width x height x images at most `MAX_BATCH_PIXELS` (four
  768 px images), which a 16 GB T4 holds in float16.
- Prompts longer than the CLIP text encoder's 77 tokens are refused, not cut: diffusers would drop
  the end of the prompt silently, and the end is often the style the caller asked for.
- Seeds: image i of a request is drawn from its own generator seeded `seed + i`, so image i equals
  the single image of the same request with `seed + i`, and a fixed seed gives the same images on
  every call. Generators live on the CPU, so a seed gives the same initial noise on any hardware
  (the images still differ slightly between a GPU in float16 and a CPU in float32). Without a
  seed each request draws a random one.

Bad payloads raise `ValueError` naming the field; the toolkit returns it to the caller as a 400.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from diffusers import StableDiffusionPipeline
from PIL import Image

# What both Stable Diffusion handlers share (code/sd_serving.py in the archive). MAX_SEED and
# output_fn are re-exported: the toolkit looks output_fn up on this module, and callers read the
# seed range from the handler they call.
from sd_serving import MAX_GUIDANCE_SCALE as MAX_GUIDANCE_SCALE
from sd_serving import MAX_INFERENCE_STEPS as MAX_INFERENCE_STEPS
from sd_serving import MAX_SEED as MAX_SEED
from sd_serving import (
    check_batch_pixels,
    check_fields,
    encode_jpeg,
    generators,
    image_side,
    integer,
    load_pipeline,
    optional_prompt_text,
    prompt_request,
    sampling_fields,
    seed_value,
)
from sd_serving import output_fn as output_fn
from sd_serving import prompt_text as _prompt_text

MIN_SIDE = 64
MAX_SIDE = 1024
SIDE_MULTIPLE = 8
MAX_BATCH_PIXELS = 4 * 768 * 768
MAX_IMAGES_PER_PROMPT = 4
# Steps for requests that name none (every plain-text request): an endpoint setting, so an operator
# can trade quality for latency and cost without touching callers.
DEFAULT_INFERENCE_STEPS = int(os.environ.get("SD_DEFAULT_INFERENCE_STEPS", "50"))
if not 1 <= DEFAULT_INFERENCE_STEPS <= MAX_INFERENCE_STEPS:
    raise ValueError(f"SD_DEFAULT_INFERENCE_STEPS must be from 1 to {MAX_INFERENCE_STEPS}")
DEFAULT_GUIDANCE_SCALE = 7.5
# A cheap bound before tokenizing: no 77-token prompt is this long.
FIELDS = (
    "prompt",
    "negative_prompt",
    "width",
    "height",
    "num_images_per_prompt",
    "num_inference_steps",
    "guidance_scale",
    "seed",
)


@dataclass(frozen=True)
class LoadedPipeline:
    # A StableDiffusionPipeline. Pipelines register their components (unet, vae, tokenizer, ...)
    # as attributes at run time, so the type checker sees none of them.
    pipeline: Any
    device: torch.device

    @property
    def native_size(self) -> int:
        """The side the UNet was trained at (sample_size latents times the VAE's scale)."""
        return int(self.pipeline.unet.config.sample_size) * int(self.pipeline.vae_scale_factor)


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    negative_prompt: str | None
    width: int
    height: int
    num_images_per_prompt: int
    num_inference_steps: int
    guidance_scale: float
    seed: int


def model_fn(model_dir: str, context: Any = None) -> LoadedPipeline:
    """Load the pipeline saved at the archive root: local files only, nothing is downloaded."""
    pipeline, device = load_pipeline(
        StableDiffusionPipeline,
        model_dir,
        in_channels=4,
        wrong_unet=": an inpainting model belongs on the styling endpoint, this one serves "
        "text-to-image models (4 channels)",
    )
    return LoadedPipeline(pipeline=pipeline, device=device)


def input_fn(input_data: str | bytes, content_type: str, context: Any = None) -> dict[str, Any]:
    """The request as a JSON object; a plain-text body is the prompt."""
    return prompt_request(input_data, content_type)


def parse_request(
    document: Mapping[str, Any], tokenizer: Any, *, native_size: int
) -> GenerationRequest:
    check_fields(document, FIELDS, taker="this endpoint")
    width = side(document.get("width"), "width", native_size)
    height = side(document.get("height"), "height", native_size)
    images = integer(
        document.get("num_images_per_prompt"), "num_images_per_prompt", 1, 1, MAX_IMAGES_PER_PROMPT
    )
    check_batch_pixels(width, height, images, MAX_BATCH_PIXELS)
    return GenerationRequest(
        prompt=_prompt_text(
            document.get("prompt"),
            "prompt",
            tokenizer,
            required_hint=": describe the image to generate",
        ),
        negative_prompt=optional_prompt_text(
            document.get("negative_prompt"), "negative_prompt", tokenizer
        ),
        width=width,
        height=height,
        num_images_per_prompt=images,
        **sampling_fields(
            document,
            default_steps=DEFAULT_INFERENCE_STEPS,
            default_guidance=DEFAULT_GUIDANCE_SCALE,
        ),
        seed=seed_value(document.get("seed")),
    )


def side(value: object, name: str, default: int) -> int:
    if value is None:
        return default
    return image_side(value, name, default, MIN_SIDE, MAX_SIDE, SIDE_MULTIPLE)


@torch.inference_mode()
def generate(loaded: LoadedPipeline, request: GenerationRequest) -> list[Image.Image]:
    # The request's fields are the pipeline's keyword arguments, but for the seed.
    arguments = asdict(request)
    seed = arguments.pop("seed")
    generator = generators(seed, request.num_images_per_prompt)
    output = loaded.pipeline(**arguments, generator=generator, output_type="pil")
    images: list[Image.Image] = list(output.images)
    return images


def predict_fn(
    data: Mapping[str, Any], model: LoadedPipeline, context: Any = None
) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise ValueError('the request must be a JSON object with at least "prompt"')
    request = parse_request(data, model.pipeline.tokenizer, native_size=model.native_size)
    return {"generated_images": [encode_jpeg(image) for image in generate(model, request)]}
