"""The styling endpoint's handler (CLIPSeg + SD inpainting), on tiny models, through the toolkit.

The tiny models are random, so what CLIPSeg finds is arbitrary: the tests hold the handler to
what does not depend on that. A threshold of 0 selects every pixel and 1 none; a higher
threshold never selects more; whatever the mask, pixels outside it are the input's and pixels
inside are repainted; a caller's mask is obeyed exactly.
"""

from __future__ import annotations

import base64
import io
import json
import math
import shutil
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, StableDiffusionInpaintPipeline, StableDiffusionPipeline
from diffusers.models.attention_processor import AttnProcessor2_0
from mms.service import PredictionException
from PIL import Image

import sd_serving
from dreambooth.export import export_archive
from styling import inference
from styling.inference import LoadedStyling
from tests.dlc_support import (
    dlc_version,
    pinned,
    pip_would_install,
    require_dlc_venv,
    serve_under_dlc,
)
from tests.toolkit_support import invoke, served

WIDTH, HEIGHT = 96, 64
# One step, no classifier-free guidance: each 512 px request stays near a second on CPU.
FAST = {"num_inference_steps": 1, "guidance_scale": 1.0}

Pixels = np.ndarray[Any, np.dtype[np.int16]]


def eightfold_vae() -> AutoencoderKL:
    """A VAE that downsamples 8x, as Stable Diffusion's does.

    The fixture's VAE downsamples 2x (it trains at 32 px); the styling endpoint serves only 512 and
    768 px, where 2x would leave 256 px latents and make every CPU request take many seconds.
    """
    torch.manual_seed(0)
    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(4, 4, 4, 4),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=2,
        sample_size=64,
    )


@pytest.fixture(scope="module")
def archive(
    tiny_sd_inpainting: Path, tiny_clipseg: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The inpainting archive train.py writes (dreambooth.export): pipeline, clipseg/, code/."""
    components = StableDiffusionInpaintPipeline.from_pretrained(tiny_sd_inpainting).components
    pipeline = StableDiffusionInpaintPipeline(**{**components, "vae": eightfold_vae()})
    return export_archive(
        tmp_path_factory.mktemp("styling-archive"),
        pipeline,
        mode="inpainting",
        clipseg_source=tiny_clipseg,
        summary={"base_model": "tiny"},
        manifest_source={"kind": "folder"},
    )


@pytest.fixture(scope="module")
def loaded(archive: Path) -> LoadedStyling:
    return inference.model_fn(str(archive))


def photo() -> Image.Image:
    """A 96x64 picture with structure everywhere, so "equal to the input" means something."""
    x = np.arange(WIDTH)[None, :]
    y = np.arange(HEIGHT)[:, None]
    rgb = np.stack(
        np.broadcast_arrays(x * 2 + 20, y * 3 + 10, (x + y) % 17 * 12 + 40), axis=-1
    ).astype(np.uint8)
    return Image.fromarray(rgb)


def b64(image: Image.Image, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def left_half_mask(size: tuple[int, int] = (WIDTH, HEIGHT)) -> Image.Image:
    mask = np.zeros((size[1], size[0]), dtype=np.uint8)
    mask[:, : size[0] // 2] = 255
    return Image.fromarray(mask)


def array(image: Image.Image) -> Pixels:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def decoded(value: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(value, validate=True)))


def by_prompt(**fields: Any) -> dict[str, Any]:
    return {
        "image": b64(photo()),
        "mask_prompt": "the shirt",
        "prompt": "a red flannel shirt",
        **FAST,
        **fields,
    }


def by_mask(**fields: Any) -> dict[str, Any]:
    return {
        "inputs": "a red flannel shirt",
        "input_img": b64(photo()),
        "mask_img": b64(left_half_mask()),
        **FAST,
        **fields,
    }


def partial_threshold(loaded: LoadedStyling) -> float:
    """A threshold at which the tiny CLIPSeg's mask covers part of the photo, whatever it shows."""
    probabilities = inference.mask_probabilities(loaded, photo(), "the shirt")
    for quantile in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98):
        threshold = float(np.quantile(probabilities.numpy(), quantile))
        mask = inference.threshold_mask(probabilities, (WIDTH, HEIGHT), threshold)
        if 0.2 < (np.asarray(mask) == 255).mean() < 0.8:
            return threshold
    raise AssertionError("no threshold splits the tiny CLIPSeg's map")


