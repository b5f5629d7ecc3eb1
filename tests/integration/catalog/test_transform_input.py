"""The build step (one Distributed Map child) against moto S3 and DynamoDB.

Every item ends as a request line (with its index line) or a failure line, or is counted as
skipped; the only thing ignored is a folder marker.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError
from PIL import Image

from catalog.handlers import transform_input as transform_module
from catalog.handlers.environment import CatalogEnvironment
from catalog.handlers.transform_input import BatchBuilder
from catalog.logic.sources import batch_id_for
from catalog.logic.transform_records import PAYLOAD_SETTING, TRANSFORM_LINE_KEYS
from shared.adapters.catalog_sources import S3CatalogSource, StoredLanguages
from shared.adapters.run_files import RunFiles
from shared.models.catalog import FailureRecord, IndexRecord, Stage
from shared.models.errors import DependencyError
from tests.catalog_support import (
    FOREIGN_BUCKET,
    RESULTS_BUCKET,
    UPLOADS_BUCKET,
    CatalogAws,
    batch_event,
    catalog_aws,
    catalog_environ,
    csv_items,
    descriptions_settings,
    list_keys,
    listing_items,
    make_image,
    make_jpeg,
    make_png,
    read_json,
    read_jsonl,
    store_description,
)
from tests.descriptions_support import FakeContext

pytestmark = pytest.mark.integration
__all__ = ["catalog_aws"]

RUN = "20261122081645-0123abcd"
RUN_PREFIX = f"catalog/{RUN}/"


def _noise_png(width: int, height: int) -> bytes:
    """A PNG that does not compress: its size grows with its pixels."""
    pixels = random.Random(7).randbytes(width * height * 3)  # noqa: S311 - test pixels
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), pixels).save(buffer, format="PNG")
    return buffer.getvalue()


class _Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class _MemoryImages:
    """GetObject from memory, with S3's NoSuchKey: the images of a large batch without moto's
    few milliseconds per call (the adapter's error mapping is still the real one)."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        data = self.objects.get(f"{Bucket}/{Key}")
        if data is None:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "gone"}}, "GetObject")
        return {"Body": io.BytesIO(data), "ContentLength": len(data)}


def _builder(
    aws: CatalogAws,
    *,
    s3: Any | None = None,
    dynamodb: Any | None = None,
    sleep: Callable[[float], None] | None = None,
    **catalog_overrides: Any,
) -> BatchBuilder:
    environment = aws.environment(**catalog_overrides)
    return BatchBuilder(
        environment=environment,
        sources=S3CatalogSource(s3=s3 or aws.s3),
        stored=StoredLanguages(
            environment.catalog.table_name,
            dynamodb=dynamodb or aws.dynamodb,
            sleep=sleep or _Sleeps(),
            rng=lambda: 1.0,
        ),
        files=RunFiles(environment.catalog.results_bucket, s3=aws.s3),
    )


def _put(aws: CatalogAws, key: str, body: bytes, bucket: str = UPLOADS_BUCKET) -> None:
    aws.s3.put_object(Bucket=bucket, Key=key, Body=body)


def _files(aws: CatalogAws, batch_id: str) -> dict[str, list[dict[str, Any]] | None]:
    """The batch's files (None for a file that is not there)."""
    keys = set(list_keys(aws.s3, RESULTS_BUCKET, RUN_PREFIX))
    paths = {
        "input": f"{RUN_PREFIX}transform-input/{batch_id}.jsonl",
        "index": f"{RUN_PREFIX}transform-index/{batch_id}.jsonl",
        "failures": f"{RUN_PREFIX}failures/input/{batch_id}.jsonl",
    }
    files: dict[str, list[dict[str, Any]] | None] = {
        name: read_jsonl(aws.s3, RESULTS_BUCKET, key) if key in keys else None
        for name, key in paths.items()
    }
    summary_key = f"{RUN_PREFIX}batches/{batch_id}.json"
    files["summary"] = (
        [read_json(aws.s3, RESULTS_BUCKET, summary_key)] if summary_key in keys else None
    )
    return files


