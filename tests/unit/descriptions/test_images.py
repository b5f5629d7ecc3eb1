"""Image validation from headers, checked against real files written by Pillow."""

from __future__ import annotations

import io
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from descriptions.logic.images import (
    ImageFormat,
    ImageInfo,
    ImageLimits,
    ImageProblem,
    InvalidImageError,
    inspect_image,
)

LIMITS = ImageLimits(max_bytes=5_000_000, max_pixels=4_000_000, max_side=4096, min_side=32)


def _encode(image_format: str, width: int, height: int, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 90)).save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _outcome(data: bytes) -> ImageInfo | ImageProblem:
    try:
        return inspect_image(data, LIMITS)
    except InvalidImageError as error:
        return error.problem


def _rejected(data: bytes, limits: ImageLimits = LIMITS) -> InvalidImageError:
    with pytest.raises(InvalidImageError) as caught:
        inspect_image(data, limits)
    return caught.value


@pytest.mark.parametrize(
    ("pil_format", "options", "expected"),
    [
        ("PNG", {}, ImageFormat.PNG),
        ("JPEG", {"quality": 85}, ImageFormat.JPEG),
        ("JPEG", {"progressive": True}, ImageFormat.JPEG),
        ("WEBP", {"quality": 80}, ImageFormat.WEBP),
        ("WEBP", {"lossless": True}, ImageFormat.WEBP),
    ],
)
def test_real_images_report_format_and_size(
    pil_format: str, options: dict[str, object], expected: ImageFormat
) -> None:
    data = _encode(pil_format, 641, 479, **options)
    info = inspect_image(data, LIMITS)
    assert (info.format, info.width, info.height, info.size_bytes) == (
        expected,
        641,
        479,
        len(data),
    )


def test_webp_with_extended_header_reports_canvas_size() -> None:
    # An ICC profile forces the VP8X (extended) layout.
    buffer = io.BytesIO()
    Image.new("RGB", (300, 200)).save(buffer, format="WEBP", icc_profile=b"\x00" * 128)
    info = inspect_image(buffer.getvalue(), LIMITS)
    assert (info.width, info.height) == (300, 200)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", ImageProblem.EMPTY),
        (b"GIF89a" + b"\x00" * 100, ImageProblem.UNSUPPORTED_FORMAT),
        (b'{"image": "not really"}', ImageProblem.UNSUPPORTED_FORMAT),
        (b"\x89PNG\r\n\x1a\n\x00", ImageProblem.TRUNCATED),
        (b"\xff\xd8\xff", ImageProblem.TRUNCATED),
        (b"RIFF\x00\x00\x00\x00WEBP", ImageProblem.TRUNCATED),
    ],
)
def test_non_images_and_stubs_are_refused(data: bytes, problem: ImageProblem) -> None:
    assert _rejected(data).problem is problem


@pytest.mark.parametrize("pil_format", ["PNG", "JPEG", "WEBP"])
def test_truncated_files_are_refused(pil_format: str) -> None:
    data = _encode(pil_format, 200, 200)
    error = _rejected(data[: len(data) // 2])
    assert error.problem is ImageProblem.TRUNCATED


def test_oversized_file_is_refused_before_parsing() -> None:
    error = _rejected(
        b"x" * 101, ImageLimits(max_bytes=100, max_pixels=10, max_side=10, min_side=1)
    )
    assert error.problem is ImageProblem.TOO_LARGE
    assert error.message == "the image is 101 bytes; the limit is 100 bytes"


def test_small_and_long_images_are_refused() -> None:
    assert _rejected(_encode("PNG", 31, 400)).problem is ImageProblem.TOO_SMALL
    limits = ImageLimits(max_bytes=5_000_000, max_pixels=10**9, max_side=1000, min_side=1)
    assert _rejected(_encode("PNG", 1001, 40), limits).problem is ImageProblem.SIDE_TOO_LONG


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares a huge canvas: a decompression bomb's calling card."""
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def test_decompression_bomb_is_refused_from_its_header() -> None:
    data = _png_declaring(4000, 4000)
    assert len(data) < 100
    error = _rejected(data)
    assert error.problem is ImageProblem.TOO_MANY_PIXELS
    assert error.message == (
        "the image is 4000x4000 px (16,000,000 pixels); the limit is 4,000,000 pixels"
    )


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_escape_as_another_error(data: bytes) -> None:
    # Whatever arrives, the answer is an ImageInfo or an InvalidImageError, never a crash.
    assert isinstance(_outcome(data), ImageInfo | ImageProblem)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["PNG", "JPEG", "WEBP"]), st.integers(min_value=0, max_value=400))
def test_every_prefix_of_a_real_image_is_handled(pil_format: str, cut: int) -> None:
    data = _encode(pil_format, 64, 64)
    outcome = _outcome(data[:cut])
    if cut < len(data):
        assert isinstance(outcome, ImageProblem)
