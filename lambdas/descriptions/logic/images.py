"""Image validation before any model call, from the bytes' own headers.

The format comes from magic bytes (never from a file name or content type), the dimensions from
the format's header, so a decompression bomb (a small file declaring a huge canvas) is refused
without decoding a single pixel, and without shipping an imaging library in the Lambda package.
A file whose container is cut short (no PNG IEND chunk, no JPEG end-of-image marker, a RIFF size
larger than the data) is reported as truncated.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import StrEnum


class ImageFormat(StrEnum):
    JPEG = "jpeg"
    PNG = "png"
    WEBP = "webp"


class ImageProblem(StrEnum):
    """Stable codes a client can branch on; they end up in 4xx error bodies."""

    EMPTY = "image_empty"
    TOO_LARGE = "image_too_large"
    UNSUPPORTED_FORMAT = "image_unsupported_format"
    CORRUPT = "image_corrupt"
    TRUNCATED = "image_truncated"
    TOO_SMALL = "image_too_small"
    TOO_MANY_PIXELS = "image_too_many_pixels"
    SIDE_TOO_LONG = "image_side_too_long"


class InvalidImageError(ValueError):
    def __init__(self, problem: ImageProblem, message: str) -> None:
        super().__init__(message)
        self.problem = problem
        self.message = message


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int
    max_pixels: int
    max_side: int
    min_side: int


@dataclass(frozen=True)
class ImageInfo:
    format: ImageFormat
    width: int
    height: int
    size_bytes: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
# JPEG start-of-frame markers carry the dimensions; C4 (DHT), C8 (JPG) and CC (DAC) do not.
_JPEG_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7,
                               0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})  # fmt: skip
# Markers without a length field: TEM and the restart markers RST0-RST7.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


def sniff_format(data: bytes) -> ImageFormat | None:
    if data.startswith(_PNG_SIGNATURE):
        return ImageFormat.PNG
    if data.startswith(b"\xff\xd8\xff"):
        return ImageFormat.JPEG
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ImageFormat.WEBP
    return None


def inspect_image(data: bytes, limits: ImageLimits) -> ImageInfo:
    """Return the format and size of `data`, or raise InvalidImageError saying what is wrong."""
    if not data:
        raise InvalidImageError(ImageProblem.EMPTY, "the image is empty")
    if len(data) > limits.max_bytes:
        raise InvalidImageError(
            ImageProblem.TOO_LARGE,
            f"the image is {len(data):,} bytes; the limit is {limits.max_bytes:,} bytes",
        )
    image_format = sniff_format(data)
    if image_format is None:
        raise InvalidImageError(
            ImageProblem.UNSUPPORTED_FORMAT,
            "the data is not a JPEG, PNG or WebP image (checked by its leading bytes)",
        )
    reader = {
        ImageFormat.PNG: _png_dimensions,
        ImageFormat.JPEG: _jpeg_dimensions,
        ImageFormat.WEBP: _webp_dimensions,
    }[image_format]
    try:
        width, height = reader(data)
    except (struct.error, IndexError):
        raise InvalidImageError(
            ImageProblem.TRUNCATED, f"the {image_format.value.upper()} header is cut short"
        ) from None
    info = ImageInfo(image_format, width, height, len(data))
    _check_dimensions(info, limits)
    return info


def _check_dimensions(info: ImageInfo, limits: ImageLimits) -> None:
    size = f"{info.width}x{info.height}"
    if min(info.width, info.height) < limits.min_side:
        raise InvalidImageError(
            ImageProblem.TOO_SMALL,
            f"the image is {size} px; each side must be at least {limits.min_side} px",
        )
    if max(info.width, info.height) > limits.max_side:
        raise InvalidImageError(
            ImageProblem.SIDE_TOO_LONG,
            f"the image is {size} px; no side may exceed {limits.max_side} px",
        )
    if info.pixels > limits.max_pixels:
        raise InvalidImageError(
            ImageProblem.TOO_MANY_PIXELS,
            f"the image is {size} px ({info.pixels:,} pixels); the limit is "
            f"{limits.max_pixels:,} pixels",
        )


def _png_dimensions(data: bytes) -> tuple[int, int]:
    length, chunk_type = struct.unpack(">I4s", data[8:16])
    if chunk_type != b"IHDR" or length != 13:
        raise InvalidImageError(ImageProblem.CORRUPT, "the PNG does not start with an IHDR chunk")
    width, height = struct.unpack(">II", data[16:24])
    if not data.endswith(_PNG_IEND):
        raise InvalidImageError(ImageProblem.TRUNCATED, "the PNG ends before its IEND chunk")
    return width, height


def _jpeg_dimensions(data: bytes) -> tuple[int, int]:
    position = 2
    while True:
        if data[position] != 0xFF:
            raise InvalidImageError(ImageProblem.CORRUPT, "the JPEG has a malformed marker segment")
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker in _JPEG_STANDALONE:
            position += 2
            continue
        if marker in (0xD9, 0xDA):
            raise InvalidImageError(ImageProblem.CORRUPT, "the JPEG has no frame header")
        (segment_length,) = struct.unpack(">H", data[position + 2 : position + 4])
        if marker in _JPEG_SOF_MARKERS:
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            break
        position += 2 + segment_length
    # Encoders end every JPEG with EOI; some append padding or metadata after it.
    if b"\xff\xd9" not in data[-64:]:
        raise InvalidImageError(
            ImageProblem.TRUNCATED, "the JPEG ends before its end-of-image marker"
        )
    return width, height


def _webp_dimensions(data: bytes) -> tuple[int, int]:
    if len(data) < 30:  # RIFF header, chunk header and the longest dimension field
        raise InvalidImageError(ImageProblem.TRUNCATED, "the WebP header is cut short")
    (riff_size,) = struct.unpack("<I", data[4:8])
    if riff_size + 8 > len(data):
        raise InvalidImageError(
            ImageProblem.TRUNCATED, "the WebP file is shorter than its header says"
        )
    chunk = data[12:16]
    payload = data[20:]
    if chunk == b"VP8 ":
        if payload[3:6] != b"\x9d\x01\x2a":
            raise InvalidImageError(ImageProblem.CORRUPT, "the WebP VP8 frame has no start code")
        width, height = struct.unpack("<HH", payload[6:10])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        if payload[0] != 0x2F:
            raise InvalidImageError(ImageProblem.CORRUPT, "the WebP VP8L stream has no signature")
        (bits,) = struct.unpack("<I", payload[1:5])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        width_minus_one = int.from_bytes(payload[4:7], "little")
        height_minus_one = int.from_bytes(payload[7:10], "little")
        return width_minus_one + 1, height_minus_one + 1
    raise InvalidImageError(ImageProblem.CORRUPT, "the WebP file has no VP8, VP8L or VP8X chunk")