def _failures(files: dict[str, Any]) -> dict[str, str]:
    return {
        FailureRecord.model_validate(line).image_key: FailureRecord.model_validate(line).reason
        for line in files["failures"] or []
    }


def test_a_prefix_batch_builds_requests_and_names_every_failure(catalog_aws: CatalogAws) -> None:
    # Given a prefix holding good images of each format, a folder marker, and files that are
    # not usable images
    good = {
        "spring/1.jpg": make_jpeg(seed=1),
        "spring/2.png": make_png(seed=2),
        "spring/3.webp": make_image(image_format="WEBP", seed=3),
    }
    bad = {
        "spring/notes.txt": b"hello",
        "spring/4.jpg": b"not an image at all",
        "spring/5.jpg": make_jpeg(40, 40),
        "spring/6.png": make_png()[:-20],
        "spring/bad name.jpg": make_jpeg(),
    }
    _put(catalog_aws, "spring/", b"")
    for key, body in {**good, **bad}.items():
        _put(catalog_aws, key, body)
    items = listing_items(catalog_aws.s3, UPLOADS_BUCKET, "spring/")
    # When the child builds its batch
    summary = _builder(catalog_aws).handle(batch_event(items, kind="prefix"))
    # Then the good images are requests, in listing order, with matching index lines
    batch_id = batch_id_for(items)
    input_object = catalog_aws.s3.head_object(
        Bucket=RESULTS_BUCKET, Key=f"{RUN_PREFIX}transform-input/{batch_id}.jsonl"
    )
    # (with the bytes of the requests part: the plan sizes vision groups by them)
    assert summary == {
        "batchId": batch_id,
        "records": 3,
        "skipped": 0,
        "failed": 5,
        "bytes": input_object["ContentLength"],
    }
    files = _files(catalog_aws, batch_id)
    assert files["summary"] == [summary]
    requests, index = files["input"], files["index"]
    assert requests is not None
    assert index is not None
    assert [tuple(line) for line in requests] == [TRANSFORM_LINE_KEYS] * 3
    assert [line["product_id"] for line in requests] == ["1", "2", "3"]
    for line, record, (key, body) in zip(requests, index, good.items(), strict=True):
        assert base64.b64decode(line["image"]) == body
        assert IndexRecord.model_validate(record) == IndexRecord(
            product_id=line["product_id"],
            image_key=f"s3://{UPLOADS_BUCKET}/{key}",
            category="default",
            image_sha256=hashlib.sha256(body).hexdigest(),
        )
        assert [q["name"] for q in line["questions"]] == list(
            catalog_aws.descriptions.categories["default"]
        )
    # ... and every other file is a failure that says why (the folder marker is not)
    reasons = _failures(files)
    assert set(reasons) == {f"s3://{UPLOADS_BUCKET}/{key}" for key in bad}
    assert "not an image file name" in reasons[f"s3://{UPLOADS_BUCKET}/spring/notes.txt"]
    assert "image_unsupported_format" in reasons[f"s3://{UPLOADS_BUCKET}/spring/4.jpg"]
    assert "at least 64 px" in reasons[f"s3://{UPLOADS_BUCKET}/spring/5.jpg"]
    assert "image_truncated" in reasons[f"s3://{UPLOADS_BUCKET}/spring/6.png"]
    assert "rename the file" in reasons[f"s3://{UPLOADS_BUCKET}/spring/bad name.jpg"]
    assert all(line["stage"] == Stage.INPUT.value for line in files["failures"] or [])


