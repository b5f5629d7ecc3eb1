"""The attributes step of a catalog group when the stage reads attributes with the vision model.

Going in: the group's transform input parts (the build step's lines, each with its product, its
image as base64 and the endpoint's questions) become Bedrock batch records for the vision model
(`attribute_records.build_attribute_record`) and an attribute ledger line each (the product
without its image, by record id). Coming back: each output record of the attributes job is
matched to its ledger line, read by the online path's reader, and cleaned exactly as the
endpoint's answers are (only the category's questions, stripped, non-empty), giving the same
`ProductAttributes` the Batch Transform output gives; every product that got none becomes a
failure at stage `attributes` whose reason says why.

The build step's parts are reused as they are: they already hold every checked image once, so
the group needs no second read of the catalog's images.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from catalog.logic.attribute_records import (
    AttributeRecord,
    AttributeRecordError,
    build_attribute_record,
    read_attribute_answers,
)
from catalog.logic.bedrock_records import MalformedLine, OutputOutcome, RecordError
from catalog.logic.ledger import Ledger
from catalog.logic.results import (
    BedrockJob,
    ResultCounts,
    matched_outputs,
    unanswered_records,
)
from catalog.logic.transform_output import CategoryQuestions, ProductAttributes
from descriptions.logic.images import ImageLimits, InvalidImageError, inspect_image
from descriptions.logic.prompt import StructuredOutput
from descriptions.logic.requests import answered
from shared.models.catalog import (
    BedrockBatchLimits,
    FailureRecord,
    IndexRecord,
    LedgerRecord,
    Stage,
)
from shared.models.descriptions import PipelineSettings
from shared.models.errors import DependencyError


@dataclass(frozen=True)
class AttributeInput:
    """One product bound for the attributes job: its record and its attribute ledger line."""

    record: AttributeRecord
    ledger_line: bytes


def attribute_inputs(
    input_lines: Iterable[bytes],
    *,
    settings: PipelineSettings,
    languages: Sequence[str],
    structured_output: StructuredOutput,
    limits: BedrockBatchLimits,
    part: str,
    first_sequence: int = 0,
) -> Iterator[AttributeInput | FailureRecord]:
    """One transform input part → a record per product the vision model can be asked about, a
    failure (stage `attributes`) for every other. Record ids count up from `first_sequence`."""
    questions = CategoryQuestions(settings)
    image_limits = settings.image
    checks = ImageLimits(
        image_limits.max_bytes, image_limits.max_pixels, image_limits.max_side,
        image_limits.min_side,
    )  # fmt: skip
    sequence = first_sequence
    for number, line in enumerate(input_lines, start=1):
        where = f"{part} line {number}"
        document = json.loads(line)
        product = IndexRecord(
            product_id=str(document["product_id"]),
            image_key=str(document["image_key"]),
            category=str(document["category"]),
            image_sha256="-",
        )
        asked = questions.of(product.category)
        if asked is None:
            yield _failure(
                product,
                f"category {product.category!r} is no longer configured in "
                "descriptions.categories; configure it or re-run with another category",
            )
            continue
        try:
            image = base64.b64decode(document["image"], validate=True)
            info = inspect_image(image, checks)
            record = build_attribute_record(
                sequence,
                product_id=product.product_id,
                image_key=product.image_key,
                category=product.category,
                questions=asked,
                image=image,
                info=info,
                structured_output=structured_output,
                limits=limits,
            )
        except (binascii.Error, InvalidImageError) as error:
            yield _failure(product, f"the image in {where} cannot be read again: {error}")
            continue
        except AttributeRecordError as error:
            yield _failure(product, f"the vision attribute model cannot take it: {error}")
            continue
        index = record.index
        ledger = LedgerRecord(
            record_id=record.record_id,
            product_id=index.product_id,
            image_key=index.image_key,
            category=index.category,
            image_sha256=index.image_sha256,
            attributes={},
            languages=tuple(languages),
        )
        yield AttributeInput(record=record, ledger_line=ledger.model_dump_json().encode())
        sequence += 1


def attributes_from_outputs(
    outcomes: Iterable[OutputOutcome],
    ledger: Ledger,
    *,
    settings: PipelineSettings,
    model_id: str,
    structured_output: str,
    job: BedrockJob,
    counts: ResultCounts,
) -> Iterator[ProductAttributes | FailureRecord]:
    """Every output of the attributes job matched to the attribute ledger, then a failure for
    every product no output answered; streamed, one output line at a time."""
    questions = CategoryQuestions(settings)
    for outcome, record in matched_outputs(outcomes, ledger, counts):
        yield _attributes_of(
            outcome,
            record,
            questions=questions,
            model_id=model_id,
            structured_output=structured_output,
        )
    for record, why in unanswered_records(ledger, job, counts):
        yield _failure(
            _index(record),
            f"no answer for record {record.record_id} in the attributes job's output ({why})",
        )


def _attributes_of(
    outcome: OutputOutcome,
    record: LedgerRecord,
    *,
    questions: CategoryQuestions,
    model_id: str,
    structured_output: str,
) -> ProductAttributes | FailureRecord:
    index = _index(record)
    if isinstance(outcome, RecordError):
        return _failure(
            index,
            f"Bedrock could not answer attributes record {record.record_id}: error "
            f"{outcome.code}: {outcome.message}",
        )
    if isinstance(outcome, MalformedLine):
        return _failure(
            index,
            f"Bedrock's output line for attributes record {record.record_id} is malformed: "
            f"{outcome.problem}",
        )
    asked = questions.of(record.category)
    if asked is None:
        return _failure(
            index,
            f"category {record.category!r} is no longer configured in descriptions.categories",
        )
    try:
        answers = read_attribute_answers(
            outcome, model_id=model_id, structured_output=structured_output
        )
    except DependencyError as error:
        return _failure(index, f"{error.message} ({error.code})")
    attributes = answered(answers.attributes, asked)
    if not attributes:
        return _failure(
            index, f"the vision attribute model answered none of the {record.category!r} questions"
        )
    return ProductAttributes(record=index, attributes=attributes)


def _index(record: LedgerRecord) -> IndexRecord:
    return IndexRecord(
        product_id=record.product_id,
        image_key=record.image_key,
        category=record.category,
        image_sha256=record.image_sha256,
    )


def _failure(record: IndexRecord, reason: str) -> FailureRecord:
    return FailureRecord(
        product_id=record.product_id,
        image_key=record.image_key,
        category=record.category,
        stage=Stage.ATTRIBUTES,
        reason=reason,
    )
