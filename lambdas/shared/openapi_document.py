"""The APIs' OpenAPI documents, generated from each handler's routes and pydantic models.

Each feature's `openapi.py` names its title, version and description; `make openapi` writes the
document beside it, and a test per API fails when the committed file no longer matches the code.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn

# Every route is signed with SigV4 (service execute-api) unless the stage uses Cognito.
_SIGV4 = APIKey(
    name="Authorization",
    in_=APIKeyIn.header,
    description="AWS Signature Version 4, service execute-api",
)


def openapi_document(
    app: APIGatewayRestResolver, *, title: str, version: str, description: str
) -> str:
    """The document as sorted, indented JSON with a final newline (stable under `git diff`)."""
    schema = app.get_openapi_json_schema(
        title=title,
        version=version,
        description=description,
        security_schemes={"sigv4": _SIGV4},
        security=[{"sigv4": []}],
    )
    return (
        json.dumps(_without_default_validation_errors(json.loads(schema)), indent=2, sort_keys=True)
        + "\n"
    )


def _without_default_validation_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Powertools documents its own 422 body for validation errors; the handlers answer those
    with 400 (a 422 a route declares itself, such as a model's refusal, stays)."""
    for operations in schema["paths"].values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if "HTTPValidationError" in json.dumps(responses.get("422", {})):
                responses.pop("422")
    text = json.dumps(schema["paths"])
    schemas = schema["components"]["schemas"]
    for name in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        if f"#/components/schemas/{name}" not in text:
            schemas.pop(name, None)
    return schema


def api_description(what: str, *, answers: str = "", errors: Sequence[str] = ()) -> str:
    """An API document's description: `what` the API does, then how every request is signed,
    what its `answers` carry, and its error shape with the statuses that need saying."""
    signing = (
        "Every request is signed with AWS Signature Version 4 (service `execute-api`) unless the "
        "stage uses Cognito."
    )
    shape = 'Errors are `{"error": {"code", "message"}}`; 503 answers carry `Retry-After`'
    return (
        " ".join(part for part in (what, signing, answers) if part)
        + " "
        + "; ".join((shape, *errors))
        + "."
    )


def write_document(path: Path, document: str) -> int:
    path.write_text(document)
    print(f"wrote {path}", file=sys.stderr)
    return 0
