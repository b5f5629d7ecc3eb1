"""The finalize step on moto: failures report, summary, and deletion of the image copies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from catalog.handlers import finalize
from catalog.handlers.finalize import FinalizeStep
from catalog.logic import layout
from shared.adapters import run_files
from shared.adapters.run_files import MAX_KEYS_PER_DELETE, RunFiles
from shared.models.catalog import FailureRecord, Stage
from tests.catalog_batch_support import put_lines
from tests.catalog_support import (
    RESULTS_BUCKET,
    UPLOADS_BUCKET,
    catalog_environ,
    catalog_settings,
    create_catalog_resources,
    list_keys,
    read_json,
    read_jsonl,
)
from tests.descriptions_support import FakeContext

pytestmark = pytest.mark.integration

RUN = "20261122100000-abcdef12"


class DeleteCounter:
    """Forwards to the moto client and records how many keys each DeleteObjects call carried."""

    def __init__(self, s3: Any) -> None:
        self._s3 = s3
        self.deletes: list[int] = []

    def delete_objects(self, **kwargs: Any) -> Any:
        self.deletes.append(len(kwargs["Delete"]["Objects"]))
        return self._s3.delete_objects(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3")
        create_catalog_resources(client, boto3.client("dynamodb"), catalog_settings())
        yield client


def _failure(product: str, stage: Stage) -> bytes:
    return (
        FailureRecord(
            product_id=product,
            image_key=f"s3://{UPLOADS_BUCKET}/catalog/{product}.jpg",
            category="default",
            stage=stage,
            reason=f"{stage.value} went wrong",
        )
        .model_dump_json()
        .encode()
    )


def _put_failures(s3: Any, step: str, name: str, products: list[str], stage: Stage) -> None:
    put_lines(
        s3,
        RESULTS_BUCKET,
        layout.failures_key(RUN, step, name),
        [_failure(p, stage) for p in products],
    )


def _put_transform_input(s3: Any, parts: int) -> None:
    for n in range(parts):
        s3.put_object(
            Bucket=RESULTS_BUCKET, Key=layout.transform_input_key(RUN, f"{n:016x}"), Body=b"x"
        )


def test_a_batch_run_gets_one_report_a_summary_and_no_image_copies(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given failures from every batch step, two groups' results, and 21 transform input parts to
    # delete in calls of at most 10 keys (S3's limit of 1,000 scaled down: moto writes ~200
    # objects a second)
    assert MAX_KEYS_PER_DELETE == 1000
    monkeypatch.setattr(run_files, "MAX_KEYS_PER_DELETE", 10)
    _put_failures(s3, "input", "aaaa", ["I1", "I2"], Stage.INPUT)
    _put_failures(s3, "bedrock-input", "g0000", ["A1"], Stage.ATTRIBUTES)
    _put_failures(s3, "results", "g0000", ["D1", "D2"], Stage.DESCRIPTION)
    _put_failures(s3, "results", "g0001", ["G1", "S1"], Stage.GROUNDING)
    for group, described in (("g0000", 40), ("g0001", 55)):
        s3.put_object(
            Bucket=RESULTS_BUCKET,
            Key=layout.group_result_key(RUN, group),
            Body=json.dumps({"described": described, "failed": 2}).encode(),
        )
    _put_transform_input(s3, 21)
    index_key = layout.transform_index_key(RUN, "0" * 16)
    s3.put_object(Bucket=RESULTS_BUCKET, Key=index_key, Body=b"{}\n")
    counter = DeleteCounter(s3)

    # When the run is finalized
    summary = FinalizeStep(catalog_settings(), RunFiles(RESULTS_BUCKET, s3=counter)).run(
        {"runId": RUN, "route": "batch", "plan": {"records": 104, "skipped": 7, "failed": 2}}
    )

    # Then the summary counts the groups' descriptions and every failure by stage
    report_uri = f"s3://{RESULTS_BUCKET}/{layout.report_key(RUN)}"
    assert summary == {
        "runId": RUN,
        "route": "batch",
        "records": 104,
        "skipped": 7,
        "described": 95,
        "failed": 7,
        "failuresByStage": {"attributes": 1, "description": 2, "grounding": 2, "input": 2},
        "failuresReport": report_uri,
    }
    assert read_json(s3, RESULTS_BUCKET, layout.summary_key(RUN)) == summary
    # and the report holds every failure once, each line a manifest row for a re-run
    report = read_jsonl(s3, RESULTS_BUCKET, layout.report_key(RUN))
    assert sorted(line["product_id"] for line in report) == [
        "A1",
        "D1",
        "D2",
        "G1",
        "I1",
        "I2",
        "S1",
    ]
    assert all(list(line)[:3] == ["product_id", "image_key", "category"] for line in report)
    assert all(line["image_key"].startswith("s3://") for line in report)
    # and the image copies are gone, in DeleteObjects calls of at most the limit; the rest stays
    assert list_keys(s3, RESULTS_BUCKET, layout.transform_input_prefix(RUN)) == []
    assert counter.deletes == [10, 10, 1]
    assert index_key in list_keys(s3, RESULTS_BUCKET, layout.run_prefix(RUN))


def test_an_online_run_counts_what_did_not_fail(s3: Any) -> None:
    _put_failures(s3, "online", "P3", ["P3"], Stage.ONLINE)
    _put_failures(s3, "online", "P4", ["P4"], Stage.ONLINE)

    summary = FinalizeStep(catalog_settings(), RunFiles(RESULTS_BUCKET, s3=s3)).run(
        {"runId": RUN, "route": "online", "plan": {"records": 5, "skipped": 0, "failed": 0}}
    )

    assert (summary["described"], summary["failed"]) == (3, 2)
    assert summary["failuresByStage"] == {"online": 2}


def test_a_run_without_failures_has_no_report(s3: Any) -> None:
    # Given a stale report from an earlier attempt and no failures now
    s3.put_object(Bucket=RESULTS_BUCKET, Key=layout.report_key(RUN), Body=b"{}\n")

    summary = FinalizeStep(catalog_settings(), RunFiles(RESULTS_BUCKET, s3=s3)).run(
        {"runId": RUN, "route": "none", "plan": {"records": 0, "skipped": 12, "failed": 0}}
    )

    assert summary["failuresReport"] is None
    assert (summary["described"], summary["failed"], summary["skipped"]) == (0, 0, 12)
    assert list_keys(s3, RESULTS_BUCKET, layout.report_key(RUN)) == []


def test_the_handler_runs_from_the_environment(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in catalog_environ().items():
        monkeypatch.setenv(name, value)
    _put_transform_input(s3, 3)
    finalize.step.cache_clear()

    try:
        summary = finalize.handler(
            {"runId": RUN, "route": "batch", "plan": {"records": 3, "skipped": 0}}, FakeContext()
        )
    finally:
        finalize.step.cache_clear()

    assert summary["described"] == 0
    assert list_keys(s3, RESULTS_BUCKET, layout.transform_input_prefix(RUN)) == []


def test_a_vision_run_deletes_the_photo_copies_of_its_attributes_jobs(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two groups' attributes job input and output (Bedrock's output repeats each input,
    # photo included) in 12 files, deleted 5 keys at a time, beside the files a run keeps
    monkeypatch.setattr(run_files, "MAX_KEYS_PER_DELETE", 5)
    photos = [
        *(
            layout.attribute_input_key(RUN, group, n)
            for group in ("g0000", "g0001")
            for n in (0, 1, 2)
        ),
        *(
            f"{layout.attribute_output_prefix(RUN, group)}job{n}/records-000{n}.jsonl.out"
            for group in ("g0000", "g0001")
            for n in (0, 1, 2)
        ),
    ]
    kept = [
        layout.attribute_ledger_key(RUN, "g0000"),
        layout.ledger_key(RUN, "g0000"),
        layout.group_result_key(RUN, "g0000"),
    ]
    for key in [*photos, *kept]:
        s3.put_object(Bucket=RESULTS_BUCKET, Key=key, Body=b"{}\n")
    # When the run is finalized
    FinalizeStep(catalog_settings(), RunFiles(RESULTS_BUCKET, s3=s3)).run(
        {"runId": RUN, "route": "batch", "plan": {"records": 200, "skipped": 0, "failed": 0}}
    )
    # Then no copy of a photo is left, and what the run keeps is still there
    left = set(list_keys(s3, RESULTS_BUCKET, layout.groups_prefix(RUN)))
    assert left == set(kept)
