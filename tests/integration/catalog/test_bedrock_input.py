"""The bedrock input step against moto S3: transform output → Bedrock input files and ledger."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from catalog.handlers import bedrock_input
from catalog.handlers.bedrock_input import BedrockInputStep
from catalog.logic import layout
from catalog.logic.bedrock_records import BedrockLimitError, record_id
from descriptions.logic.prompt import converse_request
from shared.adapters.run_files import RunFiles
from shared.models.catalog import BedrockBatchLimits, FailureRecord, LedgerRecord, Stage
from tests.catalog_batch_support import (
    SHIRT_QUESTIONS,
    batch_settings,
    index_record,
    put_group_parts,
    transform_output_line,
)
from tests.catalog_support import (
    BEDROCK_LIMITS,
    RESULTS_BUCKET,
    catalog_environ,
    catalog_settings,
    create_catalog_resources,
    list_keys,
    read_jsonl,
)
from tests.descriptions_support import ATTRIBUTES, FakeContext

pytestmark = pytest.mark.integration

RUN = "20261122100000-abcdef12"
GROUP = "g0000"
DESCRIPTIONS = batch_settings()


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        s3 = boto3.client("s3")
        create_catalog_resources(s3, boto3.client("dynamodb"), catalog_settings())
        yield s3


def _step(s3: Any, **bedrock: int) -> BedrockInputStep:
    limits = BedrockBatchLimits.model_validate({**BEDROCK_LIMITS, **bedrock})
    return BedrockInputStep(
        settings=catalog_settings(bedrock=limits),
        descriptions=DESCRIPTIONS,
        files=RunFiles(RESULTS_BUCKET, s3=s3),
    )


def _event(group: dict[str, Any], *, languages: list[str], error: Any = None) -> dict[str, Any]:
    return {
        "runId": RUN,
        "group": group,
        "languages": languages,
        "transformJob": "atelier-dev-catalog-abcdef12-g0000",
        "transformError": error,
    }


def _lines(s3: Any, key: str) -> list[dict[str, Any]]:
    return read_jsonl(s3, RESULTS_BUCKET, key)


def test_a_group_becomes_rotated_input_files_a_ledger_and_failures(s3: Any) -> None:
    # Given a group of two parts, 150 + 100 products, half of them Shirts; in part a every 25th
    # output line is malformed; part b's output stops 10 lines short
    part_a = [index_record(n, category="Shirts" if n % 2 else "default") for n in range(150)]
    part_b = [index_record(n) for n in range(150, 250)]
    outputs_a = [
        b"{broken" if n % 25 == 0 else transform_output_line(r) for n, r in enumerate(part_a)
    ]
    outputs_b = [transform_output_line(r) for r in part_b[:-10]]
    group = put_group_parts(
        s3, RESULTS_BUCKET, RUN, GROUP, {"a": (part_a, outputs_a), "b": (part_b, outputs_b)}
    )

    # When the step runs with files of at most 100 records, for English and German
    result = _step(s3, maxRecordsPerFile=100).run(_event(group, languages=["en", "de"]))

    # Then 234 records go to three files of 100, 100 and 34, in one sequence of record ids
    assert result == {"group": GROUP, "records": 234, "failed": 16}
    keys = list_keys(s3, RESULTS_BUCKET, layout.bedrock_input_prefix(RUN, GROUP))
    assert keys == [layout.bedrock_input_key(RUN, GROUP, n) for n in range(3)]
    inputs = [line for key in keys for line in _lines(s3, key)]
    assert [len(_lines(s3, key)) for key in keys] == [100, 100, 34]
    assert [line["recordId"] for line in inputs] == [record_id(n) for n in range(234)]

    # and the ledger lists the same records, in order, with the products they stand for
    ledger = [
        LedgerRecord.model_validate(line) for line in _lines(s3, layout.ledger_key(RUN, GROUP))
    ]
    assert [entry.record_id for entry in ledger] == [line["recordId"] for line in inputs]
    good = [r for n, r in enumerate(part_a) if n % 25] + part_b[:-10]
    assert [entry.product_id for entry in ledger] == [r.product_id for r in good]
    assert all(entry.languages == ("en", "de") for entry in ledger)

    # and each model input is, field for field, what the online path sends, less modelId
    for entry, line in zip(ledger, inputs, strict=True):
        online = converse_request(
            model_id=DESCRIPTIONS.model_id,
            attributes=entry.attributes,
            category=entry.category,
            languages=["en", "de"],
            max_tokens_per_language=DESCRIPTIONS.max_tokens_per_language,
            temperature=DESCRIPTIONS.temperature,
            structured_output=DESCRIPTIONS.structured_output,
        )
        del online["modelId"]
        assert line["modelInput"] == online
    shirts = next(entry for entry in ledger if entry.category == "Shirts")
    assert list(shirts.attributes) == list(SHIRT_QUESTIONS)
    assert next(e for e in ledger if e.category == "default").attributes == ATTRIBUTES

    # and the 6 malformed and 10 missing products are failures at stage attributes
    failures = [
        FailureRecord.model_validate(line)
        for line in _lines(s3, layout.failures_key(RUN, "bedrock-input", GROUP))
    ]
    assert {f.stage for f in failures} == {Stage.ATTRIBUTES}
    assert sorted(f.product_id for f in failures) == sorted(
        [r.product_id for n, r in enumerate(part_a) if n % 25 == 0]
        + [r.product_id for r in part_b[-10:]]
    )
    assert sum("b.jsonl.out ends after 90 lines" in f.reason for f in failures) == 10


def test_a_failed_transform_job_names_itself_in_every_lost_products_reason(s3: Any) -> None:
    # Given a group whose job failed after part a: part b has no output file at all
    part_a = [index_record(n) for n in range(120)]
    part_b = [index_record(n) for n in range(120, 130)]
    group = put_group_parts(
        s3,
        RESULTS_BUCKET,
        RUN,
        GROUP,
        {"a": (part_a, [transform_output_line(r) for r in part_a]), "b": (part_b, None)},
    )
    error = {"Error": "SageMaker.AmazonSageMakerException", "Cause": "ClientError: instance lost"}

    # When the step runs with the caught error
    result = _step(s3).run(_event(group, languages=["en"], error=error))

    # Then part a's products go to Bedrock and part b's fail with the job's name and cause
    assert result == {"group": GROUP, "records": 120, "failed": 10}
    failures = _lines(s3, layout.failures_key(RUN, "bedrock-input", GROUP))
    assert len(failures) == 10
    assert all(
        "job atelier-dev-catalog-abcdef12-g0000 failed (SageMaker.AmazonSageMakerException: "
        "ClientError: instance lost) and wrote no b.jsonl.out" in f["reason"]
        for f in failures
    )


def test_a_group_below_the_job_minimum_is_not_sent_and_says_so(s3: Any) -> None:
    # Given 60 products with attributes and 2 without, with a job minimum of 100
    part = [index_record(n) for n in range(62)]
    outputs = [transform_output_line(r) for r in part[:60]]
    outputs += [transform_output_line(r, {"attributes": {}}) for r in part[60:]]
    group = put_group_parts(s3, RESULTS_BUCKET, RUN, GROUP, {"a": (part, outputs)})

    # When the step runs
    result = _step(s3).run(_event(group, languages=["en"]))

    # Then nothing goes to Bedrock, the ledger is empty, and all 62 are failures: 60 at stage
    # description naming the minimum and the online re-run, 2 at stage attributes
    assert result == {"group": GROUP, "records": 0, "failed": 62}
    assert list_keys(s3, RESULTS_BUCKET, layout.bedrock_input_prefix(RUN, GROUP)) == []
    assert _lines(s3, layout.ledger_key(RUN, GROUP)) == []
    failures = [
        FailureRecord.model_validate(line)
        for line in _lines(s3, layout.failures_key(RUN, "bedrock-input", GROUP))
    ]
    described = [f for f in failures if f.stage is Stage.DESCRIPTION]
    assert len(described) == 60
    assert "fewer than a batch inference job accepts (100)" in described[0].reason
    assert "takes the online path" in described[0].reason
    assert sum(f.stage is Stage.ATTRIBUTES for f in failures) == 2


def test_a_group_beyond_one_job_is_refused_and_leaves_no_files(s3: Any) -> None:
    # Given 30 products for a job of at most 20, in files of 10
    part = [index_record(n) for n in range(30)]
    group = put_group_parts(
        s3, RESULTS_BUCKET, RUN, GROUP, {"a": (part, [transform_output_line(r) for r in part])}
    )

    # When the step runs, Then it refuses, naming the setting to lower
    with pytest.raises(BedrockLimitError, match=r"lower catalog\.max_records_per_group"):
        _step(s3, minRecordsPerJob=5, maxRecordsPerJob=20, maxRecordsPerFile=10).run(
            _event(group, languages=["en"])
        )

    # and leaves neither input files (the first was already uploaded) nor a ledger
    assert list_keys(s3, RESULTS_BUCKET, layout.group_prefix(RUN, GROUP)) == [
        layout.transform_manifest_key(RUN, GROUP),
        layout.transform_output_key(RUN, GROUP, "a"),
    ]


def test_a_retry_replaces_an_earlier_attempts_files(s3: Any) -> None:
    # Given an earlier attempt's extra input file
    part = [index_record(n) for n in range(100)]
    group = put_group_parts(
        s3, RESULTS_BUCKET, RUN, GROUP, {"a": (part, [transform_output_line(r) for r in part])}
    )
    stale = layout.bedrock_input_key(RUN, GROUP, 7)
    s3.put_object(Bucket=RESULTS_BUCKET, Key=stale, Body=b'{"recordId": "R9999999999"}\n')

    # When the step runs again
    _step(s3).run(_event(group, languages=["en"]))

    # Then only this attempt's file is left for the job
    assert list_keys(s3, RESULTS_BUCKET, layout.bedrock_input_prefix(RUN, GROUP)) == [
        layout.bedrock_input_key(RUN, GROUP, 0)
    ]


def test_the_handler_reads_its_settings_from_the_environment(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the Lambda's environment and a group of 100
    for name, value in catalog_environ(descriptions=DESCRIPTIONS).items():
        monkeypatch.setenv(name, value)
    part = [index_record(n) for n in range(100)]
    group = put_group_parts(
        s3, RESULTS_BUCKET, RUN, GROUP, {"a": (part, [transform_output_line(r) for r in part])}
    )
    bedrock_input.step.cache_clear()

    # When the handler is invoked
    try:
        result = bedrock_input.handler(_event(group, languages=["en"]), FakeContext())
    finally:
        bedrock_input.step.cache_clear()

    # Then it ran the step, and the ledger names the transform job for the results step
    assert result == {"group": GROUP, "records": 100, "failed": 0}
    head = s3.head_object(Bucket=RESULTS_BUCKET, Key=layout.ledger_key(RUN, GROUP))
    assert head["Metadata"] == {"transform-job": "atelier-dev-catalog-abcdef12-g0000"}
    assert json.loads(
        s3.get_object(Bucket=RESULTS_BUCKET, Key=layout.bedrock_input_key(RUN, GROUP, 0))["Body"]
        .read()
        .splitlines()[0]
    )["recordId"] == record_id(0)
