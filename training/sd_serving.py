"""What the two Stable Diffusion handlers share: precision, attention, field checks, seeds, answers.

Shipped as `code/sd_serving.py` beside `code/inference.py` in every Stable Diffusion archive
(`dreambooth/export.py` copies both); the inference toolkit puts `code/` on the import path, so the
handler imports it there as it does here from the training code's root. Like the handlers it
imports only the standard library, torch and diffusers.

Bad fields raise `ValueError` naming the field; the toolkit returns it to the caller as a 400.
"""

from __future__ import annotations

import base64
import io
import json
import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from diffusers.models.attention_processor import AttnProcessor2_0
from diffusers.utils import logging as diffusers_logging

if TYPE_CHECKING:
    from PIL import Image

MAX_SEED = 2**32 - 1
MAX_PROMPT_CHARS = 2000
JPEG_QUALITY = 90
JSON_MEDIA_TYPE = "application/json"
# Both endpoints' bounds on the denoising loop (their defaults differ).
MAX_INFERENCE_STEPS = 100
MAX_GUIDANCE_SCALE = 20.0
TEXT_MEDIA_TYPES = ("text/plain", "application/x-text")


def serving_dtype(device: torch.device) -> torch.dtype:
    # Stable Diffusion 2's UNet and VAE are fine in float16, which halves memory and is what the
    # T4 (no bfloat16) runs fast; CPUs have no fast float16 kernels.
    return torch.float16 if device.type == "cuda" else torch.float32


def use_sdpa_attention(pipeline: Any) -> None:
    """PyTorch's fused scaled-dot-product attention (flash / memory-efficient kernels on GPU).

    Set explicitly rather than relying on each diffusers release's default; `AttnProcessor2_0`
    exists in every release from 0.20 to 0.35.
    """
    for name in ("unet", "vae"):
        getattr(pipeline, name).set_attn_processor(AttnProcessor2_0())


def load_pipeline(
    pipeline_class: Any, model_dir: str, *, in_channels: int, wrong_unet: str
) -> tuple[Any, torch.device]:
    """The pipeline saved at the archive root, on the GPU in float16 when there is one: local
    files only, nothing is downloaded. A UNet without `in_channels` inputs is the other endpoint's
    model: refused with `wrong_unet` after the count it has."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    diffusers_logging.disable_progress_bar()
    pipeline = pipeline_class.from_pretrained(
        model_dir, torch_dtype=serving_dtype(device), local_files_only=True
    )
    found = pipeline.unet.config.in_channels
    if found != in_channels:
        raise ValueError(f"the UNet in {model_dir} takes {found} input channels{wrong_unet}")
    use_sdpa_attention(pipeline)
    pipeline.set_progress_bar_config(disable=True)
    pipeline.to(device)
    return pipeline, device


def prompt_text(value: object, name: str, tokenizer: Any, *, required_hint: str = "") -> str:
    """A prompt that the CLIP text encoder reads whole."""
    if value is None:
        raise ValueError(f'"{name}" is required{required_hint}')
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f'"{name}" must be a non-empty string')
    if len(value) > MAX_PROMPT_CHARS:
        raise ValueError(f'"{name}" has {len(value)} characters; at most {MAX_PROMPT_CHARS}')
    text = value.strip()
    tokens = len(tokenizer(text, truncation=False, verbose=False)["input_ids"])
    limit = int(tokenizer.model_max_length)
    if tokens > limit:
        # The count includes the start and end tokens every prompt gets.
        raise ValueError(
            f'"{name}" is {tokens - 2} tokens long; the text encoder reads at most {limit - 2} '
            "(the rest would be dropped): shorten it"
        )
    return text


def optional_prompt_text(value: object, name: str, tokenizer: Any) -> str | None:
    """None when absent, null or empty: no negative prompt."""
    if value is None or value == "":
        return None
    return prompt_text(value, name, tokenizer)


def json_object(body: str | bytes, *, holding: str) -> dict[str, Any]:
    """A JSON request body, which must be an object (`holding` says with what)."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"the request body is not valid JSON: {error}") from error
    if not isinstance(document, dict):
        raise ValueError(f"the request body must be a JSON object with {holding}")
    return document


