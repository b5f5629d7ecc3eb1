"""REST API: `POST /generations` (DreamBooth text to image) and `POST /styling` (CLIPSeg mask +
Stable Diffusion inpainting), each on its SageMaker endpoint.

Thin: Powertools validates the body against the pydantic model, the service does the work, and
every error body is `{"error": {"code", "message"}}` (503s add `retryAfterSeconds` and the
`Retry-After` header). Answers carry S3 keys and presigned URLs, never image bytes.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from diffusion.handlers.environment import Environment
from diffusion.handlers.telemetry import record_failure, record_outcome
from diffusion.handlers.wiring import build_service
from diffusion.logic.service import DiffusionService
from shared.api_responses import error_doc
from shared.models.diffusion import (
    GenerationAnswer,
    GenerationRequest,
    StylingAnswer,
    StylingRequest,
)
from shared.request_body import UNSUPPORTED_MEDIA_TYPE_DOC, json_api
from shared.request_ids import api_request_id
from shared.rest_api import answer_refusals, lambda_entry
from shared.retry import Deadline

# Left for storing up to eight JPEGs and a mask and answering after the last endpoint attempt.
RESPONSE_MARGIN_SECONDS = 3.0


def _responses(answer: type[GenerationAnswer | StylingAnswer]) -> dict[int, OpenAPIResponse]:
    return {
        200: {
            "description": "The stored images and their presigned URLs",
            "content": {"application/json": {"model": answer}},
        },
        400: error_doc("The request is wrong; the message says what to change"),
        409: error_doc(
            "The endpoint is not deployed; the message names the config key that deploys it"
        ),
        413: error_doc(
            "An image is too large (inline: upload it and pass its key; any: send a smaller one)"
        ),
        415: UNSUPPORTED_MEDIA_TYPE_DOC,
        422: error_doc("The endpoint's handler refused the request; the message says why"),
        502: error_doc("The endpoint or a store failed on this request; retrying won't help"),
        503: error_doc("The endpoint or a store is throttled or unavailable; retry later"),
        504: error_doc(
            "The endpoint did not answer in time: ask for fewer images, fewer steps or a smaller "
            "size"
        ),
    }


app = json_api()


@cache
def service() -> DiffusionService:
    """Built on first use, so importing this module stays cheap and tests can swap it."""
    return build_service(Environment.load())


@app.post(
    "/generations",
    summary="Generate images with the DreamBooth-tuned Stable Diffusion endpoint",
    description="Generates 1-4 images from a prompt on the text-to-image endpoint, stores them as "
    "JPEG in the results bucket and returns a presigned GET URL for each. API Gateway answers "
    "504 after 29 seconds (the images may still be stored under the request's folder): ask for "
    "fewer images or steps when that happens.",
    responses=_responses(GenerationAnswer),
    tags=["diffusion"],
)
def generate(request: Annotated[GenerationRequest, Body()]) -> dict[str, Any]:
    outcome = service().generate(request, request_id=api_request_id(app), deadline=_deadline())
    record_outcome(outcome)
    return outcome.answer.model_dump(mode="json", by_alias=True)


@app.post(
    "/styling",
    summary="Restyle the part of a photo that a text (or your mask) names",
    description="Finds the region with CLIPSeg from maskPrompt (or takes your mask), paints it "
    "from the prompt with Stable Diffusion inpainting, stores the photos (JPEG, the input's "
    "size) and the mask (PNG) in the results bucket and returns presigned GET URLs. The photo "
    "and mask travel inline (base64, up to 2 MiB each) or by key in the uploads bucket.",
    responses=_responses(StylingAnswer),
    tags=["diffusion"],
)
def style(request: Annotated[StylingRequest, Body()]) -> dict[str, Any]:
    outcome = service().style(request, request_id=api_request_id(app), deadline=_deadline())
    record_outcome(outcome)
    return outcome.answer.model_dump(mode="json", by_alias=True, exclude_none=True)


def _deadline() -> Deadline:
    return Deadline.from_lambda_context(app.lambda_context, margin_seconds=RESPONSE_MARGIN_SECONDS)


def _route() -> str:
    path = str(app.current_event.path or "")
    return "styling" if path.rstrip("/").endswith("/styling") else "generations"


def _record_route_failure(code: str) -> None:
    record_failure(_route(), code)


answer_refusals(
    app,
    body_missing="the body must be a JSON object: POST /generations needs prompt; "
    "POST /styling needs image, prompt and maskPrompt (or mask)",
    record_failure=_record_route_failure,
)
handler = lambda_entry(app)
