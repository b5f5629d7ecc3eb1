"""Serving handler of the virtual styling endpoint: CLIPSeg mask + Stable Diffusion inpainting.

Shipped as `code/inference.py` inside the inpainting model archive (the inpainting pipeline at the
root, CLIPSeg under `clipseg/`), with `code/sd_serving.py` (what it shares with the text-to-image
handler) beside it; nothing else from this repository: the standard library, torch, diffusers,
transformers and Pillow. The Hugging Face PyTorch inference container
we target (`2.6.0-transformers4.51.3-gpu-py312-cu124`) ships diffusers 0.33.1; the tests also run
it under the training group's 0.35.2.

Contract (the `styling` endpoint of `infra/models.py`; the Api stack's POST /styling calls it):
- `{"image": <base64>, "mask_prompt": "the skirt", "prompt": "a long floral summer skirt",
  "negative_prompt"?, "num_images_per_prompt"?, "guidance_scale"?, "num_inference_steps"?,
  "image_length"? (512 | 768), "mask_mode"? ("threshold" | "soft"), "mask_threshold"?, "seed"?}`
  → `{"generated_images": [<base64 JPEG>, ...], "mask": <base64 PNG>}`: CLIPSeg finds the region
  named by `mask_prompt`;
- the reference styling handler's form with the caller's own mask:
  `{"inputs": prompt, "input_img": <base64>,
  "mask_img": <base64>, ...the same optional fields but mask_mode and mask_threshold}` →
  `{"generated_images": [...]}`.

Defaults follow the reference styling workflow: 2 images per prompt, guidance scale 6.5, 25 steps,
512 px, and the Euler discrete scheduler (set on the pipeline at load, from its own scheduler
config, whatever scheduler the archive was saved with).

How a request is served:
1. Mask, `mask_mode` "threshold" (the default): CLIPSeg's probability map (sigmoid of its
   logits, at its own 352 px resolution) is dilated by about 1% of its side, resized to the
   image's size and thresholded at `mask_threshold` (default 0.4, a little under one half so the
   thin edges of a garment count). The dilation makes the repainted region overlap the garment's
   outline, so no rim of the old garment survives around the new one. An empty mask is refused
   (400) naming the prompt and the threshold. The returned mask is a PNG of the image's size,
   L mode, 0 or 255.
   `mask_mode` "soft" (the reference workflow's mask): the standard normal CDF of CLIPSeg's
   logits, Φ(logit), resized to the image's size, L mode 0-255, no threshold and no dilation
   (`mask_threshold` is refused with it). The pipeline repaints where the mask is at least one
   half (logit > 0) and the results are blended over the input through the soft mask, so the
   garment's edge fades instead of being cut. A mask with no pixel at one half or more is refused.
   A caller's `mask_img` is used as sent: white (>= 128) is repainted. It may have another size
   than the image if its proportions are the same (within 1%); it is then resized to the image.
2. Inpainting at `image_length` x `image_length` (the image is stretched to the square and back,
   as the reference workflow does). Each result is resized to the input image's size and laid
   over the input through the mask: pixels outside the mask are exactly the input's (before JPEG
   compression).
3. Seeds: image i of a request is drawn from its own CPU generator seeded `seed + i`, and the
   masked image is encoded with the VAE posterior's mean (not a sample), so the initial noise is
   the only randomness: image i equals the single image of the same request with `seed + i`, and
   a fixed seed gives the same images on every call. Without a seed each request draws one.

Prompts longer than the CLIP text encoder's 77 tokens are refused, not silently cut. Bad payloads
raise `ValueError` naming the field; the toolkit returns it to the caller as a 400.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from diffusers import EulerDiscreteScheduler, StableDiffusionInpaintPipeline
from PIL import Image, ImageOps, UnidentifiedImageError
from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

# What both Stable Diffusion handlers share (code/sd_serving.py in the archive). MAX_SEED and
# output_fn are re-exported: the toolkit looks output_fn up on this module, and callers read the
# seed range from the handler they call.
from sd_serving import (
    JPEG_QUALITY,
    check_fields,
    generators,
    integer,
    json_object,
    load_pipeline,
    number,
    optional_prompt_text,
    prompt_text,
    sampling_fields,
    seed_value,
)
from sd_serving import JSON_MEDIA_TYPE as _JSON
from sd_serving import MAX_GUIDANCE_SCALE as MAX_GUIDANCE_SCALE
from sd_serving import MAX_INFERENCE_STEPS as MAX_INFERENCE_STEPS
from sd_serving import MAX_SEED as MAX_SEED
from sd_serving import output_fn as output_fn

IMAGE_LENGTHS = (512, 768)
DEFAULT_IMAGE_LENGTH = 512
MAX_IMAGES_PER_PROMPT = 4
DEFAULT_INFERENCE_STEPS = 25
DEFAULT_IMAGES_PER_PROMPT = 2
DEFAULT_GUIDANCE_SCALE = 6.5
THRESHOLD_MASK, SOFT_MASK = "threshold", "soft"
MASK_MODES = (THRESHOLD_MASK, SOFT_MASK)
DEFAULT_MASK_MODE = THRESHOLD_MASK
DEFAULT_MASK_THRESHOLD = 0.4
# Dilation radius as a fraction of the side of CLIPSeg's probability map (4 px of 352).
MASK_DILATION = 0.01
# Real-time endpoints take payloads up to 25 MB. Larger photos are downscaled by the caller.
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_IMAGE_PIXELS = 4096 * 4096
MIN_IMAGE_SIDE = 64
ASPECT_TOLERANCE = 0.01
CLIPSEG_DIR = "clipseg"
_IMAGE_FORMATS = {"JPEG", "PNG", "WEBP"}
_SHARED_FIELDS = (
    "negative_prompt",
    "num_images_per_prompt",
    "guidance_scale",
    "num_inference_steps",
    "image_length",
    "seed",
)
MASK_PROMPT_FIELDS = (
    "image",
    "mask_prompt",
    "prompt",
    *_SHARED_FIELDS,
    "mask_mode",
    "mask_threshold",
)
CALLER_MASK_FIELDS = ("inputs", "input_img", "mask_img", *_SHARED_FIELDS)


@dataclass(frozen=True)
class LoadedStyling:
    # A StableDiffusionInpaintPipeline. Pipelines register their components (unet, vae,
    # tokenizer, ...) as attributes at run time, so the type checker sees none of them.
    pipeline: Any
    segmenter: CLIPSegForImageSegmentation
    # A CLIPSegProcessor; its tokenizer and image processor are set at run time as well.
    processor: Any
    device: torch.device


@dataclass(frozen=True)
class StylingRequest:
    image: Image.Image
    prompt: str
    negative_prompt: str | None
    # The CLIPSeg form: the region's description, how its mask is made, and the threshold.
    mask_prompt: str | None
    mask_mode: str
    mask_threshold: float
    # The caller-mask form: the mask, already binary (0/255) and of the image's size.
    mask: Image.Image | None
    num_images_per_prompt: int
    num_inference_steps: int
    guidance_scale: float
    image_length: int
    seed: int


@dataclass(frozen=True)
class StylingResult:
    images: list[Image.Image]
    mask: Image.Image


def model_fn(model_dir: str, context: Any = None) -> LoadedStyling:
    """Load the inpainting pipeline (archive root) and CLIPSeg (`clipseg/`): local files only."""
    pipeline, device = load_pipeline(
        StableDiffusionInpaintPipeline,
        model_dir,
        in_channels=9,
        wrong_unet="; the styling endpoint needs an inpainting model (9: latents, mask, masked "
        "image)",
    )
    clipseg_dir = os.path.join(model_dir, CLIPSEG_DIR)
    if not os.path.isdir(clipseg_dir):
        raise ValueError(f"{clipseg_dir} is missing: the styling archive holds CLIPSeg there")
    # CLIPSeg stays in float32: it is a small share of a request and its probabilities are
    # thresholded, where float16 rounding would move the mask's edge.
    segmenter = CLIPSegForImageSegmentation.from_pretrained(clipseg_dir, local_files_only=True)
    segmenter.to(device)
    segmenter.eval()
    processor = CLIPSegProcessor.from_pretrained(clipseg_dir, local_files_only=True)
    # The reference workflow samples with Euler; its config (betas, prediction type, timestep
    # spacing) is the archive's own scheduler's, so only the sampler changes.
    pipeline.scheduler = EulerDiscreteScheduler.from_config(pipeline.scheduler.config)
    return LoadedStyling(pipeline=pipeline, segmenter=segmenter, processor=processor, device=device)


def input_fn(input_data: str | bytes, content_type: str, context: Any = None) -> dict[str, Any]:
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != _JSON:
        raise ValueError(f"unsupported content type {content_type!r}: send {_JSON}")
    return json_object(input_data, holding='"image" and "mask_prompt"')


def parse_request(document: Mapping[str, Any], loaded: LoadedStyling) -> StylingRequest:
    caller_mask = any(key in document for key in ("inputs", "input_img", "mask_img"))
    if caller_mask and any(key in document for key in ("image", "mask_prompt", "prompt")):
        raise ValueError(
            'send either "image", "mask_prompt" and "prompt" (CLIPSeg finds the region) or '
            '"input_img", "mask_img" and "inputs" (your own mask), not a mix'
        )
    fields = CALLER_MASK_FIELDS if caller_mask else MASK_PROMPT_FIELDS
    check_fields(document, fields, taker="this form")
    tokenizer = loaded.pipeline.tokenizer
    if caller_mask:
        image = decode_image(document.get("input_img"), "input_img")
        mask: Image.Image | None = caller_mask_image(document.get("mask_img"), image)
        prompt = prompt_text(document.get("inputs"), "inputs", tokenizer)
        mask_prompt = None
        mask_mode = DEFAULT_MASK_MODE
        threshold = DEFAULT_MASK_THRESHOLD
    else:
        image = decode_image(document.get("image"), "image")
        mask = None
        prompt = prompt_text(document.get("prompt"), "prompt", tokenizer)
        mask_prompt = prompt_text(
            document.get("mask_prompt"), "mask_prompt", loaded.processor.tokenizer
        )
        mask_mode = parse_mask_mode(document.get("mask_mode"))
        if mask_mode == SOFT_MASK and document.get("mask_threshold") is not None:
            raise ValueError(
                '"mask_threshold" applies only to "mask_mode" "threshold"; the soft mask has none'
            )
        threshold = number(
            document.get("mask_threshold"), "mask_threshold", DEFAULT_MASK_THRESHOLD, 0.0, 1.0
        )
    image_length = document.get("image_length")
    if image_length is None:
        image_length = DEFAULT_IMAGE_LENGTH
    elif type(image_length) is not int or image_length not in IMAGE_LENGTHS:
        raise ValueError(f'"image_length" must be 512 or 768; got {image_length!r}')
    return StylingRequest(
        image=image,
        prompt=prompt,
        negative_prompt=optional_prompt_text(
            document.get("negative_prompt"), "negative_prompt", tokenizer
        ),
        mask_prompt=mask_prompt,
        mask_mode=mask_mode,
        mask_threshold=threshold,
        mask=mask,
        num_images_per_prompt=integer(
            document.get("num_images_per_prompt"),
            "num_images_per_prompt",
            DEFAULT_IMAGES_PER_PROMPT,
            1,
            MAX_IMAGES_PER_PROMPT,
        ),
        **sampling_fields(
            document,
            default_steps=DEFAULT_INFERENCE_STEPS,
            default_guidance=DEFAULT_GUIDANCE_SCALE,
        ),
        image_length=image_length,
        seed=seed_value(document.get("seed")),
    )


def parse_mask_mode(value: object) -> str:
    if value is None:
        return DEFAULT_MASK_MODE
    if not isinstance(value, str) or value not in MASK_MODES:
        raise ValueError(f'"mask_mode" must be "threshold" or "soft"; got {value!r}')
    return value


def decode_image(value: object, name: str, mode: str = "RGB") -> Image.Image:
    if not isinstance(value, str) or not value:
        raise ValueError(f'"{name}" must be a base64-encoded JPEG, PNG or WebP image')
    if len(value) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise ValueError(f'"{name}" is larger than {MAX_IMAGE_BYTES} bytes')
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError(f'"{name}" is not valid base64: {error}') from error
    try:
        with Image.open(io.BytesIO(raw)) as probe:
            image_format, size = probe.format, probe.size
            probe.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as error:
        raise ValueError(f'"{name}" is not a readable image: {error}') from error
    if image_format not in _IMAGE_FORMATS:
        raise ValueError(f'"{name}" is {image_format}; send JPEG, PNG or WebP')
    if size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise ValueError(
            f'"{name}" has {size[0]}x{size[1]} pixels; at most {MAX_IMAGE_PIXELS} (4096x4096)'
        )
    if min(size) < MIN_IMAGE_SIDE:
        raise ValueError(
            f'"{name}" is {size[0]}x{size[1]}; each side must be at least {MIN_IMAGE_SIDE} pixels'
        )
    try:
        # verify() leaves the file unusable: decode a fresh handle fully, here, so a truncated
        # image is a 400 now and not an error halfway through the model call. Phone photos
        # carry their rotation in EXIF: apply it, so the mask lines up with the picture shown.
        with Image.open(io.BytesIO(raw)) as opened:
            return ImageOps.exif_transpose(opened).convert(mode)
    except OSError as error:
        raise ValueError(f'"{name}" could not be decoded: {error}') from error


def caller_mask_image(value: object, image: Image.Image) -> Image.Image:
    """The caller's mask, binary (white = repaint) and of the image's size."""
    mask = decode_image(value, "mask_img", mode="L")
    if mask.size != image.size:
        mask_ratio, image_ratio = mask.width / mask.height, image.width / image.height
        if abs(mask_ratio / image_ratio - 1) > ASPECT_TOLERANCE:
            raise ValueError(
                f'"mask_img" is {mask.width}x{mask.height} but "input_img" is '
                f"{image.width}x{image.height}: send a mask of the image's size or proportions"
            )
        mask = mask.resize(image.size, Image.Resampling.BILINEAR)
    mask = mask.point(lambda value: 255 if value >= 128 else 0)
    if mask.getbbox() is None:
        raise ValueError('"mask_img" marks no pixel: white (>= 128) marks the region to repaint')
    return mask


@torch.inference_mode()
def mask_logits(loaded: LoadedStyling, image: Image.Image, text: str) -> torch.Tensor:
    """CLIPSeg's logit that each pixel of its (square) map shows `text`, float32 on CPU."""
    inputs = loaded.processor(text=[text], images=[image], return_tensors="pt")
    logits = loaded.segmenter(**inputs.to(loaded.device)).logits
    height, width = logits.shape[-2:]
    # Older transformers squeeze a batch of one down to (height, width): reshape either way.
    found: torch.Tensor = logits.reshape(-1, height, width)[0].float().cpu()
    return found


