"""Bedrock's batch outputs → stored descriptions, or failures that say why.

Each output record is matched to its ledger record (what the group sent for that product), its
answer validated by the online path's parser, its English text checked by the online path's
grounding check, and the result shaped exactly as the online path stores it. Batch jobs do not
regenerate: a text that contradicts the attributes is a failure at stage `grounding`, and a re-run
with the failures report tries those products again.

Nothing is dropped silently: an output line that cannot be read or names no known record is
counted (the handler logs the counts), and every ledger record that no output answered becomes a
failure naming the job's end state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from catalog.logic.bedrock_records import (
    Answer,
    MalformedLine,
    OutputOutcome,
    RecordError,
    read_descriptions,
)
from catalog.logic.ledger import Ledger
from descriptions.logic.grounding import check_grounding
from descriptions.logic.pipeline import result_document, result_key
from descriptions.logic.prompt import MalformedAnswerError
from shared.models.attributes import AttributesSource
from shared.models.catalog import FailureRecord, LedgerRecord, Stage
from shared.models.descriptions import PIPELINE_VERSION, PipelineSettings, StoredDescription
from shared.models.errors import DependencyError

# Record ids kept as examples of each kind of anomaly, for the log.
_SAMPLES = 10


@dataclass(frozen=True)
class BedrockJob:
    """The group's model invocation job as the state machine saw it end (all None: no job)."""

    arn: str | None = None
    status: str | None = None
    message: str | None = None

    def ended_text(self) -> str:
        message = " ".join((self.message or "").split())[:300]
        if self.arn is None:
            # A job Bedrock refused to create has no ARN, but the refusal is the reason.
            return (
                f"no Bedrock job ran for this group: {message}"
                if message
                else ("no Bedrock job ran for this group")
            )
        text = f"Bedrock job {self.arn} ended {self.status or 'in an unknown state'}"
        return f"{text}: {message}" if message else text


@dataclass
class ResultCounts:
    """What the outputs held besides answers for known records; logged by the handler."""

    answers: int = 0
    error_records: int = 0
    malformed_lines: int = 0
    unknown_records: int = 0
    repeated_records: int = 0
    unanswered: int = 0
    samples: dict[str, list[str]] = field(default_factory=dict)

    def note(self, kind: str, example: str) -> None:
        examples = self.samples.setdefault(kind, [])
        if len(examples) < _SAMPLES:
            examples.append(example[:200])


def describe_record(
    outcome: OutputOutcome,
    record: LedgerRecord,
    *,
    settings: PipelineSettings,
    attributes_source: AttributesSource,
    now: datetime,
) -> StoredDescription | FailureRecord:
    """One output record (already matched to its ledger record) → what to store, or why not."""
    if isinstance(outcome, RecordError):
        return failure(
            record,
            Stage.DESCRIPTION,
            f"Bedrock could not answer record {record.record_id}: error {outcome.code}: "
            f"{outcome.message}",
        )
    if isinstance(outcome, MalformedLine):
        return failure(
            record,
            Stage.DESCRIPTION,
            f"Bedrock's output line for record {record.record_id} is malformed: {outcome.problem}",
        )
    reply = outcome.reply
    try:
        descriptions = read_descriptions(
            reply,
            record.languages,
            max_tokens_per_language=settings.max_tokens_per_language,
            structured_output=settings.structured_output,
        )
    except MalformedAnswerError as error:
        return failure(record, Stage.DESCRIPTION, f"the text model's answer is malformed: {error}")
    grounding = check_grounding(record.attributes, descriptions)
    if grounding.contradictions:
        return failure(
            record,
            Stage.GROUNDING,
            "the text contradicts the photo's attributes: "
            + "; ".join(grounding.contradictions)
            + " (batch jobs do not regenerate; a re-run with the failures report tries again)",
        )
    return StoredDescription(
        product_id=record.product_id,
        category=record.category,
        image_key=record.image_key,
        image_sha256=record.image_sha256,
        attributes=record.attributes,
        descriptions=descriptions,
        grounding=grounding,
        attribute_model=attributes_source.model,
        # Batch Transform's job (endpoint source) or the vision model's attributes job.
        attributes_source=attributes_source,
        text_model=settings.model_id,
        timings_ms={},
        usage={"inputTokens": reply.input_tokens, "outputTokens": reply.output_tokens},
        result_key=result_key(record.product_id),
        created_at=now.isoformat(timespec="milliseconds"),
        version=PIPELINE_VERSION,
    )