def test_manifest_rows_fail_for_missing_foreign_duplicate_and_unknown(
    catalog_aws: CatalogAws,
) -> None:
    _put(catalog_aws, "images/1.jpg", make_jpeg(seed=1))
    _put(catalog_aws, "images/1-alt.jpg", make_jpeg(seed=9))
    _put(catalog_aws, "x/5.jpg", make_jpeg(seed=5), bucket=FOREIGN_BUCKET)
    _put(catalog_aws, "images/6.jpg", make_jpeg(seed=6), bucket=RESULTS_BUCKET)
    rows = csv_items(
        "product_id,image_key,category\n"
        "1,images/1.jpg,\n"
        "1,images/1-alt.jpg,\n"
        "2,images/2.jpg,\n"
        f"5,s3://{FOREIGN_BUCKET}/x/5.jpg,\n"
        "3,images/1.jpg,Shoes\n"
        f"6,s3://{RESULTS_BUCKET}/images/6.jpg,default\n"
        ",images/1.jpg,\n"
    )
    summary = _builder(catalog_aws).handle(batch_event(rows, kind="csv"))
    assert (summary["records"], summary["failed"]) == (2, 5)
    files = _files(catalog_aws, summary["batchId"])
    assert [line["product_id"] for line in files["input"] or []] == ["1", "6"]
    failures = [FailureRecord.model_validate(line) for line in files["failures"] or []]
    by_reason = {
        failure.product_id + ":" + failure.reason.split(";")[0]: failure for failure in failures
    }
    assert len(failures) == 5
    assert any("appears more than once" in key for key in by_reason)
    assert any(f"s3://{UPLOADS_BUCKET}/images/2.jpg does not exist" in key for key in by_reason)
    assert any(f"image bucket '{FOREIGN_BUCKET}'" in key for key in by_reason)
    assert any("category 'Shoes' is not configured" in key for key in by_reason)
    assert any("no product_id" in key for key in by_reason)


def test_products_described_in_every_language_are_skipped_unless_forced(
    catalog_aws: CatalogAws,
) -> None:
    # Given 130 products (two BatchGetItem calls); 0-59 stored in en, 60-109 in en and de
    objects = {f"{UPLOADS_BUCKET}/images/{n}.jpg": make_jpeg(seed=n) for n in range(130)}
    rows = [
        {"product_id": f"p{n}", "image_key": f"images/{n}.jpg", "category": ""} for n in range(130)
    ]
    for n in range(110):
        languages = ("en",) if n < 60 else ("en", "de")
        store_description(catalog_aws.dynamodb, catalog_aws.catalog.table_name, f"p{n}", languages)
    builder = _builder(catalog_aws, s3=_MemoryImages(objects))
    # When built for English: every stored product is skipped
    summary = builder.handle(batch_event(rows, kind="csv", languages=["en"]))
    assert (summary["records"], summary["skipped"], summary["failed"]) == (20, 110, 0)
    requests = _files(catalog_aws, summary["batchId"])["input"] or []
    assert [line["product_id"] for line in requests] == [f"p{n}" for n in range(110, 130)]
    # When built for English and German: only those stored in both are skipped
    summary = builder.handle(batch_event(rows, kind="csv", languages=["en", "de"]))
    assert (summary["records"], summary["skipped"]) == (80, 50)
    # When forced: nothing is skipped
    summary = builder.handle(batch_event(rows, kind="csv", languages=["en"], force=True))
    assert (summary["records"], summary["skipped"]) == (130, 0)