def mask_probabilities(loaded: LoadedStyling, image: Image.Image, text: str) -> torch.Tensor:
    """CLIPSeg's probability (sigmoid of the logit) that each pixel of its map shows `text`."""
    return torch.sigmoid(mask_logits(loaded, image, text))


def soft_mask(logits: torch.Tensor, size: tuple[int, int]) -> Image.Image:
    """The reference workflow's mask: Φ(logit), the standard normal CDF of CLIPSeg's logits,
    resized to `size` (width, height), as an L-mode image from 0 to 255."""
    weights = torch.special.ndtr(logits)[None, None]
    weights = F.interpolate(weights, size=(size[1], size[0]), mode="bilinear", align_corners=False)
    levels = (weights[0, 0] * 255).round().clamp(0, 255).to(torch.uint8)
    return Image.fromarray(levels.numpy())


def threshold_mask(
    probabilities: torch.Tensor, size: tuple[int, int], threshold: float
) -> Image.Image:
    """Dilate, resize to `size` (width, height) and threshold: an L-mode 0/255 mask.

    A grey dilation (max filter) of the probabilities then a threshold is the same as a
    threshold then a binary dilation, and it runs on CLIPSeg's small map, not the full image.
    """
    radius = max(1, round(MASK_DILATION * max(probabilities.shape)))
    grid = probabilities[None, None]
    grid = F.max_pool2d(grid, kernel_size=2 * radius + 1, stride=1, padding=radius)
    grid = F.interpolate(grid, size=(size[1], size[0]), mode="bilinear", align_corners=False)
    selected = (grid[0, 0] > threshold).to(torch.uint8) * 255
    return Image.fromarray(selected.numpy())


