"""Zipping the transform index with Batch Transform's output: attributes or a named failure."""

from __future__ import annotations

import pytest

from catalog.logic.transform_output import (
    ProductAttributes,
    TransformJob,
    TransformStats,
    zip_transform_output,
)
from shared.models.catalog import FailureRecord, Stage
from tests.catalog_batch_support import (
    SHIRT_QUESTIONS,
    batch_settings,
    index_line,
    index_record,
    transform_output_line,
)
from tests.descriptions_support import ATTRIBUTES

JOB = TransformJob(name="atelier-dev-catalog-20261122-g0000")
SETTINGS = batch_settings()


def _zip(
    index: list[bytes], output: list[bytes] | None, job: TransformJob = JOB
) -> list[ProductAttributes | FailureRecord]:
    return list(zip_transform_output(index, output, settings=SETTINGS, job=job, part="abc.jsonl"))


def test_answers_are_kept_for_the_category_questions_only_and_cleaned() -> None:
    # Given a Shirts product whose answers include other questions, padding and an empty answer
    record = index_record(1, category="Shirts")
    answer = {
        "attributes": {
            "fabric": "  Fabric: Cotton ",
            "sleeve_length": "",
            "colour": "Navy Blue",
            "collar": "Button-Down Collar",
            "unasked": "x",
        }
    }

    # When the line is zipped with its index record
    [outcome] = _zip([index_line(record)], [transform_output_line(record, answer)])

    # Then only the Shirts questions with non-empty answers remain, in question order, stripped
    assert isinstance(outcome, ProductAttributes)
    assert outcome.record == record
    assert outcome.attributes == {"fabric": "Fabric: Cotton", "colour": "Navy Blue"}
    assert list(outcome.attributes) == [q for q in SHIRT_QUESTIONS if q in outcome.attributes]


def test_the_default_category_keeps_every_configured_answer() -> None:
    record = index_record(2)

    [outcome] = _zip([index_line(record)], [transform_output_line(record)])

    assert isinstance(outcome, ProductAttributes)
    assert outcome.attributes == ATTRIBUTES


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        (b'{"product_id": "P000003", "SageMak', "line 1 is not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (None, "names product 'P999999', not 'P000003'"),
        (b'{"product_id": "P000003"}', "has no SageMakerOutput"),
        ("text", "answered with text, not JSON: 'CUDA out of memory'"),
        ({"error": "image could not be decoded"}, "reported an error: 'image could not be"),
        ({"predictions": []}, "has no attributes"),
        ({"attributes": {"fabric": 3}}, 'did not answer {"attributes": {name: text}}'),
        ({"attributes": ["cotton"]}, 'did not answer {"attributes": {name: text}}'),
        ({"attributes": {"fabric": "  ", "unasked": "x"}}, "answered none of the 'default'"),
    ],
)
def test_a_bad_output_line_is_a_failure_at_stage_attributes_that_says_why(
    output: object, reason: str
) -> None:
    # Given an index record and a bad output line for it
    record = index_record(3)
    if output is None:
        line = transform_output_line(record, product="P999999")
    elif isinstance(output, bytes):
        line = output
    elif output == "text":
        line = transform_output_line(record, "CUDA out of memory")
    else:
        line = transform_output_line(record, output)

    # When they are zipped
    [outcome] = _zip([index_line(record)], [line])

    # Then the product fails at stage attributes with the specific reason
    assert isinstance(outcome, FailureRecord)
    assert outcome.stage is Stage.ATTRIBUTES
    assert (outcome.product_id, outcome.image_key, outcome.category) == (
        record.product_id,
        record.image_key,
        record.category,
    )
    assert reason in outcome.reason


def test_products_after_a_failed_jobs_short_output_name_the_job_and_its_cause() -> None:
    # Given three products, an output of one line, and a job that failed
    records = [index_record(n) for n in range(3)]
    job = TransformJob(
        name="atelier-dev-catalog-run-g0000",
        error={"Error": "SageMaker.AmazonSageMakerException", "Cause": "ClientError: \n timeout"},
    )

    # When zipped
    outcomes = _zip([index_line(r) for r in records], [transform_output_line(records[0])], job)

    # Then the first is answered and the others name the job, its error and its cause
    assert isinstance(outcomes[0], ProductAttributes)
    for outcome in outcomes[1:]:
        assert isinstance(outcome, FailureRecord)
        assert "abc.jsonl.out ends after 1 lines" in outcome.reason
        assert "job atelier-dev-catalog-run-g0000 failed" in outcome.reason
        assert "SageMaker.AmazonSageMakerException: ClientError: timeout" in outcome.reason


def test_a_missing_output_file_fails_every_product_of_the_part() -> None:
    records = [index_record(n) for n in range(2)]
    job = TransformJob(name="job-1", error={"Error": "States.Timeout"})

    outcomes = _zip([index_line(r) for r in records], None, job)

    assert [type(o) for o in outcomes] == [FailureRecord, FailureRecord]
    assert all(
        "job job-1 failed (States.Timeout) and wrote no abc.jsonl.out" in o.reason  # type: ignore[union-attr]
        for o in outcomes
    )


def test_a_category_no_longer_configured_is_a_failure_not_a_crash() -> None:
    record = index_record(4, category="Dresses")

    [outcome] = _zip([index_line(record)], [transform_output_line(record)])

    assert isinstance(outcome, FailureRecord)
    assert "'Dresses' is no longer configured" in outcome.reason


def test_output_lines_beyond_the_index_are_counted() -> None:
    record = index_record(5)
    stats = TransformStats()

    outcomes = list(
        zip_transform_output(
            [index_line(record)],
            [transform_output_line(record)] * 3,
            settings=SETTINGS,
            job=JOB,
            part="p.jsonl",
            stats=stats,
        )
    )

    assert len(outcomes) == 1
    assert stats.extra_output_lines == 2


def test_ten_thousand_records_with_bad_and_missing_lines_each_end_exactly_once() -> None:
    # Given 10,000 products; every 97th output line malformed, every 101st about another product,
    # and the output cut 50 lines short (a job that stopped)
    records = [index_record(n) for n in range(10_000)]
    outputs: list[bytes] = []
    for n, record in enumerate(records[:-50]):
        if n % 97 == 0:
            outputs.append(b'{"product_id": broken')
        elif n % 101 == 0:
            outputs.append(transform_output_line(record, product="someone-else"))
        else:
            outputs.append(transform_output_line(record))
    job = TransformJob(name="job-2", error={"Error": "Failed", "Cause": "stopped"})

    # When zipped
    outcomes = list(
        zip_transform_output(
            (index_line(r) for r in records), iter(outputs), settings=SETTINGS, job=job, part="p"
        )
    )

    # Then each product has exactly one outcome, in order, and the failures are the bad lines
    assert [o.product_id if isinstance(o, FailureRecord) else o.record.product_id
            for o in outcomes] == [r.product_id for r in records]  # fmt: skip
    failed = {o.product_id for o in outcomes if isinstance(o, FailureRecord)}
    expected = {
        records[n].product_id for n in range(10_000 - 50) if n % 97 == 0 or n % 101 == 0
    } | {r.product_id for r in records[-50:]}
    assert failed == expected
