"""Images → training tensors for DreamBooth: resize and crop, inpainting masks, epoch order.

Every random choice (the crop, the mask, the order of an epoch) comes from a generator seeded by
(seed, epoch, position), never from global state, so a job resumed mid-epoch sees exactly the
examples the interrupted one would have seen.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageOps

# Share of inpainting examples whose mask covers the whole picture: the model must still learn to
# draw the subject from the prompt alone, as in the base inpainting model's own training.
FULL_MASK_PROBABILITY = 0.25
MAX_SHAPES = 3
# A prompt's token ids: one tensor (Stable Diffusion) or one per text encoder (SDXL).
Ids = TypeVar("Ids")


def load_rgb(path: Path) -> Image.Image:
    """The image as RGB, turned the way its EXIF orientation says (phone photos)."""
    with Image.open(path) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


def example_rng(seed: int, epoch: int, position: int, role: str) -> random.Random:
    # A string seed is hashed with SHA-512 by `random`, the same in every process.
    return random.Random(f"{seed}:{epoch}:{position}:{role}")


def image_tensor(
    image: Image.Image, resolution: int, *, center_crop: bool, rng: random.Random
) -> torch.Tensor:
    """Shorter side resized to `resolution`, then a square crop: centred, or at a random offset
    (a cheap augmentation for a dataset of a handful of pictures). Values in [-1, 1], (3, R, R)."""
    return cropped_image_tensor(image, resolution, center_crop=center_crop, rng=rng)[0]


def cropped_image_tensor(
    image: Image.Image, resolution: int, *, center_crop: bool, rng: random.Random
) -> tuple[torch.Tensor, tuple[int, int]]:
    """`image_tensor`, and the crop's (top, left) offset in the resized picture: SDXL is
    conditioned on it (its `add_time_ids`)."""
    width, height = image.size
    scale = resolution / min(width, height)
    size = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
    resized = image.resize(size, Image.Resampling.BICUBIC)
    spare_x, spare_y = size[0] - resolution, size[1] - resolution
    if center_crop:
        left, top = spare_x // 2, spare_y // 2
    else:
        left, top = rng.randint(0, spare_x), rng.randint(0, spare_y)
    cropped = resized.crop((left, top, left + resolution, top + resolution))
    pixels = torch.from_numpy(np.asarray(cropped, dtype=np.float32).copy())
    return pixels.permute(2, 0, 1) / 127.5 - 1.0, (top, left)


def random_mask(resolution: int, rng: random.Random) -> torch.Tensor:
    """A (1, R, R) mask of 0s and 1s (1 = repaint): the whole picture sometimes, otherwise one to
    three rectangles and brush strokes, the shapes a CLIPSeg mask of a garment roughly takes."""
    if rng.random() < FULL_MASK_PROBABILITY:
        return torch.ones(1, resolution, resolution)
    canvas = Image.new("L", (resolution, resolution), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.randint(1, MAX_SHAPES)):
        if rng.random() < 0.5:
            width = rng.randint(max(1, resolution // 8), max(1, resolution * 3 // 4))
            height = rng.randint(max(1, resolution // 8), max(1, resolution * 3 // 4))
            left = rng.randint(0, resolution - width)
            top = rng.randint(0, resolution - height)
            draw.rectangle((left, top, left + width - 1, top + height - 1), fill=255)
        else:
            brush = rng.randint(max(1, resolution // 16), max(2, resolution // 5))
            points = [
                (rng.randint(0, resolution - 1), rng.randint(0, resolution - 1))
                for _ in range(rng.randint(2, 5))
            ]
            draw.line(points, fill=255, width=brush, joint="curve")
            for x, y in (points[0], points[-1]):
                radius = brush // 2
                draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
    mask = torch.from_numpy(np.asarray(canvas, dtype=np.float32).copy()) / 255.0
    return (mask > 0.5).float().unsqueeze(0)


def masked_image(pixels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """What the inpainting UNet is shown of the picture: the pixels outside the mask (the
    masked ones are 0, mid-grey in [-1, 1]), as the inpainting pipeline prepares it."""
    return pixels * (mask < 0.5)


def epoch_batches(size: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The epoch's batches of example positions; the shuffle depends only on (seed, epoch)."""
    order = list(range(size))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return [order[start : start + batch_size] for start in range(0, size, batch_size)]


@dataclass(frozen=True)
class Examples:
    """The training set: each position pairs an instance image with a class image when prior
    preservation is on. Its length is the larger of the two lists (the shorter one cycles), so
    that an epoch shows every class image once, as in the reference DreamBooth script."""

    instance_images: Sequence[Path]
    class_images: Sequence[Path]

    def __len__(self) -> int:
        return max(len(self.instance_images), len(self.class_images))

    def instance(self, position: int) -> Path:
        return self.instance_images[position % len(self.instance_images)]

    def klass(self, position: int) -> Path:
        return self.class_images[position % len(self.class_images)]


@dataclass(frozen=True)
class Batch:
    """One micro-batch: instance rows first, then (with prior preservation) as many class rows."""

    pixel_values: torch.Tensor
    prompt_ids: torch.Tensor
    masks: torch.Tensor | None
    instances: int


def batch_rows(
    examples: Examples, positions: Sequence[int], *, with_class: bool
) -> list[tuple[Path, str, int]]:
    """(image, role, position) of each row of a micro-batch: the instance rows first, then
    (prior preservation) the class rows of the same positions."""
    rows = [(examples.instance(p), "instance", p) for p in positions]
    if with_class:
        rows += [(examples.klass(p), "class", p) for p in positions]
    return rows


def row_prompt_ids(instance_ids: Ids, class_ids: Ids | None, positions: int) -> list[Ids]:
    """Each row's prompt token ids, in batch_rows' order."""
    ids = [instance_ids] * positions
    if class_ids is not None:
        ids += [class_ids] * positions
    return ids


def make_batch(
    examples: Examples,
    positions: Sequence[int],
    *,
    epoch: int,
    seed: int,
    resolution: int,
    center_crop: bool,
    instance_ids: torch.Tensor,
    class_ids: torch.Tensor | None,
    inpainting: bool,
) -> Batch:
    """Pixels, prompt token ids and (inpainting) masks of the examples at `positions`."""
    rows = batch_rows(examples, positions, with_class=class_ids is not None)
    pixels, masks = [], []
    for path, role, position in rows:
        rng = example_rng(seed, epoch, position, role)
        pixels.append(image_tensor(load_rgb(path), resolution, center_crop=center_crop, rng=rng))
        if inpainting:
            masks.append(random_mask(resolution, rng))
    ids = row_prompt_ids(instance_ids, class_ids, len(positions))
    return Batch(
        pixel_values=torch.stack(pixels),
        prompt_ids=torch.cat(ids),
        masks=torch.stack(masks) if inpainting else None,
        instances=len(positions),
    )
