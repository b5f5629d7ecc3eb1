"""The `diffusion` config section, and the payload facts stated alike in infra and the function."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from diffusion.handlers.api import RESPONSE_MARGIN_SECONDS
from diffusion.logic import keys
from diffusion.logic.service import MIN_MODEL_ATTEMPT_SECONDS
from infra import config as infra_config
from infra.config import ConfigError, load_stage_config
from infra.stacks import api as api_stack
from infra.stacks import api_settings
from shared.models import diffusion as models
from tests.support import cdk_json_context


@pytest.fixture
def context() -> dict[str, Any]:
    return copy.deepcopy(cdk_json_context())


def _with(context: dict[str, Any], **values: Any) -> dict[str, Any]:
    context["atelier"]["defaults"]["diffusion"].update(values)
    return context


def _error(context: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        load_stage_config(context, "dev")
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_the_shipped_limits_fit_a_29_second_request(context: dict[str, Any]) -> None:
    d = load_stage_config(context, "dev").diffusion
    assert (d.max_images_per_request, d.default_steps, d.max_steps) == (4, 25, 50)
    assert (d.min_side, d.default_size, d.max_side, d.max_pixels) == (256, 512, 1024, 786_432)
    assert (d.image_lengths, d.default_image_length) == ((512, 768), 512)
    assert d.image.max_bytes == 4 * 1024 * 1024
    assert d.max_inline_image_bytes == 2 * 1024 * 1024
    assert d.api_timeout_seconds == 29
    assert load_stage_config(context, "prod").diffusion == d


def test_the_payload_facts_are_the_same_in_infra_and_in_the_function() -> None:
    assert infra_config.DIFFUSION_MAX_INLINE_IMAGE_BYTES == models.MAX_INLINE_IMAGE_BYTES
    assert infra_config.DIFFUSION_MAX_PROMPT_CHARACTERS == models.MAX_PROMPT_CHARACTERS
    assert infra_config.DIFFUSION_MAX_IMAGES_PER_REQUEST == models.MAX_IMAGES_PER_REQUEST
    assert infra_config.DIFFUSION_MAX_STEPS == models.MAX_STEPS
    assert infra_config.DIFFUSION_MAX_GUIDANCE_SCALE == models.MAX_GUIDANCE_SCALE
    assert infra_config.DIFFUSION_MAX_GENERATION_SIDE == models.MAX_GENERATION_SIDE
    assert infra_config.STYLING_IMAGE_LENGTHS == models.STYLING_IMAGE_LENGTHS


def test_two_inline_images_at_the_cap_fit_one_lambda_event() -> None:
    two_images = 2 * ((models.MAX_INLINE_IMAGE_BYTES + 2) // 3 * 4)
    # What is left carries API Gateway's envelope (headers, request context) and the prompts.
    assert models.LAMBDA_SYNC_PAYLOAD_BYTES - two_images > 600_000


def test_the_largest_image_fits_one_invoke_endpoint_body(context: dict[str, Any]) -> None:
    # The image config caps max_bytes at 4 MiB: 5.6 MB of base64, under InvokeEndpoint's 6 MB.
    largest = infra_config.MAX_API_IMAGE_BYTES
    assert (largest + 2) // 3 * 4 + 10_000 < models.INVOKE_ENDPOINT_MAX_BODY_BYTES
    assert "diffusion.image.max_bytes = 4194305 is not valid" in _error(
        _with(context, image={"max_bytes": largest + 1, "max_pixels": 4_194_304,
                              "max_side": 2048, "min_side": 64})
    )  # fmt: skip


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"max_images_per_request": 5}, "diffusion.max_images_per_request = 5 is not valid"),
        ({"max_prompt_characters": 2001}, "diffusion.max_prompt_characters = 2001 is not valid"),
        ({"min_side": 250}, "diffusion.min_side = 250 is not valid; expected a multiple of 8"),
        ({"max_side": 1032}, "diffusion.max_side = 1032 is not valid"),
        ({"default_size": True}, "diffusion.default_size = True is not valid"),
        ({"min_side": 1024, "max_side": 512}, "diffusion.min_side = 1024 is larger than"),
        ({"default_size": 1024}, "diffusion.default_size = 1024 makes 1,048,576 pixels"),
        ({"default_size": 128}, "diffusion.min_side = 256 is larger than diffusion.default_size"),
        ({"default_steps": 60}, "diffusion.default_steps = 60 is larger than"),
        ({"max_steps": 101}, "diffusion.max_steps = 101 is not valid"),
        ({"default_guidance_scale": 15, "max_guidance_scale": 10},
         "diffusion.default_guidance_scale = 15.0 is larger"),
        ({"max_guidance_scale": 21}, "diffusion.max_guidance_scale = 21 is not valid"),
        ({"image_lengths": [512, 1024]}, "diffusion.image_lengths[1] = 1024 is not valid"),
        ({"image_lengths": []}, "diffusion.image_lengths = [] is not valid"),
        ({"image_lengths": [512, 512]}, "diffusion.image_lengths = [512, 512] lists a length"),
        ({"image_lengths": [768]}, "diffusion.default_image_length = 512 is not in"),
        ({"default_image_length": 640}, "diffusion.default_image_length = 640 is not allowed"),
        ({"max_inline_image_bytes": 2 * 1024 * 1024 + 1},
         "diffusion.max_inline_image_bytes = 2097153 is not valid"),
        ({"api_timeout_seconds": 30}, "diffusion.api_timeout_seconds = 30 is not valid"),
        ({"api_timeout_seconds": 9}, "diffusion.api_timeout_seconds = 9 is not valid"),
        ({"presigned_url_seconds": 3601}, "diffusion.presigned_url_seconds = 3601 is not valid"),
        ({"throttle_burst_limit": 0}, "diffusion.throttle_burst_limit = 0 is not valid"),
        ({"sizes": None}, "diffusion.sizes is not a known key"),
    ],
)  # fmt: skip
def test_bad_values_name_the_key(
    context: dict[str, Any], values: dict[str, Any], expected: str
) -> None:
    assert expected in _error(_with(context, **values))


def test_inline_images_may_not_exceed_the_image_limit(context: dict[str, Any]) -> None:
    image = {"max_bytes": 1_048_576, "max_pixels": 4_194_304, "max_side": 2048, "min_side": 64}
    message = _error(_with(context, image=image))
    assert (
        "diffusion.max_inline_image_bytes = 2097152 is larger than diffusion.image.max_bytes "
        "= 1048576"
    ) in message


def test_the_section_is_required(context: dict[str, Any]) -> None:
    del context["atelier"]["defaults"]["diffusion"]
    assert _error(context).startswith("stage 'dev': diffusion is missing")


def test_the_stack_and_the_function_agree_on_prefixes_and_margin() -> None:
    assert api_stack.DIFFUSION_OUTPUT_PREFIXES == (keys.GENERATIONS_PREFIX, keys.STYLING_PREFIX)
    assert api_stack.DIFFUSION_INPUT_PREFIXES == keys.INPUT_PREFIXES
    assert api_settings.DIFFUSION_RESPONSE_MARGIN_SECONDS == RESPONSE_MARGIN_SECONDS


def test_the_shortest_allowed_timeout_leaves_time_for_one_endpoint_call() -> None:
    assert 10 - RESPONSE_MARGIN_SECONDS >= MIN_MODEL_ATTEMPT_SECONDS
