"""The hyperparameters `titan.prepare` recommends for a valid dataset: the step count from the
documented table of recommended steps by image count (interpolated between its rows, rounded),
batch size and learning rate at their defaults, each clamped to what the service accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from itertools import pairwise
from typing import Any

# Recommended stepCount by number of images for batch size 8 and learning rate 1e-5 (the table
# in docs/image-customization.md, "Recommended steps").
STEP_TABLE: tuple[tuple[int, int], ...] = (
    (8, 1_000),
    (32, 4_000),
    (64, 8_000),
    (1_000, 10_000),
    (10_000, 12_000),
)


# Recommendations are rounded to this many steps: finer precision means nothing for training.
STEP_ROUNDING = 100
STEP_COUNT_BOUNDS = (10, 40_000)
BATCH_SIZE_BOUNDS = (8, 192)
LEARNING_RATE_BOUNDS = (1e-7, 1.0)
DEFAULT_BATCH_SIZE = 8
DEFAULT_LEARNING_RATE = 1e-5


@dataclass(frozen=True)
class Recommendation:
    image_count: int
    step_count: int
    batch_size: int
    learning_rate: float
    notes: tuple[str, ...] = ()

    @property
    def image_passes(self) -> int:
        """Images the job processes in all: what its cost grows with."""
        return self.step_count * self.batch_size

    @property
    def passes_per_image(self) -> float:
        return self.image_passes / self.image_count

    def hyper_parameters(self) -> dict[str, str]:
        """CreateModelCustomizationJob's hyperParameters: a map of strings, not numbers."""
        return {
            "stepCount": str(self.step_count),
            "batchSize": str(self.batch_size),
            "learningRate": format_learning_rate(self.learning_rate),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "hyperParameters": self.hyper_parameters(),
            "imageCount": self.image_count,
            "imagePasses": self.image_passes,
            "passesPerImage": round(self.passes_per_image, 2),
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        lines = [
            f"Recommended for {self.image_count} images: stepCount {self.step_count}, batchSize "
            f"{self.batch_size}, learningRate {format_learning_rate(self.learning_rate)} = "
            f"{self.image_passes:,} image passes, {self.passes_per_image:,.1f} per image.",
            "More steps if the style does not show; fewer if it shows with artifacts or blur.",
        ]
        lines.extend(f"Note: {note}" for note in self.notes)
        return "\n".join(lines)


def format_learning_rate(value: float) -> str:
    """Plain decimal, never exponent notation: 1e-05 -> "0.00001"."""
    return format(Decimal(repr(value)).normalize(), "f")


def recommended_step_count(image_count: int) -> int:
    """stepCount from the reference table, interpolated linearly in the number of images.

    Linear, not in log(image count): from 8 to 64 images the table is exactly 125 steps per image
    (1,000 passes over each image at batch 8), and linear interpolation keeps that proportion for
    every size in between, where most subject fine-tunings (a pet, a product) sit; log
    interpolation would over-train them (16 images: 2,500 steps instead of 2,000). Above 64 images
    the table flattens and the two choices differ by at most about 600 steps (5-7%). Below 8
    images the 8-image value applies, above 10,000 the 10,000-image value.

    Rounded to the nearest 100 steps, ties to even like Python's round(): the same formula as the
    customization workflow's manifest check (lambdas/customization/logic/manifest.py), so the CLI
    and the workflow recommend the same number.
    """
    (first_count, first_steps), (last_count, last_steps) = STEP_TABLE[0], STEP_TABLE[-1]
    if image_count <= first_count:
        return first_steps
    if image_count >= last_count:
        return last_steps
    for (x0, y0), (x1, y1) in pairwise(STEP_TABLE):
        if x0 <= image_count <= x1:
            # Exact fractions: a float could land a hair off a tie and round the other way.
            steps = y0 + Fraction((y1 - y0) * (image_count - x0), x1 - x0)
            return round(steps / STEP_ROUNDING) * STEP_ROUNDING
    raise AssertionError("unreachable: STEP_TABLE covers every count in its range")


def recommend_hyperparameters(
    image_count: int,
    *,
    step_count: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    learning_rate: float = DEFAULT_LEARNING_RATE,
) -> Recommendation:
    """stepCount from the table (or `step_count`), all three clamped to the documented bounds;
    each clamp is named in `notes`."""
    if image_count < 1:
        raise ValueError(f"image_count must be at least 1, got {image_count}")
    notes: list[str] = []
    steps = _clamp(
        "stepCount",
        recommended_step_count(image_count) if step_count is None else step_count,
        STEP_COUNT_BOUNDS,
        notes,
    )
    batch = _clamp("batchSize", batch_size, BATCH_SIZE_BOUNDS, notes)
    rate = _clamp("learningRate", learning_rate, LEARNING_RATE_BOUNDS, notes)
    return Recommendation(image_count, int(steps), int(batch), float(rate), tuple(notes))


def _clamp(name: str, value: float, bounds: tuple[float, float], notes: list[str]) -> float:
    low, high = bounds
    clamped = min(max(value, low), high)
    if clamped != value:
        notes.append(f"{name} {value} is outside {low}-{high}: clamped to {clamped}")
    return clamped
