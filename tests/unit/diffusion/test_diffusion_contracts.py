"""The endpoints' request bodies (contracts.md) and the checks on their answers."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from diffusion.logic.contracts import (
    encode_body,
    generation_body,
    parse_answer,
    styling_body,
)
from diffusion.logic.requests import Sampling, resolve_generation, resolve_styling
from shared.models.diffusion import (
    INVOKE_ENDPOINT_MAX_BODY_BYTES,
    GenerationRequest,
    StylingRequest,
)
from shared.models.errors import DependencyError, RequestError
from tests.diffusion_support import (
    b64,
    endpoint,
    endpoint_answer,
    mask_bytes,
    photo_bytes,
    settings,
)

SETTINGS = settings()
SAMPLING = Sampling("p", None, number_of_images=2, steps=25, guidance_scale=7.5, seed=1)


def _styling_job(**fields: Any) -> Any:
    request = StylingRequest.model_validate(
        {"image": {"key": "styling/a.jpg"}, "prompt": "a floral skirt", **fields}
    )
    return resolve_styling(request, SETTINGS, random_seed=lambda: 99)


def test_the_text_to_image_body_has_every_field_of_the_contract() -> None:
    request = GenerationRequest(
        prompt="a photo of riobugger cat",
        negativePrompt="blurry",
        width=768,
        height=512,
        numImages=3,
        steps=30,
        guidanceScale=6.0,
        seed=5,
    )
    body = generation_body(resolve_generation(request, SETTINGS, random_seed=lambda: 0))

    assert body == {
        "prompt": "a photo of riobugger cat",
        "negative_prompt": "blurry",
        "width": 768,
        "height": 512,
        "num_images_per_prompt": 3,
        "num_inference_steps": 30,
        "guidance_scale": 6.0,
        "seed": 5,
    }
    # Without a negative prompt the key is left out, not sent as null.
    plain = generation_body(
        resolve_generation(GenerationRequest(prompt="x"), SETTINGS, random_seed=lambda: 0)
    )
    assert "negative_prompt" not in plain


def test_a_mask_prompt_uses_the_clipseg_form() -> None:
    photo = photo_bytes()
    job = _styling_job(maskPrompt="the skirt", maskThreshold=0.35, negativePrompt="blurry")

    body = styling_body(job, photo, None)

    assert body == {
        "image": b64(photo),
        "mask_prompt": "the skirt",
        "prompt": "a floral skirt",
        "mask_threshold": 0.35,
        "negative_prompt": "blurry",
        # POST /styling's defaults (the reference workflow's): 2 images, guidance 6.5
        "num_images_per_prompt": 2,
        "num_inference_steps": 25,
        "guidance_scale": 6.5,
        "image_length": 512,
        "seed": 99,
    }


def test_a_callers_mask_uses_the_spec_form() -> None:
    photo, mask = photo_bytes(), mask_bytes()
    job = _styling_job(mask={"key": "styling/m.png"}, imageLength=768, numImages=2)

    body = styling_body(job, photo, mask)

    assert body == {
        "inputs": "a floral skirt",
        "input_img": b64(photo),
        "mask_img": b64(mask),
        "num_images_per_prompt": 2,
        "num_inference_steps": 25,
        "guidance_scale": 6.5,
        "image_length": 768,
        "seed": 99,
    }
    with pytest.raises(ValueError, match="needs the caller's mask"):
        styling_body(job, photo, None)


def test_a_body_over_invoke_endpoints_limit_is_a_413_before_any_call() -> None:
    fits = {"image": "A" * (INVOKE_ENDPOINT_MAX_BODY_BYTES - 20)}
    assert len(encode_body(fits, what="styling")) <= INVOKE_ENDPOINT_MAX_BODY_BYTES

    with pytest.raises(RequestError) as caught:
        encode_body({"image": "A" * INVOKE_ENDPOINT_MAX_BODY_BYTES}, what="styling")
    assert (caught.value.status, caught.value.code) == (413, "payload_too_large")
    assert "at most 6,291,456" in caught.value.message
    assert "Send a smaller photo or mask" in caught.value.message


def test_an_answer_gives_the_jpegs_and_the_mask() -> None:
    answer = parse_answer(
        endpoint_answer(2, mask=True), endpoint("styling"), SAMPLING, expect_mask=True
    )
    assert len(answer.images) == 2
    assert all(image.startswith(b"\xff\xd8\xff") for image in answer.images)
    assert answer.mask is not None
    assert answer.mask.startswith(b"\x89PNG")


def _not_jpeg() -> str:
    return base64.b64encode(b"GIF89a....").decode()


@pytest.mark.parametrize(
    ("payload", "expect_mask", "words"),
    [
        (b"<html>busy</html>", False, "it is not JSON"),
        (b"[1]", False, "it is not a JSON object"),
        (json.dumps({"images": []}).encode(), False, "it has no generated_images"),
        (endpoint_answer(1), False, "it has 1 images; 2 were asked for"),
        (endpoint_answer(3), False, "it has 3 images; 2 were asked for"),
        (json.dumps({"generated_images": [_not_jpeg(), _not_jpeg()]}).encode(), False,
         "image 1 is not a JPEG file"),
        (json.dumps({"generated_images": ["%%", "%%"]}).encode(), False,
         "image 1 is not valid base64"),
        (json.dumps({"generated_images": [1, 2]}).encode(), False,
         "image 1 is not a base64 string"),
        (endpoint_answer(2), True, "it has no mask"),
        (json.dumps({**json.loads(endpoint_answer(2)), "mask": b64(photo_bytes())}).encode(),
         True, "the mask is not a PNG file"),
    ],
)  # fmt: skip
def test_a_malformed_answer_is_a_502_that_says_what_is_wrong(
    payload: bytes, expect_mask: bool, words: str
) -> None:
    with pytest.raises(DependencyError) as caught:
        parse_answer(payload, endpoint("styling"), SAMPLING, expect_mask=expect_mask)
    assert (caught.value.status, caught.value.code) == (502, "model_bad_response")
    assert words in caught.value.message
    assert "styling endpoint's answer" in caught.value.message
