"""`styling`: virtual styling, CLIPSeg and Stable Diffusion inpainting on one endpoint, and the
DreamBooth inpainting training that produces its archives."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from infra.config.constants import HUB_MODEL_ID_PATTERN, HUB_REVISION_PATTERN
from infra.config.dreambooth import DreamBoothTrainingConfig
from infra.config.hosting import StylingHostingConfig
from infra.config.rules import matching, section
from infra.config.training_jobs import hub_revision_text


@section
class StylingTrainingConfig(DreamBoothTrainingConfig):
    """DreamBooth of an inpainting pipeline, packed with the segmentation model that turns a
    request's mask prompt into a mask."""

    config_texts: ClassVar[Mapping[str, str]] = {
        "base_model_example": "sd2-community/stable-diffusion-2-inpainting"
    }

    clipseg_model: str = matching(
        HUB_MODEL_ID_PATTERN,
        "a Hugging Face model id such as 'CIDAS/clipseg-rd64-refined'",
        "text-prompted segmentation model packed beside the pipeline in the styling archive",
    )
    clipseg_model_revision: str = matching(
        HUB_REVISION_PATTERN,
        hub_revision_text("clipseg_model"),
        "its 40-hex Hub commit",
        allowed="a 40-hex Hub commit (not a branch or tag)",
    )


@section
class StylingConfig:
    """Virtual styling: CLIPSeg and Stable Diffusion inpainting on one endpoint
    (`infra.models.STYLING.endpoint_name`), serving an archive of its training workflow."""

    training: StylingTrainingConfig
    hosting: StylingHostingConfig
