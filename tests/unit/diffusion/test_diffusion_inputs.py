"""Styling inputs: inline base64 or uploaded keys, checked from their headers before any model."""

from __future__ import annotations

import pytest

from diffusion.logic.inputs import base64_length, check_mask_matches, decode_inline, read_input
from diffusion.logic.keys import is_input_key
from shared.models.diffusion import InputImage
from shared.models.errors import RequestError
from tests.diffusion_support import FakeInputImages, b64, mask_bytes, photo_bytes, settings

SETTINGS = settings()


def test_an_inline_image_is_decoded_and_described() -> None:
    photo = photo_bytes((120, 80))

    checked = read_input("image", InputImage(base64=b64(photo)), SETTINGS, FakeInputImages())

    assert checked.data == photo
    assert (checked.info.width, checked.info.height, checked.source) == (120, 80, "base64")


def test_a_data_url_prefix_is_accepted() -> None:
    photo = photo_bytes(image_format="PNG")
    assert decode_inline("image", f"data:image/png;base64,{b64(photo)}", max_bytes=10**6) == photo


def test_an_uploaded_image_is_read_by_key_with_the_image_limit() -> None:
    uploads = FakeInputImages({"styling/look-1.png": photo_bytes(image_format="PNG")})

    checked = read_input("image", InputImage(key="styling/look-1.png"), SETTINGS, uploads)

    assert checked.source == "key"
    assert checked.info.format == "png"
    assert uploads.reads == ["styling/look-1.png"]


def test_an_inline_image_over_the_inline_limit_is_a_413_that_says_upload_it() -> None:
    small = settings(maxInlineImageBytes=2048)
    too_big = b64(b"\0" * 2049)

    with pytest.raises(RequestError) as caught:
        read_input("mask", InputImage(base64=too_big), small, FakeInputImages())

    assert (caught.value.status, caught.value.code) == (413, "inline_image_too_large")
    message = caught.value.message
    assert "mask.base64 holds more than 2,048 bytes" in message
    assert 'pass {"mask": {"key": "styling/..."}} instead' in message
    # Exactly at the limit, it is decoded (and then judged as an image).
    with pytest.raises(RequestError) as at_limit:
        read_input("mask", InputImage(base64=b64(b"\0" * 2048)), small, FakeInputImages())
    assert at_limit.value.code == "image_unsupported_format"


@pytest.mark.parametrize(
    ("encoded", "words"),
    [
        ("not base64!", "image.base64 is not valid base64"),
        ("QUJD", "the data is not a JPEG, PNG or WebP image"),
        ("data:image/png,QUJD", "a data: URL image must be base64-encoded"),
        ("", "the image is empty"),
    ],
)
def test_inline_data_that_is_no_image_is_a_400_naming_the_field(encoded: str, words: str) -> None:
    with pytest.raises(RequestError) as caught:
        read_input("image", InputImage.model_construct(base64=encoded, key=None), SETTINGS,
                   FakeInputImages())  # fmt: skip
    assert caught.value.status == 400
    assert caught.value.message.startswith("image")
    assert words in caught.value.message


@pytest.mark.parametrize(
    ("size", "code"),
    [((32, 2048), "image_too_small"), ((2056, 64), "image_side_too_long"),
     ((1600, 1600), "image_too_many_pixels")],
)  # fmt: skip
def test_image_limits_apply_to_every_input(size: tuple[int, int], code: str) -> None:
    uploads = FakeInputImages({"styling/big.png": photo_bytes(size, image_format="PNG")})
    with pytest.raises(RequestError) as caught:
        read_input("image", InputImage(key="styling/big.png"), SETTINGS, uploads)
    assert (caught.value.status, caught.value.code) == (400, code)


@pytest.mark.parametrize(
    "key",
    ["private/a.jpg", "styling", "styling/", "styling/../private/a.jpg", "incoming//a.jpg",
     "results/styling/a.jpg"],
)  # fmt: skip
def test_keys_outside_the_input_prefixes_are_refused_before_any_read(key: str) -> None:
    uploads = FakeInputImages()
    with pytest.raises(RequestError) as caught:
        read_input("image", InputImage(key=key), SETTINGS, uploads)
    assert caught.value.code == "input_key_not_allowed"
    assert "under styling/ or incoming/" in caught.value.message
    assert uploads.reads == []


def test_product_photos_awaiting_description_may_be_restyled() -> None:
    assert is_input_key("incoming/38642.jpg")
    assert is_input_key("styling/2026/look.png")


def test_a_mask_of_other_proportions_is_refused() -> None:
    uploads = FakeInputImages({"styling/photo.jpg": photo_bytes((96, 64))})
    photo = read_input("image", InputImage(key="styling/photo.jpg"), SETTINGS, uploads)
    mask = read_input("mask", InputImage(base64=b64(mask_bytes((80, 64)))), SETTINGS, uploads)

    with pytest.raises(RequestError, match="mask is 80x64 px but image is 96x64 px"):
        check_mask_matches(photo, mask)
    same = read_input("mask", InputImage(base64=b64(mask_bytes((96, 64)))), SETTINGS, uploads)
    check_mask_matches(photo, same)


def test_base64_length_is_exact() -> None:
    for size in (0, 1, 2, 3, 4, 2 * 1024 * 1024):
        assert base64_length(size) == len(b64(b"\0" * size))


def test_an_oversized_inline_image_is_refused_before_it_is_decoded() -> None:
    # Not even valid base64: the length alone decides, so no memory is spent on it.
    with pytest.raises(RequestError) as caught:
        decode_inline("image", "!" * (base64_length(4096) + 4), max_bytes=4096)
    assert caught.value.code == "inline_image_too_large"