def describe_outputs(
    outcomes: Iterable[OutputOutcome],
    ledger: Ledger,
    *,
    settings: PipelineSettings,
    attributes_source: AttributesSource,
    job: BedrockJob,
    now: Callable[[], datetime],
    counts: ResultCounts,
) -> Iterator[StoredDescription | FailureRecord]:
    """Every output matched to the ledger, then a failure for every ledger record left
    unanswered; streamed, one output line at a time."""
    for outcome, record in matched_outputs(outcomes, ledger, counts):
        yield describe_record(
            outcome, record, settings=settings, attributes_source=attributes_source, now=now()
        )
    for record, why in unanswered_records(ledger, job, counts):
        yield failure(
            record,
            Stage.DESCRIPTION,
            f"no answer for record {record.record_id} in the job's output ({why})",
        )


def matched_outputs(
    outcomes: Iterable[OutputOutcome], ledger: Ledger, counts: ResultCounts
) -> Iterator[tuple[OutputOutcome, LedgerRecord]]:
    """Each output line of a Bedrock batch job with the ledger record it answers, counted. A
    line naming no record, a record the ledger does not hold, or one already answered is only
    counted (and noted): it answers nothing."""
    for outcome in outcomes:
        identifier = outcome.record_id
        if identifier is None:
            counts.malformed_lines += 1
            if isinstance(outcome, MalformedLine):
                counts.note("malformed", outcome.problem)
            continue
        record = ledger.get(identifier)
        if record is None:
            counts.unknown_records += 1
            counts.note("unknown", identifier)
            continue
        if not ledger.mark_answered(identifier):
            counts.repeated_records += 1
            counts.note("repeated", identifier)
            continue
        if isinstance(outcome, Answer):
            counts.answers += 1
        elif isinstance(outcome, RecordError):
            counts.error_records += 1
        yield outcome, record


def unanswered_records(
    ledger: Ledger, job: BedrockJob, counts: ResultCounts
) -> Iterator[tuple[LedgerRecord, str]]:
    """Every ledger record no output line answered, counted, with why: how the job ended, and
    how many of its lines could not be read. Iterate it after `matched_outputs` is exhausted."""
    unreadable = (
        f"; {counts.malformed_lines} output lines could not be read"
        if counts.malformed_lines
        else ""
    )
    for record in ledger.unanswered():
        counts.unanswered += 1
        yield record, f"{job.ended_text()}{unreadable}"


class ResultsArchive(Protocol):
    def put_json(self, key: str, document: Mapping[str, Any]) -> None: ...


class BatchTable(Protocol):
    def write(self, descriptions: Sequence[StoredDescription]) -> list[str]:
        """Write the items; returns the product ids still unwritten after bounded retries."""
        ...


def store_descriptions(
    stored: Sequence[StoredDescription],
    *,
    archive: ResultsArchive,
    table: BatchTable,
    concurrency: int,
) -> list[FailureRecord]:
    """Results JSON first (in parallel), then the table rows of those that were archived, so a
    row never points at a document that is not there. Returns the products not stored."""

    def archive_one(description: StoredDescription) -> DependencyError | None:
        try:
            archive.put_json(description.result_key, result_document(description))
        except DependencyError as error:
            return error
        return None

    workers = max(1, min(concurrency, len(stored)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        errors = list(pool.map(archive_one, stored))
    failures = [
        _store_failure(description, f"the results JSON could not be written: {error.message}")
        for description, error in zip(stored, errors, strict=True)
        if error is not None
    ]
    archived = [
        description for description, error in zip(stored, errors, strict=True) if error is None
    ]
    unwritten = set(table.write(archived)) if archived else set()
    failures += [
        _store_failure(
            description,
            "the products table kept returning the item unprocessed (BatchWriteItem, retried "
            f"with backoff); its results JSON is at {description.result_key}",
        )
        for description in archived
        if description.product_id in unwritten
    ]
    return failures


def failure(record: LedgerRecord, stage: Stage, reason: str) -> FailureRecord:
    return FailureRecord(
        product_id=record.product_id,
        image_key=record.image_key,
        category=record.category,
        stage=stage,
        reason=reason,
    )


def _store_failure(description: StoredDescription, reason: str) -> FailureRecord:
    return FailureRecord(
        product_id=description.product_id,
        image_key=description.image_key,
        category=description.category,
        stage=Stage.STORE,
        reason=reason,
    )
