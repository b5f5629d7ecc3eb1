"""Titan Image Generator G1's InvokeModel body and the parsing of its answer."""

from __future__ import annotations

import base64
import json

import pytest

from images.logic.requests import resolve_job
from images.logic.titan import parse_images, text_to_image_body
from shared.models.errors import DependencyError
from shared.models.images import ContentFilteredError
from tests.images_support import png_bytes, request, settings, titan_answer


def test_the_body_is_titans_text_to_image_shape() -> None:
    job = resolve_job(
        request(
            prompt="Ron the dog in the snow",
            negativePrompt="blurry",
            numberOfImages=3,
            width=1152,
            height=768,
            cfgScale=6.5,
            seed=42,
            quality="premium",
        ),
        settings(),
        random_seed=lambda: 0,
    )
    assert text_to_image_body(job) == {
        "taskType": "TEXT_IMAGE",
        "textToImageParams": {"text": "Ron the dog in the snow", "negativeText": "blurry"},
        "imageGenerationConfig": {
            "numberOfImages": 3,
            "quality": "premium",
            "width": 1152,
            "height": 768,
            "cfgScale": 6.5,
            "seed": 42,
        },
    }


def test_without_a_negative_prompt_the_body_has_no_negative_text() -> None:
    job = resolve_job(request(), settings(), random_seed=lambda: 123)
    body = text_to_image_body(job)
    assert body["textToImageParams"] == {"text": "Ron the dog on a white dog bed"}
    assert body["imageGenerationConfig"] == {
        "numberOfImages": 1,
        "quality": "standard",
        "width": 1024,
        "height": 1024,
        "cfgScale": 8.0,
        "seed": 123,
    }
    json.dumps(body)  # serializable as is


def test_the_answer_gives_back_the_png_files() -> None:
    images = parse_images(titan_answer(3), expected=3)
    assert len(images) == 3
    assert all(image.startswith(b"\x89PNG\r\n\x1a\n") for image in images)
    assert len(set(images)) == 3


def test_a_null_or_empty_error_field_is_no_error() -> None:
    assert len(parse_images(titan_answer(1, error=None), expected=1)) == 1
    assert len(parse_images(titan_answer(1, error=""), expected=1)) == 1


def test_an_error_naming_the_content_filters_is_a_422() -> None:
    payload = json.dumps(
        {
            "images": [],
            "error": "This request has been blocked by our content filters. Our filters "
            "automatically flagged this prompt because it may conflict our AUP or AWS "
            "Responsible AI Policy.",
        }
    ).encode()
    with pytest.raises(ContentFilteredError) as caught:
        parse_images(payload, expected=1)
    assert (caught.value.status, caught.value.code) == (422, "content_filtered")
    assert "content filters" in caught.value.message


def test_any_other_error_is_a_502() -> None:
    with pytest.raises(DependencyError) as caught:
        parse_images(json.dumps({"error": "Internal model failure"}).encode(), expected=1)
    assert (caught.value.status, caught.value.code) == (502, "image_model_failed")
    assert not caught.value.retryable


NOT_PNG = base64.b64encode(b"GIF89a....").decode()


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"{}", "no images"),
        (json.dumps({"images": []}).encode(), "no images"),
        (json.dumps({"images": "abc"}).encode(), "no images"),
        (json.dumps({"images": [1]}).encode(), "image 1 is not a base64 string"),
        (json.dumps({"images": ["***"]}).encode(), "image 1 is not valid base64"),
        (json.dumps({"images": [NOT_PNG]}).encode(), "image 1 is not a PNG file"),
        (titan_answer(2), "2 images; 1 were asked for"),
    ],
)
def test_a_malformed_answer_is_a_502_naming_the_problem(payload: bytes, problem: str) -> None:
    with pytest.raises(DependencyError) as caught:
        parse_images(payload, expected=1)
    assert (caught.value.status, caught.value.code) == (502, "image_model_bad_response")
    assert problem in caught.value.message


def test_fewer_images_than_asked_are_still_returned() -> None:
    # Titan does not pad an answer; what came back is usable and paid for.
    payload = json.dumps({"images": [base64.b64encode(png_bytes()).decode()]}).encode()
    assert len(parse_images(payload, expected=3)) == 1
