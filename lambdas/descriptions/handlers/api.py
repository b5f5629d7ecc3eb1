"""REST API: `POST /descriptions` (synchronous) and `GET /descriptions/{productId}`.

Thin: parse and validate the request (Powertools event handler with pydantic), call the
pipeline, shape the answer. Every error body is `{"error": {"code", "message"}}`.
"""

from __future__ import annotations

import base64
import binascii
from functools import cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from descriptions.handlers.environment import Environment
from descriptions.handlers.telemetry import record_description, record_failure
from descriptions.handlers.wiring import build_pipeline
from descriptions.logic.pipeline import DescriptionJob, DescriptionPipeline
from shared.api_responses import error_doc
from shared.models.descriptions import PRODUCT_ID_PATTERN, DescribeRequest, StoredDescription
from shared.models.errors import NotFoundError, RequestError
from shared.request_body import UNSUPPORTED_MEDIA_TYPE_DOC, json_api
from shared.rest_api import answer_refusals, lambda_entry
from shared.retry import Deadline

# Left for answering and logging after the last dependency call.
RESPONSE_MARGIN_SECONDS = 1.5


_DESCRIPTION_RESPONSE: OpenAPIResponse = {
    "description": "The stored description",
    "content": {"application/json": {"model": StoredDescription}},
}

app = json_api()


@cache
def pipeline() -> DescriptionPipeline:
    """Built on first use, so importing this module stays cheap and tests can swap it."""
    return build_pipeline(Environment.load())


@app.post(
    "/descriptions",
    summary="Describe a product from its photo",
    description="Reads the attributes from the photo, writes the description in each requested "
    "language, checks it against the attributes, stores it and returns it.",
    responses={
        200: _DESCRIPTION_RESPONSE,
        400: error_doc("The request is wrong; the message says what to change"),
        413: error_doc("The image is larger than the configured limit"),
        415: UNSUPPORTED_MEDIA_TYPE_DOC,
        502: error_doc("A model failed on this request; retrying will not help"),
        503: error_doc("A model is throttled or unavailable; retry after the hint"),
    },
    tags=["descriptions"],
)
def create_description(request: Annotated[DescribeRequest, Body()]) -> dict[str, Any]:
    service = pipeline()
    image = decode_image(request.image, max_bytes=service.settings.image.max_bytes)
    job = DescriptionJob(
        product_id=request.productId,
        image=image,
        category=request.category,
        languages=request.languages,
    )
    deadline = Deadline.from_lambda_context(
        app.lambda_context, margin_seconds=RESPONSE_MARGIN_SECONDS
    )
    stored = service.describe(job, deadline=deadline)
    record_description(stored, path="api")
    return stored.model_dump(mode="json", by_alias=True)


@app.get(
    "/descriptions/<productId>",
    summary="Read a product's current description",
    responses={
        200: _DESCRIPTION_RESPONSE,
        400: error_doc("The product id is not valid"),
        404: error_doc("No description is stored for this product"),
    },
    tags=["descriptions"],
)
def get_description(
    productId: Annotated[str, Path(pattern=PRODUCT_ID_PATTERN)],  # noqa: N803 - the URL's name
) -> dict[str, Any]:
    stored = pipeline().table.get(productId)
    if stored is None:
        raise NotFoundError("not_found", f"no description is stored for product {productId!r}")
    return stored.model_dump(mode="json", by_alias=True)


def decode_image(encoded: str, *, max_bytes: int) -> bytes:
    """Strict base64 (a `data:image/...;base64,` prefix allowed), size-checked before decoding."""
    if encoded.startswith("data:"):
        header, _, encoded = encoded.partition(",")
        if not header.endswith(";base64"):
            raise RequestError("invalid_base64", "a data: URL image must be base64-encoded")
    # 4 characters carry 3 bytes: refuse an oversized image before allocating its bytes.
    if len(encoded) > (max_bytes + 2) // 3 * 4:
        raise RequestError(
            "image_too_large",
            f"the image is larger than the limit of {max_bytes:,} bytes",
            status=413,
        )
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(
            "invalid_base64", "image is not valid base64 (standard alphabet, with padding)"
        ) from None


def _record_api_failure(code: str) -> None:
    record_failure(code, path="api")


answer_refusals(
    app,
    body_missing="the body must be a JSON object with productId and image",
    record_failure=_record_api_failure,
)
handler = lambda_entry(app)