def test_the_toolkit_serves_the_archive_with_a_clipseg_mask(
    archive: Path, loaded: LoadedStyling
) -> None:
    # Given a photo, a region to find and a threshold that selects part of the picture
    threshold = partial_threshold(loaded)
    document = by_prompt(num_images_per_prompt=2, seed=5, mask_threshold=threshold)

    # When SageMaker's toolkit hands the request to the handler
    with served(archive) as service:
        response = json.loads(invoke(service, json.dumps(document).encode()))

    # Then two JPEGs and a PNG mask come back, all at the photo's size
    assert sorted(response) == ["generated_images", "mask"]
    mask = decoded(response["mask"])
    assert (mask.format, mask.mode, mask.size) == ("PNG", "L", (WIDTH, HEIGHT))
    assert set(np.unique(np.asarray(mask))) == {0, 255}
    images = [decoded(image) for image in response["generated_images"]]
    assert [(image.format, image.size) for image in images] == [("JPEG", (WIDTH, HEIGHT))] * 2
    # and they are, byte for byte, what the handler makes in process (whose pixels outside the
    # mask are the photo's: the next test)
    expected = inference.style(loaded, inference.parse_request(document, loaded))
    assert response["mask"] == inference.encode(expected.mask, "PNG")
    assert response["generated_images"] == [
        inference.encode(image, "JPEG") for image in expected.images
    ]
    assert np.abs(array(images[0]) - array(images[1])).mean() > 5


def test_pixels_outside_a_clipseg_mask_are_exactly_the_inputs(loaded: LoadedStyling) -> None:
    request = inference.parse_request(
        by_prompt(seed=1, mask_threshold=partial_threshold(loaded)), loaded
    )
    result = inference.style(loaded, request)
    selected = np.asarray(result.mask) == 255
    generated, original = array(result.images[0]), array(photo())
    assert (generated[~selected] == original[~selected]).all()
    assert np.abs(generated[selected] - original[selected]).mean() > 20


