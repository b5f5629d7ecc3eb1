"""The online pipeline stores the results document before the table row, so a stored row always
has its archive: checked on moto S3 and DynamoDB through the real adapters."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from descriptions.logic.pipeline import DescriptionJob, DescriptionPipeline, result_key
from shared.adapters.storage import DynamoDescriptionTable, S3ResultsArchive
from shared.models.descriptions import StoredDescription
from shared.models.errors import DependencyError
from shared.retry import Deadline, RetryPolicy
from tests.descriptions_support import (
    FakeAttributeModel,
    FakeTextModel,
    create_products_table,
    image_bytes,
    settings,
)
from tests.fault_injection import RETRY, FaultInjector, Site, one_attempt_client, s3_error

pytestmark = pytest.mark.integration

RESULTS = "atelier-dev-results"
TABLE = "atelier-dev-products"


class Store:
    """The real archive and table adapters, recording the order of their writes and, for each
    row written, whether its document was already in the bucket at that moment."""

    def __init__(self) -> None:
        self.s3 = one_attempt_client("s3")
        self.dynamodb = one_attempt_client("dynamodb")
        self.injector = FaultInjector()
        self.injector.attach(self.s3, "s3")
        self.s3.create_bucket(Bucket=RESULTS)
        create_products_table(self.dynamodb, TABLE)
        self.writes: list[str] = []
        self.archive_present_at_row_write: list[bool] = []
        archive = S3ResultsArchive(RESULTS, s3=self.s3)
        table = DynamoDescriptionTable(TABLE, dynamodb=self.dynamodb)
        self.table = table

        class RecordingArchive:
            def put_json(inner, key: str, document: Any) -> None:  # noqa: N805
                self.writes.append("archive")
                archive.put_json(key, document)

        class RecordingTable:
            def put(inner, description: StoredDescription) -> None:  # noqa: N805
                self.writes.append("table")
                self.archive_present_at_row_write.append(self.archived(description.product_id))
                table.put(description)

            def get(inner, product_id: str) -> StoredDescription | None:  # noqa: N805
                return table.get(product_id)

        self.pipeline = DescriptionPipeline(
            settings=settings(),
            attribute_model=FakeAttributeModel(),
            text_model=FakeTextModel(),
            archive=RecordingArchive(),
            table=RecordingTable(),
            sleep=lambda _: None,
        )

    def archived(self, product_id: str) -> bool:
        listing = self.s3.list_objects_v2(Bucket=RESULTS, Prefix=result_key(product_id))
        return bool(listing.get("Contents"))

    def describe(self) -> StoredDescription:
        job = DescriptionJob(product_id="38642", image=image_bytes())
        return self.pipeline.describe(job, deadline=Deadline(60))


@pytest.fixture
def store() -> Iterator[Store]:
    with mock_aws():
        yield Store()


def test_the_document_is_written_before_the_row(store: Store) -> None:
    stored = store.describe()

    assert store.writes == ["archive", "table"]
    assert store.archive_present_at_row_write == [True]
    row = store.table.get("38642")
    assert row is not None
    assert row.result_key == stored.result_key == result_key("38642")


def test_no_row_exists_when_the_document_cannot_be_written(store: Store) -> None:
    store.s3.delete_bucket(Bucket=RESULTS)  # S3 answers NoSuchBucket: a permanent failure

    with pytest.raises(DependencyError) as raised:
        store.describe()

    assert raised.value.code == "results_bucket_failed"
    assert store.writes == ["archive"]  # the row was never attempted
    assert store.table.get("38642") is None


def test_no_row_exists_when_the_document_write_keeps_failing_transiently(store: Store) -> None:
    site = Site("results-PutObject", "s3", "PutObject")
    fault = s3_error("ServiceUnavailable", 503, RETRY)
    with store.injector.armed(site, fault), pytest.raises(DependencyError) as raised:
        store.describe()

    assert raised.value.retryable
    # Retried, every time refused, and the row never attempted.
    assert store.writes == ["archive"] * RetryPolicy().attempts == ["archive"] * 4
    assert store.injector.injected == 4
    assert store.table.get("38642") is None
