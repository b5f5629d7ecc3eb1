"""From an S3 upload event to a description job's identity and options.

Uploads arrive as EventBridge "Object Created" events (delivered through SQS). The product id
comes from the object's metadata (`x-amz-meta-product-id`) or else from the key:
`incoming/<productId>.<ext>` or `incoming/<productId>/<any file name>`. Metadata may also carry
`category` and `languages` (comma-separated, e.g. `en,de`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.models.descriptions import PRODUCT_ID_PATTERN
from shared.models.errors import RequestError

UPLOAD_PREFIX = "incoming/"
PRODUCT_ID_METADATA = "product-id"
CATEGORY_METADATA = "category"
LANGUAGES_METADATA = "languages"

_PRODUCT_ID = re.compile(PRODUCT_ID_PATTERN)


@dataclass(frozen=True)
class UploadRef:
    bucket: str
    key: str
    # Always set on a versioned bucket; part of the idempotency key, so a re-upload of the same
    # key is a new description while a repeated event for the same version is not.
    version_id: str | None
    size: int | None

    def idempotency_data(self) -> dict[str, str]:
        return {"bucket": self.bucket, "key": self.key, "version": self.version_id or "null"}


def parse_upload_event(body: str) -> UploadRef | None:
    """The upload an SQS message body announces; None for events that announce no upload."""
    try:
        event = json.loads(body)
    except ValueError:
        raise RequestError("event_malformed", "the message body is not JSON") from None
    if not isinstance(event, dict):
        raise RequestError("event_malformed", "the message body is not a JSON object")
    if event.get("detail-type") != "Object Created" or event.get("source") != "aws.s3":
        # e.g. test messages; nothing to describe and nothing to retry
        return None
    detail = event.get("detail")
    bucket = _get(detail, "bucket", "name")
    key = _get(detail, "object", "key")
    if not isinstance(bucket, str) or not isinstance(key, str) or not bucket or not key:
        raise RequestError("event_malformed", "the event names no bucket and key")
    version = _get(detail, "object", "version-id")
    size = _get(detail, "object", "size")
    return UploadRef(
        bucket=bucket,
        key=key,
        version_id=version if isinstance(version, str) else None,
        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
    )


def _get(value: Any, *path: str) -> Any:
    for name in path:
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return value


def product_id_for(key: str, metadata: Mapping[str, str]) -> str:
    if not key.startswith(UPLOAD_PREFIX):
        raise RequestError("upload_outside_prefix", f"{key!r} is not under {UPLOAD_PREFIX}")
    from_metadata = metadata.get(PRODUCT_ID_METADATA)
    if from_metadata is not None:
        candidate, source = from_metadata.strip(), f"metadata {PRODUCT_ID_METADATA}"
    else:
        rest = key[len(UPLOAD_PREFIX) :]
        first, _, remainder = rest.partition("/")
        candidate = first if remainder else first.rsplit(".", 1)[0]
        source = "the key"
    if not _PRODUCT_ID.fullmatch(candidate):
        raise RequestError(
            "product_id_invalid",
            f"product id {candidate[:140]!r} from {source} is not valid; use 1-128 letters, "
            "digits, '.', '_' or '-', e.g. incoming/38642.jpg or metadata product-id=38642",
        )
    return candidate


def options_from_metadata(metadata: Mapping[str, str]) -> tuple[str | None, list[str] | None]:
    category = metadata.get(CATEGORY_METADATA)
    languages = metadata.get(LANGUAGES_METADATA)
    return (
        category.strip() if category is not None else None,
        [code.strip() for code in languages.split(",") if code.strip()]
        if languages is not None
        else None,
    )
