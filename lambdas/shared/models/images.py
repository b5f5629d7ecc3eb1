"""Pydantic models of `POST /images`: its settings, request and answer, and Titan's limits.

The request model states Titan Image Generator G1's own documented ranges, so API callers and the
OpenAPI document see them; the stage's narrower limits (`images.*` in cdk.json) arrive in
`IMAGES_SETTINGS` and are checked by `images.logic.requests`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from shared.models.errors import ConflictError, RequestError

# Titan Image Generator G1 (text to image), as Bedrock documents it. infra/config/constants.py
# states the same facts to check the stage config against; a test keeps the two equal.
TITAN_IMAGE_SIZES: tuple[tuple[int, int], ...] = (
    (1024, 1024), (768, 768), (512, 512), (768, 1152), (384, 576), (1152, 768), (576, 384),
    (768, 1280), (384, 640), (1280, 768), (640, 384), (896, 1152), (448, 576), (1152, 896),
    (576, 448), (768, 1408), (384, 704), (1408, 768), (704, 384), (640, 1408), (320, 704),
    (1408, 640), (704, 320), (1152, 640), (1173, 640),
)  # fmt: skip
TITAN_MAX_PROMPT_CHARACTERS = 512
TITAN_MAX_IMAGES_PER_REQUEST = 5
TITAN_MIN_CFG_SCALE = 1.1
TITAN_MAX_CFG_SCALE = 10.0
TITAN_MAX_SEED = 2_147_483_646
DEFAULT_NUMBER_OF_IMAGES = 1
DEFAULT_CFG_SCALE = 8.0

Quality = Literal["standard", "premium"]
DEFAULT_QUALITY: Quality = "standard"

# Titan answers a refused prompt, or refused output, with a message naming its content filters
# (as a ValidationException, or in the body's `error` field).
_CONTENT_FILTER = re.compile(r"content filters?|responsible ai", re.IGNORECASE)


def is_content_filter_message(message: str) -> bool:
    return bool(_CONTENT_FILTER.search(message))


class ContentFilteredError(RequestError):
    """Titan refused the prompt or withheld the images it generated: ask for something else."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            "content_filtered",
            "Titan Image Generator's content filters refused this request (the prompt, or the "
            f"images it produced); change the prompt. Bedrock said: {detail}"[:600],
            status=422,
        )


class NoCustomizedModelError(ConflictError):
    """No provisioned throughput is recorded: nothing can generate images yet."""

    def __init__(self, parameter: str) -> None:
        super().__init__(
            "no_customized_model",
            f"no customized Titan model is provisioned: SSM parameter {parameter} does not exist. "
            "Run the Bedrock stack's customize and provisioning workflow first (atelier "
            "customize titan; it records the provisioned model's ARN there), then retry. That "
            "workflow is deployed only while titan.base_model_id names a Bedrock image model "
            "that can be fine-tuned (docs/image-customization.md).",
        )


class ProvisionedModelUnavailableError(ConflictError):
    """The recorded provisioned model is gone or not ready (released, failed, or being updated)."""

    def __init__(self, model_arn: str, detail: str) -> None:
        super().__init__(
            "provisioned_model_unavailable",
            f"the provisioned model {model_arn} is not available ({detail[:300]}); it was "
            "probably released, or is not in service. Provision throughput again with the Bedrock "
            "stack's workflow, then retry.",
        )


def size_text(width: int, height: int) -> str:
    return f"{width}x{height}"


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="forbid")


class ImagesSettings(_Model):
    """The `IMAGES_SETTINGS` environment variable, written by the Api stack from cdk.json."""

    max_prompt_characters: int = Field(
        alias="maxPromptCharacters", gt=0, le=TITAN_MAX_PROMPT_CHARACTERS
    )
    max_images_per_request: int = Field(
        alias="maxImagesPerRequest", gt=0, le=TITAN_MAX_IMAGES_PER_REQUEST
    )
    sizes: tuple[Annotated[str, StringConstraints(pattern=r"^\d+x\d+$")], ...] = Field(min_length=1)
    model_arn_cache_seconds: int = Field(alias="modelArnCacheSeconds", ge=0)
    presigned_url_seconds: int = Field(alias="presignedUrlSeconds", gt=0)
    # The function's timeout less time to store and answer: no Titan call may outlast it.
    model_read_timeout_seconds: int = Field(alias="modelReadTimeoutSeconds", gt=0)

    def allowed_sizes(self) -> list[tuple[int, int]]:
        return [(int(w), int(h)) for w, h in (size.split("x") for size in self.sizes)]


_PROMPT = Annotated[str, StringConstraints(min_length=1, max_length=TITAN_MAX_PROMPT_CHARACTERS)]
_WIDTH_DESCRIPTION = (
    "Image width in pixels; width x height must be one of Titan Image Generator G1's sizes: "
    + ", ".join(size_text(*size) for size in TITAN_IMAGE_SIZES)
    + " (the stage may allow fewer)."
)


class GenerateImagesRequest(BaseModel):
    """Body of `POST /images`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: _PROMPT = Field(
        description="What to draw, in English; name your subject the way the training captions "
        "did (e.g. 'Ron the dog'). 1-512 characters (the stage may allow fewer).",
        examples=["Ron the dog wearing a red scarf, sitting on a white dog bed, studio light"],
    )
    negativePrompt: _PROMPT | None = Field(  # noqa: N815 - the API's JSON field names
        default=None,
        description="What not to draw, e.g. 'blurry, text'. 1-512 characters.",
        examples=["blurry, cartoon, text"],
    )
    numberOfImages: int = Field(  # noqa: N815
        default=DEFAULT_NUMBER_OF_IMAGES,
        strict=True,
        ge=1,
        le=TITAN_MAX_IMAGES_PER_REQUEST,
        description="Images to generate, 1-5 (the stage may allow fewer).",
    )
    width: int = Field(strict=True, gt=0, description=_WIDTH_DESCRIPTION, examples=[1024])
    height: int = Field(
        strict=True, gt=0, description="Image height in pixels; see width.", examples=[1024]
    )
    cfgScale: float = Field(  # noqa: N815
        default=DEFAULT_CFG_SCALE,
        strict=True,
        ge=TITAN_MIN_CFG_SCALE,
        le=TITAN_MAX_CFG_SCALE,
        description="How strictly the images follow the prompt, 1.1-10.",
    )
    seed: int | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=TITAN_MAX_SEED,
        description="Same seed, prompt and settings: the same images. Omitted: a random seed, "
        "returned in the answer.",
    )
    quality: Quality = Field(
        default=DEFAULT_QUALITY,
        description="'premium' takes noticeably longer; five premium images may not finish "
        "within API Gateway's 29 seconds.",
    )

    @field_validator("prompt", "negativePrompt")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must contain more than whitespace")
        return value


class GeneratedImage(_Model):
    key: str = Field(description="S3 key of the PNG in the results bucket")
    url: str = Field(description="Presigned HTTPS GET URL of the PNG")
    expires_at: str = Field(alias="expiresAt", description="When the URL stops working (UTC)")


class GeneratedImages(_Model):
    """What `POST /images` returns."""

    request_id: str = Field(alias="requestId", description="API Gateway's id of this request")
    images: list[GeneratedImage]
    seed: int = Field(description="The seed the images were generated with")
