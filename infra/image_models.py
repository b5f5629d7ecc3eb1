"""Bedrock image models that take fine-tuning, and each one's limits.

The Titan track (`titan.*` in cdk.json, the Bedrock stack's customize workflow) is generic over
these entries: `titan.base_model_id` picks one, and its hyperparameter defaults, an execution's
overrides and the manifest rules are checked against that entry's limits.

Checked on 2026-12-07 against the Bedrock user guide:

- Amazon Nova Canvas: "Amazon Nova Canvas model customization hyperparameters" (batchSize 8-192,
  stepCount 10-20,000, learningRate 1e-7 to 1e-4).
- Titan Image Generator G1 v1 and v2: the guide no longer lists their customization page (both
  reached end of life on 2026-06-30); the ranges below are those Atelier has shipped with since
  the Titan track was written (batchSize 8-192, stepCount 10-40,000, learningRate 1e-7 to 1).
- The dataset rules (5-10,000 image/caption records, captions of 3-1,024 characters, JPEG or PNG
  of at most 50 MB) are the same for all three; lambdas/customization/logic/manifest.py checks
  them before a job is paid for.

What the lifecycle tables said on that day is in `documented_state`; it only feeds the docs and
`atelier doctor`'s explanation. Whether a model can be customized is decided at run time, from
Bedrock's own GetFoundationModel answer (the customize workflow refuses a Legacy base model and
the daily lifecycle check warns ahead of its end of life): never from this table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class DatasetRules:
    """What a training manifest must hold (one JSON line per image: image-ref and caption)."""

    min_records: int
    max_records: int
    min_caption_characters: int
    max_caption_characters: int
    max_image_bytes: int
    image_formats: tuple[str, ...]


@dataclass(frozen=True)
class ImageModelLimits:
    """One fine-tunable Bedrock image model: its ids, ranges, regions and documented state."""

    name: str
    # The ids Bedrock accepts for it as a customization base; the first is the canonical one.
    model_ids: tuple[str, ...]
    step_count: tuple[int, int]
    batch_size: tuple[int, int]
    learning_rate: tuple[float, float]
    dataset: DatasetRules
    # Regions where Bedrock offered customization of this model.
    regions: tuple[str, ...]
    # The lifecycle tables on 2026-12-07, for people: "Legacy", "end of life 2026-06-30"...
    documented_state: str


_CAPTIONED_IMAGES = DatasetRules(
    min_records=5,
    max_records=10_000,
    min_caption_characters=3,
    max_caption_characters=1_024,
    max_image_bytes=50_000_000,
    image_formats=("jpeg", "png"),
)

_TITAN_G1 = ImageModelLimits(
    name="Titan Image Generator G1 v1",
    model_ids=("amazon.titan-image-generator-v1:0", "amazon.titan-image-generator-v1"),
    step_count=(10, 40_000),
    batch_size=(8, 192),
    learning_rate=(1e-7, 1.0),
    dataset=_CAPTIONED_IMAGES,
    regions=("us-east-1", "us-west-2"),
    documented_state="end of life (2026-06-30)",
)

IMAGE_MODELS: tuple[ImageModelLimits, ...] = (
    _TITAN_G1,
    # v2 took the same customization limits, regions and end-of-life date as v1.
    replace(
        _TITAN_G1,
        name="Titan Image Generator G1 v2",
        model_ids=("amazon.titan-image-generator-v2:0",),
    ),
    ImageModelLimits(
        name="Amazon Nova Canvas",
        model_ids=("amazon.nova-canvas-v1:0",),
        step_count=(10, 20_000),
        batch_size=(8, 192),
        learning_rate=(1e-7, 1e-4),
        dataset=_CAPTIONED_IMAGES,
        regions=("us-east-1",),
        documented_state="end of life (2026-09-30; Legacy before that)",
    ),
)


def image_model(model_id: str) -> ImageModelLimits | None:
    """The entry Bedrock's `model_id` belongs to, or None when no entry lists it."""
    for entry in IMAGE_MODELS:
        if model_id in entry.model_ids:
            return entry
    return None


def known_image_model_ids() -> tuple[str, ...]:
    return tuple(model_id for entry in IMAGE_MODELS for model_id in entry.model_ids)


def shared_image_model_limits() -> ImageModelLimits:
    """The ranges every entry accepts: what the hyperparameter defaults are checked against while
    `titan.base_model_id` is null, so that configuring any entry later keeps them valid."""
    return ImageModelLimits(
        name="every fine-tunable image model",
        model_ids=(),
        step_count=(
            max(entry.step_count[0] for entry in IMAGE_MODELS),
            min(entry.step_count[1] for entry in IMAGE_MODELS),
        ),
        batch_size=(
            max(entry.batch_size[0] for entry in IMAGE_MODELS),
            min(entry.batch_size[1] for entry in IMAGE_MODELS),
        ),
        learning_rate=(
            max(entry.learning_rate[0] for entry in IMAGE_MODELS),
            min(entry.learning_rate[1] for entry in IMAGE_MODELS),
        ),
        dataset=_CAPTIONED_IMAGES,
        regions=tuple(
            region
            for region in dict.fromkeys(r for entry in IMAGE_MODELS for r in entry.regions)
            if all(region in entry.regions for entry in IMAGE_MODELS)
        ),
        documented_state="not a model: the ranges all entries share",
    )