class _UnprocessedFirst:
    """A DynamoDB client whose BatchGetItem leaves half the keys unprocessed, `times` times."""

    def __init__(self, real: Any, times: int) -> None:
        self._real = real
        self.times = times
        self.calls: list[int] = []

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:  # noqa: N803
        ((table, request),) = RequestItems.items()
        keys = request["Keys"]
        self.calls.append(len(keys))
        if self.times <= 0:
            return dict(self._real.batch_get_item(RequestItems=RequestItems))
        self.times -= 1
        kept, left = keys[: len(keys) // 2], keys[len(keys) // 2 :]
        response: dict[str, Any] = {"Responses": {table: []}}
        if kept:
            response = dict(
                self._real.batch_get_item(RequestItems={table: {**request, "Keys": kept}})
            )
        response["UnprocessedKeys"] = {table: {**request, "Keys": left}}
        return response


def test_unprocessed_keys_are_asked_again_with_backoff(catalog_aws: CatalogAws) -> None:
    rows = []
    for n in range(120):
        _put(catalog_aws, f"images/{n}.jpg", make_jpeg(seed=n))
        rows.append({"product_id": f"p{n}", "image_key": f"images/{n}.jpg"})
        if n % 2:
            store_description(catalog_aws.dynamodb, catalog_aws.catalog.table_name, f"p{n}")
    flaky = _UnprocessedFirst(catalog_aws.dynamodb, times=3)
    sleeps = _Sleeps()
    summary = _builder(catalog_aws, dynamodb=flaky, sleep=sleeps).handle(
        batch_event(rows, kind="jsonl")
    )
    assert (summary["records"], summary["skipped"]) == (60, 60)
    # 100 keys → 50 left → 25 left → 13 left, then the second chunk of 20
    assert flaky.calls == [100, 50, 25, 13, 20]
    assert sleeps.calls == [0.05, 0.1, 0.2]


def test_keys_left_unprocessed_for_good_fail_the_batch_for_a_retry(
    catalog_aws: CatalogAws,
) -> None:
    _put(catalog_aws, "images/1.jpg", make_jpeg())
    rows = [
        {"product_id": "a", "image_key": "images/1.jpg"},
        {"product_id": "b", "image_key": "images/1.jpg"},
    ]
    flaky = _UnprocessedFirst(catalog_aws.dynamodb, times=100)
    with pytest.raises(DependencyError) as caught:
        _builder(catalog_aws, dynamodb=flaky).handle(batch_event(rows, kind="jsonl"))
    assert caught.value.retryable
    assert "left 1 keys unprocessed after 8 attempts" in caught.value.message
    assert flaky.calls == [2, 1, 1, 1, 1, 1, 1, 1]
    assert list_keys(catalog_aws.s3, RESULTS_BUCKET, RUN_PREFIX) == []


def test_an_image_over_the_payload_limit_names_the_setting(catalog_aws: CatalogAws) -> None:
    small, large = make_jpeg(seed=1), _noise_png(300, 300)
    _put(catalog_aws, "images/small.jpg", small)
    _put(catalog_aws, "images/large.png", large)
    # A limit between the two requests' sizes
    limit = 4 * len(small) + 2_000
    assert len(large) * 4 // 3 > limit
    rows = [
        {"product_id": "small", "image_key": "images/small.jpg"},
        {"product_id": "large", "image_key": "images/large.png"},
    ]
    summary = _builder(catalog_aws, transformMaxPayloadBytes=limit).handle(
        batch_event(rows, kind="jsonl")
    )
    assert (summary["records"], summary["failed"]) == (1, 1)
    files = _files(catalog_aws, summary["batchId"])
    assert len(json.dumps((files["input"] or [])[0]).encode()) < limit
    reason = _failures(files)[f"s3://{UPLOADS_BUCKET}/images/large.png"]
    assert f"{limit:,}-byte payload limit" in reason
    assert PAYLOAD_SETTING in reason
    assert f"the image is {len(large):,} bytes" in reason


def test_a_retried_child_overwrites_its_own_files(catalog_aws: CatalogAws) -> None:
    # Given a batch built once, with a failure
    _put(catalog_aws, "images/1.jpg", make_jpeg())
    rows = [
        {"product_id": "1", "image_key": "images/1.jpg"},
        {"product_id": "2", "image_key": "images/2.jpg"},
    ]
    event = batch_event(rows, kind="jsonl")
    first = _builder(catalog_aws).handle(event)
    keys = list_keys(catalog_aws.s3, RESULTS_BUCKET, RUN_PREFIX)
    assert len(keys) == 4
    # When the same child runs again after the missing image arrived
    _put(catalog_aws, "images/2.jpg", make_jpeg(seed=2))
    second = _builder(catalog_aws).handle(event)
    # Then it wrote the same files again: no second part, and no stale failure left behind
    assert second["batchId"] == first["batchId"]
    assert (second["records"], second["failed"]) == (2, 0)
    assert list_keys(catalog_aws.s3, RESULTS_BUCKET, RUN_PREFIX) == [
        key for key in keys if "/failures/" not in key
    ]
    assert len(_files(catalog_aws, second["batchId"])["input"] or []) == 2


def test_a_batch_without_good_records_writes_no_parts(catalog_aws: CatalogAws) -> None:
    # Given a batch whose products were requested before (parts exist) and are now described
    _put(catalog_aws, "images/1.jpg", make_jpeg())
    rows = [
        {"product_id": "1", "image_key": "images/1.jpg"},
        {"product_id": "2", "image_key": "x.jpg"},
    ]
    event = batch_event(rows, kind="jsonl")
    assert _builder(catalog_aws).handle(event)["records"] == 1
    store_description(catalog_aws.dynamodb, catalog_aws.catalog.table_name, "1")
    # When it runs again
    summary = _builder(catalog_aws).handle(event)
    # Then no part files remain, while the summary and the failure do
    assert (summary["records"], summary["skipped"], summary["failed"]) == (0, 1, 1)
    files = _files(catalog_aws, summary["batchId"])
    assert files["input"] is None
    assert files["index"] is None
    assert files["summary"] == [summary]
    assert list(_failures(files)) == [f"s3://{UPLOADS_BUCKET}/x.jpg"]


class _ThrottledImages:
    """An S3 client whose GetObject of one key is throttled."""

    def __init__(self, real: Any, key: str) -> None:
        self._real = real
        self._key = key

    def get_object(self, **arguments: Any) -> Any:
        if arguments["Key"] == self._key:
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow"}}, "GetObject")
        return self._real.get_object(**arguments)


def test_a_throttled_image_read_fails_the_batch_for_a_retry(catalog_aws: CatalogAws) -> None:
    rows = []
    for n in range(30):
        _put(catalog_aws, f"images/{n}.jpg", make_jpeg(seed=n))
        rows.append({"product_id": f"p{n}", "image_key": f"images/{n}.jpg"})
    builder = _builder(catalog_aws, s3=_ThrottledImages(catalog_aws.s3, "images/17.jpg"))
    with pytest.raises(DependencyError) as caught:
        builder.handle(batch_event(rows, kind="jsonl"))
    assert caught.value.retryable
    assert list_keys(catalog_aws.s3, RESULTS_BUCKET, RUN_PREFIX) == []


def test_the_handler_wires_itself_from_the_environment(
    catalog_aws: CatalogAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the function's environment variables and a one-row manifest batch
    _put(catalog_aws, "images/1.jpg", make_jpeg())
    for name, value in catalog_environ(catalog_aws.catalog, catalog_aws.descriptions).items():
        monkeypatch.setenv(name, value)
    rows = [{"product_id": "1", "image_key": "images/1.jpg", "category": ""}]
    transform_module.batch_builder.cache_clear()
    try:
        # When Step Functions invokes the handler
        summary = transform_module.handler(batch_event(rows, kind="csv"), FakeContext())
    finally:
        transform_module.batch_builder.cache_clear()
    # Then the batch is built in the configured results bucket
    assert summary | {"bytes": 0} == {
        "batchId": batch_id_for(rows),
        "records": 1,
        "skipped": 0,
        "failed": 0,
        "bytes": 0,
    }
    assert len(_files(catalog_aws, summary["batchId"])["input"] or []) == 1


def test_two_thousand_rows_keep_their_order_and_account_for_every_row(
    catalog_aws: CatalogAws,
) -> None:
    # Given 2,000 rows: every 50th image missing, every 40th product already described, every
    # 300th row a duplicate of its predecessor
    objects: dict[str, bytes] = {}
    rows: list[dict[str, str]] = []
    for n in range(2000):
        if n % 50:
            objects[f"{UPLOADS_BUCKET}/big/{n}.jpg"] = make_jpeg(seed=n)
        rows.append({"product_id": f"P{n:05d}", "image_key": f"big/{n}.jpg", "category": ""})
        if n % 300 == 1:
            rows.append({"product_id": f"P{n:05d}", "image_key": f"big/{n}-again.jpg"})
    for n in range(0, 2000, 40):
        store_description(catalog_aws.dynamodb, catalog_aws.catalog.table_name, f"P{n:05d}")
    builder = _builder(catalog_aws, s3=_MemoryImages(objects), recordsPerPart=2000)
    # When the batch is built
    summary = builder.handle(batch_event(rows, kind="csv"))
    # Then every row is a request, a skip or a failure, and requests keep the row order
    expected = [f"P{n:05d}" for n in range(2000) if n % 50 and n % 40]
    duplicates = len(rows) - 2000
    missing = sum(1 for n in range(2000) if n % 50 == 0 and n % 40)
    assert summary["records"] == len(expected)
    assert summary["skipped"] == 50
    assert summary["failed"] == missing + duplicates
    assert summary["records"] + summary["skipped"] + summary["failed"] == len(rows)
    files = _files(catalog_aws, summary["batchId"])
    assert [line["product_id"] for line in files["input"] or []] == expected
    index = [IndexRecord.model_validate(line) for line in files["index"] or []]
    assert [record.product_id for record in index] == expected
    assert all(
        record.image_sha256
        == hashlib.sha256(
            objects[f"{UPLOADS_BUCKET}/big/{int(record.product_id[1:])}.jpg"]
        ).hexdigest()
        for record in index
    )


class _Refusing:
    """An S3 client that refuses GetObject of one key, like a bucket policy or a foreign KMS
    key would."""

    def __init__(self, real: Any, key: str, code: str) -> None:
        self._real = real
        self._key = key
        self._code = code

    def get_object(self, **arguments: Any) -> Any:
        if arguments["Key"] == self._key:
            raise ClientError({"Error": {"Code": self._code, "Message": "no"}}, "GetObject")
        return self._real.get_object(**arguments)


def test_unreadable_and_oversized_images_are_failures(catalog_aws: CatalogAws) -> None:
    # Given an image the role may not read, one in cold storage, and one over the image limit
    _put(catalog_aws, "images/denied.jpg", make_jpeg())
    _put(catalog_aws, "images/big.png", _noise_png(100, 100))
    _put(catalog_aws, "images/ok.jpg", make_jpeg())
    limits = {"maxBytes": 20_000, "maxPixels": 16_777_216, "maxSide": 4096, "minSide": 64}
    environment = CatalogEnvironment(
        catalog=catalog_aws.catalog, descriptions=descriptions_settings(image=limits)
    )
    s3 = _Refusing(catalog_aws.s3, "images/denied.jpg", "AccessDenied")
    builder = BatchBuilder(
        environment=environment,
        sources=S3CatalogSource(s3=_Refusing(s3, "images/cold.jpg", "InvalidObjectState")),
        stored=StoredLanguages(catalog_aws.catalog.table_name, dynamodb=catalog_aws.dynamodb),
        files=RunFiles(RESULTS_BUCKET, s3=catalog_aws.s3),
    )
    rows = [
        {"product_id": name, "image_key": f"images/{name}.{extension}"}
        for name, extension in (("denied", "jpg"), ("cold", "jpg"), ("big", "png"), ("ok", "jpg"))
    ]
    # When built
    summary = builder.handle(batch_event(rows, kind="jsonl"))
    # Then each is a failure saying what to do; the good one is a request
    assert (summary["records"], summary["failed"]) == (1, 3)
    reasons = _failures(_files(catalog_aws, summary["batchId"]))
    denied = reasons[f"s3://{UPLOADS_BUCKET}/images/denied.jpg"]
    assert "cannot be read (AccessDenied)" in denied
    assert "KMS key" in denied
    cold = reasons[f"s3://{UPLOADS_BUCKET}/images/cold.jpg"]
    assert "could not be read" in cold
    assert "InvalidObjectState" in cold
    big = reasons[f"s3://{UPLOADS_BUCKET}/images/big.png"]
    assert "the limit is 20,000 bytes (descriptions.image.max_bytes)" in big
