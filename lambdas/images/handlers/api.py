"""REST API: `POST /images` (synchronous) on the customized Titan model's provisioned throughput.

Thin: Powertools validates the body against the pydantic model, the service does the work, and
every error body is `{"error": {"code", "message"}}` (503s add `retryAfterSeconds` and the
`Retry-After` header).
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Body

from images.handlers.environment import Environment
from images.handlers.telemetry import record_failure, record_generation
from images.handlers.wiring import build_service
from images.logic.service import ImageService
from shared.api_responses import error_doc
from shared.models.images import GeneratedImages, GenerateImagesRequest
from shared.request_body import UNSUPPORTED_MEDIA_TYPE_DOC, json_api
from shared.request_ids import api_request_id
from shared.rest_api import answer_refusals, lambda_entry
from shared.retry import Deadline

# Left for storing up to five PNGs and answering after the last Titan attempt.
RESPONSE_MARGIN_SECONDS = 3.0


app = json_api()


@cache
def service() -> ImageService:
    """Built on first use, so importing this module stays cheap and tests can swap it."""
    return build_service(Environment.load())


@app.post(
    "/images",
    summary="Generate images with the customized Titan model",
    description="Generates 1-5 images from a prompt on the provisioned throughput of the "
    "customized Titan Image Generator G1, stores them as PNG in the results bucket and returns "
    "a presigned GET URL for each. Premium quality and several images take longest: API Gateway "
    "answers 504 after 29 seconds even though the images are still stored.",
    responses={
        200: {
            "description": "The stored images",
            "content": {"application/json": {"model": GeneratedImages}},
        },
        400: error_doc("The request is wrong; the message says what to change"),
        409: error_doc(
            "No customized model is provisioned, or the recorded one is gone: provision first"
        ),
        415: UNSUPPORTED_MEDIA_TYPE_DOC,
        422: error_doc("Titan's content filters refused the prompt or its images"),
        502: error_doc("Titan or the store failed on this request; retrying will not help"),
        503: error_doc("Titan or a store is throttled or unavailable; retry after the hint"),
    },
    tags=["images"],
)
def generate_images(request: Annotated[GenerateImagesRequest, Body()]) -> dict[str, Any]:
    deadline = Deadline.from_lambda_context(
        app.lambda_context, margin_seconds=RESPONSE_MARGIN_SECONDS
    )
    generation = service().generate(request, request_id=api_request_id(app), deadline=deadline)
    record_generation(generation)
    return generation.answer.model_dump(mode="json", by_alias=True)


answer_refusals(
    app,
    body_missing="the body must be a JSON object with prompt, width, height",
    record_failure=record_failure,
)
handler = lambda_entry(app)
