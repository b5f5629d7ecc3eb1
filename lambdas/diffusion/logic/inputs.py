"""The styling request's photo and mask: inline base64 or a key in the uploads bucket, checked.

Inline images ride in the API Gateway → Lambda event, which holds at most 6 MB: they are limited
to `diffusion.max_inline_image_bytes` (2 MiB at most, so a photo and a mask both fit), and larger
ones must be uploaded and named by key. Either way an image is limited to `diffusion.image.*`
(bytes, pixels, sides), checked from its headers before anything decodes it.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from descriptions.logic.images import ImageInfo, ImageLimits, ImageProblem, InvalidImageError
from descriptions.logic.images import inspect_image as inspect_headers
from diffusion.logic.keys import INPUT_PREFIXES, is_input_key
from diffusion.logic.ports import InputImages
from shared.models.diffusion import DiffusionSettings, InputImage
from shared.models.errors import RequestError


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    info: ImageInfo
    # `key` or `base64`, to name the source in messages and logs.
    source: str


def base64_length(size: int) -> int:
    """Characters of standard, padded base64 for `size` bytes."""
    return (size + 2) // 3 * 4


def read_input(
    field: str, image: InputImage, settings: DiffusionSettings, uploads: InputImages
) -> CheckedImage:
    """The image's bytes and header facts; RequestError (400/413) naming `field` otherwise."""
    limits = settings.image
    if image.key is not None:
        if not is_input_key(image.key):
            raise RequestError(
                "input_key_not_allowed",
                f"{field}.key {image.key!r} is not readable by this API: upload the image to "
                f"the uploads bucket under {' or '.join(INPUT_PREFIXES)} and pass that key",
            )
        data = uploads.read(image.key, max_bytes=limits.max_bytes, field=f"{field}.key")
        source = "key"
    else:
        assert image.base64 is not None  # the model requires exactly one of key and base64
        data = decode_inline(field, image.base64, max_bytes=settings.max_inline_image_bytes)
        source = "base64"
    return CheckedImage(data=data, info=_inspect(field, data, settings), source=source)


def decode_inline(field: str, encoded: str, *, max_bytes: int) -> bytes:
    """Strict base64 (a `data:image/...;base64,` prefix allowed), size-checked before decoding."""
    if encoded.startswith("data:"):
        header, _, encoded = encoded.partition(",")
        if not header.endswith(";base64"):
            raise RequestError(
                "invalid_base64", f"{field}.base64: a data: URL image must be base64-encoded"
            )
    # 4 characters carry 3 bytes: refuse an oversized image before allocating its bytes.
    if len(encoded) > base64_length(max_bytes):
        raise _inline_too_large(field, max_bytes)
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(
            "invalid_base64",
            f"{field}.base64 is not valid base64 (standard alphabet, with padding)",
        ) from None
    if len(data) > max_bytes:
        raise _inline_too_large(field, max_bytes)
    return data


def _inline_too_large(field: str, max_bytes: int) -> RequestError:
    return RequestError(
        "inline_image_too_large",
        f"{field}.base64 holds more than {max_bytes:,} bytes, the most an inline image may "
        "have (the request travels in a Lambda event of at most 6 MB): upload the image to "
        f"the uploads bucket under {INPUT_PREFIXES[0]} and pass "
        f'{{"{field}": {{"key": "{INPUT_PREFIXES[0]}..."}}}} instead',
        status=413,
    )


def _inspect(field: str, data: bytes, settings: DiffusionSettings) -> ImageInfo:
    limits = settings.image
    try:
        return inspect_headers(
            data, ImageLimits(limits.max_bytes, limits.max_pixels, limits.max_side, limits.min_side)
        )
    except InvalidImageError as error:
        status = 413 if error.problem is ImageProblem.TOO_LARGE else 400
        raise RequestError(
            error.problem.value, f"{field}: {error.message}", status=status
        ) from None


# The styling endpoint accepts a mask of the photo's proportions within this tolerance and
# resizes it (training/styling/inference.py, ASPECT_TOLERANCE).
MASK_ASPECT_TOLERANCE = 0.01


def check_mask_matches(image: CheckedImage, mask: CheckedImage) -> None:
    """Refuse, before the GPU is paid for, a mask that cannot cover the photo.

    The sizes read here are the stored ones. The endpoint first turns both images upright by
    their EXIF orientation, so a mask drawn on a phone photo as it is displayed has the stored
    size turned a quarter: that may match, and the endpoint decides. A mask whose proportions
    match the photo's neither way cannot.
    """
    photo = image.info.width / image.info.height
    drawn = mask.info.width / mask.info.height
    if not any(
        abs(drawn / proportions - 1) <= MASK_ASPECT_TOLERANCE for proportions in (photo, 1 / photo)
    ):
        raise RequestError(
            "mask_size_mismatch",
            f"mask is {mask.info.width}x{mask.info.height} px but image is "
            f"{image.info.width}x{image.info.height} px; the mask must have the photo's size "
            "(or its proportions) as the photo is displayed",
        )
