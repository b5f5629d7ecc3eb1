"""The images API's OpenAPI document, generated from the handler's route and pydantic models.

`make openapi` writes it to lambdas/images/openapi.json; a test fails when the committed file no
longer matches the code.
"""

from __future__ import annotations

import sys
from pathlib import Path

from images.handlers.api import app
from shared.openapi_document import api_description, openapi_document, write_document

DOCUMENT_PATH = Path(__file__).with_name("openapi.json")
# Bumped when the request or answer changes shape.
API_VERSION = "1.0"


def document() -> str:
    return openapi_document(
        app,
        title="Atelier images API",
        version=API_VERSION,
        description=api_description(
            "Personalized images from the customized Titan Image Generator G1 on its provisioned "
            "throughput.",
            errors=["409 means no customized model is provisioned (provision it first)"],
        ),
    )


if __name__ == "__main__":
    sys.exit(write_document(DOCUMENT_PATH, document()))
