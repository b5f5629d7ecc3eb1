"""What every REST function wraps around its routes: the three refusals (a typed error, a request
that fails validation, an unknown route), each answered in the `{"error": {"code", "message"}}`
shape and counted by the function's own failure metric, and the traced, logged entry point."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.api_responses import atelier_error_response, invalid_request_response, no_route_response
from shared.models.errors import AtelierError
from shared.telemetry import get_tracer, logger, metrics

LambdaEntry = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def answer_refusals(
    app: APIGatewayRestResolver, *, body_missing: str, record_failure: Callable[[str], None]
) -> None:
    """Register the refusals on `app`. `body_missing` is the message for a request without a
    body; `record_failure` counts a refusal by its error code."""

    def atelier_error(error: AtelierError) -> Response[Any]:
        record_failure(error.code)
        return atelier_error_response(error, logger)

    def invalid_request(error: RequestValidationError) -> Response[Any]:
        code, response = invalid_request_response(error, body_missing=body_missing)
        record_failure(code)
        return response

    def no_route(_: Exception) -> Response[Any]:
        return no_route_response()

    app.exception_handler(AtelierError)(atelier_error)
    app.exception_handler(RequestValidationError)(invalid_request)
    app.not_found(no_route)


def lambda_entry(app: APIGatewayRestResolver) -> LambdaEntry:
    """The function's handler: the Lambda context and API Gateway's request id in every log line,
    the invocation traced, the metrics flushed."""

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
    @get_tracer().capture_lambda_handler(capture_response=False)
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return app.resolve(event, context)

    return cast(LambdaEntry, handler)
