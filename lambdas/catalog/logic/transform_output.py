"""Batch Transform output → the attributes of each product, or why it has none.

Batch Transform writes one output line per input line, in input order, and (with the workflow's
join and output filter) each line is `{"product_id", "image_key", "category", "SageMakerOutput":
<the endpoint's answer>}`. The transform index holds the same products in the same order, so the
two files are zipped line by line; the product id on both sides proves they still line up.

A product whose output is missing (the job failed or stopped part-way), unreadable, about another
product or without answers becomes a FailureRecord at stage `attributes` whose reason says which.
The answers are cleaned exactly as the online pipeline cleans the endpoint's: only the category's
questions, stripped, non-empty.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from descriptions.logic.requests import Question, answered, questions_for
from shared.models.catalog import FailureRecord, IndexRecord, Stage
from shared.models.descriptions import PipelineSettings

# How much of a model's or a job's own error text goes into a failure reason.
_QUOTE_CHARS = 300


@dataclass(frozen=True)
class TransformJob:
    """The Batch Transform job that answered a group, and its error if it failed."""

    name: str
    # Step Functions' caught error: {"Error": ..., "Cause": ...}; None when the job succeeded.
    error: Mapping[str, Any] | None = None

    def failure_text(self) -> str:
        if self.error is None:
            return f"job {self.name} succeeded"
        name = str(self.error.get("Error") or "unknown error")
        cause = " ".join(str(self.error.get("Cause") or "").split())[:_QUOTE_CHARS]
        return (
            f"job {self.name} failed ({name}: {cause})"
            if cause
            else f"job {self.name} failed ({name})"
        )


@dataclass(frozen=True)
class ProductAttributes:
    """A product the attribute model answered: its index record and its cleaned answers."""

    record: IndexRecord
    attributes: dict[str, str]


TransformOutcome = ProductAttributes | FailureRecord


@dataclass
class TransformStats:
    """What zipping one part found besides products: output lines no index record claims."""

    extra_output_lines: int = 0


def parse_index_line(line: bytes) -> IndexRecord:
    """One transform-index line; the workflow wrote it, so a bad one is a bug and raises."""
    return IndexRecord.model_validate_json(line)


def zip_transform_output(
    index_lines: Iterable[bytes],
    output_lines: Iterable[bytes] | None,
    *,
    settings: PipelineSettings,
    job: TransformJob,
    part: str,
    stats: TransformStats | None = None,
) -> Iterator[TransformOutcome]:
    """Each index record with its output line, streamed; `output_lines` None = no output file."""
    questions = CategoryQuestions(settings)
    outputs = iter(output_lines) if output_lines is not None else None
    line_number = 0
    for index_line in index_lines:
        record = parse_index_line(index_line)
        line = next(outputs, None) if outputs is not None else None
        if line is None:
            yield _failure(record, _missing_reason(job, part, outputs is None, line_number))
            continue
        line_number += 1
        asked = questions.of(record.category)
        if asked is None:
            yield _failure(
                record,
                f"category {record.category!r} is no longer configured in "
                "descriptions.categories; configure it or re-run with another category",
            )
            continue
        yield attributes_of(record, line, questions=asked, where=f"{part} line {line_number}")
    if outputs is not None and stats is not None:
        stats.extra_output_lines += sum(1 for _ in outputs)


def attributes_of(
    record: IndexRecord, line: bytes, *, questions: Sequence[Question], where: str
) -> TransformOutcome:
    """The cleaned answers of one output line, or a failure naming what is wrong with it."""
    try:
        document = json.loads(line)
    except ValueError as error:
        return _failure(record, f"Batch Transform output {where} is not JSON ({error})")
    if not isinstance(document, dict):
        return _failure(record, f"Batch Transform output {where} is not a JSON object")
    if document.get("product_id") != record.product_id:
        named = str(document.get("product_id"))[:128]
        return _failure(
            record,
            f"Batch Transform output {where} names product {named!r}, not "
            f"{record.product_id!r}: the output does not line up with the transform index",
        )
    if "SageMakerOutput" not in document:
        return _failure(
            record, f"Batch Transform output {where} has no SageMakerOutput (the model's answer)"
        )
    answer = document["SageMakerOutput"]
    if isinstance(answer, str):
        return _failure(
            record, f"the attribute model answered with text, not JSON: {_quote(answer)}"
        )
    if not isinstance(answer, dict):
        return _failure(record, "the attribute model's answer is not a JSON object")
    raw = answer.get("attributes")
    if raw is None:
        reported = next(
            (answer[key] for key in ("error", "message", "ErrorMessage") if key in answer), None
        )
        if reported is not None:
            return _failure(
                record, f"the attribute model reported an error: {_quote(str(reported))}"
            )
        return _failure(record, "the attribute model's answer has no attributes")
    if not isinstance(raw, dict) or not all(isinstance(value, str) for value in raw.values()):
        return _failure(record, 'the attribute model did not answer {"attributes": {name: text}}')
    attributes = answered(raw, questions)
    if not attributes:
        return _failure(
            record, f"the attribute model answered none of the {record.category!r} questions"
        )
    return ProductAttributes(record=record, attributes=attributes)


def _missing_reason(job: TransformJob, part: str, no_file: bool, lines_read: int) -> str:
    if no_file:
        return (
            f"no Batch Transform output for this product: {job.failure_text()} and wrote no "
            f"{part}.out"
        )
    return (
        f"no Batch Transform output for this product: {part}.out ends after {lines_read} "
        f"lines ({job.failure_text()})"
    )


def _failure(record: IndexRecord, reason: str) -> FailureRecord:
    return FailureRecord(
        product_id=record.product_id,
        image_key=record.image_key,
        category=record.category,
        stage=Stage.ATTRIBUTES,
        reason=reason,
    )


def _quote(text: str) -> str:
    return repr(" ".join(text.split())[:_QUOTE_CHARS])


class CategoryQuestions:
    """Each category's questions, resolved once per part rather than once per product."""

    def __init__(self, settings: PipelineSettings) -> None:
        self._settings = settings
        self._questions: dict[str, list[Question]] = {}

    def of(self, category: str) -> list[Question] | None:
        if category not in self._settings.categories:
            return None
        if category not in self._questions:
            self._questions[category] = questions_for(self._settings, category)[1]
        return self._questions[category]
