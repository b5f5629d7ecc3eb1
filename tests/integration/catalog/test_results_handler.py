"""The results step end to end on moto: 10,000 ledger records, two Bedrock output files with
error records, malformed lines, unknown record ids and missing records, descriptions stored in S3
and DynamoDB (with items held back as unprocessed), and every product accounted for."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from catalog.handlers import results
from catalog.handlers.bedrock_input import TRANSFORM_JOB_METADATA
from catalog.handlers.results import ResultsStep
from catalog.logic import layout
from catalog.logic.bedrock_records import record_id
from descriptions.logic.pipeline import result_document, result_key
from shared.adapters.dynamo_batch import DynamoBatchWriter
from shared.adapters.run_files import RunFiles
from shared.adapters.storage import DynamoDescriptionTable, S3ResultsArchive
from shared.models.catalog import FailureRecord, Stage
from shared.models.descriptions import StoredDescription
from tests.catalog_batch_support import (
    UnprocessingProxy,
    answer_line,
    batch_settings,
    error_line,
    ledger_record,
    put_lines,
)
from tests.catalog_support import (
    RESULTS_BUCKET,
    TABLE_NAME,
    catalog_environ,
    catalog_settings,
    create_catalog_resources,
    list_keys,
    read_json,
    read_jsonl,
)
from tests.descriptions_support import FakeContext, tool_input

pytestmark = pytest.mark.integration

RUN = "20261122100000-abcdef12"
GROUP = "g0001"
RECORDS = 10_000
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
JOB = {
    "arn": "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/x1y2",
    "status": "PartiallyCompleted",
    "message": "Some records failed",
}
OUTPUT_PREFIX = f"{layout.bedrock_output_prefix(RUN, GROUP)}x1y2/"


@pytest.fixture
def aws() -> Iterator[tuple[Any, Any]]:
    with mock_aws():
        s3, dynamodb = boto3.client("s3"), boto3.client("dynamodb")
        create_catalog_resources(s3, dynamodb, catalog_settings())
        yield s3, dynamodb


def _put_ledger(s3: Any, count: int) -> None:
    s3.put_object(
        Bucket=RESULTS_BUCKET,
        Key=layout.ledger_key(RUN, GROUP),
        Body=b"".join(ledger_record(n).model_dump_json().encode() + b"\n" for n in range(count)),
        Metadata={TRANSFORM_JOB_METADATA: "atelier-dev-catalog-abcdef12-g0001"},
    )


def _step(s3: Any, archive: Any, table: Any, tmp_path: Path) -> ResultsStep:
    return ResultsStep(
        settings=catalog_settings(ioConcurrency=8),
        descriptions=batch_settings(),
        files=RunFiles(RESULTS_BUCKET, s3=s3),
        archive=archive,
        table=table,
        now=lambda: NOW,
        ledger_directory=str(tmp_path),
    )


def _moto_step(s3: Any, dynamodb: Any, tmp_path: Path) -> ResultsStep:
    """The step with the real adapters: results JSON in moto S3, BatchWriteItem on moto."""
    return _step(
        s3,
        S3ResultsArchive(RESULTS_BUCKET, s3=s3),
        DynamoBatchWriter(
            TABLE_NAME, dynamodb=dynamodb, concurrency=4, sleep=lambda _: None, max_attempts=3
        ),
        tmp_path,
    )


@dataclass
class MemoryArchive:
    documents: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def put_json(self, key: str, document: Any) -> None:
        with self.lock:
            self.documents[key] = document


@dataclass
class MemoryTable:
    """BatchTable that keeps `refuse` unprocessed, as DynamoBatchWriter reports them."""

    refuse: set[str]
    items: dict[str, StoredDescription] = field(default_factory=dict)

    def write(self, descriptions: Sequence[StoredDescription]) -> list[str]:
        for description in descriptions:
            if description.product_id not in self.refuse:
                self.items[description.product_id] = description
        return [d.product_id for d in descriptions if d.product_id in self.refuse]


def _table_ids(dynamodb: Any) -> set[str]:
    ids: set[str] = set()
    for page in dynamodb.get_paginator("scan").paginate(
        TableName=TABLE_NAME, ProjectionExpression="productId"
    ):
        ids.update(item["productId"]["S"] for item in page["Items"])
    return ids


def _event(job: dict[str, Any] = JOB) -> dict[str, Any]:
    return {"runId": RUN, "group": {"group": GROUP}, "languages": ["en"], "job": job}


def test_ten_thousand_records_end_described_or_reported(
    aws: tuple[Any, Any], tmp_path: Path
) -> None:
    s3, _ = aws
    # Given a ledger of 10,000 records and the job's two output files (out of order), where
    # every 100th record is an error record, every 250th is a malformed line, every 333rd text
    # contradicts the fabric, the last 10 records have no output, and 3 lines name records the
    # ledger never had; plus the job's manifest.json.out
    _put_ledger(s3, RECORDS)
    lines: list[bytes] = []
    expected: Counter[str] = Counter()
    for n in range(RECORDS - 10):
        if n % 100 == 0:
            lines.append(error_line(record_id(n), 400, "ValidationException: too long"))
            expected["error"] += 1
        elif n % 250 == 0:
            lines.append(b'{"recordId": "' + record_id(n).encode() + b'", "modelOutput": {')
            expected["malformed"] += 1
        elif n % 333 == 0:
            lines.append(answer_line(record_id(n), payload=tool_input(["en"], fabric_word="silk")))
            expected["grounding"] += 1
        else:
            lines.append(answer_line(record_id(n)))
            expected["answered"] += 1
    lines += [answer_line(record_id(RECORDS + k)) for k in range(3)]
    half = len(lines) // 2
    put_lines(s3, RESULTS_BUCKET, f"{OUTPUT_PREFIX}records-0001.jsonl.out", lines[half:])
    put_lines(s3, RESULTS_BUCKET, f"{OUTPUT_PREFIX}records-0000.jsonl.out", lines[:half])
    put_lines(s3, RESULTS_BUCKET, f"{OUTPUT_PREFIX}manifest.json.out", [b'{"totalRecordCount": 1}'])
    # and a table that keeps two products unprocessed whatever the retries (the results JSON
    # and table are in memory here: moto takes ~10 ms per object; the moto-backed adapters are
    # exercised below and in test_dynamo_batch.py)
    stubborn = {ledger_record(1).product_id, ledger_record(9_001).product_id}
    archive, table = MemoryArchive(), MemoryTable(refuse=stubborn)

    # When the results step runs
    outcome = _step(s3, archive, table, tmp_path).run(_event())

    # Then every answered, grounded record is described but the two the table kept refusing
    described = expected["answered"] - 2
    failed = RECORDS - described
    assert outcome == {"described": described, "failed": failed}
    assert read_json(s3, RESULTS_BUCKET, layout.group_result_key(RUN, GROUP)) == outcome

    # and the failures report each lost product once, at the stage where it was lost
    failures = [
        FailureRecord.model_validate(line)
        for line in read_jsonl(s3, RESULTS_BUCKET, layout.failures_key(RUN, "results", GROUP))
    ]
    by_stage = Counter(f.stage for f in failures)
    assert by_stage == {
        Stage.DESCRIPTION: expected["error"] + expected["malformed"] + 10,
        Stage.GROUNDING: expected["grounding"],
        Stage.STORE: 2,
    }
    assert len({f.product_id for f in failures}) == failed
    reasons = {f.product_id: f.reason for f in failures}
    assert "error 400: ValidationException: too long" in reasons[ledger_record(100).product_id]
    assert (
        "ended PartiallyCompleted: Some records failed; "
        f"{expected['malformed']} output lines could not be read"
    ) in reasons[ledger_record(RECORDS - 1).product_id]
    assert "no answer for record" in reasons[ledger_record(250).product_id]
    assert "says 'silk'" in reasons[ledger_record(333).product_id]
    assert "kept returning the item unprocessed" in reasons[ledger_record(1).product_id]

    # and exactly the described products are in the table, each with its results JSON
    assert len(table.items) == described
    assert not set(table.items) & set(reasons)
    assert set(archive.documents) == {result_key(p) for p in table.items} | {
        result_key(p) for p in stubborn
    }
    stored = table.items[ledger_record(2).product_id]
    assert stored.attribute_model == "atelier-dev-catalog-abcdef12-g0001"
    assert archive.documents[result_key(stored.product_id)] == result_document(stored)


def test_the_real_adapters_store_on_moto_with_unprocessed_items(
    aws: tuple[Any, Any], tmp_path: Path
) -> None:
    s3, dynamodb = aws
    # Given 300 answered records and DynamoDB that holds 3 products back once and 2 for good
    _put_ledger(s3, 300)
    put_lines(
        s3,
        RESULTS_BUCKET,
        f"{OUTPUT_PREFIX}records-0000.jsonl.out",
        [answer_line(record_id(n)) for n in range(300)],
    )
    stubborn = {ledger_record(7).product_id, ledger_record(260).product_id}
    transient = {ledger_record(n).product_id for n in (0, 99, 299)}
    proxy = UnprocessingProxy(
        UnprocessingProxy(dynamodb, held=transient, times=1), held=stubborn, times=1_000
    )

    # When the results step runs with the real archive and batch writer
    outcome = _moto_step(s3, proxy, tmp_path).run(_event())

    # Then all but the two are in the table, read back through the online table adapter
    assert outcome == {"described": 298, "failed": 2}
    assert _table_ids(dynamodb) == {ledger_record(n).product_id for n in range(300)} - stubborn
    stored = DynamoDescriptionTable(TABLE_NAME, dynamodb=dynamodb).get(ledger_record(0).product_id)
    assert isinstance(stored, StoredDescription)
    assert stored.created_at == "2026-11-22T12:00:00.000+00:00"
    # and every results JSON is the online document, the two refused ones included
    assert len(list_keys(s3, RESULTS_BUCKET, "descriptions/")) == 300
    assert read_json(s3, RESULTS_BUCKET, result_key(stored.product_id)) == result_document(stored)
    failures = read_jsonl(s3, RESULTS_BUCKET, layout.failures_key(RUN, "results", GROUP))
    assert {f["product_id"] for f in failures} == stubborn
    assert {f["stage"] for f in failures} == {"store"}


def test_a_job_that_never_ran_reports_every_record(aws: tuple[Any, Any], tmp_path: Path) -> None:
    s3, dynamodb = aws
    _put_ledger(s3, 120)

    outcome = _moto_step(s3, dynamodb, tmp_path).run(
        _event({"arn": JOB["arn"], "status": "Failed", "message": "AccessDenied on input"})
    )

    assert outcome == {"described": 0, "failed": 120}
    failures = read_jsonl(s3, RESULTS_BUCKET, layout.failures_key(RUN, "results", GROUP))
    assert all("ended Failed: AccessDenied on input" in f["reason"] for f in failures)


def test_the_handler_runs_from_the_environment(
    aws: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the Lambda's environment, a ledger of 3 and their answers
    s3, dynamodb = aws
    for name, value in catalog_environ(descriptions=batch_settings()).items():
        monkeypatch.setenv(name, value)
    _put_ledger(s3, 3)
    put_lines(
        s3,
        RESULTS_BUCKET,
        f"{OUTPUT_PREFIX}records-0000.jsonl.out",
        [answer_line(record_id(n)) for n in range(3)],
    )
    results.step.cache_clear()

    # When the handler is invoked
    try:
        outcome = results.handler(_event(), FakeContext())
    finally:
        results.step.cache_clear()

    # Then the three are described, and no failures file is written
    assert outcome == {"described": 3, "failed": 0}
    assert len(_table_ids(dynamodb)) == 3
    assert list_keys(s3, RESULTS_BUCKET, layout.failures_prefix(RUN)) == []
