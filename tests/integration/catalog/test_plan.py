"""The plan step against moto: counts from the batch summaries, the route, the groups."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from catalog.handlers import plan as plan_module
from catalog.handlers.plan import VISION_RECORD_OVERHEAD_BYTES, Planner
from catalog.handlers.transform_input import BatchBuilder
from shared.adapters.catalog_runs import RunReader
from shared.adapters.catalog_sources import S3CatalogSource, StoredLanguages
from shared.adapters.run_files import RunFiles
from shared.models.attributes import AttributeSourceSettings
from tests.catalog_support import (
    BEDROCK_LIMITS,
    RESULTS_BUCKET,
    UPLOADS_BUCKET,
    CatalogAws,
    batch_event,
    catalog_aws,
    catalog_environ,
    list_keys,
    make_jpeg,
    read_json,
)
from tests.descriptions_support import FakeContext

pytestmark = pytest.mark.integration
__all__ = ["catalog_aws"]

RUN = "20261122081645-0123abcd"
RUN_PREFIX = f"catalog/{RUN}/"


def _planner(aws: CatalogAws, **catalog_overrides: Any) -> Planner:
    environment = aws.environment(**catalog_overrides)
    return Planner(
        environment=environment,
        files=RunReader(
            RunFiles(environment.catalog.results_bucket, s3=aws.s3),
            io_concurrency=environment.catalog.io_concurrency,
        ),
    )


def _summary(
    aws: CatalogAws, batch_id: str, records: int, skipped: int = 0, failed: int = 0
) -> None:
    aws.s3.put_object(
        Bucket=RESULTS_BUCKET,
        Key=f"{RUN_PREFIX}batches/{batch_id}.json",
        Body=json.dumps(
            {"batchId": batch_id, "records": records, "skipped": skipped, "failed": failed}
        ).encode(),
    )


def _build(
    aws: CatalogAws, numbers: range, *, empty: int | None = None, **catalog_overrides: Any
) -> dict[str, Any]:
    """One real map child over products `numbers` (images put into the uploads bucket; the
    image of product `empty` is an empty file)."""
    rows = []
    for n in numbers:
        body = b"" if n == empty else make_jpeg(seed=n)
        aws.s3.put_object(Bucket=UPLOADS_BUCKET, Key=f"images/{n}.jpg", Body=body)
        rows.append({"product_id": f"p{n:03d}", "image_key": f"images/{n}.jpg", "category": ""})
    environment = aws.environment(**catalog_overrides)
    builder = BatchBuilder(
        environment=environment,
        sources=S3CatalogSource(s3=aws.s3),
        stored=StoredLanguages(environment.catalog.table_name, dynamodb=aws.dynamodb),
        files=RunFiles(environment.catalog.results_bucket, s3=aws.s3),
    )
    return builder.handle(batch_event(rows, run_id=RUN, kind="jsonl"))


def test_a_run_without_batches_has_nothing_to_do(catalog_aws: CatalogAws) -> None:
    assert _planner(catalog_aws).handle({"runId": RUN}) == {
        "route": "none",
        "records": 0,
        "skipped": 0,
        "failed": 0,
    }


def test_a_run_where_everything_was_skipped_or_failed_has_nothing_to_do(
    catalog_aws: CatalogAws,
) -> None:
    _summary(catalog_aws, "a" * 16, 0, skipped=400, failed=100)
    _summary(catalog_aws, "b" * 16, 0, skipped=3, failed=0)
    result = _planner(catalog_aws).handle({"runId": RUN})
    assert result == {"route": "none", "records": 0, "skipped": 403, "failed": 100}


def test_a_small_run_goes_online_with_its_products(catalog_aws: CatalogAws) -> None:
    # Given two real batches: 5 products, and 4 products plus an empty image
    first = _build(catalog_aws, range(5))
    second = _build(catalog_aws, range(5, 10), empty=9)
    assert (first["records"], second["records"], second["failed"]) == (5, 4, 1)
    # When planned with the default threshold (100)
    result = _planner(catalog_aws).handle({"runId": RUN})
    # Then the products go to the online path, batch by batch in key order
    assert (result["route"], result["records"], result["skipped"], result["failed"]) == (
        "online",
        9,
        0,
        1,
    )
    ordered = sorted([(first["batchId"], range(5)), (second["batchId"], range(5, 9))])
    expected = [
        {
            "product_id": f"p{n:03d}",
            "image_key": f"s3://{UPLOADS_BUCKET}/images/{n}.jpg",
            "category": "default",
        }
        for _, numbers in ordered
        for n in numbers
    ]
    assert result["products"] == expected
    assert "groups" not in result


def test_a_large_run_is_packed_into_balanced_groups_with_manifests(
    catalog_aws: CatalogAws,
) -> None:
    # Given 200 batch summaries of 500 records (100,000), some with skips and failures, and
    # one batch with nothing left to describe
    batch_ids = [f"{n:016x}" for n in range(200)]
    for n, batch_id in enumerate(batch_ids):
        _summary(catalog_aws, batch_id, 500, skipped=n % 3, failed=n % 2)
    _summary(catalog_aws, "f" * 16, 0, skipped=500)
    # When planned with at most 30,000 records per group
    result = _planner(catalog_aws, maxRecordsPerGroup=30_000).handle({"runId": RUN})
    # Then four groups of 25,000, each with a SageMaker manifest listing its parts in order
    assert (result["route"], result["records"]) == ("batch", 100_000)
    assert result["skipped"] == sum(n % 3 for n in range(200)) + 500
    assert result["failed"] == 100
    groups = result["groups"]
    assert [group["records"] for group in groups] == [25_000] * 4
    listed: list[str] = []
    for index, group in enumerate(groups):
        name = f"g{index:04d}"
        base = f"s3://{RESULTS_BUCKET}/{RUN_PREFIX}groups/{name}/"
        assert group == {
            "group": name,
            "records": 25_000,
            "manifestUri": f"{base}transform-manifest.json",
            "outputUri": f"{base}transform-output/",
            "bedrockInputUri": f"{base}bedrock-input/",
            "bedrockOutputUri": f"{base}bedrock-output/",
        }
        manifest = read_json(
            catalog_aws.s3, RESULTS_BUCKET, f"{RUN_PREFIX}groups/{name}/transform-manifest.json"
        )
        assert manifest[0] == {"prefix": f"s3://{RESULTS_BUCKET}/{RUN_PREFIX}transform-input/"}
        assert len(manifest) == 51
        listed.extend(manifest[1:])
    assert listed == [f"{batch_id}.jsonl" for batch_id in batch_ids]
    # The state stays small: no batch ids in it
    assert len(json.dumps(result)) < 2_000


def test_real_parts_are_grouped_and_the_manifests_name_existing_files(
    catalog_aws: CatalogAws,
) -> None:
    # Given three real batches of 2 products, and job limits small enough to need groups
    limits = {"bedrock": {**BEDROCK_LIMITS, "minRecordsPerJob": 2}}
    overrides = {"onlineThreshold": 2, "maxRecordsPerGroup": 4, **limits}
    for start in (0, 2, 4):
        assert _build(catalog_aws, range(start, start + 2), **overrides)["records"] == 2
    # When planned
    result = _planner(catalog_aws, **overrides).handle({"runId": RUN})
    # Then every group's manifest lists transform input parts that exist
    assert result["route"] == "batch"
    assert sum(group["records"] for group in result["groups"]) == 6
    assert all(2 <= group["records"] <= 4 for group in result["groups"])
    existing = set(list_keys(catalog_aws.s3, RESULTS_BUCKET, f"{RUN_PREFIX}transform-input/"))
    named = []
    for group in result["groups"]:
        key = group["manifestUri"].removeprefix(f"s3://{RESULTS_BUCKET}/")
        prefix, *files = read_json(catalog_aws.s3, RESULTS_BUCKET, key)
        named.extend(
            prefix["prefix"].removeprefix(f"s3://{RESULTS_BUCKET}/") + name for name in files
        )
    assert sorted(named) == sorted(existing)
    assert len(named) == 3


def test_a_summary_that_names_another_batch_is_refused(catalog_aws: CatalogAws) -> None:
    catalog_aws.s3.put_object(
        Bucket=RESULTS_BUCKET,
        Key=f"{RUN_PREFIX}batches/{'a' * 16}.json",
        Body=json.dumps({"batchId": "b" * 16, "records": 1, "skipped": 0, "failed": 0}).encode(),
    )
    with pytest.raises(ValueError, match="names batch"):
        _planner(catalog_aws).handle({"runId": RUN})


def test_an_index_shorter_than_its_summary_is_refused(catalog_aws: CatalogAws) -> None:
    built = _build(catalog_aws, range(3))
    _summary(catalog_aws, built["batchId"], 4)
    with pytest.raises(ValueError, match="holds 3 lines; its summary says 4"):
        _planner(catalog_aws).handle({"runId": RUN})


def test_the_handler_wires_itself_from_the_environment(
    catalog_aws: CatalogAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in catalog_environ(catalog_aws.catalog, catalog_aws.descriptions).items():
        monkeypatch.setenv(name, value)
    _summary(catalog_aws, "a" * 16, 0, failed=2)
    plan_module.planner.cache_clear()
    try:
        result = plan_module.handler({"runId": RUN, "kind": "prefix"}, FakeContext())
    finally:
        plan_module.planner.cache_clear()
    assert result == {"route": "none", "records": 0, "skipped": 0, "failed": 2}
    with pytest.raises(ValueError, match="runId"):
        _planner(catalog_aws).handle({})


def test_with_the_vision_source_groups_are_cut_by_the_bytes_of_their_photos(
    catalog_aws: CatalogAws,
) -> None:
    # Given three real batches of 2 products (each part some KB of base64 photos) and a job
    # limit in bytes that holds about two parts of them
    limits = {"bedrock": {**BEDROCK_LIMITS, "minRecordsPerJob": 2}}
    overrides = {"onlineThreshold": 2, "maxRecordsPerGroup": 100, **limits}
    sizes = [_build(catalog_aws, range(s, s + 2), **overrides)["bytes"] for s in (0, 2, 4)]
    assert all(size > 0 for size in sizes)
    job_bytes = 2 * max(sizes) + 4 * VISION_RECORD_OVERHEAD_BYTES
    vision = {"bedrock": {**limits["bedrock"], "maxJobBytes": job_bytes}}
    environment = replace(
        catalog_aws.environment(**{**overrides, **vision}),
        attributes=AttributeSourceSettings(kind="vision-llm", model_id="m"),
    )
    planner = Planner(
        environment=environment,
        files=RunReader(RunFiles(RESULTS_BUCKET, s3=catalog_aws.s3), io_concurrency=4),
    )
    # When planned with the endpoint source, one group takes all 6 products
    endpoint = replace(environment, attributes=AttributeSourceSettings())
    assert len(replace(planner, environment=endpoint).handle({"runId": RUN})["groups"]) == 1
    # When planned with the vision source
    result = planner.handle({"runId": RUN})
    # Then no group holds more photos than one attributes job takes
    assert sorted(group["records"] for group in result["groups"]) == [2, 4]
