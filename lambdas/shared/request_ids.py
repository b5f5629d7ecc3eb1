"""Request ids: which one names a request's files, and what may shape an S3 key."""

from __future__ import annotations

import re

from aws_lambda_powertools.event_handler import APIGatewayRestResolver

# API Gateway and Lambda request ids are UUIDs; anything else must not shape a key.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,127}$")


def is_valid_request_id(request_id: str | None) -> bool:
    return request_id is not None and bool(_REQUEST_ID.fullmatch(request_id))


def api_request_id(app: APIGatewayRestResolver) -> str:
    """API Gateway's request id (the caller sees it as `x-amzn-RequestId`), else Lambda's."""
    gateway = app.current_event.request_context.request_id
    if is_valid_request_id(gateway):
        return str(gateway)
    return str(app.lambda_context.aws_request_id)
