"""The diffusion API's OpenAPI document, generated from the handler's routes and pydantic models.

`make openapi` writes it to lambdas/diffusion/openapi.json; a test fails when the committed file
no longer matches the code.
"""

from __future__ import annotations

import sys
from pathlib import Path

from diffusion.handlers.api import app
from shared.openapi_document import api_description, openapi_document, write_document

DOCUMENT_PATH = Path(__file__).with_name("openapi.json")
# Bumped when a request or answer changes shape.
API_VERSION = "1.0"


def document() -> str:
    return openapi_document(
        app,
        title="Atelier diffusion API",
        version=API_VERSION,
        description=api_description(
            "Stable Diffusion on SageMaker endpoints: `POST /generations` (the DreamBooth-tuned "
            "text-to-image model) and `POST /styling` (CLIPSeg finds a region from a text, "
            "inpainting repaints it).",
            answers="Answers carry S3 keys and presigned URLs, never image bytes.",
            errors=[
                "409 means the endpoint is not deployed (the message names the config key)",
                "504 means the endpoint took too long (ask for less)",
            ],
        ),
    )


if __name__ == "__main__":
    sys.exit(write_document(DOCUMENT_PATH, document()))