def mask_from_prompt(
    loaded: LoadedStyling,
    image: Image.Image,
    text: str,
    threshold: float,
    mode: str = DEFAULT_MASK_MODE,
) -> Image.Image:
    if mode == SOFT_MASK:
        mask = soft_mask(mask_logits(loaded, image, text), image.size)
        # The pipeline repaints where the mask is at least one half: none such, nothing to do.
        if mask.point(lambda level: 255 if level >= 128 else 0).getbbox() is None:
            raise ValueError(
                f'"mask_prompt" {text!r} matched nothing with "mask_mode" "soft" (no pixel '
                'reaches one half): name the region differently, or use "mask_mode" "threshold" '
                'with a low "mask_threshold"'
            )
        return mask
    mask = threshold_mask(mask_probabilities(loaded, image, text), image.size, threshold)
    if mask.getbbox() is None:
        raise ValueError(
            f'"mask_prompt" {text!r} matched nothing at "mask_threshold" {threshold:g}: lower '
            '"mask_threshold" or name the region differently'
        )
    return mask


@torch.inference_mode()
def masked_image_latents(
    pipeline: Any, image: Image.Image, mask: Image.Image, length: int
) -> torch.Tensor:
    """The masked image's VAE latents, from the posterior's mean.

    The pipeline would sample them with the first image's generator, so image 0 of a batch would
    take other latents than image i requested alone; the mean also is the better condition.
    """
    vae = pipeline.vae
    pixels = pipeline.image_processor.preprocess(image, height=length, width=length)
    binary = pipeline.mask_processor.preprocess(mask, height=length, width=length)
    masked = (pixels * (binary < 0.5)).to(device=vae.device, dtype=vae.dtype)
    latents: torch.Tensor = vae.encode(masked).latent_dist.mode() * vae.config.scaling_factor
    return latents


