"""`images`: `POST /images`, the customized image model through its provisioned throughput."""

from __future__ import annotations

import re
from typing import Any

from infra.config.constants import (
    MAX_PRESIGNED_URL_SECONDS,
    TITAN_IMAGE_SIZES,
    TITAN_MAX_IMAGES_PER_REQUEST,
    TITAN_MAX_PROMPT_CHARACTERS,
)
from infra.config.rules import parsed, refuse, section, show, whole

_IMAGE_SIZE = re.compile(r"^(?P<width>[1-9]\d{2,3})x(?P<height>[1-9]\d{2,3})$")
_SIZES_TEXT = "expected null (every Titan Image Generator G1 size) or a list such as ['1024x1024']"


def _size_text(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _sizes(value: Any) -> tuple[tuple[int, int], ...]:
    if value is None:
        return TITAN_IMAGE_SIZES
    if not isinstance(value, list | tuple) or not value:
        raise refuse(f"= {show(value)} is not valid; {_SIZES_TEXT}")
    allowed = ", ".join(_size_text(size) for size in TITAN_IMAGE_SIZES)
    sizes: list[tuple[int, int]] = []
    for index, item in enumerate(value):
        match = _IMAGE_SIZE.fullmatch(item) if isinstance(item, str) else None
        size = (int(match["width"]), int(match["height"])) if match else None
        if size is None or size not in TITAN_IMAGE_SIZES:
            raise refuse(
                f"= {show(item)} is not a Titan Image Generator G1 size; allowed: {allowed}",
                f"[{index}]",
            )
        if size in sizes:
            raise refuse(f"lists {item!r} twice")
        sizes.append(size)
    return tuple(sizes)


@section
class ImagesConfig:
    """`POST /images`: the customized image model through its provisioned throughput."""

    # At most Titan's own limits (512 characters, 5 images); lower them to bound cost and latency.
    max_prompt_characters: int = whole(
        1, TITAN_MAX_PROMPT_CHARACTERS, "longest `prompt` / `negativePrompt` a request may send"
    )
    max_images_per_request: int = whole(
        1, TITAN_MAX_IMAGES_PER_REQUEST, "most `numberOfImages` per request"
    )
    # (width, height) pairs a request may ask for, each one of TITAN_IMAGE_SIZES.
    sizes: tuple[tuple[int, int], ...] = parsed(
        _SIZES_TEXT,
        _sizes,
        '`null`: every Titan G1 size; or the `"WIDTHxHEIGHT"` sizes a request may ask for',
        "null or Titan G1 sizes such as `1024x1024`",
        default=TITAN_IMAGE_SIZES,
    )
    # How long the function trusts the provisioned model ARN it read from SSM.
    model_arn_cache_seconds: int = whole(
        0, 3600, "how long the function keeps the provisioned model ARN read from SSM"
    )
    presigned_url_seconds: int = whole(
        60,
        MAX_PRESIGNED_URL_SECONDS,
        "lifetime of the image URLs (they also end with the function's session credentials)",
    )
    # API Gateway gives a REST integration at most 29 s; an image takes several. At least 14:
    # the function keeps 3 s to store and answer, and starts no Titan call with less than 10 s
    # left (MIN_MODEL_ATTEMPT_SECONDS in lambdas/images/logic/service.py).
    api_timeout_seconds: int = whole(
        14, 29, "images function timeout (API Gateway waits at most 29 s)"
    )
    # Method throttling of POST /images, below the stage's: the throughput is a few model units.
    throttle_rate_limit: int = whole(
        1, 10_000, "steady-state requests per second on `POST /images`"
    )
    throttle_burst_limit: int = whole(1, 5_000, "burst requests on `POST /images`")