def test_a_caller_mask_of_the_left_half_repaints_only_the_left_half(
    loaded: LoadedStyling,
) -> None:
    # Given the reference form with a mask of the photo's left half
    response = inference.predict_fn(by_mask(seed=2), loaded)

    # Then no mask comes back (the caller has it), and the right half is the photo's
    assert list(response) == ["generated_images"]
    generated = array(decoded(response["generated_images"][0]))
    original = array(photo())
    # JPEG codes 16x16 blocks on their own: away from the seam, the right half is the photo's
    # own JPEG; the left half is something else
    photo_jpeg = array(decoded(inference.encode(photo(), "JPEG")))
    right, left = slice(WIDTH // 2 + 16, None), slice(None, WIDTH // 2)
    assert np.abs(generated[:, right] - photo_jpeg[:, right]).max() <= 1
    assert np.abs(generated[:, left] - original[:, left]).mean() > 20
    # and before JPEG, exactly
    exact = inference.style(loaded, inference.parse_request(by_mask(seed=2), loaded)).images[0]
    assert (array(exact)[:, WIDTH // 2 :] == original[:, WIDTH // 2 :]).all()


def test_a_fixed_seed_repeats_and_image_i_is_the_single_image_of_seed_plus_i(
    loaded: LoadedStyling,
) -> None:
    def images(**fields: Any) -> list[Pixels]:
        request = inference.parse_request(by_mask(**fields), loaded)
        return [array(image) for image in inference.style(loaded, request).images]

    # Given a batch of two with seed 30
    batch = images(seed=30, num_images_per_prompt=2)

    # When each image is requested alone with seed 30 + i
    first, second = images(seed=30)[0], images(seed=31)[0]

    # Then they are the batch's images (batched float32 arithmetic may round a level apart)
    assert np.abs(batch[0] - first).max() <= 2
    assert np.abs(batch[1] - second).max() <= 2
    assert np.abs(batch[0] - batch[1]).mean() > 5
    # and the same seed gives the same image again
    assert (images(seed=30)[0] == first).all()


def test_a_threshold_of_zero_selects_every_pixel(loaded: LoadedStyling) -> None:
    mask = inference.mask_from_prompt(loaded, photo(), "the shirt", 0.0)
    assert mask.size == (WIDTH, HEIGHT)
    assert (np.asarray(mask) == 255).all()


def test_a_threshold_of_one_matches_nothing_and_says_what_to_do(loaded: LoadedStyling) -> None:
    with pytest.raises(
        ValueError,
        match='"mask_prompt" \'the shirt\' matched nothing at "mask_threshold" 1: lower',
    ):
        inference.predict_fn(by_prompt(mask_threshold=1.0), loaded)


def test_a_higher_threshold_never_selects_more(loaded: LoadedStyling) -> None:
    probabilities = inference.mask_probabilities(loaded, photo(), "the shirt")
    masks = [
        np.asarray(inference.threshold_mask(probabilities, (WIDTH, HEIGHT), threshold)) == 255
        for threshold in np.quantile(probabilities.numpy(), [0.1, 0.5, 0.9])
    ]
    assert masks[0].sum() > masks[1].sum() > masks[2].sum() > 0
    assert (masks[0] >= masks[1]).all()
    assert (masks[1] >= masks[2]).all()


def test_the_mask_is_dilated_by_about_one_percent_of_clipsegs_map() -> None:
    # Given a 352 px probability map (CLIPSeg's) with one confident pixel
    probabilities = torch.zeros(352, 352)
    probabilities[100, 200] = 0.9

    # When it becomes a mask of the same size
    mask = np.asarray(inference.threshold_mask(probabilities, (352, 352), 0.5)) == 255

    # Then the pixel grew into a square of radius 4 (1% of 352, rounded)
    rows, columns = np.nonzero(mask)
    assert (rows.min(), rows.max(), columns.min(), columns.max()) == (96, 104, 196, 204)


def test_the_mask_takes_the_images_size_and_orientation() -> None:
    probabilities = torch.full((32, 32), 0.3)
    probabilities[:, :16] = 0.8
    mask = inference.threshold_mask(probabilities, (300, 120), 0.5)
    assert (mask.mode, mask.size) == ("L", (300, 120))
    selected = np.asarray(mask) == 255
    # The left half and the dilation (1 px of 32, i.e. ~9 px of 300): nothing on the right third
    assert selected[:, :150].all()
    assert not selected[:, 170:].any()


def test_the_soft_mask_is_the_normal_cdf_of_clipsegs_logits() -> None:
    # Given logits across the range CLIPSeg produces, on a map of the image's size
    logits = torch.linspace(-6.0, 6.0, 352 * 352).reshape(352, 352)

    # When the soft mask is made
    mask = inference.soft_mask(logits, (352, 352))

    # Then each level is Φ(logit) x 255, computed independently with math.erf
    expected = np.array(
        [round(255 * 0.5 * (1 + math.erf(x / math.sqrt(2)))) for x in logits.flatten().tolist()]
    ).reshape(352, 352)
    assert mask.mode == "L"
    assert np.abs(np.asarray(mask, dtype=np.int16) - expected).max() <= 1
    # and, unlike the threshold mask, it has grey levels (a logit of 0 is one half)
    assert len(np.unique(np.asarray(mask))) > 200
    assert abs(int(np.asarray(inference.soft_mask(torch.zeros(4, 4), (4, 4)))[0, 0]) - 128) <= 1


def test_a_soft_mask_request_blends_through_the_mask_and_keeps_what_it_leaves(
    loaded: LoadedStyling,
) -> None:
    # Given a styling request with the reference workflow's soft mask
    request = inference.parse_request(by_prompt(seed=3, mask_mode="soft"), loaded)

    # When it is served
    result = inference.style(loaded, request)

    # Then the mask is Φ of the logits at the photo's size, and every image is the input blended
    # with the generated picture through it: where the mask is 0, exactly the input
    expected = inference.soft_mask(
        inference.mask_logits(loaded, photo(), "the shirt"), (WIDTH, HEIGHT)
    )
    assert (np.asarray(result.mask) == np.asarray(expected)).all()
    assert len(result.images) == 2
    kept = np.asarray(result.mask) == 0
    for image in result.images:
        assert (array(image)[kept] == array(photo())[kept]).all()


def test_model_fn_samples_with_the_euler_discrete_scheduler(
    archive: Path, loaded: LoadedStyling
) -> None:
    scheduler = loaded.pipeline.scheduler
    assert type(scheduler).__name__ == "EulerDiscreteScheduler"
    # configured from the archive's own scheduler: its training schedule is kept
    saved = json.loads((archive / "scheduler" / "scheduler_config.json").read_text())
    assert saved["_class_name"] != "EulerDiscreteScheduler"
    assert scheduler.config.num_train_timesteps == saved["num_train_timesteps"]
    assert scheduler.config.prediction_type == saved.get("prediction_type", "epsilon")


def test_a_caller_mask_of_the_images_proportions_is_resized_to_it() -> None:
    mask = inference.caller_mask_image(b64(left_half_mask((192, 128))), photo())
    assert mask.size == (WIDTH, HEIGHT)
    assert set(np.unique(np.asarray(mask))) == {0, 255}
    assert (np.asarray(mask)[:, : WIDTH // 2 - 1] == 255).all()
    assert (np.asarray(mask)[:, WIDTH // 2 + 1 :] == 0).all()


def test_an_exif_rotated_photo_is_served_upright() -> None:
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    photo().save(buffer, "JPEG", exif=exif)
    upright = inference.decode_image(base64.b64encode(buffer.getvalue()).decode(), "image")
    assert upright.size == (HEIGHT, WIDTH)


def test_model_fn_loads_on_cpu_in_float32_with_pytorch_sdpa_attention(
    loaded: LoadedStyling,
) -> None:
    pipeline = loaded.pipeline
    assert loaded.device.type == "cpu"
    assert {pipeline.unet.dtype, pipeline.vae.dtype, loaded.segmenter.dtype} == {torch.float32}
    processors = [*pipeline.unet.attn_processors.values(), *pipeline.vae.attn_processors.values()]
    assert processors
    assert all(isinstance(processor, AttnProcessor2_0) for processor in processors)
    assert sd_serving.serving_dtype(torch.device("cuda")) == torch.float16


def test_a_text_to_image_archive_is_refused(tiny_sd: Path, tmp_path: Path) -> None:
    # Given the text-to-image endpoint's archive, pointed at the styling endpoint by mistake
    archive = export_archive(
        tmp_path / "archive",
        StableDiffusionPipeline.from_pretrained(tiny_sd),
        mode="text-to-image",
        summary={},
        manifest_source={"kind": "folder"},
    )
    with pytest.raises(ValueError, match="takes 4 input channels; the styling endpoint needs an"):
        inference.model_fn(str(archive))


def test_an_archive_without_clipseg_is_refused(tiny_sd_inpainting: Path, tmp_path: Path) -> None:
    # (export_archive refuses to write one: a hand-made directory)
    shutil.copytree(tiny_sd_inpainting, tmp_path / "archive")
    with pytest.raises(ValueError, match="clipseg is missing: the styling archive holds CLIPSeg"):
        inference.model_fn(str(tmp_path / "archive"))


def image_of(size: tuple[int, int], fmt: str = "PNG") -> str:
    return b64(Image.new("RGB", size, "navy"), fmt)


BAD_REQUESTS: list[tuple[dict[str, Any], str]] = [
    ({}, '"image" must be a base64-encoded'),
    (by_prompt(image="***"), '"image" is not valid base64'),
    (by_prompt(image=base64.b64encode(b"plain text").decode()), '"image" is not a readable image'),
    (by_prompt(image=image_of((64, 64), "GIF")), '"image" is GIF; send JPEG, PNG or WebP'),
    (by_prompt(image=image_of((64, 40))), '"image" is 64x40; each side must be at least 64'),
    (by_prompt(image=image_of((4100, 4100))), '"image" has 4100x4100 pixels; at most 16777216'),
    (by_prompt(mask_prompt=None), '"mask_prompt" is required'),
    (by_prompt(mask_prompt=" "), '"mask_prompt" must be a non-empty string'),
    (by_prompt(mask_prompt="s" * 76), '"mask_prompt" is 76 tokens long; the text encoder reads'),
    (by_prompt(prompt=""), '"prompt" must be a non-empty string'),
    (by_prompt(prompt="s" * 80), '"prompt" is 80 tokens long'),
    (by_prompt(negative_prompt=7), '"negative_prompt" must be a non-empty string'),
    (by_prompt(mask_threshold=1.5), '"mask_threshold" must be from 0 to 1; got 1.5'),
    (by_prompt(mask_threshold="0.4"), '"mask_threshold" must be a number'),
    (by_prompt(image_length=640), '"image_length" must be 512 or 768; got 640'),
    (by_prompt(image_length=1024), '"image_length" must be 512 or 768; got 1024'),
    (by_prompt(image_length="512"), "\"image_length\" must be 512 or 768; got '512'"),
    (by_prompt(image_length=512.0), '"image_length" must be 512 or 768; got 512.0'),
    (by_prompt(image_length=True), '"image_length" must be 512 or 768; got True'),
    (by_prompt(num_images_per_prompt=5), '"num_images_per_prompt" must be from 1 to 4; got 5'),
    (by_prompt(num_inference_steps=0), '"num_inference_steps" must be from 1 to 100'),
    (by_prompt(guidance_scale=25), '"guidance_scale" must be from 0 to 20; got 25'),
    (by_prompt(seed=-3), '"seed" must be from 0 to 4294967295'),
    (by_prompt(mask="x"), r"unknown field\(s\) mask; this form takes image, mask_prompt"),
    (by_prompt(mask_img=b64(left_half_mask())), "not a mix"),
    (by_mask(mask_threshold=0.5), r"unknown field\(s\) mask_threshold; this form takes inputs"),
    (by_mask(mask_mode="soft"), r"unknown field\(s\) mask_mode; this form takes inputs"),
    (by_prompt(mask_mode="fuzzy"), '"mask_mode" must be "threshold" or "soft"; got \'fuzzy\''),
    (by_prompt(mask_mode=True), '"mask_mode" must be "threshold" or "soft"; got True'),
    (
        by_prompt(mask_mode="soft", mask_threshold=0.3),
        '"mask_threshold" applies only to "mask_mode" "threshold"',
    ),
    (by_mask(inputs=None), '"inputs" is required'),
    (by_mask(mask_img=None), '"mask_img" must be a base64-encoded'),
    (by_mask(mask_img=b64(Image.new("L", (WIDTH, HEIGHT), 0))), '"mask_img" marks no pixel'),
    (by_mask(mask_img=b64(left_half_mask((64, 64)))), '"mask_img" is 64x64 but "input_img" is'),
]


@pytest.mark.parametrize(("document", "message"), BAD_REQUESTS)
def test_bad_fields_are_refused_with_a_message_naming_them(
    loaded: LoadedStyling, document: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        inference.parse_request(document, loaded)


def test_absent_fields_take_the_documented_defaults(loaded: LoadedStyling) -> None:
    parsed = inference.parse_request(
        {"image": b64(photo()), "mask_prompt": "the shirt", "prompt": "linen"}, loaded
    )
    # The reference styling workflow's: 2 images, guidance 6.5; the hard threshold mask at 0.4.
    assert (parsed.image_length, parsed.num_images_per_prompt, parsed.mask_threshold) == (
        512,
        2,
        0.4,
    )
    assert parsed.mask_mode == "threshold"
    assert (parsed.num_inference_steps, parsed.guidance_scale, parsed.negative_prompt) == (
        25,
        6.5,
        None,
    )


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"{not json", "application/json", "not valid JSON"),
        (b'"a string"', "application/json", "must be a JSON object"),
        (b"the shirt", "text/plain", "unsupported content type 'text/plain'"),
    ],
)
def test_unreadable_bodies_are_refused(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        inference.input_fn(body, content_type)


def test_the_toolkit_turns_a_bad_payload_into_a_400_with_the_message(archive: Path) -> None:
    with served(archive) as service:
        with pytest.raises(PredictionException) as no_match:
            invoke(service, json.dumps(by_prompt(mask_threshold=1.0)).encode())
        with pytest.raises(PredictionException) as bad_length:
            invoke(service, json.dumps(by_mask(image_length=600)).encode())
    assert no_match.value.error_code == 400
    assert "matched nothing" in no_match.value.message
    assert bad_length.value.error_code == 400
    assert '"image_length" must be 512 or 768; got 600' in bad_length.value.message


def test_only_json_answers_are_offered() -> None:
    assert json.loads(inference.output_fn({"generated_images": []}, "application/json")) == {
        "generated_images": []
    }
    with pytest.raises(ValueError, match="unsupported accept type 'image/png'"):
        inference.output_fn({"generated_images": []}, "image/png")


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
    # Given a request that runs both models (CLIPSeg: transformers; inpainting: diffusers)
    body = json.dumps(by_prompt(seed=4, mask_threshold=0.0))

    # When the toolkit serves the archive here and under the container's libraries
    with served(archive) as service:
        here = json.loads(invoke(service, body.encode()))
    there = serve_under_dlc(archive, body)

    # Then both answer the same image and mask, byte for byte
    assert there["transformers"] == pinned("transformers")
    assert there["response"] == here
    assert sorted(here) == ["generated_images", "mask"]