@torch.inference_mode()
def inpaint(loaded: LoadedStyling, request: StylingRequest, mask: Image.Image) -> list[Image.Image]:
    """Repaint the mask's region; results at the input's size, outside the mask the input's."""
    length = request.image_length
    pipeline = loaded.pipeline
    output = pipeline(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        image=request.image,
        mask_image=mask,
        masked_image_latents=masked_image_latents(pipeline, request.image, mask, length),
        height=length,
        width=length,
        strength=1.0,
        num_images_per_prompt=request.num_images_per_prompt,
        num_inference_steps=request.num_inference_steps,
        guidance_scale=request.guidance_scale,
        generator=generators(request.seed, request.num_images_per_prompt),
        output_type="pil",
    )
    return [
        Image.composite(
            generated.convert("RGB").resize(request.image.size, Image.Resampling.LANCZOS),
            request.image,
            mask,
        )
        for generated in output.images
    ]


def style(loaded: LoadedStyling, request: StylingRequest) -> StylingResult:
    mask = request.mask
    if mask is None:
        assert request.mask_prompt is not None
        mask = mask_from_prompt(
            loaded,
            request.image,
            request.mask_prompt,
            request.mask_threshold,
            request.mask_mode,
        )
    return StylingResult(images=inpaint(loaded, request, mask), mask=mask)


def predict_fn(
    data: Mapping[str, Any], model: LoadedStyling, context: Any = None
) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise ValueError('the request must be a JSON object with "image" and "mask_prompt"')
    request = parse_request(data, model)
    result = style(model, request)
    response: dict[str, Any] = {
        "generated_images": [encode(image, "JPEG") for image in result.images]
    }
    if request.mask_prompt is not None:
        response["mask"] = encode(result.mask, "PNG")
    return response


def encode(image: Image.Image, image_format: str) -> str:
    buffer = io.BytesIO()
    if image_format == "JPEG":
        image.convert("RGB").save(buffer, "JPEG", quality=JPEG_QUALITY)
    else:
        image.save(buffer, image_format)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
