"""Where generated images live in the results bucket.

`images/<yyyy>/<mm>/<dd>/<request id>/<n>.png` (UTC date, n from 1): one folder per request, so
a request's images are listed, kept or deleted together, and days can get lifecycle rules.
"""

from __future__ import annotations

from datetime import UTC, datetime

from shared.request_ids import is_valid_request_id

IMAGES_PREFIX = "images/"


def image_key(request_id: str, number: int, created: datetime) -> str:
    if not is_valid_request_id(request_id):
        raise ValueError(f"not a request id: {request_id!r}")
    if number < 1:
        raise ValueError(f"images are numbered from 1, got {number}")
    if created.tzinfo is None:
        raise ValueError("the creation time must carry a time zone")
    day = created.astimezone(UTC)
    return f"{IMAGES_PREFIX}{day:%Y/%m/%d}/{request_id}/{number}.png"
