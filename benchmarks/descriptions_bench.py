"""Benchmark of the description pipeline (`make bench`).

Batch concurrency: the upload worker with simulated model latencies (endpoint 300 ms, Bedrock
1.5 s) on a batch of 10 S3 records versus one record. Target: at most 1.5x. (Cold imports of
the handlers are measured in the deployed layout by benchmarks/cold_start_bench.py.)

A ratio measured in one run on one machine, so it travels between machines better than
absolute times. S3, SQS and DynamoDB are moto (in process); the models are fakes that sleep.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "lambdas"), str(ROOT)]
os.environ.update(
    AWS_ACCESS_KEY_ID="bench",
    AWS_SECRET_ACCESS_KEY="bench",
    AWS_DEFAULT_REGION="us-east-1",
    POWERTOOLS_TRACE_DISABLED="true",
    POWERTOOLS_METRICS_NAMESPACE="AtelierBench",
    POWERTOOLS_SERVICE_NAME="descriptions",
    POWERTOOLS_LOG_LEVEL="WARNING",
)

ENDPOINT_SECONDS = 0.3
BEDROCK_SECONDS = 1.5
BATCH = 10
TARGET_RATIO = 1.5


def _image() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (256, 256), (10, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


class SlowEndpoint:
    """The attribute source port (descriptions.logic.ports.AttributeSource), sleeping."""

    @property
    def source(self) -> Any:
        from shared.models.attributes import AttributesSource

        return AttributesSource(kind="endpoint", model="bench-endpoint")

    def check_image(self, info: object) -> None:
        del info

    def answer(self, image: bytes, questions: Sequence[Any]) -> Any:
        from shared.models.attributes import AttributeAnswers

        time.sleep(ENDPOINT_SECONDS)
        return AttributeAnswers(
            attributes={
                q.name: "cotton" if q.name == "fabric" else "long sleeves" for q in questions
            }
        )


class SlowClaude:
    def converse(self, request: Mapping[str, Any]) -> Any:
        from shared.models.descriptions import TextModelReply

        time.sleep(BEDROCK_SECONDS)
        # The answer's schema in either structured-output mode (the stage's default model
        # resolves to json_schema).
        if "toolConfig" in request:
            schema = request["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]
        else:
            structure = request["outputConfig"]["textFormat"]["structure"]
            schema = json.loads(structure["jsonSchema"]["schema"])
        languages = schema["properties"]["descriptions"]["items"]["properties"]["language"]["enum"]
        entries = [
            {
                "language": code,
                "title": "Long sleeve cotton shirt",
                "description": "A cotton shirt with long sleeves.",
                "bullets": ["Cotton"],
                "keywords": ["long sleeve cotton shirt"],
            }
            for code in languages
        ]
        if "toolConfig" in request:
            return TextModelReply({"descriptions": entries}, "tool_use", 100, 100)
        return TextModelReply(None, "end_turn", 100, 100, json.dumps({"descriptions": entries}))


class Memory:
    def __init__(self) -> None:
        self.items: dict[str, Any] = {}

    def put_json(self, key: str, document: Mapping[str, Any]) -> None:
        self.items[key] = document

    def put(self, description: Any) -> None:
        self.items[description.product_id] = description

    def get(self, product_id: str) -> Any:
        return self.items.get(product_id)


class Context:
    function_name = "bench"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 120_000


def batch_ratio() -> dict[str, float]:
    import boto3
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
    )
    from moto import mock_aws

    from descriptions.handlers.environment import Environment
    from descriptions.handlers.uploads import Worker
    from descriptions.logic.pipeline import DescriptionPipeline
    from infra.config import load_stage_config
    from infra.stacks.api_settings import descriptions_settings_json
    from shared.adapters.uploads import DeadLetters, S3Uploads
    from shared.models.descriptions import PipelineSettings
    from tests.descriptions_support import create_products_table

    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    settings = PipelineSettings.model_validate_json(
        descriptions_settings_json(load_stage_config(context, "dev"))
    )
    with mock_aws():
        s3, sqs, dynamodb = (boto3.client(name) for name in ("s3", "sqs", "dynamodb"))
        s3.create_bucket(Bucket="uploads")
        create_products_table(dynamodb, "table")
        dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
        memory = Memory()
        environment = Environment(
            settings=settings,
            table_name="table",
            results_bucket="results",
            uploads_bucket="uploads",
            dead_letter_queue_url=dlq,
            idempotency_ttl_seconds=3600,
            worker_concurrency=BATCH,
        )
        worker = Worker(
            environment=environment,
            pipeline=DescriptionPipeline(
                settings=settings,
                attribute_model=SlowEndpoint(),
                text_model=SlowClaude(),
                archive=memory,
                table=memory,
            ),
            uploads=S3Uploads(s3=s3),
            dead_letters=DeadLetters(dlq, sqs=sqs),
            idempotency=IdempotencyConfig(expires_after_seconds=3600),
            persistence=DynamoDBPersistenceLayer(
                table_name="table",
                key_attr="pk",
                sort_key_attr="sk",
                expiry_attr="expiresAt",
                static_pk_value="IDEMPOTENCY#bench",
                boto3_client=dynamodb,
            ),
        )
        image = _image()

        def records(count: int) -> list[dict[str, Any]]:
            result = []
            for _ in range(count):
                key = f"incoming/{uuid.uuid4().hex}.png"
                s3.put_object(Bucket="uploads", Key=key, Body=image)
                body = {
                    "source": "aws.s3",
                    "detail-type": "Object Created",
                    "detail": {"bucket": {"name": "uploads"}, "object": {"key": key}},
                }
                result.append({"messageId": key, "body": json.dumps(body)})
            return result

        def timed(count: int) -> float:
            batch = records(count)
            started = time.perf_counter()
            answer = worker.handle({"Records": batch}, Context())  # type: ignore[arg-type]
            elapsed = time.perf_counter() - started
            assert answer == {"batchItemFailures": []}, answer
            return elapsed

        timed(1)  # warm-up: first use of the clients and the idempotency table
        one = statistics.median(timed(1) for _ in range(3))
        ten = statistics.median(timed(BATCH) for _ in range(3))
    return {"one_record_s": one, "ten_records_s": ten, "ratio": ten / one}


def main() -> int:
    batch = batch_ratio()
    print(
        f"upload batch: 1 record {batch['one_record_s']:.2f} s, {BATCH} records "
        f"{batch['ten_records_s']:.2f} s, ratio {batch['ratio']:.2f} (target <= {TARGET_RATIO})"
    )
    return 0 if batch["ratio"] <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
