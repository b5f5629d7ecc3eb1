"""Small DreamBooth dataset folders (JumpStart layout) for the dataset checker tests.

Images are drawn, not downloaded (`tests.titan_data_support.write_image`): a coloured background
with an ellipse "subject", each image a different colour so that no two have the same bytes.
640x576 is above the default training resolution (512) and close to square, so the clean set
passes every rule without a warning.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.titan_data_support import snapshot, write_image

INSTANCE_PROMPT = "a photo of sks dog"
CLASS_PROMPT = "a photo of a dog"
SIZE = (640, 576)

__all__ = [
    "CLASS_PROMPT",
    "INSTANCE_PROMPT",
    "SIZE",
    "make_dataset",
    "snapshot",
    "write_image",
    "write_info",
]


def write_info(folder: Path, document: Any) -> Path:
    """dataset_info.json in `folder`: a dict/list is written as JSON, a str as it is."""
    path = folder / "dataset_info.json"
    text = document if isinstance(document, str) else json.dumps(document)
    path.write_text(text, encoding="utf-8")
    return path


def make_dataset(
    folder: Path,
    count: int = 5,
    *,
    class_count: int = 0,
    info: dict[str, Any] | None = None,
    with_info: bool = True,
    size: tuple[int, int] = SIZE,
) -> Path:
    """`count` instance images dog_NN.jpg/png (alternating), `class_count` class images in
    class_data_dir/, and dataset_info.json (`info`, default both prompts) unless `with_info` is
    False."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        suffix = ".jpg" if index % 2 == 0 else ".png"
        write_image(folder / f"dog_{index:02d}{suffix}", size, colour=_colour(index))
    for index in range(class_count):
        write_image(
            folder / "class_data_dir" / f"class_{index:02d}.jpg",
            (512, 512),
            colour=_colour(100 + index),
        )
    if with_info:
        write_info(
            folder,
            info
            if info is not None
            else {"instance_prompt": INSTANCE_PROMPT, "class_prompt": CLASS_PROMPT},
        )
    return folder


def _colour(index: int) -> tuple[int, int, int]:
    return (7 * index % 256, (120 + 13 * index) % 256, (200 - 3 * index) % 256)
