"""Bedrock outputs matched to the ledger: stored descriptions, failures, and counted anomalies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from catalog.logic.bedrock_records import parse_output_line, parse_output_lines, record_id
from catalog.logic.ledger import Ledger
from catalog.logic.results import (
    BedrockJob,
    ResultCounts,
    describe_outputs,
    describe_record,
    store_descriptions,
)
from descriptions.logic.grounding import check_grounding
from descriptions.logic.pipeline import result_document, result_key
from descriptions.logic.prompt import parse_descriptions
from shared.models.attributes import AttributesSource
from shared.models.catalog import FailureRecord, Stage
from shared.models.descriptions import PIPELINE_VERSION, StoredDescription
from shared.models.errors import DependencyError
from tests.catalog_batch_support import (
    answer_line,
    batch_settings,
    error_line,
    ledger_record,
)
from tests.descriptions_support import ATTRIBUTES, tool_input

SETTINGS = batch_settings()
NOW = datetime(2026, 11, 22, 10, 0, 0, 123000, tzinfo=UTC)
JOB = BedrockJob(
    arn="arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abc",
    status="PartiallyCompleted",
    message="2 records failed",
)


def _describe(line: bytes, **ledger: Any) -> StoredDescription | FailureRecord:
    return describe_record(
        parse_output_line(line),
        ledger_record(1, **ledger),
        settings=SETTINGS,
        attributes_source=AttributesSource(kind="endpoint", model="transform-job-7"),
        now=NOW,
    )


def test_a_grounded_answer_is_stored_like_the_online_path_stores_it() -> None:
    # Given a ledger record in two languages and a grounded answer
    record = ledger_record(1, languages=("en", "de"))

    # When the answer is described
    stored = _describe(
        answer_line(record.record_id, languages=["en", "de"]), languages=("en", "de")
    )

    # Then it carries the ledger's product, the online parser's descriptions, the grounding
    # report, both models, the usage and the online result key
    assert isinstance(stored, StoredDescription)
    descriptions = parse_descriptions(tool_input(["en", "de"]), ["en", "de"])
    assert stored.descriptions == descriptions
    assert stored.grounding == check_grounding(ATTRIBUTES, descriptions)
    assert (stored.product_id, stored.image_key, stored.image_sha256, stored.category) == (
        record.product_id,
        record.image_key,
        record.image_sha256,
        record.category,
    )
    assert stored.attributes == ATTRIBUTES
    assert (stored.attribute_model, stored.text_model) == ("transform-job-7", SETTINGS.model_id)
    assert stored.usage == {"inputTokens": 300, "outputTokens": 250}
    assert stored.result_key == result_key(record.product_id)
    assert stored.created_at == "2026-11-22T10:00:00.123+00:00"
    assert stored.version == PIPELINE_VERSION


@pytest.mark.parametrize(
    ("line", "stage", "reason"),
    [
        (error_line("R0000000001", 400, "bad"), Stage.DESCRIPTION, "error 400: bad"),
        (
            b'{"recordId": "R0000000001", "modelInput": {}}',
            Stage.DESCRIPTION,
            "is malformed: neither a modelOutput object nor an error",
        ),
        (
            answer_line("R0000000001", payload={"descriptions": "text"}),
            Stage.DESCRIPTION,
            "answer is malformed: the answer has no 'descriptions' list",
        ),
        (
            answer_line("R0000000001", languages=["de"]),
            Stage.DESCRIPTION,
            "no description in en",
        ),
        (
            answer_line("R0000000001", languages=["de"], stop_reason="max_tokens"),
            Stage.DESCRIPTION,
            "raise descriptions.max_tokens_per_language",
        ),
        (
            answer_line("R0000000001", payload=tool_input(["en"], fabric_word="silk")),
            Stage.GROUNDING,
            "fabric is 'cotton' but the text says 'silk'",
        ),
    ],
)
def test_what_cannot_be_stored_fails_at_its_stage_with_the_reason(
    line: bytes, stage: Stage, reason: str
) -> None:
    failure = _describe(line)

    assert isinstance(failure, FailureRecord)
    assert failure.stage is stage
    assert reason in failure.reason
    assert failure.product_id == ledger_record(1).product_id
    assert failure.image_key.startswith("s3://")


def test_every_ledger_record_ends_exactly_once_and_anomalies_are_counted(tmp_path: Path) -> None:
    # Given a ledger of 300 records and outputs with answers, error records, a repeated answer,
    # an unknown record id, malformed lines, and 50 records with no output at all
    with Ledger(str(tmp_path)) as ledger:
        ledger.load(ledger_record(n).model_dump_json().encode() for n in range(300))
        lines = [answer_line(record_id(n)) for n in range(0, 200)]
        lines += [error_line(record_id(n)) for n in range(200, 250)]
        lines += [answer_line(record_id(5)), answer_line("R9999999999"), b"{oops", b"[]"]
        counts = ResultCounts()

        # When the outputs are described
        results = list(
            describe_outputs(
                parse_output_lines(lines),
                ledger,
                settings=SETTINGS,
                attributes_source=AttributesSource(kind="endpoint", model="job"),
                job=JOB,
                now=lambda: NOW,
                counts=counts,
            )
        )

    # Then 200 are stored, 100 fail (50 error records, 50 unanswered naming the job's end), and
    # the repeated, unknown and malformed lines are counted, not stored
    stored = [r for r in results if isinstance(r, StoredDescription)]
    failed = [r for r in results if isinstance(r, FailureRecord)]
    assert sorted(r.product_id for r in results) == sorted(
        ledger_record(n).product_id for n in range(300)
    )
    assert len(stored) == 200
    unanswered = [f for f in failed if "no answer for record" in f.reason]
    assert len(unanswered) == 50
    assert all(
        "ended PartiallyCompleted: 2 records failed; 2 output lines could not be read" in f.reason
        for f in unanswered
    )
    assert (
        counts.answers,
        counts.error_records,
        counts.repeated_records,
        counts.unknown_records,
        counts.malformed_lines,
        counts.unanswered,
    ) == (200, 50, 1, 1, 2, 50)
    assert counts.samples["unknown"] == ["R9999999999"]


def test_with_no_job_every_record_is_unanswered(tmp_path: Path) -> None:
    with Ledger(str(tmp_path)) as ledger:
        ledger.load([ledger_record(1).model_dump_json().encode()])
        [failure] = describe_outputs(
            [],
            ledger,
            settings=SETTINGS,
            attributes_source=AttributesSource(kind="endpoint", model="job"),
            job=BedrockJob(),
            now=lambda: NOW,
            counts=ResultCounts(),
        )

    assert isinstance(failure, FailureRecord)
    assert "no Bedrock job ran for this group" in failure.reason


def test_a_job_bedrock_refused_reports_the_refusal(tmp_path: Path) -> None:
    # Given the state machine's answer when CreateModelInvocationJob was refused
    refused = BedrockJob(
        arn=None,
        status="Failed",
        message="the Bedrock batch job could not be created: Bedrock.ServiceQuotaExceededException:"
        " too many jobs",
    )
    with Ledger(str(tmp_path)) as ledger:
        ledger.load([ledger_record(1).model_dump_json().encode()])
        [failure] = describe_outputs(
            [],
            ledger,
            settings=SETTINGS,
            attributes_source=AttributesSource(kind="endpoint", model="job"),
            job=refused,
            now=lambda: NOW,
            counts=ResultCounts(),
        )

    assert isinstance(failure, FailureRecord)
    assert "could not be created: Bedrock.ServiceQuotaExceededException: too many jobs" in (
        failure.reason
    )


@dataclass
class FlakyArchive:
    broken: set[str]
    documents: dict[str, Mapping[str, Any]] = field(default_factory=dict)

    def put_json(self, key: str, document: Mapping[str, Any]) -> None:
        if key in self.broken:
            raise DependencyError("results_bucket_failed", "AccessDenied", retryable=False)
        self.documents[key] = document


@dataclass
class StubbornTable:
    refuse: set[str]
    written: list[str] = field(default_factory=list)

    def write(self, descriptions: Sequence[StoredDescription]) -> list[str]:
        self.written += [d.product_id for d in descriptions if d.product_id not in self.refuse]
        return [d.product_id for d in descriptions if d.product_id in self.refuse]


def test_storing_archives_first_and_reports_what_did_not_get_stored() -> None:
    # Given 40 descriptions; the archive refuses one, the table keeps another unprocessed
    stored = _describe(answer_line(record_id(1)))
    assert isinstance(stored, StoredDescription)
    descriptions = [
        stored.model_copy(update={"product_id": f"P{n:06d}", "result_key": result_key(f"P{n:06d}")})
        for n in range(40)
    ]
    archive = FlakyArchive(broken={result_key("P000003")})
    table = StubbornTable(refuse={"P000007"})

    # When they are stored with 8 threads
    failures = store_descriptions(descriptions, archive=archive, table=table, concurrency=8)

    # Then the archived documents are the online document shape, the one the archive refused
    # never reaches the table, and both losses are failures at stage store
    assert {f.product_id: f.stage for f in failures} == {
        "P000003": Stage.STORE,
        "P000007": Stage.STORE,
    }
    assert "results JSON could not be written" in failures[0].reason
    assert "kept returning the item unprocessed" in failures[1].reason
    assert len(archive.documents) == 39
    assert archive.documents[result_key("P000010")] == result_document(descriptions[10])
    assert "P000003" not in table.written
    assert len(table.written) == 38
