"""The function's endpoint bodies, parsed by the endpoints' own handlers.

`lambdas/diffusion/logic/contracts.py` writes the bodies and `training/dreambooth/inference.py` and
`training/styling/inference.py` read them; nothing else ties the two together. Here the widest
requests the function lets through (the model ceilings, and the shipped stage's limits) go through
each handler's `parse_request` with the tokenizers of the tiny pipelines: a body the endpoint would
refuse (a 422 for the caller) fails the test instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from transformers import CLIPSegProcessor, CLIPTokenizer

import dreambooth.inference as text_to_image
import styling.inference as styling
from diffusion.logic.contracts import generation_body, styling_body
from diffusion.logic.requests import resolve_generation, resolve_styling
from shared.models import diffusion as models
from shared.models.diffusion import GenerationRequest, StylingRequest
from shared.models.errors import RequestError
from tests.diffusion_support import mask_bytes, photo_bytes, settings

pytestmark = pytest.mark.integration

# The widest stage the function's settings model accepts.
WIDEST = settings(
    maxImagesPerRequest=models.MAX_IMAGES_PER_REQUEST,
    maxSteps=models.MAX_STEPS,
    maxGuidanceScale=models.MAX_GUIDANCE_SCALE,
    minSide=64,
    maxSide=models.MAX_GENERATION_SIDE,
    maxPixels=models.MAX_GENERATION_SIDE**2,
)


def _wire(body: dict[str, Any]) -> dict[str, Any]:
    """What the handler's input_fn makes of the JSON the function sends."""
    parsed: dict[str, Any] = json.loads(json.dumps(body, separators=(",", ":")))
    return parsed


def test_the_function_allows_no_more_than_the_handlers_accept() -> None:
    for handler in (text_to_image, styling):
        assert handler.MAX_IMAGES_PER_PROMPT == models.MAX_IMAGES_PER_REQUEST
        assert handler.MAX_INFERENCE_STEPS == models.MAX_STEPS
        assert handler.MAX_GUIDANCE_SCALE == models.MAX_GUIDANCE_SCALE
        assert handler.MAX_SEED == models.MAX_SEED
    assert text_to_image.MAX_SIDE == models.MAX_GENERATION_SIDE
    assert text_to_image.MAX_BATCH_PIXELS == models.MAX_GENERATION_BATCH_PIXELS
    assert styling.IMAGE_LENGTHS == models.STYLING_IMAGE_LENGTHS


@pytest.mark.parametrize(
    ("width", "height", "images"),
    [(768, 768, 4), (1024, 1024, 2), (1024, 576, 4), (64, 64, 1)],
)
def test_every_generation_the_function_sends_is_one_the_endpoint_parses(
    tiny_sd: Path, width: int, height: int, images: int
) -> None:
    tokenizer = CLIPTokenizer.from_pretrained(tiny_sd / "tokenizer")
    request = GenerationRequest(
        prompt="a photo of riobugger cat",
        negativePrompt="blurry",
        width=width,
        height=height,
        numImages=images,
        steps=models.MAX_STEPS,
        guidanceScale=models.MAX_GUIDANCE_SCALE,
        seed=models.MAX_SEED,
    )
    job = resolve_generation(request, WIDEST, random_seed=lambda: 0)

    parsed = text_to_image.parse_request(_wire(generation_body(job)), tokenizer, native_size=512)

    assert (parsed.width, parsed.height, parsed.num_images_per_prompt) == (width, height, images)
    assert parsed.num_inference_steps == models.MAX_STEPS
    assert parsed.guidance_scale == models.MAX_GUIDANCE_SCALE
    assert parsed.seed == models.MAX_SEED


def test_the_function_refuses_a_batch_the_endpoint_would_refuse() -> None:
    request = GenerationRequest(prompt="a cat", width=1024, height=768, numImages=4)

    with pytest.raises(RequestError) as raised:
        resolve_generation(request, settings(), random_seed=lambda: 0)

    assert raised.value.code == "unsupported_size"
    assert "numImages" in raised.value.message


@pytest.mark.parametrize("form", ["mask prompt", "caller mask"])
def test_every_styling_body_the_function_sends_is_one_the_endpoint_parses(
    tiny_sd_inpainting: Path, tiny_clipseg: Path, form: str
) -> None:
    loaded: Any = SimpleNamespace(
        pipeline=SimpleNamespace(
            tokenizer=CLIPTokenizer.from_pretrained(tiny_sd_inpainting / "tokenizer")
        ),
        processor=CLIPSegProcessor.from_pretrained(tiny_clipseg),
    )
    fields: dict[str, Any] = (
        {"maskPrompt": "the skirt", "maskThreshold": 0.9}
        if form == "mask prompt"
        else {"mask": {"key": "styling/mask.png"}}
    )
    request = StylingRequest.model_validate(
        {
            "image": {"key": "styling/photo.jpg"},
            "prompt": "a long floral summer skirt",
            "negativePrompt": "blurry",
            "numImages": models.MAX_IMAGES_PER_REQUEST,
            "steps": models.MAX_STEPS,
            "guidanceScale": models.MAX_GUIDANCE_SCALE,
            "imageLength": max(models.STYLING_IMAGE_LENGTHS),
            "seed": models.MAX_SEED,
            **fields,
        }
    )
    job = resolve_styling(request, WIDEST, random_seed=lambda: 0)
    mask = mask_bytes() if form == "caller mask" else None

    parsed = styling.parse_request(_wire(styling_body(job, photo_bytes(), mask)), loaded)

    assert parsed.prompt == "a long floral summer skirt"
    assert parsed.negative_prompt == "blurry"
    assert parsed.num_images_per_prompt == models.MAX_IMAGES_PER_REQUEST
    assert parsed.num_inference_steps == models.MAX_STEPS
    assert parsed.image_length == max(models.STYLING_IMAGE_LENGTHS)
    assert parsed.seed == models.MAX_SEED
    if form == "mask prompt":
        assert (parsed.mask_prompt, parsed.mask_threshold) == ("the skirt", 0.9)
    else:
        assert parsed.mask is not None
        assert parsed.mask.size == parsed.image.size
