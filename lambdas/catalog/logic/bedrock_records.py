"""Bedrock batch inference: the input records, their files, and the reading of the outputs.

A batch job takes JSON Lines of `{"recordId", "modelInput"}`. What `modelInput` is depends on
`descriptions.structured_output`, because Bedrock refuses tool use in Converse batch records:

- `json_schema`: the job is of the Converse type and `modelInput` is the body of the Converse
  request the online path sends (`converse_request`, with `outputConfig.textFormat`), less
  `modelId` (the job names the model once).
- `tool`: the job is of the InvokeModel type and `modelInput` is the same prompt, tool and token
  budget as an Anthropic Messages API body (`anthropic_tool_request`).

Each output line is `{"recordId", "modelInput", "modelOutput": <response>}` (a Converse response,
or an Anthropic Messages response for InvokeModel jobs), or `{"recordId", "modelInput", "error":
{"errorCode", "errorMessage"}}` for a record the model failed on; the answer is read by the
online path's own reader and validator.

Everything here works on iterables of lines and yields as it goes, so a group of tens of
thousands of products never sits in memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from catalog.logic.transform_output import (
    ProductAttributes,
    TransformJob,
    TransformStats,
    zip_transform_output,
)
from descriptions.logic.prompt import (
    MalformedAnswerError,
    anthropic_tool_request,
    converse_request,
    parse_reply,
    token_limit_advice,
)
from shared.models.catalog import BedrockBatchLimits, FailureRecord, LedgerRecord
from shared.models.descriptions import LocalizedDescription, PipelineSettings, TextModelReply

# Bedrock record ids are 11 characters; the sequence number within a group keeps them unique.
RECORD_ID_FORMAT = "R{:010d}"
_QUOTE_CHARS = 300


def record_id(sequence: int) -> str:
    return RECORD_ID_FORMAT.format(sequence)


def model_input(
    settings: PipelineSettings,
    *,
    attributes: Mapping[str, str],
    category: str,
    languages: Sequence[str],
) -> dict[str, Any]:
    """The record's model input: the Converse body the online path would send for this product,
    without `modelId` (json_schema mode), or its Anthropic Messages equivalent (tool mode)."""
    if settings.structured_output == "tool":
        return anthropic_tool_request(
            attributes=attributes,
            category=category,
            languages=languages,
            max_tokens_per_language=settings.max_tokens_per_language,
            temperature=settings.temperature,
        )
    request = converse_request(
        model_id=settings.model_id,
        attributes=attributes,
        category=category,
        languages=languages,
        max_tokens_per_language=settings.max_tokens_per_language,
        temperature=settings.temperature,
        structured_output=settings.structured_output,
    )
    del request["modelId"]
    return request


@dataclass(frozen=True)
class BedrockRecord:
    """One product bound for the Bedrock job: its input line and its ledger line (no line ends)."""

    record_id: str
    input_line: bytes
    ledger_line: bytes


def bedrock_record(
    sequence: int,
    product: ProductAttributes,
    *,
    settings: PipelineSettings,
    languages: Sequence[str],
) -> BedrockRecord:
    identifier = record_id(sequence)
    record = product.record
    body = model_input(
        settings, attributes=product.attributes, category=record.category, languages=languages
    )
    ledger = LedgerRecord(
        record_id=identifier,
        product_id=record.product_id,
        image_key=record.image_key,
        category=record.category,
        image_sha256=record.image_sha256,
        attributes=product.attributes,
        languages=tuple(languages),
    )
    return BedrockRecord(
        record_id=identifier,
        input_line=_json_line({"recordId": identifier, "modelInput": body}),
        ledger_line=ledger.model_dump_json().encode(),
    )


def build_bedrock_lines(
    index_lines: Iterable[bytes],
    output_lines: Iterable[bytes] | None,
    *,
    settings: PipelineSettings,
    languages: Sequence[str],
    job: TransformJob,
    part: str,
    first_sequence: int = 0,
    stats: TransformStats | None = None,
) -> Iterator[BedrockRecord | FailureRecord]:
    """One transform part (its index and its output lines, None when the output file is missing)
    → a Bedrock record per product with attributes, a failure for every other product. Record ids
    count up from `first_sequence`, so a group's parts continue one sequence."""
    sequence = first_sequence
    for outcome in zip_transform_output(
        index_lines, output_lines, settings=settings, job=job, part=part, stats=stats
    ):
        if isinstance(outcome, FailureRecord):
            yield outcome
            continue
        yield bedrock_record(sequence, outcome, settings=settings, languages=languages)
        sequence += 1


