"""An image exactly at each configured maximum (bytes, longest side, pixels) and exactly at the
minimum side is accepted; one unit past it is refused. Real files written by Pillow, with limits
set from each file's own size, so "at the limit" is exact whatever Pillow's encoder produces."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from descriptions.logic.images import ImageLimits, ImageProblem, InvalidImageError, inspect_image

ROOMY = ImageLimits(max_bytes=50_000_000, max_pixels=10**9, max_side=100_000, min_side=1)


def encoded(image_format: str, size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (120, 60, 30)).save(buffer, format=image_format)
    return buffer.getvalue()


def problem(data: bytes, limits: ImageLimits) -> ImageProblem:
    with pytest.raises(InvalidImageError) as caught:
        inspect_image(data, limits)
    return caught.value.problem


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "WEBP"])
def test_an_image_of_exactly_max_bytes_is_accepted(image_format: str) -> None:
    data = encoded(image_format, (300, 200))
    exact = ImageLimits(max_bytes=len(data), max_pixels=10**9, max_side=100_000, min_side=1)

    info = inspect_image(data, exact)

    assert info.size_bytes == len(data)
    one_less = ImageLimits(len(data) - 1, exact.max_pixels, exact.max_side, exact.min_side)
    assert problem(data, one_less) is ImageProblem.TOO_LARGE


@pytest.mark.parametrize("size", [(640, 200), (200, 640)])
def test_a_longest_side_of_exactly_max_side_is_accepted(size: tuple[int, int]) -> None:
    data = encoded("PNG", size)

    info = inspect_image(data, ImageLimits(ROOMY.max_bytes, ROOMY.max_pixels, 640, 1))

    assert (info.width, info.height) == size
    assert problem(data, ImageLimits(ROOMY.max_bytes, ROOMY.max_pixels, 639, 1)) is (
        ImageProblem.SIDE_TOO_LONG
    )


def test_exactly_max_pixels_is_accepted() -> None:
    data = encoded("JPEG", (320, 240))

    info = inspect_image(data, ImageLimits(ROOMY.max_bytes, 320 * 240, ROOMY.max_side, 1))

    assert info.pixels == 76_800
    assert problem(data, ImageLimits(ROOMY.max_bytes, 320 * 240 - 1, ROOMY.max_side, 1)) is (
        ImageProblem.TOO_MANY_PIXELS
    )


def test_a_shortest_side_of_exactly_min_side_is_accepted() -> None:
    data = encoded("WEBP", (400, 64))

    info = inspect_image(data, ImageLimits(ROOMY.max_bytes, ROOMY.max_pixels, ROOMY.max_side, 64))

    assert info.height == 64
    assert problem(data, ImageLimits(ROOMY.max_bytes, ROOMY.max_pixels, ROOMY.max_side, 65)) is (
        ImageProblem.TOO_SMALL
    )


def test_every_limit_met_exactly_at_once_is_accepted() -> None:
    data = encoded("PNG", (512, 256))
    exact = ImageLimits(max_bytes=len(data), max_pixels=512 * 256, max_side=512, min_side=256)

    info = inspect_image(data, exact)

    assert (info.width, info.height, info.size_bytes) == (512, 256, len(data))
