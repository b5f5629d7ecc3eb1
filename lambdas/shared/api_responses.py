"""The REST handlers' error answers: `{"error": {"code", "message"}}`, never a stack trace.

Each API registers its own Powertools exception handlers (they also record its metrics); the
answers themselves are built here, so every API refuses requests the same way.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from shared.models.errors import AtelierError, DependencyError

# The schema of every error body, as the OpenAPI documents of the APIs show it.
ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "retryAfterSeconds": {"type": "integer"},
            },
            "required": ["code", "message"],
        }
    },
    "required": ["error"],
}


def error_doc(description: str) -> OpenAPIResponse:
    """An error status's entry in a route's OpenAPI `responses`."""
    return {"description": description, "content": {"application/json": {"schema": ERROR_SCHEMA}}}


def json_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response[Any]:
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=body, headers=headers
    )


def atelier_error_response(error: AtelierError, logger: Logger) -> Response[Any]:
    """A typed error's status and body; a retryable dependency failure adds `Retry-After`."""
    headers = None
    if isinstance(error, DependencyError):
        logger.warning("dependency failed", code=error.code, reason=error.message)
        if error.retryable:
            headers = {"Retry-After": str(error.retry_after_seconds)}
    else:
        logger.info("request refused", code=error.code, reason=error.message)
    return json_response(error.status, error.body(), headers)


def invalid_request_response(
    error: RequestValidationError, *, body_missing: str
) -> tuple[str, Response[Any]]:
    """The first validation problem as a 400, and its code (for the caller's metrics).

    `body_missing` is the message for a request without a body. Other messages name the field
    and the rule, never the submitted value (it may be a photo or a prompt).
    """
    problems = error.errors()
    first = problems[0] if problems else {"type": "invalid", "loc": (), "msg": "invalid request"}
    location = tuple(first.get("loc", ()))
    where = ".".join(str(part) for part in location if part != "body")
    kind = str(first.get("type", ""))
    if kind == "json_invalid":
        code, message = "invalid_json", "the body is not valid JSON"
    elif kind == "missing" and location == ("body",):
        code, message = "body_missing", body_missing
    else:
        code, message = "invalid_request", f"{where or 'body'}: {first.get('msg', 'invalid')}"
    return code, json_response(400, {"error": {"code": code, "message": message}})


def no_route_response() -> Response[Any]:
    return json_response(
        404, {"error": {"code": "no_route", "message": "no such resource or method"}}
    )
