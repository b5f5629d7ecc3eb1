"""The `images` config section, and Titan's limits stated alike in infra and in the function."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from infra import config as infra_config
from infra.config import ConfigError, load_stage_config
from shared.models import images as image_models
from tests.support import cdk_json_context


@pytest.fixture
def context() -> dict[str, Any]:
    return copy.deepcopy(cdk_json_context())


def _with(context: dict[str, Any], **values: Any) -> dict[str, Any]:
    context["atelier"]["defaults"]["images"].update(values)
    return context


def _error(context: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        load_stage_config(context, "dev")
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_defaults_allow_what_titan_allows(context: dict[str, Any]) -> None:
    images = load_stage_config(context, "dev").images
    assert images.max_prompt_characters == 512
    assert images.max_images_per_request == 5
    assert images.sizes == infra_config.TITAN_IMAGE_SIZES
    assert images.model_arn_cache_seconds == 60
    assert images.presigned_url_seconds == 900
    assert images.api_timeout_seconds == 29
    assert load_stage_config(context, "prod").images == images


def test_titans_limits_are_the_same_in_infra_and_in_the_function() -> None:
    assert infra_config.TITAN_IMAGE_SIZES == image_models.TITAN_IMAGE_SIZES
    assert infra_config.TITAN_MAX_PROMPT_CHARACTERS == image_models.TITAN_MAX_PROMPT_CHARACTERS
    assert infra_config.TITAN_MAX_IMAGES_PER_REQUEST == image_models.TITAN_MAX_IMAGES_PER_REQUEST
    assert len(set(image_models.TITAN_IMAGE_SIZES)) == 25


def test_a_stage_may_allow_a_subset_of_sizes(context: dict[str, Any]) -> None:
    images = load_stage_config(_with(context, sizes=["512x512", "1173x640"]), "dev").images
    assert images.sizes == ((512, 512), (1173, 640))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"max_prompt_characters": 513}, "images.max_prompt_characters = 513 is not valid"),
        ({"max_prompt_characters": 0}, "images.max_prompt_characters = 0 is not valid"),
        ({"max_images_per_request": 6}, "images.max_images_per_request = 6 is not valid"),
        ({"max_images_per_request": 0}, "images.max_images_per_request = 0 is not valid"),
        ({"presigned_url_seconds": 3601}, "images.presigned_url_seconds = 3601 is not valid"),
        ({"presigned_url_seconds": 59}, "images.presigned_url_seconds = 59 is not valid"),
        ({"api_timeout_seconds": 30}, "images.api_timeout_seconds = 30 is not valid"),
        ({"api_timeout_seconds": 13}, "images.api_timeout_seconds = 13 is not valid"),
        ({"model_arn_cache_seconds": -1}, "images.model_arn_cache_seconds = -1 is not valid"),
        ({"throttle_rate_limit": 0}, "images.throttle_rate_limit = 0 is not valid"),
        ({"sizes": ["1024x768"]}, "images.sizes[0] = '1024x768' is not a Titan Image Generator"),
        ({"sizes": ["640x1173"]}, "images.sizes[0] = '640x1173' is not a Titan Image Generator"),
        ({"sizes": ["1024 x 1024"]}, "images.sizes[0] = '1024 x 1024' is not a Titan"),
        ({"sizes": [1024]}, "images.sizes[0] = 1024 is not a Titan Image Generator G1 size"),
        ({"sizes": []}, "images.sizes = [] is not valid"),
        ({"sizes": "1024x1024"}, "images.sizes = '1024x1024' is not valid"),
        ({"sizes": ["512x512", "512x512"]}, "images.sizes lists '512x512' twice"),
        ({"resolution": 1}, "images.resolution is not a known key"),
    ],
)
def test_bad_values_name_the_key(
    context: dict[str, Any], values: dict[str, Any], expected: str
) -> None:
    assert expected in _error(_with(context, **values))


def test_the_section_is_required(context: dict[str, Any]) -> None:
    del context["atelier"]["defaults"]["images"]
    assert _error(context).startswith("stage 'dev': images is missing")


def test_the_stack_and_the_function_agree_on_prefix_and_margin() -> None:
    from images.handlers.api import RESPONSE_MARGIN_SECONDS
    from images.logic.keys import IMAGES_PREFIX
    from infra.stacks import api as api_stack
    from infra.stacks import api_settings

    assert api_stack.IMAGES_PREFIX == IMAGES_PREFIX
    assert api_settings.IMAGES_RESPONSE_MARGIN_SECONDS == RESPONSE_MARGIN_SECONDS


def test_the_shortest_allowed_timeout_leaves_time_for_one_titan_call(
    context: dict[str, Any],
) -> None:
    from images.handlers.api import RESPONSE_MARGIN_SECONDS
    from images.logic.service import MIN_MODEL_ATTEMPT_SECONDS

    images = load_stage_config(_with(context, api_timeout_seconds=14), "dev").images
    assert images.api_timeout_seconds == 14
    assert 14 - RESPONSE_MARGIN_SECONDS >= MIN_MODEL_ATTEMPT_SECONDS
