"""Turning a user's image into the 8-bit RGB picture they see, for the dataset builders'
`--fix` (`titan.prepare`, `dreambooth.prepare`), and writing that picture as their fixed copy.

A plain `convert("RGB")` is what trainers do, and it is wrong for three kinds of file users
have: transparency (the colours hidden under transparent pixels come back, often black), 16-bit
grey (everything above 255 clips to white) and CMYK print files (colours shift without their
ICC profile). `to_rgb` handles those; EXIF orientation is read here too, so both builders agree.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

# Transparent pixels are flattened onto white: the usual background of catalog photos.
FLATTEN_BACKGROUND = (255, 255, 255, 255)
# Modes whose colours are RGB, so that an embedded ICC profile still describes an RGB copy.
RGB_SPACE_MODES = frozenset({"RGB", "RGBA", "RGBa", "P", "PA"})
SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
_ORIENTATION_TAG = 0x0112
# EXIF orientations that turn the picture a quarter: width and height swap once upright.
SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})


def has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8), 1 when absent or invalid."""
    value = image.getexif().get(_ORIENTATION_TAG, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def to_rgb(image: Image.Image, icc_profile: bytes | None) -> Image.Image:
    """8-bit RGB as a viewer shows it: transparency flattened onto white, 16-bit grey scaled,
    CMYK colour-managed with its embedded profile when there is a usable one."""
    mode = image.mode
    if mode == "RGB" and not has_alpha(image):
        return image
    if mode in SIXTEEN_BIT_MODES:
        # 16-bit grey: scale to 8 bits; a plain convert clips everything above 255 to white.
        return image.convert("I").point(lambda value: value / 256).convert("L").convert("RGB")
    if mode == "CMYK" and icc_profile:
        converted = cmyk_to_srgb(image, icc_profile)
        if converted is not None:
            return converted
    if has_alpha(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, FLATTEN_BACKGROUND)
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def cmyk_to_srgb(image: Image.Image, icc_profile: bytes) -> Image.Image | None:
    """Colour-managed CMYK -> sRGB with the embedded profile (print files): the naive formula
    shifts colours visibly. None when the profile cannot be used; the caller falls back."""
    try:
        # Imported here: a Pillow built without littlecms still runs everything else.
        from PIL import ImageCms
    except ImportError:
        return None
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        srgb = ImageCms.createProfile("sRGB")
        return ImageCms.profileToProfile(image, source, srgb, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None


def write_upright_rgb(
    source: Path,
    target: Path,
    *,
    image_format: str,
    jpeg_quality: int,
    size: tuple[int, int] | None = None,
) -> None:
    """Write `source` upright (EXIF orientation applied) as 8-bit RGB (`to_rgb`) to `target` in
    `image_format`, resized to `size` (upright width, height; high-quality Lanczos) when given."""
    with Image.open(source) as opened:
        if size is not None and opened.format in ("JPEG", "MPO"):
            # Decoding a big JPEG at reduced scale is much faster; Lanczos then does the rest.
            swapped = exif_orientation(opened) in SWAPPING_ORIENTATIONS
            stored = size[::-1] if swapped else size
            opened.draft(opened.mode if opened.mode in ("RGB", "L") else None, stored)
        icc_profile = opened.info.get("icc_profile")
        upright = ImageOps.exif_transpose(opened) or opened
        rgb = to_rgb(upright, icc_profile)
        if size is not None and rgb.size != size:
            rgb = rgb.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        options: dict[str, Any] = {}
        # Keep an RGB-space profile so colours stay as shot; a CMYK or grey one no longer
        # applies. EXIF is not carried over: the orientation is applied, and a GPS location has
        # no place in a bucket.
        if icc_profile and opened.mode in RGB_SPACE_MODES:
            options["icc_profile"] = icc_profile
        if image_format == "JPEG":
            options["quality"] = jpeg_quality
        rgb.save(target, format=image_format, **options)
