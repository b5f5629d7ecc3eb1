"""The upload worker end to end against moto (S3, SQS, DynamoDB) with fake models.

The SQS side is driven like Lambda's event source mapping does it: receive a batch, call the
handler, delete the records it did not report as failures. So "no upload is lost" is checked on
real queues: every upload ends described, or as a message in the dead-letter queue.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from shared.adapters.uploads import DeadLetters
from shared.models.errors import DependencyError
from tests.descriptions_support import image_bytes, upload_event
from tests.uploads_support import RESULTS, UPLOADS, Harness

pytestmark = pytest.mark.integration


@pytest.fixture
def harness() -> Iterator[Harness]:
    with mock_aws():
        yield Harness()


def test_an_upload_is_described_with_the_options_in_its_metadata(harness: Harness) -> None:
    event = harness.upload("incoming/38642.jpg", image_bytes(), languages="en,de")

    result = harness.handle(event)

    assert result == {"batchItemFailures": []}
    stored = harness.description("38642")
    assert stored is not None
    assert stored.image_key == "incoming/38642.jpg"
    assert list(stored.descriptions) == ["en", "de"]
    assert harness.s3.get_object(Bucket=RESULTS, Key="descriptions/38642.json")
    assert harness.dead_letters() == []


def test_a_repeated_event_is_described_once(harness: Harness) -> None:
    event = harness.upload("incoming/38642.jpg", image_bytes())

    harness.handle(event)
    result = harness.handle(event)

    assert result == {"batchItemFailures": []}
    assert harness.attribute_model.calls == 1
    assert len(harness.text_model.requests) == 1


def test_a_new_version_of_the_same_key_is_described_again(harness: Harness) -> None:
    harness.handle(harness.upload("incoming/38642.jpg", image_bytes()))
    harness.handle(harness.upload("incoming/38642.jpg", image_bytes("PNG")))

    assert harness.attribute_model.calls == 2


@pytest.mark.parametrize(
    ("key", "data", "code"),
    [
        ("incoming/1.jpg", b"this is a text file", "image_unsupported_format"),
        ("incoming/1.jpg", image_bytes()[:-300], "image_truncated"),
        ("incoming/bad id!.jpg", image_bytes(), "product_id_invalid"),
    ],
)
def test_an_upload_that_can_never_be_described_is_parked_with_its_reason(
    harness: Harness, key: str, data: bytes, code: str
) -> None:
    event = harness.upload(key, data)

    result = harness.handle(event)

    assert result == {"batchItemFailures": []}  # not retried: retrying cannot help
    [parked] = harness.dead_letters()
    assert parked["Body"] == event  # the original event, so a DLQ redrive retries it as is
    assert parked["MessageAttributes"]["errorCode"]["StringValue"] == code
    assert parked["MessageAttributes"]["errorMessage"]["StringValue"]
    assert harness.attribute_model.calls == 0


def test_events_for_deleted_or_oversized_objects_are_parked_without_download(
    harness: Harness,
) -> None:
    gone = upload_event(UPLOADS, "incoming/2.jpg", version="nope", size=100)
    huge = upload_event(UPLOADS, "incoming/3.jpg", version="v", size=50_000_000)

    result = harness.handle(gone, huge)

    assert result == {"batchItemFailures": []}
    codes = sorted(
        m["MessageAttributes"]["errorCode"]["StringValue"] for m in harness.dead_letters()
    )
    assert codes == ["image_too_large", "upload_missing"]


def test_malformed_and_test_messages(harness: Harness) -> None:
    result = harness.handle("not json", json.dumps({"Event": "s3:TestEvent"}))

    assert result == {"batchItemFailures": []}
    [parked] = harness.dead_letters()
    assert parked["MessageAttributes"]["errorCode"]["StringValue"] == "event_malformed"


def test_throttling_is_retried_by_sqs_and_then_dead_lettered(harness: Harness) -> None:
    harness.attribute_model.failures.extend(
        DependencyError("attribute_model_unavailable", "throttled", retryable=True)
        for _ in range(20)
    )
    event = harness.upload("incoming/38642.jpg", image_bytes())
    harness.deliver(event)

    harness.drain()

    # Each delivery made the pipeline's own bounded attempts; SQS then moved the message.
    assert harness.description("38642") is None
    [dead] = harness.dead_letters()
    assert dead["Body"] == event


def test_a_throttled_upload_succeeds_on_redelivery(harness: Harness) -> None:
    harness.attribute_model.failures.extend(
        DependencyError("attribute_model_unavailable", "throttled", retryable=True)
        for _ in range(4)
    )
    harness.deliver(harness.upload("incoming/38642.jpg", image_bytes()))

    harness.drain()

    assert harness.description("38642") is not None
    assert harness.dead_letters() == []


def test_a_permanent_model_failure_is_parked_at_once(harness: Harness) -> None:
    harness.attribute_model.failures.append(
        DependencyError("attribute_model_failed", "ModelError", retryable=False)
    )
    event = harness.upload("incoming/38642.jpg", image_bytes())

    result = harness.handle(event)

    assert result == {"batchItemFailures": []}
    [parked] = harness.dead_letters()
    assert parked["MessageAttributes"]["errorCode"]["StringValue"] == "attribute_model_failed"
    # The failed attempt left no idempotency record behind: a redrive describes it.
    harness.handle(event)
    assert harness.description("38642") is not None


def test_when_the_dead_letter_queue_fails_the_record_is_retried(harness: Harness) -> None:
    harness.worker.dead_letters = DeadLetters(
        "https://sqs.us-east-1.amazonaws.com/1/missing", sqs=harness.sqs
    )

    result = harness.handle("not json")

    assert len(result["batchItemFailures"]) == 1


def test_the_records_of_a_batch_are_processed_concurrently(harness: Harness) -> None:
    # Ten uploads; the fake endpoint lets no call through until all ten are in flight at once.
    # Sequential processing would wait at the barrier and break it on the timeout.
    harness.attribute_model.barrier = threading.Barrier(10, timeout=20)
    events = [harness.upload(f"incoming/p{index}.jpg", image_bytes()) for index in range(10)]

    result = harness.handle(*events)

    assert result == {"batchItemFailures": []}
    assert all(harness.description(f"p{index}") is not None for index in range(10))


def _failing_update_item(harness: Harness, *, times: int) -> list[str]:
    """Completing an idempotency record (Powertools' UpdateItem) fails `times` times with a
    DynamoDB 500; returns the record keys it was asked to complete."""
    update_item = harness.dynamodb.update_item
    keys: list[str] = []

    def fail_then_update(**arguments: Any) -> Any:
        keys.append(arguments["Key"]["pk"]["S"])
        if len(keys) <= times:
            raise ClientError(
                {
                    "Error": {"Code": "InternalServerError", "Message": "injected"},
                    "ResponseMetadata": {"HTTPStatusCode": 500},
                },
                "UpdateItem",
            )
        return update_item(**arguments)

    harness.dynamodb.update_item = fail_then_update
    return keys


def test_a_stored_description_is_a_success_when_its_idempotency_record_fails_once(
    harness: Harness,
) -> None:
    tries = _failing_update_item(harness, times=1)
    event = harness.upload("incoming/38642.jpg", image_bytes())

    result = harness.handle(event)

    assert result == {"batchItemFailures": []}  # described: not retried, not parked
    assert harness.description("38642") is not None
    assert harness.dead_letters() == []
    assert len(tries) == 2  # the worker completed the record itself on a second try
    # So a repeated event is answered from the record, without a second model call.
    assert harness.handle(event) == {"batchItemFailures": []}
    assert harness.attribute_model.calls == 1
    assert len(harness.text_model.requests) == 1


def test_a_stored_description_is_a_success_even_when_its_idempotency_record_cannot_be_written(
    harness: Harness,
) -> None:
    _failing_update_item(harness, times=1_000)
    event = harness.upload("incoming/38642.jpg", image_bytes())
    harness.deliver(event)

    harness.drain()

    # Deleted from the queue as a success: described once, never dead-lettered.
    assert harness.description("38642") is not None
    assert harness.dead_letters() == []
    assert harness.attribute_model.calls == 1
    assert len(harness.text_model.requests) == 1


def test_a_failed_description_is_still_retried_when_its_record_cannot_be_deleted(
    harness: Harness,
) -> None:
    # The description failed (retryable) and Powertools could not delete the in-progress
    # record either: nothing was stored, so the record must come back, not count as done.
    harness.attribute_model.failures.extend(
        DependencyError("attribute_model_unavailable", "throttled", retryable=True)
        for _ in range(4)
    )

    def delete_fails(**_: Any) -> Any:
        raise ClientError(
            {"Error": {"Code": "InternalServerError", "Message": "injected"}}, "DeleteItem"
        )

    harness.dynamodb.delete_item = delete_fails
    event = harness.upload("incoming/38642.jpg", image_bytes())

    result = harness.handle(event)

    assert len(result["batchItemFailures"]) == 1
    assert harness.description("38642") is None
    assert harness.dead_letters() == []
