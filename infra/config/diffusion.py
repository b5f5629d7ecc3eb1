"""`diffusion`: `POST /generations` (DreamBooth text to image) and `POST /styling` (CLIPSeg and
inpainting): the limits the function checks before it calls an endpoint, and the API's own."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationInfo, model_validator

from infra.config.constants import (
    DIFFUSION_MAX_GENERATION_SIDE,
    DIFFUSION_MAX_GUIDANCE_SCALE,
    DIFFUSION_MAX_IMAGES_PER_REQUEST,
    DIFFUSION_MAX_INLINE_IMAGE_BYTES,
    DIFFUSION_MAX_PROMPT_CHARACTERS,
    DIFFUSION_MAX_STEPS,
    MAX_PRESIGNED_URL_SECONDS,
    STYLING_IMAGE_LENGTHS,
)
from infra.config.image_limits import ImageLimitsConfig
from infra.config.rules import (
    HERE,
    Rule,
    choice,
    custom,
    is_loading,
    number,
    parsed,
    refuse,
    refuse_section,
    section,
    show,
    whole,
)

_LENGTHS_TEXT = f"expected a non-empty list of {' and/or '.join(map(str, STYLING_IMAGE_LENGTHS))}"


def _side(description: str) -> Any:
    return custom(
        Rule(
            description,
            expected=f"expected a multiple of 8 from 64 to {DIFFUSION_MAX_GENERATION_SIDE} (Stable "
            "Diffusion's latent grid; the text-to-image endpoint generates no larger side)",
            check=lambda value: 64 <= value <= DIFFUSION_MAX_GENERATION_SIDE and value % 8 == 0,
            allowed=f"multiples of 8, 64 to {DIFFUSION_MAX_GENERATION_SIDE}",
        )
    )


def _image_lengths(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise refuse(f"= {show(value)} is not valid; {_LENGTHS_TEXT}")
    for index, item in enumerate(value):
        if isinstance(item, bool) or item not in STYLING_IMAGE_LENGTHS:
            raise refuse(f"= {show(item)} is not valid; {_LENGTHS_TEXT}", f"[{index}]")
    if len(set(value)) != len(value):
        raise refuse(f"= {show(value)} lists a length twice")
    return tuple(value)


@section
class DiffusionConfig:
    """`POST /generations` and `POST /styling`: request limits and the API's own settings."""

    max_prompt_characters: int = whole(
        1,
        DIFFUSION_MAX_PROMPT_CHARACTERS,
        "longest `prompt`, `negativePrompt` or `maskPrompt` (the text encoder reads ~77 tokens)",
    )
    max_images_per_request: int = whole(
        1, DIFFUSION_MAX_IMAGES_PER_REQUEST, "most `numImages` per request (the endpoints' limit)"
    )
    # Generation sizes: width and height multiples of 8 within [min_side, max_side], at most
    # max_pixels; default_size x default_size when a request names none.
    min_side: int = _side("smallest `width` and `height` of `POST /generations`")
    max_side: int = _side("largest `width` and `height` of `POST /generations`")
    max_pixels: int = whole(
        64 * 64,
        DIFFUSION_MAX_GENERATION_SIDE * DIFFUSION_MAX_GENERATION_SIDE,
        "most `width` x `height` per generated image",
    )
    default_size: int = _side("`width` and `height` when a request names none")
    default_steps: int = whole(1, DIFFUSION_MAX_STEPS, "denoising steps when a request names none")
    max_steps: int = whole(1, DIFFUSION_MAX_STEPS, "most denoising steps a request may ask for")
    default_guidance_scale: float = number(
        0.0, DIFFUSION_MAX_GUIDANCE_SCALE, "`POST /generations`' guidance when omitted"
    )
    max_guidance_scale: float = number(
        1.0, DIFFUSION_MAX_GUIDANCE_SCALE, "most guidance a request may ask for"
    )
    # Styling: the sides the model may work at (a subset of STYLING_IMAGE_LENGTHS).
    image_lengths: tuple[int, ...] = parsed(
        _LENGTHS_TEXT,
        _image_lengths,
        "sides the styling model may work at (`imageLength`)",
        " and/or ".join(map(str, STYLING_IMAGE_LENGTHS)),
    )
    default_image_length: int = choice(
        STYLING_IMAGE_LENGTHS, "`imageLength` when omitted (one of `image_lengths`)"
    )
    # A styling photo or mask, inline or by key.
    image: ImageLimitsConfig
    # An inline (base64) photo or mask; larger ones are uploaded and named by key.
    max_inline_image_bytes: int = whole(
        1024,
        DIFFUSION_MAX_INLINE_IMAGE_BYTES,
        "largest inline (base64) photo or mask; two must fit a 6 MB Lambda event",
    )
    presigned_url_seconds: int = whole(
        60,
        MAX_PRESIGNED_URL_SECONDS,
        "lifetime of the output URLs (they also end with the function's session credentials)",
    )
    # API Gateway gives a REST integration at most 29 s. At least 10: the function keeps 3 s to
    # store and answer, and starts no endpoint call with less than 5 s left
    # (MIN_MODEL_ATTEMPT_SECONDS in lambdas/diffusion/logic/service.py).
    api_timeout_seconds: int = whole(
        10, 29, "diffusion function timeout (API Gateway waits at most 29 s)"
    )
    # Method throttling of each route, below the stage's: a few GPU instances serve them.
    throttle_rate_limit: int = whole(
        1, 10_000, "steady-state requests per second on each of the two routes"
    )
    throttle_burst_limit: int = whole(1, 5_000, "burst requests on each of the two routes")

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> DiffusionConfig:
        if not is_loading(info):
            return self
        pairs = (
            ("min_side", "max_side"),
            ("default_size", "max_side"),
            ("min_side", "default_size"),
            ("default_steps", "max_steps"),
            ("default_guidance_scale", "max_guidance_scale"),
        )
        for low, high in pairs:
            if getattr(self, low) > getattr(self, high):
                raise refuse_section(
                    f"{HERE}{low} = {getattr(self, low)} is larger than "
                    f"{HERE}{high} = {getattr(self, high)}"
                )
        if self.default_size**2 > self.max_pixels:
            raise refuse_section(
                f"{HERE}default_size = {self.default_size} makes {self.default_size**2:,} "
                f"pixels, more than {HERE}max_pixels = {self.max_pixels:,}"
            )
        if self.default_image_length not in self.image_lengths:
            raise refuse_section(
                f"{HERE}default_image_length = {self.default_image_length} is not in "
                f"{HERE}image_lengths = {list(self.image_lengths)}"
            )
        if self.max_inline_image_bytes > self.image.max_bytes:
            raise refuse_section(
                f"{HERE}max_inline_image_bytes = {self.max_inline_image_bytes} is larger than "
                f"{HERE}image.max_bytes = {self.image.max_bytes}"
            )
        return self
