"""Requests checked against the stage's limits, with every default resolved.

The request models already hold the handlers' own ranges; here come the stage's (possibly
narrower) limits from `diffusion.*`, and the rules a field constraint cannot say (width and height
are multiples of 8, within the bounds and the pixel budget).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shared.models.diffusion import (
    DEFAULT_NUMBER_OF_IMAGES,
    MAX_GENERATION_BATCH_PIXELS,
    SIZE_MULTIPLE,
    STYLING_DEFAULT_GUIDANCE_SCALE,
    STYLING_DEFAULT_NUMBER_OF_IMAGES,
    DiffusionSettings,
    GenerationRequest,
    StylingRequest,
)
from shared.models.errors import RequestError


@dataclass(frozen=True)
class Sampling:
    """What every Stable Diffusion call takes, resolved."""

    prompt: str
    negative_prompt: str | None
    number_of_images: int
    steps: int
    guidance_scale: float
    seed: int


@dataclass(frozen=True)
class GenerationJob:
    sampling: Sampling
    width: int
    height: int


@dataclass(frozen=True)
class StylingJob:
    """The styling settings; the photo and mask are read separately (they may be in S3)."""

    sampling: Sampling
    image_length: int
    mask_prompt: str | None
    mask_threshold: float | None
    # None: the endpoint's default (threshold).
    mask_mode: str | None = None


def resolve_generation(
    request: GenerationRequest, settings: DiffusionSettings, *, random_seed: Callable[[], int]
) -> GenerationJob:
    """The job to run; raises RequestError naming the first limit the request breaks."""
    sampling = _sampling(request, settings, random_seed)
    width = request.width if request.width is not None else settings.default_size
    height = request.height if request.height is not None else settings.default_size
    check_size(width, height, settings)
    # The endpoint's own budget for a whole request (training/dreambooth/inference.py).
    count = sampling.number_of_images
    if width * height * count > MAX_GENERATION_BATCH_PIXELS:
        raise RequestError(
            "unsupported_size",
            f"{count} images of {width}x{height} are {width * height * count:,} pixels; the "
            f"endpoint generates at most {MAX_GENERATION_BATCH_PIXELS:,} per request (four "
            "768x768 images): lower numImages, width or height",
        )
    return GenerationJob(sampling=sampling, width=width, height=height)


def resolve_styling(
    request: StylingRequest, settings: DiffusionSettings, *, random_seed: Callable[[], int]
) -> StylingJob:
    sampling = _sampling(
        request,
        settings,
        random_seed,
        default_images=min(STYLING_DEFAULT_NUMBER_OF_IMAGES, settings.max_images_per_request),
        default_guidance=min(STYLING_DEFAULT_GUIDANCE_SCALE, settings.max_guidance_scale),
    )
    if request.maskPrompt is not None:
        _check_prompt_length("maskPrompt", request.maskPrompt, settings)
    length = (
        request.imageLength if request.imageLength is not None else settings.default_image_length
    )
    if length not in settings.image_lengths:
        allowed = " or ".join(str(value) for value in settings.image_lengths)
        raise RequestError(
            "unsupported_image_length",
            f"imageLength is {length}; this stage works at {allowed} pixels",
        )
    return StylingJob(
        sampling=sampling,
        image_length=length,
        mask_prompt=request.maskPrompt,
        mask_threshold=request.maskThreshold,
        mask_mode=request.maskMode,
    )


def check_size(width: int, height: int, settings: DiffusionSettings) -> None:
    for name, value in (("width", width), ("height", height)):
        if value % SIZE_MULTIPLE:
            lower = value // SIZE_MULTIPLE * SIZE_MULTIPLE
            raise RequestError(
                "unsupported_size",
                f"{name} is {value}; it must be a multiple of {SIZE_MULTIPLE} (Stable "
                f"Diffusion's latent grid), e.g. {max(lower, SIZE_MULTIPLE)} or "
                f"{lower + SIZE_MULTIPLE}",
            )
        if not settings.min_side <= value <= settings.max_side:
            raise RequestError(
                "unsupported_size",
                f"{name} is {value}; this stage generates {settings.min_side}-"
                f"{settings.max_side} pixels per side",
            )
    if width * height > settings.max_pixels:
        raise RequestError(
            "unsupported_size",
            f"{width}x{height} is {width * height:,} pixels; this stage generates at most "
            f"{settings.max_pixels:,} per image (e.g. 512x512, 768x768)",
        )


def _sampling(
    request: GenerationRequest | StylingRequest,
    settings: DiffusionSettings,
    random_seed: Callable[[], int],
    *,
    default_images: int = DEFAULT_NUMBER_OF_IMAGES,
    default_guidance: float | None = None,
) -> Sampling:
    """The sampling settings; omitted fields take `default_images` and `default_guidance`
    (the stage's `default_guidance_scale` when None)."""
    _check_prompt_length("prompt", request.prompt, settings)
    if request.negativePrompt is not None:
        _check_prompt_length("negativePrompt", request.negativePrompt, settings)
    count = request.numImages if request.numImages is not None else default_images
    if count > settings.max_images_per_request:
        raise RequestError(
            "too_many_images",
            f"numImages is {count}; this stage allows at most {settings.max_images_per_request} "
            "per request",
        )
    steps = request.steps if request.steps is not None else settings.default_steps
    if steps > settings.max_steps:
        raise RequestError(
            "too_many_steps",
            f"steps is {steps}; this stage allows at most {settings.max_steps} (each step "
            "costs GPU time, and API Gateway waits at most 29 s)",
        )
    if request.guidanceScale is not None:
        guidance = request.guidanceScale
    elif default_guidance is not None:
        guidance = default_guidance
    else:
        guidance = settings.default_guidance_scale
    if guidance > settings.max_guidance_scale:
        raise RequestError(
            "guidance_too_high",
            f"guidanceScale is {guidance:g}; this stage allows at most "
            f"{settings.max_guidance_scale:g}",
        )
    return Sampling(
        prompt=request.prompt,
        negative_prompt=request.negativePrompt,
        number_of_images=count,
        steps=steps,
        guidance_scale=float(guidance),
        seed=request.seed if request.seed is not None else random_seed(),
    )


def _check_prompt_length(field: str, text: str, settings: DiffusionSettings) -> None:
    limit = settings.max_prompt_characters
    if len(text) > limit:
        raise RequestError(
            "prompt_too_long",
            f"{field} has {len(text)} characters; this stage allows at most {limit}",
        )
