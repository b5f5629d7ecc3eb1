"""Serving handler of the SDXL text-to-image endpoint with many LoRA adapters (SageMaker Hugging
Face inference toolkit contract: model_fn, input_fn, predict_fn, output_fn).

Shipped as `code/inference.py` with `code/sd_serving.py` and `code/lora_serving/` (see
`lora_serving.package`); the archive's root holds the SDXL base pipeline. It imports only the
standard library, torch, diffusers, safetensors, Pillow and boto3 (for an S3 adapter store): no
transformers API of its own, so it runs alike on the transformers 4.x and 5.x inference images.

Contract:
- `{"prompt", "adapter"?, "adapter_scale"?, "negative_prompt"?, "width"?, "height"?,
  "num_images_per_prompt"?, "num_inference_steps"?, "guidance_scale"?, "seed"?}`
  → `{"generated_images": [<base64 JPEG>, ...], "adapter": <name or null>}`;
  a plain-text body is the prompt, from the base model, every field at its default.
- `adapter` names one adapter under the endpoint's store; without it the base model answers.
  An unknown adapter, a malformed name, or an adapter that does not fit this base model is a
  400 naming the adapter (the API answers 4xx). `adapter_scale` (0 to 2, default 1) weighs it.
- Sizes are multiples of 8 from 64 to 1024 (SDXL's native side, the default); width x height x
  images at most four 1024 px images. Steps, guidance, seeds and prompts follow the Stable
  Diffusion handlers (`sd_serving`): image i of a request is the image of seed + i.

Endpoint settings (environment):
- `LORA_ADAPTERS_S3_URI` (s3://bucket/prefix/): the adapter store; without it the folder
  `LORA_ADAPTERS_DIR`, by default `adapters/` inside the model archive.
- `LORA_CACHE_MAX_MB` (default 2048) and `LORA_CACHE_MAX_ADAPTERS` (default 8): how many
  adapter parameters stay loaded on the GPU, least recently used unloaded first.
- `LORA_DOWNLOAD_DIR` (default the system temp folder): where S3 adapters are staged to load.
- `SD_DEFAULT_INFERENCE_STEPS` (default 30): steps for requests that name none.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import StableDiffusionXLPipeline
from PIL import Image

from lora_serving.adapter_cache import AdapterCache
from lora_serving.adapter_store import (
    AdapterStore,
    FolderAdapterStore,
    S3AdapterStore,
    checked_name,
    parse_s3_uri,
)
from sd_serving import MAX_SEED as MAX_SEED
from sd_serving import (
    check_batch_pixels,
    check_fields,
    encode_jpeg,
    generators,
    image_side,
    integer,
    load_pipeline,
    number,
    optional_prompt_text,
    prompt_request,
    prompt_text,
    sampling_fields,
    seed_value,
)
from sd_serving import output_fn as output_fn

MIN_SIDE = 64
MAX_SIDE = 1024
SIDE_MULTIPLE = 8
MAX_BATCH_PIXELS = 4 * 1024 * 1024
MAX_IMAGES_PER_PROMPT = 4
MAX_ADAPTER_SCALE = 2.0
DEFAULT_GUIDANCE_SCALE = 5.0
FIELDS = (
    "prompt",
    "adapter",
    "adapter_scale",
    "negative_prompt",
    "width",
    "height",
    "num_images_per_prompt",
    "num_inference_steps",
    "guidance_scale",
    "seed",
)


def _setting(name: str, default: int, low: int, high: int) -> int:
    raw = os.environ.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}; got {raw!r}")
    return value


@dataclass(frozen=True)
class LoadedModel:
    # A StableDiffusionXLPipeline (components are attributes set at run time).
    pipeline: Any
    device: torch.device
    adapters: AdapterCache

    @property
    def native_size(self) -> int:
        return int(self.pipeline.unet.config.sample_size) * int(self.pipeline.vae_scale_factor)


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    adapter: str | None
    adapter_scale: float
    negative_prompt: str | None
    width: int
    height: int
    num_images_per_prompt: int
    num_inference_steps: int
    guidance_scale: float
    seed: int


def adapter_store(model_dir: str) -> AdapterStore:
    """The store the environment names (see the module docstring)."""
    uri = os.environ.get("LORA_ADAPTERS_S3_URI", "").strip()
    if uri:
        import boto3  # the container ships it (sagemaker-inference depends on it)

        bucket, prefix = parse_s3_uri(uri)
        return S3AdapterStore(
            bucket, prefix, boto3.client("s3"), download_dir=os.environ.get("LORA_DOWNLOAD_DIR")
        )
    return FolderAdapterStore(os.environ.get("LORA_ADAPTERS_DIR") or Path(model_dir) / "adapters")


def model_fn(model_dir: str, context: Any = None) -> LoadedModel:
    """The SDXL base pipeline at the archive root (local files only) and an empty adapter cache."""
    pipeline, device = load_pipeline(
        StableDiffusionXLPipeline,
        model_dir,
        in_channels=4,
        wrong_unet=": this endpoint serves SDXL text-to-image models (4 channels)",
    )
    cache = AdapterCache(
        pipeline,
        adapter_store(model_dir),
        max_bytes=_setting("LORA_CACHE_MAX_MB", 2048, 1, 1024 * 1024) * 1024 * 1024,
        # Each loaded adapter makes the next first use and every switch slower (peft walks every
        # module, and each adapter adds some): docs/lora-serving.md has the figures.
        max_adapters=_setting("LORA_CACHE_MAX_ADAPTERS", 8, 1, 1000),
    )
    return LoadedModel(pipeline=pipeline, device=device, adapters=cache)


def input_fn(input_data: str | bytes, content_type: str, context: Any = None) -> dict[str, Any]:
    """The request as a JSON object; a plain-text body is the prompt."""
    return prompt_request(input_data, content_type)


def side(value: object, name: str, default: int) -> int:
    return image_side(value, name, default, MIN_SIDE, MAX_SIDE, SIDE_MULTIPLE)


def parse_request(
    document: Mapping[str, Any], tokenizer: Any, *, native_size: int
) -> GenerationRequest:
    check_fields(document, FIELDS, taker="this endpoint")
    adapter = document.get("adapter")
    if adapter is not None:
        adapter = checked_name(adapter)
    elif document.get("adapter_scale") is not None:
        raise ValueError('"adapter_scale" needs "adapter": the base model has no adapter to weigh')
    width = side(document.get("width"), "width", native_size)
    height = side(document.get("height"), "height", native_size)
    images = integer(
        document.get("num_images_per_prompt"), "num_images_per_prompt", 1, 1, MAX_IMAGES_PER_PROMPT
    )
    check_batch_pixels(width, height, images, MAX_BATCH_PIXELS)
    return GenerationRequest(
        prompt=prompt_text(
            document.get("prompt"), "prompt", tokenizer, required_hint=": describe the image"
        ),
        adapter=adapter,
        adapter_scale=number(
            document.get("adapter_scale"), "adapter_scale", 1.0, 0.0, MAX_ADAPTER_SCALE
        ),
        negative_prompt=optional_prompt_text(
            document.get("negative_prompt"), "negative_prompt", tokenizer
        ),
        width=width,
        height=height,
        num_images_per_prompt=images,
        **sampling_fields(
            document,
            default_steps=_setting("SD_DEFAULT_INFERENCE_STEPS", 30, 1, 100),
            default_guidance=DEFAULT_GUIDANCE_SCALE,
        ),
        seed=seed_value(document.get("seed")),
    )


def generate(model: LoadedModel, request: GenerationRequest) -> list[Image.Image]:
    # Adapters load and switch outside inference mode: tensors made inside it are inference
    # tensors, and peft's set_adapter later sets requires_grad on them, which torch refuses
    # outside inference mode.
    with (
        model.adapters.activated(request.adapter, request.adapter_scale),
        torch.inference_mode(),
    ):
        output = model.pipeline(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            width=request.width,
            height=request.height,
            num_images_per_prompt=request.num_images_per_prompt,
            num_inference_steps=request.num_inference_steps,
            guidance_scale=request.guidance_scale,
            generator=generators(request.seed, request.num_images_per_prompt),
            output_type="pil",
        )
    return list(output.images)


def predict_fn(data: Mapping[str, Any], model: LoadedModel, context: Any = None) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise ValueError('the request must be a JSON object with at least "prompt"')
    request = parse_request(data, model.pipeline.tokenizer, native_size=model.native_size)
    images = generate(model, request)
    return {
        "generated_images": [encode_jpeg(image) for image in images],
        "adapter": request.adapter,
    }
