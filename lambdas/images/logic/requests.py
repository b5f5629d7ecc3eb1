"""A `POST /images` request checked against the stage's limits, with every default resolved.

The request model already holds Titan's own ranges; here come the stage's (possibly narrower)
limits from `images.*` and the one rule a field constraint cannot say: width and height must form
one of the allowed sizes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shared.models.errors import RequestError
from shared.models.images import GenerateImagesRequest, ImagesSettings, size_text

NEAREST_SIZES_SHOWN = 3


@dataclass(frozen=True)
class ImageJob:
    prompt: str
    negative_prompt: str | None
    number_of_images: int
    width: int
    height: int
    cfg_scale: float
    seed: int
    quality: str


def resolve_job(
    request: GenerateImagesRequest, settings: ImagesSettings, *, random_seed: Callable[[], int]
) -> ImageJob:
    """The job to run; raises RequestError naming the first limit the request breaks."""
    limit = settings.max_prompt_characters
    for field, text in (("prompt", request.prompt), ("negativePrompt", request.negativePrompt)):
        if text is not None and len(text) > limit:
            raise RequestError(
                "prompt_too_long",
                f"{field} has {len(text)} characters; this stage allows at most {limit}",
            )
    if request.numberOfImages > settings.max_images_per_request:
        raise RequestError(
            "too_many_images",
            f"numberOfImages is {request.numberOfImages}; this stage allows at most "
            f"{settings.max_images_per_request} per request",
        )
    check_size(request.width, request.height, settings.allowed_sizes())
    return ImageJob(
        prompt=request.prompt,
        negative_prompt=request.negativePrompt,
        number_of_images=request.numberOfImages,
        width=request.width,
        height=request.height,
        cfg_scale=request.cfgScale,
        seed=request.seed if request.seed is not None else random_seed(),
        quality=request.quality,
    )


def check_size(width: int, height: int, allowed: Sequence[tuple[int, int]]) -> None:
    if (width, height) in allowed:
        return
    nearest = ", ".join(size_text(*size) for size in nearest_sizes(width, height, allowed))
    raise RequestError(
        "unsupported_size",
        f"{size_text(width, height)} is not a size this stage generates (width x height must be "
        f"one of Titan Image Generator G1's sizes); nearest allowed: {nearest}",
    )


def nearest_sizes(
    width: int, height: int, allowed: Sequence[tuple[int, int]], *, count: int = NEAREST_SIZES_SHOWN
) -> list[tuple[int, int]]:
    """The allowed sizes closest to the asked one, by relative difference of each side (so shape
    and scale both count), closest first; ties keep the configured order."""
    w, h = max(width, 1), max(height, 1)

    def distance(size: tuple[int, int]) -> float:
        return abs(math.log(size[0] / w)) + abs(math.log(size[1] / h))

    return sorted(allowed, key=distance)[:count]
