"""The diffusion API's OpenAPI document, generated from the handler's routes and pydantic models.

`make openapi` writes it to lambdas/diffusion/openapi.json; a test fails when the committed file
no longer matches the code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn

from diffusion.handlers.api import app

DOCUMENT_PATH = Path(__file__).with_name("openapi.json")
# Bumped when a request or answer changes shape.
API_VERSION = "1.0"


def document() -> str:
    schema = app.get_openapi_json_schema(
        title="Atelier diffusion API",
        version=API_VERSION,
        description="Stable Diffusion on SageMaker endpoints: `POST /generations` (the "
        "DreamBooth-tuned text-to-image model) and `POST /styling` (CLIPSeg finds a region from "
        "a text, inpainting repaints it). Every request is signed with AWS Signature Version 4 "
        "(service `execute-api`) unless the stage uses Cognito. Answers carry S3 keys and "
        'presigned URLs, never image bytes. Errors are `{"error": {"code", "message"}}`; 503 '
        "answers carry `Retry-After`; 409 means the endpoint is not deployed (the message names "
        "the config key); 504 means the endpoint took too long (ask for less).",
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
    """Powertools documents its own 422 body for validation errors; the handler answers those
    with 400 (our 422 is the endpoint's refusal, declared with the routes)."""
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


def main() -> int:
    DOCUMENT_PATH.write_text(document())
    print(f"wrote {DOCUMENT_PATH}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
