"""The two endpoints' JSON contracts (training/dreambooth/inference.py and
training/styling/inference.py): request bodies and the checks on their answers.

- Text to image: `{"prompt", "negative_prompt"?, "width", "height", "num_images_per_prompt",
  "num_inference_steps", "guidance_scale", "seed"}` → `{"generated_images": [<base64 JPEG>...]}`.
- Styling with a mask prompt: `{"image", "mask_prompt", "prompt", "negative_prompt"?,
  "num_images_per_prompt", "num_inference_steps", "guidance_scale", "image_length",
  "mask_mode"?, "mask_threshold"?, "seed"}` → `{"generated_images": [...], "mask": <base64 PNG>}`.
- Styling with the caller's mask (the reference styling handler's form):
  `{"inputs": prompt, "input_img", "mask_img",
  "num_inference_steps", "guidance_scale", "num_images_per_prompt", "image_length",
  "negative_prompt"?, "seed"}` → `{"generated_images": [...]}`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from diffusion.logic.requests import GenerationJob, Sampling, StylingJob
from shared.models.diffusion import INVOKE_ENDPOINT_MAX_BODY_BYTES, EndpointSettings
from shared.models.errors import DependencyError, RequestError

JPEG_SIGNATURE = b"\xff\xd8\xff"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Answer:
    images: list[bytes]
    # Only when the endpoint computed the mask from a mask prompt.
    mask: bytes | None = None


def generation_body(job: GenerationJob) -> dict[str, Any]:
    s = job.sampling
    body = _with_negative_prompt({"prompt": s.prompt}, s)
    return {**body, "width": job.width, "height": job.height, **_sampling(s), "seed": s.seed}


def styling_body(job: StylingJob, image: bytes, mask: bytes | None) -> dict[str, Any]:
    """The mask-prompt form when the job has a mask prompt, else the reference form with `mask`."""
    s = job.sampling
    encoded = _b64(image)
    if job.mask_prompt is not None:
        body: dict[str, Any] = {
            "image": encoded,
            "mask_prompt": job.mask_prompt,
            "prompt": s.prompt,
        }
        if job.mask_threshold is not None:
            body["mask_threshold"] = job.mask_threshold
        if job.mask_mode is not None:
            body["mask_mode"] = job.mask_mode
    else:
        if mask is None:
            raise ValueError("a styling job without a mask prompt needs the caller's mask")
        body = {"inputs": s.prompt, "input_img": encoded, "mask_img": _b64(mask)}
    body = _with_negative_prompt(body, s)
    return {**body, **_sampling(s), "image_length": job.image_length, "seed": s.seed}


def _with_negative_prompt(body: dict[str, Any], s: Sampling) -> dict[str, Any]:
    return body if s.negative_prompt is None else {**body, "negative_prompt": s.negative_prompt}


def _sampling(s: Sampling) -> dict[str, Any]:
    """The denoising fields both endpoints take, under their names."""
    return {
        "num_images_per_prompt": s.number_of_images,
        "num_inference_steps": s.steps,
        "guidance_scale": s.guidance_scale,
    }


def encode_body(body: dict[str, Any], *, what: str) -> bytes:
    """The JSON bytes sent to the endpoint; a 413 if InvokeEndpoint would refuse their size."""
    data = json.dumps(body, separators=(",", ":")).encode()
    if len(data) > INVOKE_ENDPOINT_MAX_BODY_BYTES:
        raise RequestError(
            "payload_too_large",
            f"the {what} request would be {len(data):,} bytes with the image(s) base64-encoded; "
            f"SageMaker's InvokeEndpoint takes at most {INVOKE_ENDPOINT_MAX_BODY_BYTES:,}. Send a "
            "smaller photo or mask (e.g. a JPEG at most about 2,000 px per side: the model works "
            "at imageLength pixels anyway)",
            status=413,
        )
    return data


def parse_answer(
    payload: bytes, endpoint: EndpointSettings, sampling: Sampling, *, expect_mask: bool
) -> Answer:
    """The images (and mask) of an answer; a malformed one is a non-retryable 502."""
    what = f"the {endpoint.label} endpoint's answer"
    try:
        document = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        raise _malformed(what, "it is not JSON") from None
    if not isinstance(document, dict):
        raise _malformed(what, "it is not a JSON object")
    encoded = document.get("generated_images")
    if not isinstance(encoded, list) or not encoded:
        raise _malformed(what, "it has no generated_images")
    expected = sampling.number_of_images
    if len(encoded) != expected:
        raise _malformed(what, f"it has {len(encoded)} images; {expected} were asked for")
    images = [
        _decoded(item, JPEG_SIGNATURE, f"image {index}", "JPEG", what)
        for index, item in enumerate(encoded, start=1)
    ]
    mask = None
    if expect_mask:
        if "mask" not in document:
            raise _malformed(what, "it has no mask")
        mask = _decoded(document["mask"], PNG_SIGNATURE, "the mask", "PNG", what)
    return Answer(images=images, mask=mask)


def _decoded(encoded: object, signature: bytes, name: str, kind: str, what: str) -> bytes:
    if not isinstance(encoded, str):
        raise _malformed(what, f"{name} is not a base64 string")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed(what, f"{name} is not valid base64") from None
    if not data.startswith(signature):
        raise _malformed(what, f"{name} is not a {kind} file")
    return data


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _malformed(what: str, problem: str) -> DependencyError:
    return DependencyError("model_bad_response", f"{what} is unusable: {problem}", retryable=False)
