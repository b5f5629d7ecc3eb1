"""`descriptions.image` and `diffusion.image`: what an accepted image may be, checked from its
headers before any model sees it."""

from __future__ import annotations

from pydantic import ValidationInfo, model_validator

from infra.config.constants import MAX_API_IMAGE_BYTES
from infra.config.rules import HERE, is_loading, refuse_section, section, whole


@section
class ImageLimitsConfig:
    """What a pipeline accepts, checked from the image's headers before any model."""

    max_bytes: int = whole(
        1024,
        MAX_API_IMAGE_BYTES,
        "largest accepted image in bytes (its base64 must fit a 6 MB synchronous event)",
    )
    max_pixels: int = whole(64 * 64, 100_000_000, "largest accepted width x height")
    max_side: int = whole(64, 16_384, "longest accepted side in pixels")
    min_side: int = whole(1, 4096, "shortest accepted side in pixels")

    @model_validator(mode="after")
    def _sides_in_order(self, info: ValidationInfo) -> ImageLimitsConfig:
        if is_loading(info) and self.min_side > self.max_side:
            raise refuse_section(
                f"{HERE}min_side = {self.min_side} is larger than {HERE}max_side = {self.max_side}"
            )
        return self
