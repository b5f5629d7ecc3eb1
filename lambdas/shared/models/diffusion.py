"""Pydantic models of `POST /generations` and `POST /styling`: settings, requests, answers, and the
limits that come from the services in between.

The request models state the widest ranges the endpoints' handlers accept, so callers and the
OpenAPI document see them; the stage's narrower limits (`diffusion.*` in cdk.json) arrive in
`DIFFUSION_SETTINGS` and are checked by `diffusion.logic.requests`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from shared.models.descriptions import ImageLimitsSettings
from shared.models.errors import ConflictError, DependencyError, RequestError

# Payload limits on the way from the caller to the GPU (infra/config/constants.py states the same
# facts for the config's ceilings; a test keeps the two equal):
# - API Gateway REST APIs take at most 10 MB of request body (not adjustable) and wait at most
#   29 s for the integration by default (docs.aws.amazon.com/apigateway/latest/developerguide/
#   api-gateway-execution-service-limits-table.html), but
# - a synchronous Lambda invocation carries at most 6 MB (6,291,456 bytes) of event, API Gateway's
#   envelope (headers, request context) included (Lambda API reference, Invoke: "For synchronous
#   invocations, the maximum payload size is 6 MB"), and
# - SageMaker real-time InvokeEndpoint takes a body of at most 6,291,456 bytes (`BodyBlob`, max
#   6291456, in botocore's sagemaker-runtime service model; the answer uses the same shape) and
#   gives the container 60 s ("A customer's model containers must respond to requests within 60
#   seconds", InvokeEndpoint API reference).
LAMBDA_SYNC_PAYLOAD_BYTES = 6_291_456
INVOKE_ENDPOINT_MAX_BODY_BYTES = 6_291_456
# Two inline images of this size (2 x 2,796,204 base64 characters) leave ~0.7 MB of the Lambda
# event for API Gateway's envelope and the other fields: the function always gets to answer.
MAX_INLINE_IMAGE_BYTES = 2 * 1024 * 1024
# The styling handler works at one of these square sizes (training/styling/inference.py).
STYLING_IMAGE_LENGTHS: tuple[int, ...] = (512, 768)
# Stable Diffusion's VAE downsamples by 8: width and height must be multiples of it.
SIZE_MULTIPLE = 8
# The endpoints' handlers refuse more (training/dreambooth/inference.py and
# training/styling/inference.py: MAX_IMAGES_PER_PROMPT, MAX_INFERENCE_STEPS, MAX_GUIDANCE_SCALE,
# MAX_SIDE, MAX_BATCH_PIXELS), so no stage may allow more either.
MAX_IMAGES_PER_REQUEST = 4
MAX_STEPS = 100
MAX_GUIDANCE_SCALE = 20.0
MAX_GENERATION_SIDE = 1024
# Width x height x images of one text-to-image request: four 768 px images, what a 16 GB T4
# holds in float16.
MAX_GENERATION_BATCH_PIXELS = 4 * 768 * 768
MAX_PROMPT_CHARACTERS = 2000
# torch.Generator.manual_seed takes any 64-bit value; numpy-based code takes 32 bits.
MAX_SEED = 2**32 - 1
# S3 keys are at most 1,024 bytes.
MAX_KEY_LENGTH = 1024
DEFAULT_NUMBER_OF_IMAGES = 1
# POST /styling follows the reference styling workflow (training/styling/inference.py has the same
# defaults): two images per request (fewer when the stage allows fewer) and guidance 6.5.
STYLING_DEFAULT_NUMBER_OF_IMAGES = 2
STYLING_DEFAULT_GUIDANCE_SCALE = 6.5
# How the endpoint turns CLIPSeg's answer into the mask: a hard threshold (the default) or the
# reference workflow's soft mask, the normal CDF of CLIPSeg's logits.
MASK_MODES = ("threshold", "soft")


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="forbid")


class EndpointSettings(_Model):
    """One SageMaker endpoint, and what to tell the caller when it is not deployed."""

    endpoint_name: str = Field(alias="endpointName", min_length=1)
    # The cdk.json key whose model archive makes the Hosting stack create the endpoint.
    config_key: str = Field(alias="configKey", min_length=1)
    # Where the training workflow records the latest archive of this kind.
    model_data_parameter: str = Field(alias="modelDataParameter", min_length=1)
    label: str = Field(min_length=1)


class DiffusionSettings(_Model):
    """The `DIFFUSION_SETTINGS` environment variable, written by the Api stack from cdk.json."""

    generation: EndpointSettings
    styling: EndpointSettings
    max_prompt_characters: int = Field(alias="maxPromptCharacters", gt=0, le=MAX_PROMPT_CHARACTERS)
    max_images_per_request: int = Field(
        alias="maxImagesPerRequest", gt=0, le=MAX_IMAGES_PER_REQUEST
    )
    min_side: int = Field(alias="minSide", gt=0)
    max_side: int = Field(alias="maxSide", gt=0, le=MAX_GENERATION_SIDE)
    max_pixels: int = Field(alias="maxPixels", gt=0)
    default_size: int = Field(alias="defaultSize", gt=0)
    default_steps: int = Field(alias="defaultSteps", gt=0, le=MAX_STEPS)
    max_steps: int = Field(alias="maxSteps", gt=0, le=MAX_STEPS)
    default_guidance_scale: float = Field(alias="defaultGuidanceScale", ge=0)
    max_guidance_scale: float = Field(alias="maxGuidanceScale", gt=0, le=MAX_GUIDANCE_SCALE)
    image_lengths: tuple[int, ...] = Field(alias="imageLengths", min_length=1)
    default_image_length: int = Field(alias="defaultImageLength")
    image: ImageLimitsSettings
    max_inline_image_bytes: int = Field(
        alias="maxInlineImageBytes", gt=0, le=MAX_INLINE_IMAGE_BYTES
    )
    presigned_url_seconds: int = Field(alias="presignedUrlSeconds", gt=0)
    # The function's timeout less the time to store and answer: no endpoint call may outlast it.
    model_read_timeout_seconds: int = Field(alias="modelReadTimeoutSeconds", gt=0)


_PROMPT = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PROMPT_CHARACTERS)]
_S3_KEY = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=MAX_KEY_LENGTH, pattern=r"^[^/\x00-\x1f][^\x00-\x1f]*$"
    ),
]


class InputImage(BaseModel):
    """A JPEG, PNG or WebP image, inline (base64) or already in the uploads bucket (key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base64: str | None = Field(
        default=None,
        min_length=1,
        description="The image, base64-encoded (a data: URL prefix is accepted). Inline images "
        "are limited to 2 MiB (the stage may allow less): upload larger ones to the uploads "
        "bucket and pass `key` instead.",
    )
    key: _S3_KEY | None = Field(
        default=None,
        description="S3 key of the image in the uploads bucket, under `styling/` (or `incoming/`, "
        "where product photos for descriptions arrive).",
        examples=["styling/model-photo-0042.jpg"],
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> InputImage:
        if (self.base64 is None) == (self.key is None):
            raise ValueError("give exactly one of base64 (the image inline) or key (uploaded)")
        return self


class _DiffusionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: _PROMPT = Field(
        description="What to draw. The text encoder reads 75 tokens (about 50-60 words); the "
        "endpoint refuses a longer prompt (422) rather than cut it. 1-2000 characters (the "
        "stage may allow fewer).",
    )
    negativePrompt: _PROMPT | None = Field(  # noqa: N815 - the API's JSON field names
        default=None,
        description="What not to draw, e.g. 'blurry, deformed, text'.",
        examples=["blurry, deformed, text"],
    )
    numImages: int | None = Field(  # noqa: N815
        default=None,
        strict=True,
        ge=1,
        le=MAX_IMAGES_PER_REQUEST,
        description="Images to generate, 1-4 (the stage may allow fewer; 1 when omitted).",
    )
    steps: int | None = Field(
        default=None,
        strict=True,
        ge=1,
        le=MAX_STEPS,
        description="Denoising steps: more is slower and finer (the stage's default when "
        "omitted, and its maximum applies).",
    )
    guidanceScale: float | None = Field(  # noqa: N815
        default=None,
        strict=True,
        ge=0,
        le=MAX_GUIDANCE_SCALE,
        description="How strictly the images follow the prompt (classifier-free guidance; 1 or "
        "less turns it off). The stage's default when omitted.",
    )
    seed: int | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=MAX_SEED,
        description="Same seed, inputs and settings: the same images. Omitted: a random seed, "
        "returned in the answer.",
    )

    @model_validator(mode="after")
    def _prompts_not_blank(self) -> _DiffusionRequest:
        for name in ("prompt", "negativePrompt"):
            value = getattr(self, name)
            if value is not None and not value.strip():
                raise ValueError(f"{name} must contain more than whitespace")
        return self


class GenerationRequest(_DiffusionRequest):
    """Body of `POST /generations` (the DreamBooth-tuned text-to-image endpoint)."""

    prompt: _PROMPT = Field(
        description="What to draw; name the subject with the identifier of its training prompt "
        "(e.g. 'a photo of riobugger cat on a beach'). 1-2000 characters (the stage may allow "
        "fewer; the text encoder reads 75 tokens and the endpoint refuses a longer prompt).",
        examples=["a photo of riobugger cat wearing a red scarf, studio light"],
    )
    width: int | None = Field(
        default=None,
        strict=True,
        gt=0,
        description="Image width in pixels, a multiple of 8 within the stage's bounds (256-1024 "
        "and at most 786,432 pixels in the shipped config; width x height x numImages at most "
        "2,359,296, four 768x768 images); the stage's default when omitted.",
        examples=[512],
    )
    height: int | None = Field(
        default=None,
        strict=True,
        gt=0,
        description="Image height in pixels; see width.",
        examples=[512],
    )


class StylingRequest(_DiffusionRequest):
    """Body of `POST /styling`: restyle the part of a photo that a text (or a mask) names."""

    prompt: _PROMPT = Field(
        description="What to paint into the masked region, e.g. 'a long floral summer skirt'.",
        examples=["a long floral summer skirt, photo, high detail"],
    )
    image: InputImage = Field(description="The photo to restyle")
    maskPrompt: _PROMPT | None = Field(  # noqa: N815
        default=None,
        description="What to replace, found by CLIPSeg, e.g. 'the skirt'. Exactly one of "
        "maskPrompt and mask.",
        examples=["the skirt"],
    )
    mask: InputImage | None = Field(
        default=None,
        description="Your own mask instead of maskPrompt: an image of the photo's size, white "
        "where to paint, black where to keep.",
    )
    imageLength: Literal[512, 768] | None = Field(  # noqa: N815
        default=None,
        description="Side in pixels the model works at (512 or 768; the stage may allow one); "
        "the images come back at the photo's own size.",
    )
    maskThreshold: float | None = Field(  # noqa: N815
        default=None,
        strict=True,
        gt=0,
        lt=1,
        description="With maskPrompt and maskMode threshold: the CLIPSeg probability above which "
        "a pixel is painted (the endpoint's default, 0.4, when omitted).",
    )
    maskMode: Literal["threshold", "soft"] | None = Field(  # noqa: N815
        default=None,
        description="With maskPrompt: 'threshold' (the default) paints where CLIPSeg's "
        "probability is above maskThreshold, with a hard edge; 'soft' uses the normal CDF of "
        "CLIPSeg's logits as a grey-level mask, so the new garment fades into the photo at its "
        "edge (no maskThreshold with it).",
    )

    @model_validator(mode="after")
    def _one_mask(self) -> StylingRequest:
        if self.maskPrompt is not None and not self.maskPrompt.strip():
            raise ValueError("maskPrompt must contain more than whitespace")
        if (self.maskPrompt is None) == (self.mask is None):
            raise ValueError(
                "give exactly one of maskPrompt (the region in words, e.g. 'the skirt') or "
                "mask (your own mask image)"
            )
        if self.maskThreshold is not None and self.maskPrompt is None:
            raise ValueError("maskThreshold applies only with maskPrompt")
        if self.maskMode is not None and self.maskPrompt is None:
            raise ValueError("maskMode applies only with maskPrompt")
        if self.maskMode == "soft" and self.maskThreshold is not None:
            raise ValueError("maskThreshold applies only to maskMode threshold")
        return self


class StoredImage(_Model):
    key: str = Field(description="S3 key of the image in the results bucket")
    url: str = Field(description="Presigned HTTPS GET URL of the image")
    expires_at: str = Field(alias="expiresAt", description="When the URL stops working (UTC)")


class GenerationAnswer(_Model):
    """What `POST /generations` returns."""

    request_id: str = Field(alias="requestId", description="API Gateway's id of this request")
    images: list[StoredImage] = Field(description="The generated JPEGs")
    seed: int = Field(description="The seed the images were generated with")


class StylingAnswer(_Model):
    """What `POST /styling` returns."""

    request_id: str = Field(alias="requestId", description="API Gateway's id of this request")
    images: list[StoredImage] = Field(description="The restyled photos (JPEG, the photo's size)")
    mask: StoredImage | None = Field(
        default=None,
        description="With maskPrompt: the mask CLIPSeg found (PNG, white = painted); absent "
        "when you sent your own mask",
    )
    seed: int = Field(description="The seed the images were generated with")


# -- errors ----------------------------------------------------------------------------------------


class EndpointNotDeployedError(ConflictError):
    """The endpoint does not exist: no model archive is configured for it (or it was deleted)."""

    def __init__(self, endpoint: EndpointSettings) -> None:
        super().__init__(
            "endpoint_not_deployed",
            f"the {endpoint.label} endpoint {endpoint.endpoint_name} does not exist. Set "
            f"{endpoint.config_key} in cdk.json to a trained model archive (the training "
            f"workflow records the latest in SSM parameter {endpoint.model_data_parameter}) "
            "and deploy the Hosting stack, then retry.",
        )


class ModelRejectedError(RequestError):
    """The endpoint's handler refused the request (it raised ValueError naming the problem)."""

    def __init__(self, endpoint: EndpointSettings, detail: str) -> None:
        super().__init__(
            "model_rejected_request",
            f"the {endpoint.label} endpoint refused the request: {detail}"[:600],
            status=422,
        )


class ModelTimeoutError(DependencyError):
    """The endpoint did not answer in time: SageMaker's 60 s, or what the function had left.

    Not retried (the same request would take as long again) and no Retry-After: the caller has to
    ask for less, or try when the endpoint is less busy."""

    def __init__(self, endpoint: EndpointSettings, detail: str) -> None:
        super().__init__(
            "model_timeout",
            f"the {endpoint.label} endpoint did not answer in time ({detail}); ask for fewer "
            "images, fewer steps or a smaller size, or retry when the endpoint is less busy",
            retryable=False,
        )
        self.status = 504
