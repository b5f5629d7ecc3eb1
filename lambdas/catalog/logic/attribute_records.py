"""Bedrock batch records for the attributes step, when the stage's attribute source is `vision-llm`.

Instead of a Batch Transform line for the fine-tuned endpoint, each product becomes one Bedrock
batch inference record whose `modelInput` asks the vision model exactly what the online path asks
(`descriptions.logic.vision`): the photo as base64 in an image block, the category's questions as
one structured answer. As for the description records, the mode decides the job type: Converse
records (`json_schema`), or Anthropic Messages bodies for an InvokeModel job (`tool`), because
Converse batch records may not carry `toolConfig`.

Limits, checked before a line is written:
- the image: Bedrock's per-image limits (`BEDROCK_IMAGE_LIMITS`: format, 3.75 MB, 8,000 px per
  side, checked 2026-12-07), the same check as online;
- the record: one line must fit in one input file (`BedrockBatchLimits.max_file_bytes`, the
  batch "input file size" quota of 1 GB by default, checked 2026-12-07). Records per file and
  per job, and bytes per job, are placed by `bedrock_records.FileRotation` like the description
  records. A 3.75 MB image is about 5 MB of base64, so the image limit always binds first at the
  default quotas; the line check guards smaller configured quotas.

The answers come back as `modelOutput` lines read by `bedrock_records.parse_output_line` and
validated by `read_attribute_answers`, the online path's own reader.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from catalog.logic.bedrock_records import Answer, record_id
from descriptions.logic.images import ImageInfo
from descriptions.logic.prompt import StructuredOutput
from descriptions.logic.vision import batch_input, check_image, read_answers
from shared.models.attributes import AttributeAnswers
from shared.models.catalog import BedrockBatchLimits, IndexRecord
from shared.models.errors import RequestError


class _Question(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def text(self) -> str: ...


class AttributeRecordError(ValueError):
    """The product cannot go into an attributes batch job; the message says which limit."""


@dataclass(frozen=True)
class AttributeRecord:
    record_id: str
    # The JSON line for the job's input file, without its line end.
    line: bytes
    # What the results step needs besides the answer (no image).
    index: IndexRecord

    @property
    def size(self) -> int:
        """Bytes in the input file, line end included (what FileRotation.place takes)."""
        return len(self.line) + 1


def build_attribute_record(
    sequence: int,
    *,
    product_id: str,
    image_key: str,
    category: str,
    questions: Sequence[_Question],
    image: bytes,
    info: ImageInfo,
    structured_output: StructuredOutput,
    limits: BedrockBatchLimits,
) -> AttributeRecord:
    """One product's record; `info` is the image's header check (`inspect_image`), done by the
    caller against the stage's own limits. Raises AttributeRecordError naming the limit."""
    try:
        image_format = check_image(info)
    except RequestError as error:
        raise AttributeRecordError(f"{error.message} ({error.code})") from None
    identifier = record_id(sequence)
    body = batch_input(
        image=image,
        image_format=image_format,
        questions=questions,
        structured_output=structured_output,
    )
    line = json.dumps(
        {"recordId": identifier, "modelInput": body}, ensure_ascii=False, separators=(",", ":")
    ).encode()
    if len(line) + 1 > limits.max_file_bytes:
        raise AttributeRecordError(
            f"the record for this {len(image):,}-byte image is {len(line) + 1:,} bytes, more than "
            f"one Bedrock batch input file may hold ({limits.max_file_bytes:,} bytes, "
            "catalog.bedrock.max_file_mb)"
        )
    index = IndexRecord(
        product_id=product_id,
        image_key=image_key,
        category=category,
        image_sha256=hashlib.sha256(image).hexdigest(),
    )
    return AttributeRecord(record_id=identifier, line=line, index=index)


def read_attribute_answers(
    answer: Answer, *, model_id: str, structured_output: str
) -> AttributeAnswers:
    """The validated answers of one batch output record; DependencyError (its code and message
    become the failure reason) for a refused, cut-off or malformed answer, as online."""
    return read_answers(answer.reply, model_id=model_id, structured_output=structured_output)
