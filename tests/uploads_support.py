"""The upload worker on moto (S3, SQS, DynamoDB), driven the way Lambda's SQS event source
drives it, for the worker's tests and the fault-injection gate.

So "no upload is lost" is checked on real queues: every upload ends described, or as a message
in the dead-letter queue (parked by the worker, or moved there by SQS after its retries).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig

from descriptions.handlers.environment import Environment
from descriptions.handlers.uploads import Worker
from descriptions.logic.pipeline import DescriptionPipeline
from descriptions.logic.ports import AttributeSource, TextModel
from shared.adapters.storage import DynamoDescriptionTable, S3ResultsArchive
from shared.adapters.uploads import DeadLetters, S3Uploads
from tests.descriptions_support import (
    FakeAttributeModel,
    FakeContext,
    FakeTextModel,
    create_products_table,
    settings,
    sqs_record,
    upload_event,
)

UPLOADS = "atelier-dev-uploads"
RESULTS = "atelier-dev-results"
TABLE = "atelier-dev-products"
MAX_RECEIVE_COUNT = 2


class Harness:
    """Create inside `moto.mock_aws()`. The models are fakes unless given; `client` makes the
    boto3 clients."""

    def __init__(
        self,
        *,
        attribute_model: AttributeSource | None = None,
        text_model: TextModel | None = None,
        client: Callable[[str], Any] = boto3.client,
    ) -> None:
        self.s3 = client("s3")
        self.sqs = client("sqs")
        self.dynamodb = client("dynamodb")
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
                attribute_model=attribute_model or self.attribute_model,
                text_model=text_model or self.text_model,
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
            sleep=lambda _: None,
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
