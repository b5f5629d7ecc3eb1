"""The styling photo exactly at the stage's image limits is accepted, by key (the real S3 reader,
on moto) and inline; one byte, pixel or side unit past a limit is refused with its own code."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from diffusion.logic.inputs import read_input
from shared.adapters.diffusion_images import S3InputImages
from shared.models.diffusion import DiffusionSettings, InputImage
from shared.models.errors import RequestError
from tests.diffusion_support import UPLOADS_BUCKET, b64, photo_bytes, settings

pytestmark = pytest.mark.integration

SIZE = (320, 192)
PHOTO = photo_bytes(SIZE, image_format="PNG")
KEY = "styling/edge.png"


def limits(
    *, max_bytes: int = len(PHOTO), max_pixels: int = SIZE[0] * SIZE[1], max_side: int = SIZE[0],
    min_side: int = SIZE[1], inline: int | None = None,
) -> DiffusionSettings:  # fmt: skip
    """The stage's settings with image limits the photo meets exactly unless told otherwise."""
    image = {"maxBytes": max_bytes, "maxPixels": max_pixels, "maxSide": max_side,
             "minSide": min_side}  # fmt: skip
    return settings(image=image, maxInlineImageBytes=inline or max_bytes)


@pytest.fixture
def uploads() -> Iterator[S3InputImages]:
    with mock_aws():
        s3: Any = boto3.client("s3")
        s3.create_bucket(Bucket=UPLOADS_BUCKET)
        s3.put_object(Bucket=UPLOADS_BUCKET, Key=KEY, Body=PHOTO)
        yield S3InputImages(UPLOADS_BUCKET, s3=s3)


def test_an_uploaded_photo_exactly_at_every_limit_is_accepted(uploads: S3InputImages) -> None:
    checked = read_input("image", InputImage(key=KEY), limits(), uploads)

    assert checked.data == PHOTO
    assert (checked.info.width, checked.info.height, checked.info.size_bytes) == (
        *SIZE,
        len(PHOTO),
    )


def test_an_inline_photo_exactly_at_every_limit_is_accepted() -> None:
    checked = read_input("image", InputImage(base64=b64(PHOTO)), limits(), uploads=_no_uploads())

    assert checked.data == PHOTO
    assert checked.source == "base64"


@pytest.mark.parametrize(
    ("tighter", "status", "code"),
    [
        ({"max_bytes": len(PHOTO) - 1}, 413, "image_too_large"),
        ({"max_pixels": SIZE[0] * SIZE[1] - 1}, 400, "image_too_many_pixels"),
        ({"max_side": SIZE[0] - 1}, 400, "image_side_too_long"),
        ({"min_side": SIZE[1] + 1}, 400, "image_too_small"),
    ],
)
def test_one_past_a_limit_is_refused(
    uploads: S3InputImages, tighter: dict[str, int], status: int, code: str
) -> None:
    with pytest.raises(RequestError) as caught:
        read_input("image", InputImage(key=KEY), limits(**tighter), uploads)

    assert (caught.value.status, caught.value.code) == (status, code)


def test_an_inline_photo_one_byte_over_the_inline_limit_is_refused() -> None:
    with pytest.raises(RequestError) as caught:
        read_input(
            "image",
            InputImage(base64=b64(PHOTO)),
            limits(max_bytes=len(PHOTO), inline=len(PHOTO) - 1),
            uploads=_no_uploads(),
        )

    assert (caught.value.status, caught.value.code) == (413, "inline_image_too_large")


def _no_uploads() -> S3InputImages:
    """A reader that must not be used: inline images never touch the bucket."""

    class Unused(S3InputImages):
        def __init__(self) -> None:
            pass

        def read(self, key: str, *, max_bytes: int, field: str) -> bytes:
            raise AssertionError("an inline image was read from S3")

    return Unused()
