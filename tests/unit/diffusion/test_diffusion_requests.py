"""Requests resolved against the stage's limits: defaults, bounds, and messages that name them."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from diffusion.logic.requests import check_size, resolve_generation, resolve_styling
from shared.models.diffusion import GenerationRequest, StylingRequest
from shared.models.errors import RequestError
from tests.diffusion_support import settings

SETTINGS = settings()
# Below the endpoints' ceilings (4 images, guidance 20), so the stage's own limits apply.
NARROW = settings(maxImagesPerRequest=3, maxGuidanceScale=12.0)


def _generation(**fields: Any) -> GenerationRequest:
    return GenerationRequest.model_validate({"prompt": "a photo of riobugger cat", **fields})


def _styling(**fields: Any) -> StylingRequest:
    document = {
        "image": {"key": "styling/photo.jpg"},
        "maskPrompt": "the skirt",
        "prompt": "a floral skirt",
        **fields,
    }
    return StylingRequest.model_validate({k: v for k, v in document.items() if v is not None})


def test_an_omitted_setting_takes_the_stages_default_and_the_seed_is_drawn() -> None:
    job = resolve_generation(_generation(), SETTINGS, random_seed=lambda: 31337)

    assert (job.width, job.height) == (512, 512)
    s = job.sampling
    assert (s.number_of_images, s.steps, s.guidance_scale, s.seed) == (1, 25, 7.5, 31337)
    assert s.negative_prompt is None


def test_given_settings_are_kept_and_no_seed_is_drawn() -> None:
    def no_seed() -> int:
        raise AssertionError("a given seed must not be replaced")

    request = _generation(
        negativePrompt="blurry", numImages=3, steps=50, guidanceScale=20, seed=0, width=768,
        height=1024,
    )  # fmt: skip
    job = resolve_generation(request, SETTINGS, random_seed=no_seed)

    assert (job.width, job.height) == (768, 1024)
    s = job.sampling
    assert (s.number_of_images, s.steps, s.guidance_scale, s.seed) == (3, 50, 20.0, 0)
    assert s.negative_prompt == "blurry"


@pytest.mark.parametrize(
    ("fields", "code", "words"),
    [
        ({"numImages": 4}, "too_many_images", "numImages is 4; this stage allows at most 3"),
        ({"steps": 51}, "too_many_steps", "steps is 51; this stage allows at most 50"),
        ({"guidanceScale": 12.5}, "guidance_too_high", "guidanceScale is 12.5; this stage"),
        ({"prompt": "x" * 1001}, "prompt_too_long", "prompt has 1001 characters"),
        ({"negativePrompt": "x" * 1001}, "prompt_too_long", "negativePrompt has 1001"),
        ({"width": 500}, "unsupported_size", "width is 500; it must be a multiple of 8"),
        ({"height": 1028}, "unsupported_size", "e.g. 1024 or 1032"),
        ({"width": 248}, "unsupported_size", "width is 248; this stage generates 256-1024"),
        ({"height": 1032}, "unsupported_size", "height is 1032; this stage generates 256-1024"),
        ({"width": 1024, "height": 1024}, "unsupported_size", "1,048,576 pixels"),
    ],
)
def test_a_request_beyond_the_stages_limits_names_the_field_and_the_limit(
    fields: dict[str, Any], code: str, words: str
) -> None:
    with pytest.raises(RequestError) as caught:
        resolve_generation(_generation(**fields), NARROW, random_seed=lambda: 1)
    assert caught.value.status == 400
    assert caught.value.code == code
    assert words in caught.value.message


def test_the_largest_allowed_sizes_pass() -> None:
    for width, height in ((1024, 768), (768, 1024), (256, 256), (512, 1024)):
        check_size(width, height, SETTINGS)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt must contain more than whitespace"),
        ({"width": "512"}, "width"),
        ({"width": 512.0}, "width"),
        ({"numImages": 9}, "numImages"),
        ({"numImages": True}, "numImages"),
        ({"steps": 151}, "steps"),
        ({"guidanceScale": -1}, "guidanceScale"),
        ({"seed": 2**32}, "seed"),
        ({"cfgScale": 7}, "cfgScale"),
    ],
)
def test_the_model_refuses_what_no_stage_may_allow(fields: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        _generation(**fields)


def test_styling_resolves_its_length_and_mask_settings() -> None:
    job = resolve_styling(
        _styling(imageLength=768, maskThreshold=0.4), SETTINGS, random_seed=lambda: 7
    )

    assert (job.image_length, job.mask_prompt, job.mask_threshold) == (768, "the skirt", 0.4)
    default = resolve_styling(_styling(), SETTINGS, random_seed=lambda: 7)
    assert (default.image_length, default.mask_threshold) == (512, None)


def test_a_length_the_stage_does_not_allow_is_refused() -> None:
    only_512 = settings(imageLengths=[512], defaultImageLength=512)
    with pytest.raises(RequestError, match="imageLength is 768; this stage works at 512 pixels"):
        resolve_styling(_styling(imageLength=768), only_512, random_seed=lambda: 7)


def test_a_long_mask_prompt_is_refused() -> None:
    with pytest.raises(RequestError, match="maskPrompt has 1001 characters"):
        resolve_styling(_styling(maskPrompt="x" * 1001), SETTINGS, random_seed=lambda: 7)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"maskPrompt": None}, "exactly one of maskPrompt"),
        ({"mask": {"key": "styling/mask.png"}}, "exactly one of maskPrompt"),
        ({"maskPrompt": " "}, "maskPrompt must contain more than whitespace"),
        ({"maskPrompt": None, "mask": {"key": "styling/m.png"}, "maskThreshold": 0.5},
         "maskThreshold applies only with maskPrompt"),
        ({"image": {}}, "exactly one of base64"),
        ({"image": {"key": "styling/a.jpg", "base64": "AAAA"}}, "exactly one of base64"),
        ({"image": {"key": "/styling/a.jpg"}}, "key"),
        ({"image": "AAAA"}, "image"),
        ({"imageLength": 640}, "imageLength"),
        ({"maskThreshold": 1}, "maskThreshold"),
        ({"maskThreshold": 0}, "maskThreshold"),
        ({"width": 512}, "width"),
    ],
)  # fmt: skip
def test_the_styling_model_names_what_is_wrong(fields: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        _styling(**fields)


def test_styling_defaults_are_the_reference_workflows_and_mask_mode_passes_through() -> None:
    # Omitted: 2 images and guidance 6.5 (the stage's default_guidance_scale is generation's)
    request = StylingRequest.model_validate(
        {
            "prompt": "a floral skirt",
            "image": {"key": "styling/p.jpg"},
            "maskPrompt": "the skirt",
            "maskMode": "soft",
        }
    )
    job = resolve_styling(request, SETTINGS, random_seed=lambda: 7)
    assert (job.sampling.number_of_images, job.sampling.guidance_scale) == (2, 6.5)
    assert job.mask_mode == "soft"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"maskMode": "soft", "maskThreshold": 0.3}, "maskThreshold applies only to maskMode"),
        ({"maskMode": "fuzzy"}, "maskMode"),
        (
            {"maskPrompt": None, "mask": {"key": "styling/m.png"}, "maskMode": "soft"},
            "maskMode applies only with maskPrompt",
        ),
    ],
)
def test_a_bad_mask_mode_is_refused(fields: dict[str, object], message: str) -> None:
    document = {
        "prompt": "a floral skirt",
        "image": {"key": "styling/p.jpg"},
        "maskPrompt": "the skirt",
        **fields,
    }
    with pytest.raises(ValidationError, match=message):
        StylingRequest.model_validate({k: v for k, v in document.items() if v is not None})
