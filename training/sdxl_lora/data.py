"""Images → SDXL training batches, on DreamBooth's data code (dreambooth/data.py): the same
examples, epoch order and per-example seeded crops, plus what SDXL is conditioned on besides
the prompt: each picture's `add_time_ids` (original height and width, the crop's top and left,
the target height and width), as in SDXL's own training."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dreambooth.data import (
    Examples,
    batch_rows,
    cropped_image_tensor,
    example_rng,
    load_rgb,
    row_prompt_ids,
)

PromptIds = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class SdxlBatch:
    """One micro-batch: instance rows first, then (with prior preservation) as many class rows."""

    pixel_values: torch.Tensor
    prompt_ids: torch.Tensor
    prompt_ids_2: torch.Tensor
    time_ids: torch.Tensor
    instances: int


def make_batch(
    examples: Examples,
    positions: Sequence[int],
    *,
    epoch: int,
    seed: int,
    resolution: int,
    center_crop: bool,
    instance_ids: PromptIds,
    class_ids: PromptIds | None,
) -> SdxlBatch:
    rows = batch_rows(examples, positions, with_class=class_ids is not None)
    pixels, time_ids = [], []
    for path, role, position in rows:
        image = load_rgb(path)
        rng = example_rng(seed, epoch, position, role)
        tensor, (top, left) = cropped_image_tensor(
            image, resolution, center_crop=center_crop, rng=rng
        )
        pixels.append(tensor)
        width, height = image.size
        time_ids.append([height, width, top, left, resolution, resolution])
    ids = row_prompt_ids(instance_ids, class_ids, len(positions))
    return SdxlBatch(
        pixel_values=torch.stack(pixels),
        prompt_ids=torch.cat([pair[0] for pair in ids]),
        prompt_ids_2=torch.cat([pair[1] for pair in ids]),
        time_ids=torch.tensor(time_ids, dtype=torch.float32),
        instances=len(positions),
    )
