"""Small image and caption folders for the Titan Image Generator fine-tuning data tests.

Images are drawn, not downloaded: a coloured background with an ellipse "subject", saved in the
format the extension names unless told otherwise. Flat colours keep even 16-megapixel PNGs small
on disk and quick to write.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

# Five records that pass every rule: the clean set.
CLEAN_CAPTIONS: dict[str, str] = {
    "ron_01.jpg": "Ron the dog laying on a white dog bed",
    "ron_02.jpg": "Ron the dog running on a beach at sunset",
    "ron_03.png": "Ron the dog sitting next to a red ball",
    "smila_01.png": "Smila the cat sleeping on a café chair",
    "smila_02.jpg": "Smila the cat looking out of a window, in the rain",
}
_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".tif": "TIFF"}


def write_image(
    path: Path,
    size: tuple[int, int] = (640, 512),
    *,
    mode: str = "RGB",
    image_format: str | None = None,
    colour: tuple[int, int, int] = (200, 120, 40),
    **options: Any,
) -> Path:
    """A drawn image at `path`; `image_format` overrides the one the extension names."""
    width, height = size
    image = Image.new("RGB", size, colour)
    ImageDraw.Draw(image).ellipse(
        (width // 4, height // 4, 3 * width // 4, 3 * height // 4), fill=(30, 60, 160)
    )
    converted = image.convert(mode) if mode != "RGB" else image
    path.parent.mkdir(parents=True, exist_ok=True)
    converted.save(path, format=image_format or _FORMATS[path.suffix.lower()], **options)
    return path


def write_captions(folder: Path, captions: Mapping[str, str], form: str) -> Path | None:
    """Captions as sidecar .txt files in `folder` (returns None), or a CSV/JSON file beside it."""
    if form == "sidecar":
        for name, caption in captions.items():
            (folder / name).with_suffix(".txt").write_text(caption, encoding="utf-8")
        return None
    path = folder.parent / f"captions.{form}"
    if form == "csv":
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["filename", "caption"])
            writer.writerows(captions.items())
    elif form == "json":
        path.write_text(json.dumps(dict(captions), ensure_ascii=False), encoding="utf-8")
    else:
        raise ValueError(f"unknown caption form {form!r}")
    return path


def make_dataset(
    folder: Path, captions: Mapping[str, str] = CLEAN_CAPTIONS, *, form: str = "sidecar"
) -> Path | None:
    """One drawn 640x512 image per caption (format from the extension), and the captions."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(captions):
        write_image(folder / name, colour=(40 * index % 256, 120, 200 - 30 * index))
    return write_captions(folder, captions, form)


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file's content hash and modification time, to prove nothing was touched."""
    return {
        path.name: (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        for path in sorted(folder.iterdir())
        if path.is_file()
    }
