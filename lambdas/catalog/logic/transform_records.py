"""One product's Batch Transform request line, and the index record that stays behind.

The request is the attribute model's endpoint contract, the one `training/vqa/inference.py`
serves and `shared.adapters.sagemaker_runtime` sends in real time:
`{"image": <base64>, "questions": [{"name", "text"}]}`, plus `"errors": "inline"`: a record the
model cannot serve (an image whose body is corrupt behind a valid header) is answered
`{"error": ...}` instead of failing the job's whole input file. It is restated here, not
imported: the serving code ships inside the model archive, not in the Lambda asset. Each line also
carries product_id, image_key and category: the job's InputFilter sends only `image`, `questions`
and `errors` to the model, and JoinSource=Input joins the answer back onto the line, so every
output line names its product (the OutputFilter then drops the image).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from shared.models.catalog import IndexRecord

TRANSFORM_LINE_KEYS = ("product_id", "image_key", "category", "image", "questions", "errors")
# What Batch Transform sends to the model and keeps of each joined output line.
INPUT_FILTER = "$['image','questions','errors']"
OUTPUT_FILTER = "$['product_id','image_key','category','SageMakerOutput']"
# The cdk.json key behind transform_max_payload_bytes.
PAYLOAD_SETTING = "catalog.transform.max_payload_mb"
# Batch Transform's own ceiling for MaxPayloadInMB.
SERVICE_MAX_PAYLOAD_MB = 100


class _Question(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def text(self) -> str: ...


@dataclass(frozen=True)
class TransformRecord:
    # The encoded JSON line, without its line end.
    line: bytes
    index: IndexRecord


def build_transform_record(
    *,
    product_id: str,
    image_key: str,
    category: str,
    questions: Sequence[_Question],
    image: bytes,
) -> TransformRecord:
    document = {
        "product_id": product_id,
        "image_key": image_key,
        "category": category,
        "image": base64.b64encode(image).decode("ascii"),
        "questions": [{"name": q.name, "text": q.text} for q in questions],
        "errors": "inline",
    }
    line = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    index = IndexRecord(
        product_id=product_id,
        image_key=image_key,
        category=category,
        image_sha256=hashlib.sha256(image).hexdigest(),
    )
    return TransformRecord(line=line, index=index)


def payload_problem(request_bytes: int, *, image_bytes: int, limit: int) -> str | None:
    """Why a request line of `request_bytes` (line end included) cannot go to Batch Transform,
    or None. The whole line counts: it is the record SplitType=Line hands to the job, and one
    record must fit in MaxPayloadInMB."""
    if request_bytes <= limit:
        return None
    return (
        f"the image is {image_bytes:,} bytes; as a Batch Transform request (base64 plus its "
        f"questions) it is at least {request_bytes:,} bytes, over the {limit:,}-byte payload "
        f"limit ({PAYLOAD_SETTING}); raise {PAYLOAD_SETTING} (at most {SERVICE_MAX_PAYLOAD_MB}) "
        "or use a smaller image"
    )


def request_bytes(record: TransformRecord) -> int:
    return len(record.line) + 1


def base64_size(byte_count: int) -> int:
    """Length of the base64 text of `byte_count` bytes (with padding): a lower bound of the
    request's size, checked before the line is built so an oversized image is never encoded."""
    return 4 * ((byte_count + 2) // 3)
