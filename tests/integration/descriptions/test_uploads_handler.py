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

import boto3
import pytest
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig
from moto import mock_aws

from descriptions.handlers.environment import Environment
from descriptions.handlers.uploads import Worker
from descriptions.logic.pipeline import DescriptionPipeline
from shared.adapters.storage import DynamoDescriptionTable, S3ResultsArchive
from shared.adapters.uploads import DeadLetters, S3Uploads
from shared.models.errors import DependencyError
from tests.descriptions_support import (
    FakeAttributeModel,
    FakeContext,
    FakeTextModel,
    create_products_table,
    image_bytes,
    settings,
    sqs_record,
    upload_event,
)

pytestmark = pytest.mark.integration

UPLOADS = "atelier-dev-uploads"
RESULTS = "atelier-dev-results"
TABLE = "atelier-dev-products"
MAX_RECEIVE_COUNT = 2


class Harness:
    def __init__(self) -> None:
        self.s3 = boto3.client("s3")
        self.sqs = boto3.client("sqs")
        self.dynamodb = boto3.client("dynamodb")
        for bucket in (UPLOADS, RESULTS):
            self.s3.create_bucket(Bucket=bucket)
        self.s3.put_bucket_versioning(Bucket=UPLOADS, VersioningConfiguration={"Status": "Enabled"})
        create_products_table(self.dynamodb, TABLE)
        self.dlq_url = self.sqs.create_queue(QueueName="uploads-dlq")["QueueUrl"]
        dlq_arn = self.sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.queue_url = self.sqs.create_queue(
            QueueName="uploads",
            Attributes={
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}
                )
            },
        )["QueueUrl"]
        self.attribute_model = FakeAttributeModel()
        self.text_model = FakeTextModel()
        pipeline_settings = settings()
        environment = Environment(
            settings=pipeline_settings,
            table_name=TABLE,
            results_bucket=RESULTS,
            uploads_bucket=UPLOADS,
            dead_letter_queue_url=self.dlq_url,
            idempotency_ttl_seconds=3600,
            worker_concurrency=10,
        )
        self.worker = Worker(
            environment=environment,
            pipeline=DescriptionPipeline(
                settings=pipeline_settings,
                attribute_model=self.attribute_model,
                text_model=self.text_model,
                archive=S3ResultsArchive(RESULTS, s3=self.s3),
                table=DynamoDescriptionTable(TABLE, dynamodb=self.dynamodb),
                sleep=lambda _: None,
            ),
            uploads=S3Uploads(s3=self.s3),
            dead_letters=DeadLetters(self.dlq_url, sqs=self.sqs),
            idempotency=IdempotencyConfig(expires_after_seconds=3600),
            persistence=DynamoDBPersistenceLayer(
                table_name=TABLE,
                key_attr="pk",
                sort_key_attr="sk",
                expiry_attr="expiresAt",
                static_pk_value="IDEMPOTENCY#test",
                boto3_client=self.dynamodb,
            ),
        )

    def upload(self, key: str, data: bytes, **metadata: str) -> str:
        """Put an object and return the event S3 would send for it."""
        version = self.s3.put_object(Bucket=UPLOADS, Key=key, Body=data, Metadata=metadata)[
            "VersionId"
        ]
        return upload_event(UPLOADS, key, version=version, size=len(data))

    def handle(self, *bodies: str) -> dict[str, Any]:
        event = {"Records": [sqs_record(body) for body in bodies]}
        return self.worker.handle(event, FakeContext(remaining_ms=120_000))

    def deliver(self, body: str) -> None:
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)

    def drain(self, *, rounds: int = 5) -> None:
        """What Lambda's SQS event source does: receive, invoke, delete the successes."""
        for _ in range(rounds):
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0
            ).get("Messages", [])
            if not messages:
                return
            records = [
                {**sqs_record(message["Body"]), "messageId": message["MessageId"]}
                for message in messages
            ]
            result = self.worker.handle({"Records": records}, FakeContext(remaining_ms=120_000))
            failed = {item["itemIdentifier"] for item in result["batchItemFailures"]}
            for message in messages:
                if message["MessageId"] not in failed:
                    self.sqs.delete_message(
                        QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                    )

    def dead_letters(self) -> list[dict[str, Any]]:
        return self.sqs.receive_message(
            QueueUrl=self.dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        ).get("Messages", [])

    def description(self, product_id: str) -> Any:
        return DynamoDescriptionTable(TABLE, dynamodb=self.dynamodb).get(product_id)


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
