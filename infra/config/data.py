"""`data`: lifecycle knobs of the Data stack's buckets."""

from __future__ import annotations

from typing import Any

from infra.config.constants import S3_PREFIX_PATTERN
from infra.config.rules import parsed, refuse, section, show, whole

_PREFIXES_TEXT = "expected a list of S3 prefixes ending in '/', e.g. [\"tmp/\"]"


def _s3_prefixes(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise refuse(f"= {show(value)} is not valid; {_PREFIXES_TEXT}")
    for index, prefix in enumerate(value):
        if not isinstance(prefix, str) or not S3_PREFIX_PATTERN.fullmatch(prefix):
            raise refuse(
                f"= {show(prefix)} is not valid; expected an S3 prefix such as 'tmp/' "
                "(no leading '/', ends with '/')",
                f"[{index}]",
            )
    return tuple(value)


def _days(description: str) -> Any:
    return whole(1, 3650, description)


@section
class DataConfig:
    """Lifecycle knobs of the Data stack's buckets."""

    temporary_prefixes: tuple[str, ...] = parsed(
        _PREFIXES_TEXT,
        _s3_prefixes,
        "prefixes whose objects are scratch space (staging, tools' leftovers) and expire",
        "S3 prefixes ending in '/'",
    )
    temporary_object_expiration_days: int = _days("days before temporary objects expire")
    abort_incomplete_multipart_upload_days: int = whole(
        1, 30, "days before unfinished multipart uploads are aborted"
    )
    noncurrent_version_expiration_days: int = _days("days old object versions are kept")
    access_log_expiration_days: int = _days("days access logs are kept")
