"""The API's OpenAPI document, generated from the handler's routes and pydantic models.

`make openapi` writes it to lambdas/descriptions/openapi.json; a test fails when the committed
file no longer matches the code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn

from descriptions.handlers.api import app
from shared.models.descriptions import PIPELINE_VERSION

DOCUMENT_PATH = Path(__file__).with_name("openapi.json")


def document() -> str:
    schema = app.get_openapi_json_schema(
        title="Atelier descriptions API",
        version=f"1.{PIPELINE_VERSION}",
        description="Product descriptions from photos. Every request is signed with AWS "
        "Signature Version 4 (service `execute-api`) unless the stage uses Cognito. Errors are "
        '`{"error": {"code", "message"}}`; 503 answers carry `Retry-After`.',
        security_schemes={
            "sigv4": APIKey(
                name="Authorization",
                in_=APIKeyIn.header,
                description="AWS Signature Version 4, service execute-api",
            )
        },
        security=[{"sigv4": []}],
    )
    return (
        json.dumps(_without_default_validation_errors(json.loads(schema)), indent=2, sort_keys=True)
        + "\n"
    )


def _without_default_validation_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Powertools documents its own 422 body; our handler answers validation errors with 400."""
    for operations in schema["paths"].values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    text = json.dumps(schema["paths"])
    schemas = schema["components"]["schemas"]
    for name in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        if f"#/components/schemas/{name}" not in text:
            schemas.pop(name, None)
    return schema


def main() -> int:
    DOCUMENT_PATH.write_text(document())
    print(f"wrote {DOCUMENT_PATH}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