class BedrockLimitError(ValueError):
    """A group exceeds what one Bedrock batch job takes; the message names the setting."""


class FileRotation:
    """Assigns each input line to a file: a new file when the current one would exceed the
    per-file record or byte limit; an error when the job would exceed its own limits."""

    def __init__(self, limits: BedrockBatchLimits) -> None:
        self.limits = limits
        self.files = 0
        self.records = 0
        self.bytes = 0
        self._file_records = 0
        self._file_bytes = 0

    def place(self, size: int) -> int:
        """The file index (0-based) for a line of `size` bytes, line end included."""
        limits = self.limits
        if size > limits.max_file_bytes:
            raise BedrockLimitError(
                f"one Bedrock record is {size:,} bytes, more than a whole input file may hold "
                f"({limits.max_file_bytes:,}); lower descriptions.max_tokens_per_language or the "
                "number of attributes"
            )
        if (
            self.records + 1 > limits.max_records_per_job
            or self.bytes + size > limits.max_job_bytes
        ):
            raise BedrockLimitError(
                f"the group exceeds one Bedrock batch job ({limits.max_records_per_job:,} records,"
                f" {limits.max_job_bytes:,} bytes); lower catalog.max_records_per_group"
            )
        full = (
            self._file_records >= limits.max_records_per_file
            or self._file_bytes + size > limits.max_file_bytes
        )
        if self.files == 0 or full:
            self.files += 1
            self._file_records = 0
            self._file_bytes = 0
        self._file_records += 1
        self._file_bytes += size
        self.records += 1
        self.bytes += size
        return self.files - 1


@dataclass(frozen=True)
class Answer:
    """An output line with a model response (Converse or Anthropic Messages)."""

    record_id: str
    reply: TextModelReply


@dataclass(frozen=True)
class RecordError:
    """An output line where Bedrock reports that the model failed on the record."""

    record_id: str
    code: str
    message: str


@dataclass(frozen=True)
class MalformedLine:
    """An output line that cannot be read; `record_id` when at least that could be."""

    problem: str
    record_id: str | None = None


OutputOutcome = Answer | RecordError | MalformedLine


def parse_output_line(line: bytes) -> OutputOutcome:
    try:
        document = json.loads(line)
    except ValueError as error:
        return MalformedLine(f"not JSON ({error})")
    if not isinstance(document, dict):
        return MalformedLine("not a JSON object")
    identifier = document.get("recordId")
    if not isinstance(identifier, str) or not identifier:
        return MalformedLine("no recordId")
    if "error" in document:
        reported = document["error"]
        if isinstance(reported, dict):
            code = str(reported.get("errorCode", "unknown"))
            message = str(reported.get("errorMessage", ""))
        else:
            code, message = "unknown", str(reported)
        return RecordError(identifier, code, " ".join(message.split())[:_QUOTE_CHARS])
    output = document.get("modelOutput")
    if not isinstance(output, dict):
        return MalformedLine("neither a modelOutput object nor an error", identifier)
    # InvokeModel jobs (tool mode) answer in Claude's own shape, Converse jobs in Converse's.
    anthropic = isinstance(output.get("content"), list) and "output" not in output
    read = TextModelReply.from_anthropic_messages if anthropic else TextModelReply.from_converse
    try:
        reply = read(output)
    except (TypeError, ValueError):
        return MalformedLine("the modelOutput's usage counts are not numbers", identifier)
    return Answer(identifier, reply)


def parse_output_lines(lines: Iterable[bytes]) -> Iterator[OutputOutcome]:
    """Every line of Bedrock's `*.jsonl.out` files, read as it streams past."""
    for line in lines:
        yield parse_output_line(line)


def read_descriptions(
    reply: TextModelReply,
    languages: Sequence[str],
    *,
    max_tokens_per_language: int,
    structured_output: str,
) -> dict[str, LocalizedDescription]:
    """The validated descriptions of an answer; MalformedAnswerError says what is wrong, with
    the online path's advice when the model ran out of tokens, and the setting to change when
    it answered in neither structured shape."""
    try:
        return parse_reply(reply, languages, structured_output)
    except MalformedAnswerError as error:
        if reply.stop_reason == "max_tokens":
            raise MalformedAnswerError(token_limit_advice(max_tokens_per_language)) from error
        raise


def _json_line(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
