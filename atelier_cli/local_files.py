"""Local image files: checked before anything is sent, and results saved without ever leaving a
half-written file or replacing one that is already there."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from atelier_cli.errors import UsageError

# What the API takes (lambdas/descriptions/logic/images.py checks the same magic bytes).
IMAGE_FORMATS = {"jpeg": ".jpg", "png": ".png", "webp": ".webp"}
CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


def image_format(head: bytes) -> str | None:
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def read_image(path: Path, *, option: str, max_bytes: int | None = None) -> tuple[bytes, str]:
    """(bytes, format) of a JPEG, PNG or WebP file; a clear error for anything else."""
    if not path.is_file():
        raise UsageError(f"{option} {path}: no such file", code="file_not_found")
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise UsageError(
            f"{option} {path} is {size:,} bytes; the API takes at most {max_bytes:,}",
            fix="downscale or recompress it",
            code="image_too_large",
        )
    data = path.read_bytes()
    kind = image_format(data[:16])
    if kind is None:
        raise UsageError(
            f"{option} {path} is not a JPEG, PNG or WebP image",
            fix="convert it to one of those",
            code="image_unsupported_format",
        )
    return data, kind


def safe_name(name: str, fallback: str) -> str:
    """A file name from a remote key, usable as it is: letters, digits, '.', '_', '-', not
    hidden and not a path; else `fallback`."""
    if re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,200}", name) and name not in (".", ".."):
        return name
    return fallback


def free_path(folder: Path, name: str) -> Path:
    """`folder/name`, or `stem-1.ext`, `stem-2.ext`... when taken: never overwrite."""
    candidate = folder / name
    stem, suffix = Path(name).stem, Path(name).suffix
    number = 0
    while candidate.exists():
        number += 1
        candidate = folder / f"{stem}-{number}{suffix}"
    return candidate


def save_new(folder: Path, name: str, data: bytes) -> Path:
    """Write `data` to a new file in `folder` (created if needed) via a temporary file."""
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".atelier-", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        # os.link refuses an existing target, so two saves racing for a name never clobber.
        while True:
            target = free_path(folder, name)
            try:
                os.link(temporary, target)
            except FileExistsError:
                continue  # taken since free_path looked: the next name
            except OSError:
                # A file system without hard links: rename (free_path has just checked the name).
                os.replace(temporary, target)
            return target
    finally:
        Path(temporary).unlink(missing_ok=True)
