"""Reading a user's image the way the dataset builders check it (`titan.prepare`,
`dreambooth.prepare`): what it is (format by content, size, colour mode, transparency, EXIF
orientation), or why it cannot be read, and whether its name matches its content.

The limits and the wording of each finding are the builder's own; this module only measures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from common import image_fixes

# Both services read JPEG and PNG only; the extensions each format may be named with.
ACCEPTED_FORMATS: dict[str, tuple[str, ...]] = {"JPEG": (".jpg", ".jpeg"), "PNG": (".png",)}
# A phone's MPO (multi-picture JPEG) opens as a JPEG: its first frame is the picture.
FORMAT_ALIASES = {"MPO": "JPEG"}
# EXIF orientations that turn the picture a quarter: width and height swap once upright.
SWAPPING_ORIENTATIONS = image_fixes.SWAPPING_ORIENTATIONS


class UnreadableImageError(Exception):
    """Not an image, truncated or corrupt; the message is the error Pillow raised."""


@dataclass(frozen=True)
class ImageInfo:
    # Pillow's format name ("JPEG", "PNG", "WEBP"...), MPO folded into JPEG; None if unknown.
    format: str | None
    # As stored (before EXIF orientation).
    width: int
    height: int
    mode: str
    has_alpha: bool
    orientation: int
    file_size: int
    # Why convert("RGB") fails, when it does (only looked at when asked for).
    rgb_problem: str | None = None

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def to_dict(self, *, with_orientation: bool = True) -> dict[str, Any]:
        document: dict[str, Any] = {
            "format": self.format,
            "width": self.width,
            "height": self.height,
            "mode": self.mode,
        }
        if with_orientation:
            document["orientation"] = self.orientation
        document["bytes"] = self.file_size
        return document


def inspect_image(path: Path, *, draft_side: int, check_rgb: bool = False) -> ImageInfo:
    """What the image is; raises UnreadableImageError when it cannot be read.

    verify() checks structure (PNG checksums) but not a JPEG cut short by a partial copy: decoding
    finds that. JPEGs decode at reduced scale (draft, `draft_side` px), which still reads all their
    data. With `check_rgb` the decoded picture then goes through convert("RGB"), as in training.
    """
    try:
        file_size = path.stat().st_size
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            width, height, mode = image.width, image.height, image.mode
            image_format = FORMAT_ALIASES.get(image.format or "", image.format)
            alpha = image_fixes.has_alpha(image)
            orientation = image_fixes.exif_orientation(image)
            image.draft("RGB", (draft_side, draft_side))
            image.load()
            rgb_problem = None
            if check_rgb:
                try:
                    image.convert("RGB")
                except (ValueError, OSError) as error:
                    rgb_problem = f"{type(error).__name__}: {error}"
    # Pillow raises OSError, SyntaxError, ValueError, struct.error... for broken files.
    except Exception as error:
        raise UnreadableImageError(f"{type(error).__name__}: {error}") from error
    return ImageInfo(image_format, width, height, mode, alpha, orientation, file_size, rgb_problem)


def format_problem(
    name: str, info: ImageInfo
) -> tuple[Literal["unsupported", "extension"], tuple[str, ...]] | None:
    """None when the file holds JPEG or PNG under a matching extension; else what is wrong and
    the extensions the content may be named with (none for an unsupported format)."""
    if info.format not in ACCEPTED_FORMATS:
        return "unsupported", ()
    extensions = ACCEPTED_FORMATS[info.format]
    if Path(name).suffix.lower() not in extensions:
        return "extension", extensions
    return None
