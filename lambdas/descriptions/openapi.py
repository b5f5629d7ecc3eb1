"""The API's OpenAPI document, generated from the handler's routes and pydantic models.

`make openapi` writes it to lambdas/descriptions/openapi.json; a test fails when the committed
file no longer matches the code.
"""

from __future__ import annotations

import sys
from pathlib import Path

from descriptions.handlers.api import app
from shared.models.descriptions import PIPELINE_VERSION
from shared.openapi_document import api_description, openapi_document, write_document

DOCUMENT_PATH = Path(__file__).with_name("openapi.json")


def document() -> str:
    return openapi_document(
        app,
        title="Atelier descriptions API",
        version=f"1.{PIPELINE_VERSION}",
        description=api_description("Product descriptions from photos."),
    )


if __name__ == "__main__":
    sys.exit(write_document(DOCUMENT_PATH, document()))