def prompt_request(input_data: str | bytes, content_type: str) -> dict[str, Any]:
    """A text-to-image request as a JSON object; a plain-text body is the prompt."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type in TEXT_MEDIA_TYPES:
        try:
            text = input_data.decode("utf-8") if isinstance(input_data, bytes) else input_data
        except UnicodeDecodeError as error:
            raise ValueError(f"the text body is not UTF-8: {error}") from error
        return {"prompt": text}
    if media_type != JSON_MEDIA_TYPE:
        raise ValueError(
            f"unsupported content type {content_type!r}: send {JSON_MEDIA_TYPE} or text/plain "
            "(the prompt)"
        )
    return json_object(input_data, holding='at least "prompt"')


def check_fields(document: Mapping[str, Any], fields: Sequence[str], *, taker: str) -> None:
    """Refuse a request naming a field outside `fields` (a typo would be silently ignored)."""
    unknown = sorted(set(document) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown field(s) {', '.join(unknown)}; {taker} takes {', '.join(fields)}"
        )


def image_side(value: object, name: str, default: int, low: int, high: int, multiple: int) -> int:
    pixels = integer(value, name, default, low, high)
    if pixels % multiple:
        raise ValueError(f'"{name}" must be a multiple of {multiple}; got {pixels}')
    return pixels


def check_batch_pixels(width: int, height: int, images: int, limit: int) -> None:
    if width * height * images > limit:
        raise ValueError(
            f"{images} images of {width}x{height} exceed {limit} pixels per request; "
            'lower "num_images_per_prompt", "width" or "height"'
        )


def encode_jpeg(image: Image.Image) -> str:
    """An answer's image: base64 of the JPEG."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=JPEG_QUALITY)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def integer(value: object, name: str, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f'"{name}" must be an integer from {low} to {high}')
    if not low <= value <= high:
        raise ValueError(f'"{name}" must be from {low} to {high}; got {value}')
    return value


def number(value: object, name: str, default: float, low: float, high: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ValueError(f'"{name}" must be a number from {low:g} to {high:g}')
    if not low <= value <= high:
        raise ValueError(f'"{name}" must be from {low:g} to {high:g}; got {value}')
    return float(value)


def sampling_fields(
    document: Mapping[str, Any], *, default_steps: int, default_guidance: float
) -> dict[str, Any]:
    """A request's `num_inference_steps` and `guidance_scale`, each checked against its bounds,
    the handler's defaults where absent."""
    steps = document.get("num_inference_steps")
    guidance = document.get("guidance_scale")
    return {
        "num_inference_steps": integer(
            steps, "num_inference_steps", default_steps, 1, MAX_INFERENCE_STEPS
        ),
        "guidance_scale": number(
            guidance, "guidance_scale", default_guidance, 0.0, MAX_GUIDANCE_SCALE
        ),
    }


def seed_value(value: object) -> int:
    if value is None:
        return random.SystemRandom().randint(0, MAX_SEED)
    return integer(value, "seed", 0, 0, MAX_SEED)


def generators(seed: int, count: int) -> list[torch.Generator]:
    """One CPU generator per image, seeded seed, seed + 1, ...: image i of a batch is the image a
    request for one image with seed + i makes."""
    return [torch.Generator(device="cpu").manual_seed(seed + index) for index in range(count)]


def output_fn(prediction: Mapping[str, Any], accept: str, context: Any = None) -> str:
    media_type = (accept or JSON_MEDIA_TYPE).split(";")[0].strip().lower()
    if media_type not in (JSON_MEDIA_TYPE, "*/*"):
        raise ValueError(
            f"unsupported accept type {accept!r}: this model answers {JSON_MEDIA_TYPE}"
        )
    return json.dumps(prediction)
