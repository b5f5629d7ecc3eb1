"""Where inputs are read from and outputs written to.

Outputs, in the results bucket: `<route>/<yyyy>/<mm>/<dd>/<request id>/<n>.jpg` (UTC date, n from
1), and `mask.png` beside a styling request's images: one folder per request, so its files are
listed, kept or deleted together, and days can get lifecycle rules.

Inputs, in the uploads bucket: only keys under INPUT_PREFIXES. `styling/` is for styling inputs;
`incoming/` is where product photos for descriptions arrive, so a catalog photo can be restyled
without a second upload (do not upload styling inputs there: each upload is also described).
"""

from __future__ import annotations

from datetime import UTC, datetime

from shared.request_ids import is_valid_request_id

GENERATIONS_PREFIX = "generations/"
STYLING_PREFIX = "styling/"
INPUT_PREFIXES = ("styling/", "incoming/")
MASK_NAME = "mask.png"


def output_folder(prefix: str, request_id: str, created: datetime) -> str:
    if prefix not in (GENERATIONS_PREFIX, STYLING_PREFIX):
        raise ValueError(f"not an output prefix: {prefix!r}")
    if not is_valid_request_id(request_id):
        raise ValueError(f"not a request id: {request_id!r}")
    if created.tzinfo is None:
        raise ValueError("the creation time must carry a time zone")
    return f"{prefix}{created.astimezone(UTC):%Y/%m/%d}/{request_id}/"


def image_key(folder: str, number: int) -> str:
    if number < 1:
        raise ValueError(f"images are numbered from 1, got {number}")
    return f"{folder}{number}.jpg"


def mask_key(folder: str) -> str:
    return f"{folder}{MASK_NAME}"


def is_input_key(key: str) -> bool:
    """A key the function may read: under an input prefix, with no path tricks."""
    return key.startswith(INPUT_PREFIXES) and not any(
        part in ("", ".", "..") for part in key.split("/")
    )
