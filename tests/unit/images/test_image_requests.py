"""`POST /images` bodies: Titan's ranges (pydantic) and the stage's limits (resolve_job)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from images.logic.requests import check_size, nearest_sizes, resolve_job
from shared.models.errors import RequestError
from shared.models.images import TITAN_IMAGE_SIZES, GenerateImagesRequest
from tests.images_support import request, settings


def _refused(**fields: Any) -> str:
    """The field the model names when it refuses `fields` on top of a valid body."""
    with pytest.raises(ValidationError) as caught:
        request(**fields)
    (problem,) = caught.value.errors()
    return ".".join(str(part) for part in problem["loc"])


def _job(**fields: Any) -> Any:
    return resolve_job(request(**fields), settings(), random_seed=lambda: 7)


# -- Titan's documented ranges, at and beyond every bound ---------------------------------------


def test_defaults_follow_titan() -> None:
    body = request()
    assert (body.numberOfImages, body.cfgScale, body.quality) == (1, 8.0, "standard")
    assert body.seed is None
    assert body.negativePrompt is None


@pytest.mark.parametrize(
    ("fields", "accepted"),
    [
        ({"prompt": "x"}, True),
        ({"prompt": "x" * 512}, True),
        ({"prompt": ""}, False),
        ({"prompt": "x" * 513}, False),
        ({"prompt": "   \n"}, False),
        ({"negativePrompt": "x"}, True),
        ({"negativePrompt": "x" * 512}, True),
        ({"negativePrompt": ""}, False),
        ({"negativePrompt": "x" * 513}, False),
        ({"negativePrompt": " "}, False),
        ({"numberOfImages": 1}, True),
        ({"numberOfImages": 5}, True),
        ({"numberOfImages": 0}, False),
        ({"numberOfImages": 6}, False),
        ({"numberOfImages": 2.0}, False),
        ({"numberOfImages": "2"}, False),
        ({"cfgScale": 1.1}, True),
        ({"cfgScale": 10}, True),
        ({"cfgScale": 1.0999}, False),
        ({"cfgScale": 10.01}, False),
        ({"cfgScale": "8"}, False),
        ({"seed": 0}, True),
        ({"seed": 2_147_483_646}, True),
        ({"seed": -1}, False),
        ({"seed": 2_147_483_647}, False),
        ({"seed": 1.5}, False),
        ({"quality": "premium"}, True),
        ({"quality": "standard"}, True),
        ({"quality": "ultra"}, False),
        ({"width": 0}, False),
        ({"width": "1024"}, False),
        ({"height": 1024.0}, False),
        ({"height": True}, False),
    ],
)
def test_each_field_is_checked_against_titans_range(fields: dict[str, Any], accepted: bool) -> None:
    if accepted:
        request(**fields)
    else:
        assert _refused(**fields) == next(iter(fields))


@pytest.mark.parametrize("missing", ["prompt", "width", "height"])
def test_prompt_width_and_height_are_required(missing: str) -> None:
    body = {"prompt": "a dog", "width": 512, "height": 512}
    del body[missing]
    with pytest.raises(ValidationError) as caught:
        GenerateImagesRequest.model_validate(body)
    assert caught.value.errors()[0]["loc"] == (missing,)


def test_unknown_fields_are_refused() -> None:
    assert _refused(steps=30) == "steps"


# -- the stage's limits -------------------------------------------------------------------------


def test_a_valid_request_becomes_a_job_with_every_default_resolved() -> None:
    job = _job(negativePrompt="blurry", width=1173, height=640)
    assert (job.width, job.height, job.number_of_images, job.cfg_scale) == (1173, 640, 1, 8.0)
    assert (job.quality, job.negative_prompt, job.seed) == ("standard", "blurry", 7)


def test_a_given_seed_is_kept_and_zero_is_a_seed() -> None:
    assert _job(seed=0).seed == 0
    assert _job(seed=2_147_483_646).seed == 2_147_483_646


@pytest.mark.parametrize("field", ["prompt", "negativePrompt"])
def test_prompts_longer_than_the_stage_allows_are_refused(field: str) -> None:
    strict = settings(maxPromptCharacters=100)
    resolve_job(request(**{field: "x" * 100}), strict, random_seed=lambda: 1)
    with pytest.raises(RequestError) as caught:
        resolve_job(request(**{field: "x" * 101}), strict, random_seed=lambda: 1)
    assert caught.value.code == "prompt_too_long"
    assert field in caught.value.message
    assert "100" in caught.value.message


def test_more_images_than_the_stage_allows_are_refused() -> None:
    strict = settings(maxImagesPerRequest=2)
    assert resolve_job(request(numberOfImages=2), strict, random_seed=lambda: 1)
    with pytest.raises(RequestError) as caught:
        resolve_job(request(numberOfImages=3), strict, random_seed=lambda: 1)
    assert (caught.value.code, caught.value.status) == ("too_many_images", 400)


# -- sizes: the pair, not each side -------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), TITAN_IMAGE_SIZES)
def test_every_titan_size_is_accepted_by_default(width: int, height: int) -> None:
    job = _job(width=width, height=height)
    assert (job.width, job.height) == (width, height)


@pytest.mark.parametrize(
    ("width", "height"),
    [
        (640, 1173),  # 1173x640 exists, its transpose does not
        (1024, 768),  # both sides are valid somewhere, the pair is not
        (1000, 1000),
        (1408, 1408),
        (320, 320),
        (4096, 4096),
        (1, 1),
    ],
)
def test_pairs_that_are_not_titan_sizes_are_refused_with_the_nearest(
    width: int, height: int
) -> None:
    with pytest.raises(RequestError) as caught:
        _job(width=width, height=height)
    error = caught.value
    assert (error.code, error.status) == ("unsupported_size", 400)
    assert error.message.startswith(f"{width}x{height} is not a size")
    nearest = error.message.split("nearest allowed: ")[1].split(", ")
    assert len(nearest) == 3
    assert all(tuple(map(int, size.split("x"))) in TITAN_IMAGE_SIZES for size in nearest)


def test_nearest_sizes_prefer_the_same_shape_and_scale() -> None:
    assert nearest_sizes(1000, 1000, TITAN_IMAGE_SIZES)[0] == (1024, 1024)
    assert nearest_sizes(700, 700, TITAN_IMAGE_SIZES)[0] == (768, 768)
    assert nearest_sizes(1920, 1080, TITAN_IMAGE_SIZES)[0] == (1408, 768)
    # The transpose of 1173x640 is nearest the tall sizes.
    assert nearest_sizes(640, 1173, TITAN_IMAGE_SIZES) == [(640, 1408), (768, 1152), (768, 1280)]
    # Far below every size: the smallest ones.
    (width, height), *_ = nearest_sizes(10, 10, TITAN_IMAGE_SIZES, count=1)
    assert width * height <= 512 * 512


def test_a_stage_that_allows_fewer_sizes_names_only_those() -> None:
    squares = settings(sizes=["1024x1024", "512x512"])
    with pytest.raises(RequestError) as caught:
        resolve_job(request(width=768, height=768), squares, random_seed=lambda: 1)
    assert caught.value.message.endswith("nearest allowed: 1024x1024, 512x512")
    check_size(512, 512, squares.allowed_sizes())
