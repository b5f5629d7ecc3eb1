"""BatchWriteItem of descriptions against moto, with unprocessed items injected.

moto processes every item it is given, so a thin proxy in front of the moto-backed client holds
chosen products back as `UnprocessedItems` for their first calls, as DynamoDB does under
throttling; the rest of each call really reaches moto's table.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from catalog.logic.bedrock_records import parse_output_line, record_id
from catalog.logic.results import describe_record
from shared.adapters.dynamo_batch import MAX_ITEMS_PER_CALL, DynamoBatchWriter
from shared.adapters.storage import DynamoDescriptionTable, description_item
from shared.models.attributes import AttributesSource
from shared.models.descriptions import StoredDescription
from shared.models.errors import DependencyError
from tests.catalog_batch_support import (
    UnprocessingProxy,
    answer_line,
    batch_settings,
    ledger_record,
)
from tests.catalog_support import TABLE_NAME
from tests.descriptions_support import create_products_table

pytestmark = pytest.mark.integration


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb")
        create_products_table(client, TABLE_NAME)
        yield client


def _descriptions(count: int) -> list[StoredDescription]:
    template = describe_record(
        parse_output_line(answer_line(record_id(1))),
        ledger_record(1),
        settings=batch_settings(),
        attributes_source=AttributesSource(kind="endpoint", model="transform-job"),
        now=datetime(2026, 11, 22, tzinfo=UTC),
    )
    assert isinstance(template, StoredDescription)
    return [
        template.model_copy(update={"product_id": f"P{n:06d}", "result_key": f"r/P{n:06d}.json"})
        for n in range(count)
    ]


def _writer(client: Any, sleeps: list[float], **kwargs: Any) -> DynamoBatchWriter:
    return DynamoBatchWriter(
        TABLE_NAME, dynamodb=client, sleep=sleeps.append, rng=lambda: 1.0, **kwargs
    )


def _table_ids(client: Any) -> set[str]:
    items = client.scan(TableName=TABLE_NAME)["Items"]
    return {item["productId"]["S"] for item in items}


def test_unprocessed_items_are_resent_with_growing_waits_until_written(dynamodb: Any) -> None:
    # Given 60 descriptions, three of them held back as unprocessed twice each
    descriptions = _descriptions(60)
    proxy = UnprocessingProxy(dynamodb, held={"P000003", "P000030", "P000031"}, times=2)
    sleeps: list[float] = []

    # When they are written
    unwritten = _writer(proxy, sleeps, base_delay=0.1, max_delay=5.0).write(descriptions)

    # Then every one is in the table, no call carried more than 25 items, and each chunk with a
    # held item waited 0.1 s then 0.2 s (full jitter at its cap) before its resends
    assert unwritten == []
    assert _table_ids(dynamodb) == {d.product_id for d in descriptions}
    assert max(proxy.call_sizes) == MAX_ITEMS_PER_CALL
    assert proxy.call_sizes == [25, 1, 1, 25, 2, 2, 10]
    assert sleeps == [0.1, 0.2, 0.1, 0.2]


def test_items_still_unprocessed_after_the_last_attempt_are_returned(dynamodb: Any) -> None:
    # Given a product DynamoDB keeps returning unprocessed
    descriptions = _descriptions(30)
    proxy = UnprocessingProxy(dynamodb, held={"P000027"}, times=1_000)
    sleeps: list[float] = []

    # When written with 4 attempts
    unwritten = _writer(proxy, sleeps, max_attempts=4, base_delay=0.1, max_delay=0.25).write(
        descriptions
    )

    # Then exactly that product is returned, the others are written, and the waits were capped
    assert unwritten == ["P000027"]
    assert _table_ids(dynamodb) == {d.product_id for d in descriptions} - {"P000027"}
    assert sleeps == [0.1, 0.2, 0.25]
    assert proxy.holds["P000027"] == 4


def test_a_throttled_call_is_retried_whole(dynamodb: Any) -> None:
    proxy = UnprocessingProxy(dynamodb, held=set(), times=0, throttle_calls=2)
    sleeps: list[float] = []

    unwritten = _writer(proxy, sleeps).write(_descriptions(5))

    assert unwritten == []
    assert len(_table_ids(dynamodb)) == 5
    assert len(sleeps) == 2


def test_a_missing_table_is_a_dependency_error_not_a_retry(dynamodb: Any) -> None:
    sleeps: list[float] = []
    writer = DynamoBatchWriter("no-such-table", dynamodb=dynamodb, sleep=sleeps.append)

    with pytest.raises(DependencyError, match="no-such-table"):
        writer.write(_descriptions(2))
    assert sleeps == []


def test_items_have_the_online_layout_and_read_back_through_the_online_table(
    dynamodb: Any,
) -> None:
    # Given descriptions written in batch
    descriptions = _descriptions(3)
    _writer(dynamodb, [], concurrency=4).write(descriptions)

    # When read through the online path's table adapter
    table = DynamoDescriptionTable(TABLE_NAME, dynamodb=dynamodb)

    # Then each reads back equal, and the raw item is what the online put writes
    for description in descriptions:
        assert table.get(description.product_id) == description
    raw = dynamodb.get_item(
        TableName=TABLE_NAME,
        Key={"pk": {"S": "PRODUCT#P000001"}, "sk": {"S": "DESCRIPTION"}},
    )["Item"]
    assert raw == description_item(descriptions[1])


def test_a_product_repeated_within_25_items_does_not_break_the_call(dynamodb: Any) -> None:
    # Given the same product twice among five (a manifest that lists it in two parts)
    descriptions = _descriptions(5)
    later = descriptions[2].model_copy(update={"category": "Shirts"})
    proxy = UnprocessingProxy(dynamodb, held=set(), times=0)

    unwritten = _writer(proxy, []).write([*descriptions, later])

    # Then it goes in a second call, and the later one is what the table keeps
    assert unwritten == []
    assert proxy.call_sizes == [5, 1]
    stored = DynamoDescriptionTable(TABLE_NAME, dynamodb=dynamodb).get("P000002")
    assert stored is not None
    assert stored.category == "Shirts"
