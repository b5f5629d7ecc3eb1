"""Where generated images are stored: images/<yyyy>/<mm>/<dd>/<request id>/<n>.png."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from images.logic.keys import image_key
from infra.stacks.api import IMAGES_PREFIX
from shared.request_ids import is_valid_request_id
from tests.images_support import REQUEST_ID


def test_a_key_names_the_utc_day_the_request_and_the_image_number() -> None:
    created = datetime(2026, 3, 7, 23, 59, 59, tzinfo=UTC)
    assert image_key(REQUEST_ID, 1, created) == f"images/2026/03/07/{REQUEST_ID}/1.png"
    assert image_key(REQUEST_ID, 5, created).endswith(f"/{REQUEST_ID}/5.png")


def test_the_day_is_the_utc_day_whatever_the_clock_zone() -> None:
    # 01:30 in UTC+2 on the 8th is still the 7th in UTC.
    created = datetime(2026, 3, 8, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    assert image_key(REQUEST_ID, 1, created).startswith("images/2026/03/07/")


def test_the_prefix_is_the_one_the_function_may_write() -> None:
    assert image_key(REQUEST_ID, 1, datetime.now(UTC)).startswith(IMAGES_PREFIX)


@pytest.mark.parametrize(
    "request_id", ["", None, "../etc", "a/b", "x" * 129, "-leading-dash", "id with space"]
)
def test_anything_but_a_request_id_is_refused(request_id: str | None) -> None:
    assert not is_valid_request_id(request_id)
    with pytest.raises(ValueError, match="not a request id"):
        image_key(request_id, 1, datetime.now(UTC))  # type: ignore[arg-type]


def test_images_are_numbered_from_one_and_times_carry_a_zone() -> None:
    with pytest.raises(ValueError, match="numbered from 1"):
        image_key(REQUEST_ID, 0, datetime.now(UTC))
    with pytest.raises(ValueError, match="time zone"):
        image_key(REQUEST_ID, 1, datetime(2026, 1, 1))  # a naive time: the point of the test
