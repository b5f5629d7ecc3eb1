"""Titan Image Generator G1's text-to-image contract: the InvokeModel body and its answer.

Body: `{"taskType": "TEXT_IMAGE", "textToImageParams": {"text", "negativeText"?},
"imageGenerationConfig": {"numberOfImages", "quality", "width", "height", "cfgScale", "seed"}}`.
Answer: `{"images": [<base64 PNG>...], "error"?: <message>}`.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from images.logic.requests import ImageJob
from shared.models.errors import DependencyError
from shared.models.images import ContentFilteredError, is_content_filter_message

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def text_to_image_body(job: ImageJob) -> dict[str, Any]:
    text: dict[str, str] = {"text": job.prompt}
    if job.negative_prompt is not None:
        text["negativeText"] = job.negative_prompt
    return {
        "taskType": "TEXT_IMAGE",
        "textToImageParams": text,
        "imageGenerationConfig": {
            "numberOfImages": job.number_of_images,
            "quality": job.quality,
            "width": job.width,
            "height": job.height,
            "cfgScale": job.cfg_scale,
            "seed": job.seed,
        },
    }


def parse_images(payload: bytes, *, expected: int) -> list[bytes]:
    """The PNG files of an answer. A refusal raises ContentFilteredError (422); an error or a
    malformed answer raises a non-retryable DependencyError (502)."""
    try:
        document = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        raise _malformed("the answer is not JSON") from None
    if not isinstance(document, dict):
        raise _malformed("the answer is not a JSON object")
    error = document.get("error")
    if error:
        message = str(error)
        if is_content_filter_message(message):
            raise ContentFilteredError(message)
        raise DependencyError(
            "image_model_failed", f"Titan answered with an error: {message}"[:500], retryable=False
        )
    encoded = document.get("images")
    if not isinstance(encoded, list) or not encoded:
        raise _malformed("the answer has no images")
    if len(encoded) > expected:
        raise _malformed(f"the answer has {len(encoded)} images; {expected} were asked for")
    return [_png(item, index) for index, item in enumerate(encoded, start=1)]


def _png(encoded: object, index: int) -> bytes:
    if not isinstance(encoded, str):
        raise _malformed(f"image {index} is not a base64 string")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed(f"image {index} is not valid base64") from None
    if not data.startswith(PNG_SIGNATURE):
        raise _malformed(f"image {index} is not a PNG file")
    return data


def _malformed(problem: str) -> DependencyError:
    return DependencyError(
        "image_model_bad_response", f"Titan's answer is unusable: {problem}", retryable=False
    )
