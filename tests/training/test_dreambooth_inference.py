"""The text-to-image endpoint's handler, on a tiny Stable Diffusion, through the real toolkit."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline, StableDiffusionInpaintPipeline, StableDiffusionPipeline
from diffusers.models.attention_processor import AttnProcessor2_0
from mms.service import PredictionException
from PIL import Image

import sd_serving
from dreambooth import inference
from dreambooth.export import export_archive
from dreambooth.inference import LoadedPipeline
from tests.dlc_support import (
    dlc_version,
    pinned,
    pip_would_install,
    require_dlc_venv,
    serve_under_dlc,
)
from tests.toolkit_support import invoke, served

# Few steps keep each request in the tens of milliseconds; the handler's logic does not depend on
# how many steps the scheduler takes.
FAST = {"num_inference_steps": 1, "width": 64, "height": 72}


def export(pipeline: DiffusionPipeline, root: Path, **options: Any) -> Path:
    """The archive train.py writes (dreambooth.export): pipeline at the root, handler in code/."""
    return export_archive(
        root,
        pipeline,
        summary={"base_model": "tiny"},
        manifest_source={"kind": "folder"},
        **options,
    )


@pytest.fixture(scope="module")
def archive(tiny_sd: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pipeline = StableDiffusionPipeline.from_pretrained(tiny_sd)
    return export(pipeline, tmp_path_factory.mktemp("dreambooth-archive"), mode="text-to-image")


@pytest.fixture(scope="module")
def loaded(archive: Path) -> LoadedPipeline:
    return inference.model_fn(str(archive))


def decoded(images: list[str]) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(image, validate=True))) for image in images]


def pixels(images: list[str]) -> list[np.ndarray[Any, np.dtype[np.int16]]]:
    return [np.asarray(image.convert("RGB"), dtype=np.int16) for image in decoded(images)]


def generate(loaded: LoadedPipeline, **fields: Any) -> list[str]:
    images: list[str] = inference.predict_fn({"prompt": "a sks dog", **FAST, **fields}, loaded)[
        "generated_images"
    ]
    return images


def test_the_toolkit_serves_the_archive_and_returns_the_requested_images(archive: Path) -> None:
    # Given the archive and a JSON request for three 64x72 images
    document = {
        "prompt": "a photo of a sks dog on a beach",
        "negative_prompt": "blurry",
        "num_images_per_prompt": 3,
        "guidance_scale": 6.5,
        "seed": 7,
        **FAST,
    }

    # When SageMaker's toolkit hands it to the handler
    with served(archive) as service:
        response = json.loads(invoke(service, json.dumps(document).encode()))

    # Then three base64 JPEGs of the requested size come back, and nothing else
    assert list(response) == ["generated_images"]
    images = decoded(response["generated_images"])
    assert [(image.format, image.size) for image in images] == [("JPEG", (64, 72))] * 3


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-text; charset=utf-8"])
def test_a_plain_text_body_is_the_prompt(
    archive: Path, content_type: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A plain-text request takes every default; the endpoint's setting keeps it to one step here.
    monkeypatch.setenv("SD_DEFAULT_INFERENCE_STEPS", "1")
    with served(archive) as service:
        response = json.loads(invoke(service, b"a sks dog in the snow", content_type=content_type))
    # One image at the model's own resolution (32 px for the tiny model, 512 for SD 2.1 base)
    assert [image.size for image in decoded(response["generated_images"])] == [(32, 32)]


def test_a_fixed_seed_gives_the_same_images_and_another_seed_others(
    loaded: LoadedPipeline,
) -> None:
    first = generate(loaded, seed=11, num_images_per_prompt=2)
    assert generate(loaded, seed=11, num_images_per_prompt=2) == first
    assert generate(loaded, seed=12, num_images_per_prompt=2) != first
    # and the two images of one request differ: each has its own noise
    assert first[0] != first[1]


def test_image_i_of_a_batch_is_the_single_image_of_seed_plus_i(loaded: LoadedPipeline) -> None:
    # Given a batch of three images with seed 40
    batch = pixels(generate(loaded, seed=40, num_images_per_prompt=3, guidance_scale=7.5))

    # When each is requested alone with seed 40 + i
    alone = [pixels(generate(loaded, seed=40 + i, guidance_scale=7.5))[0] for i in range(3)]

    # Then they match (batched float32 arithmetic may round differently: allow a level or two
    # after JPEG, far below the difference between two seeds)
    for batched, single in zip(batch, alone, strict=True):
        assert np.abs(batched - single).max() <= 3
    assert np.abs(batch[0] - batch[1]).mean() > 10


def test_the_negative_prompt_is_used(loaded: LoadedPipeline) -> None:
    plain = generate(loaded, seed=3, guidance_scale=7.5)
    assert generate(loaded, seed=3, guidance_scale=7.5, negative_prompt="dark, blurry") != plain


def test_model_fn_loads_on_cpu_in_float32_with_pytorch_sdpa_attention(
    loaded: LoadedPipeline,
) -> None:
    pipeline = loaded.pipeline
    assert loaded.device.type == "cpu"
    assert {pipeline.unet.dtype, pipeline.vae.dtype, pipeline.text_encoder.dtype} == {torch.float32}
    processors = [*pipeline.unet.attn_processors.values(), *pipeline.vae.attn_processors.values()]
    assert processors
    assert all(isinstance(processor, AttnProcessor2_0) for processor in processors)
    assert sd_serving.serving_dtype(torch.device("cuda")) == torch.float16


def test_an_inpainting_archive_is_refused(
    tiny_sd_inpainting: Path, tiny_clipseg: Path, tmp_path: Path
) -> None:
    # Given the styling endpoint's archive, pointed at the text-to-image endpoint by mistake
    pipeline = StableDiffusionInpaintPipeline.from_pretrained(tiny_sd_inpainting)
    archive = export(pipeline, tmp_path / "archive", mode="inpainting", clipseg_source=tiny_clipseg)
    with pytest.raises(ValueError, match="takes 9 input channels: an inpainting model belongs"):
        inference.model_fn(str(archive))


def request(**fields: Any) -> dict[str, Any]:
    return {"prompt": "a sks dog", **fields}


BAD_REQUESTS: list[tuple[dict[str, Any], str]] = [
    ({}, '"prompt" is required'),
    (request(prompt="   "), '"prompt" must be a non-empty string'),
    (request(prompt=["a dog"]), '"prompt" must be a non-empty string'),
    # The tiny tokenizer makes one token per character: 76 of them exceed 77 with start and end.
    (request(prompt="d" * 76), '"prompt" is 76 tokens long; the text encoder reads at most 75'),
    (request(negative_prompt="d" * 80), '"negative_prompt" is 80 tokens long'),
    (request(prompt="d" * 2001), '"prompt" has 2001 characters; at most 2000'),
    (request(width=68), '"width" must be a multiple of 8; got 68'),
    (request(height=32), '"height" must be from 64 to 1024; got 32'),
    (request(width=1032), '"width" must be from 64 to 1024'),
    (request(width="512"), '"width" must be an integer'),
    (request(width=512.0), '"width" must be an integer'),
    (request(num_images_per_prompt=0), '"num_images_per_prompt" must be from 1 to 4; got 0'),
    (request(num_images_per_prompt=5), '"num_images_per_prompt" must be from 1 to 4; got 5'),
    (request(num_images_per_prompt=True), '"num_images_per_prompt" must be an integer'),
    (request(width=1024, height=1024, num_images_per_prompt=4), "exceed 2359296 pixels"),
    (request(num_inference_steps=0), '"num_inference_steps" must be from 1 to 100'),
    (request(num_inference_steps=101), '"num_inference_steps" must be from 1 to 100'),
    (request(guidance_scale=-1), '"guidance_scale" must be from 0 to 20'),
    (request(guidance_scale=20.5), '"guidance_scale" must be from 0 to 20'),
    (request(guidance_scale="7.5"), '"guidance_scale" must be a number'),
    (request(guidance_scale=float("nan")), '"guidance_scale" must be a number'),
    (request(seed=-1), '"seed" must be from 0 to 4294967295'),
    (request(seed=2**32), '"seed" must be from 0 to 4294967295'),
    (request(seed=1.5), '"seed" must be an integer'),
    (request(num_images=2), r"unknown field\(s\) num_images; this endpoint takes prompt"),
]


@pytest.mark.parametrize(("document", "message"), BAD_REQUESTS)
def test_bad_fields_are_refused_with_a_message_naming_them(
    loaded: LoadedPipeline, document: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        inference.predict_fn(document, loaded)


def test_a_prompt_of_exactly_the_encoders_length_is_accepted(loaded: LoadedPipeline) -> None:
    parsed = inference.parse_request(
        request(prompt="d" * 75, negative_prompt=""), loaded.pipeline.tokenizer, native_size=32
    )
    assert parsed.prompt == "d" * 75
    assert parsed.negative_prompt is None


def test_absent_and_null_fields_take_the_documented_defaults(loaded: LoadedPipeline) -> None:
    parsed = inference.parse_request(
        request(seed=None, width=None), loaded.pipeline.tokenizer, native_size=512
    )
    assert (parsed.width, parsed.height, parsed.num_images_per_prompt) == (512, 512, 1)
    assert (parsed.num_inference_steps, parsed.guidance_scale) == (50, 7.5)
    assert 0 <= parsed.seed <= 2**32 - 1


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"{not json", "application/json", "not valid JSON"),
        (b"[1, 2]", "application/json", "must be a JSON object"),
        (b"\xff\xfe", "text/plain", "the text body is not UTF-8"),
        (b"a dog", "image/jpeg", "unsupported content type 'image/jpeg'"),
    ],
)
def test_unreadable_bodies_are_refused(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        inference.input_fn(body, content_type)


def test_the_toolkit_turns_a_bad_payload_into_a_400_with_the_message(archive: Path) -> None:
    with served(archive) as service:
        with pytest.raises(PredictionException) as bad_field:
            invoke(service, json.dumps(request(width=68)).encode())
        with pytest.raises(PredictionException) as empty_text:
            invoke(service, b"  ", content_type="text/plain")
    assert bad_field.value.error_code == 400
    assert '"width" must be a multiple of 8' in bad_field.value.message
    assert empty_text.value.error_code == 400
    assert '"prompt" must be a non-empty string' in empty_text.value.message


def test_only_json_answers_are_offered() -> None:
    assert json.loads(inference.output_fn({"generated_images": []}, "*/*")) == {
        "generated_images": []
    }
    with pytest.raises(ValueError, match="unsupported accept type 'image/jpeg'"):
        inference.output_fn({"generated_images": []}, "image/jpeg")


def test_the_inference_image_satisfies_the_archives_requirements_offline(archive: Path) -> None:
    require_dlc_venv()
    # Given the container stand-in, with the image's diffusers (not the one these tests run)
    assert dlc_version("diffusers") == pinned("diffusers") != diffusers.__version__

    # When pip reads code/requirements.txt as the toolkit does at start, without an index
    # Then it has nothing to install
    assert pip_would_install(archive / "code" / "requirements.txt") == ""


@pytest.mark.slow
def test_the_archive_answers_the_same_under_the_inference_images_diffusers(archive: Path) -> None:
    require_dlc_venv()
    # Given a request for two seeded images
    body = json.dumps({"prompt": "a sks dog", "num_images_per_prompt": 2, "seed": 9, **FAST})

    # When the toolkit serves the archive here and under the container's libraries
    with served(archive) as service:
        here = json.loads(invoke(service, body.encode()))
    there = serve_under_dlc(archive, body)

    # Then both make the same two images, byte for byte
    assert there["transformers"] == pinned("transformers")
    assert there["response"] == here
    assert len(here["generated_images"]) == 2
