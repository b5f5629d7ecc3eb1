"""Builders shared by the description pipeline's tests: settings, images, fakes, events."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from infra.config import load_stage_config
from infra.stacks.api_settings import descriptions_settings_json
from infra.stacks.data import TABLE_SCHEMA
from shared.models.attributes import AttributeAnswers, AttributesSource
from shared.models.descriptions import PipelineSettings, TextModelReply
from tests.support import cdk_json_context

ATTRIBUTES = {
    "fabric": "Fabric: Cotton",
    "fit": "Slim Fit",
    "collar": "Button-Down Collar",
    "pattern": "Striped",
    "neck_type": "Round Neck",
    "sleeve_length": "Long Sleeves",
    "sleeve_styling": "Roll-Up Sleeves",
    "colour": "Navy Blue",
}


def settings_json(stage: str = "dev") -> str:
    """Exactly what the Api stack puts into DESCRIPTIONS_SETTINGS for `stage`."""
    return descriptions_settings_json(load_stage_config(cdk_json_context(), stage))


def settings(**overrides: Any) -> PipelineSettings:
    document = json.loads(settings_json())
    document.update(overrides)
    return PipelineSettings.model_validate(document)


def image_bytes(image_format: str = "JPEG", size: tuple[int, int] = (320, 240)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (20, 40, 90)).save(buffer, format=image_format)
    return buffer.getvalue()


def grounded_entry(language: str = "en", *, fabric_word: str = "cotton") -> dict[str, Any]:
    return {
        "language": language,
        "title": f"Navy striped slim fit long sleeve {fabric_word} shirt",
        "description": f"A navy blue striped shirt in soft {fabric_word} with a button-down "
        "collar and a slim fit. Roll-up sleeves make it easy to wear from desk to dinner.",
        "bullets": [f"Breathable {fabric_word}", "Slim fit", "Button-down collar"],
        "keywords": ["long sleeve cotton shirt", "navy striped shirt"],
    }


def tool_input(languages: Sequence[str] = ("en",), **kwargs: Any) -> dict[str, Any]:
    return {"descriptions": [grounded_entry(code, **kwargs) for code in languages]}


def converse_json_response(
    payload: Mapping[str, Any], *, stop_reason: str = "end_turn"
) -> dict[str, Any]:
    """A bedrock-runtime Converse answer in json_schema mode: the JSON document as text."""
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": json.dumps(payload)}]}},
        "stopReason": stop_reason,
        "usage": {"inputTokens": 300, "outputTokens": 250, "totalTokens": 550},
        "metrics": {"latencyMs": 1500},
    }


def converse_response(
    payload: Mapping[str, Any], *, stop_reason: str = "tool_use"
) -> dict[str, Any]:
    """A bedrock-runtime Converse answer whose content is one forced tool call."""
    return {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {
                        "toolUse": {
                            "toolUseId": "tooluse_1",
                            "name": "record_descriptions",
                            "input": payload,
                        }
                    }
                ],
            }
        },
        "stopReason": stop_reason,
        "usage": {"inputTokens": 300, "outputTokens": 250, "totalTokens": 550},
        "metrics": {"latencyMs": 1500},
    }


@dataclass
class FakeAttributeModel:
    answers: Mapping[str, str] = field(default_factory=lambda: dict(ATTRIBUTES))
    delay: float = 0.0
    barrier: threading.Barrier | None = None
    calls: int = 0
    failures: list[Exception] = field(default_factory=list)

    model: str = "atelier-dev-vqa"

    @property
    def source(self) -> AttributesSource:
        return AttributesSource(kind="endpoint", model=self.model)

    def check_image(self, info: object) -> None:
        del info

    def answer(self, image: bytes, questions: Sequence[Any]) -> AttributeAnswers:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        if self.barrier is not None:
            self.barrier.wait()
        time.sleep(self.delay)
        return AttributeAnswers(
            attributes={q.name: self.answers[q.name] for q in questions if q.name in self.answers}
        )


@dataclass
class FakeTextModel:
    reply: Callable[[Mapping[str, Any]], Mapping[str, Any]] = lambda request: tool_input(
        _languages(request)
    )
    delay: float = 0.0
    requests: list[Mapping[str, Any]] = field(default_factory=list)

    def converse(self, request: Mapping[str, Any]) -> TextModelReply:
        """Answers in the shape the request asks for: a tool call, or JSON text."""
        self.requests.append(request)
        time.sleep(self.delay)
        answer = self.reply(request)
        if "outputConfig" in request:
            return TextModelReply(
                tool_input=None,
                stop_reason="end_turn",
                input_tokens=10,
                output_tokens=20,
                text=json.dumps(answer),
            )
        return TextModelReply(
            tool_input=answer,
            stop_reason="tool_use",
            input_tokens=10,
            output_tokens=20,
        )


def answer_schema_of(request: Mapping[str, Any]) -> dict[str, Any]:
    """The answer's JSON schema in a Converse request of either structured-output mode."""
    if "outputConfig" in request:
        text_format = request["outputConfig"]["textFormat"]
        schema: dict[str, Any] = json.loads(text_format["structure"]["jsonSchema"]["schema"])
        return schema
    tool_schema: dict[str, Any] = request["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"][
        "json"
    ]
    return tool_schema


def _languages(request: Mapping[str, Any]) -> list[str]:
    schema = answer_schema_of(request)
    return list(schema["properties"]["descriptions"]["items"]["properties"]["language"]["enum"])


@dataclass
class FakeContext:
    """The parts of a Lambda context that Powertools and the handlers read."""

    remaining_ms: int = 29_000
    function_name: str = "atelier-dev-descriptions"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:123456789012:function:atelier-dev-descriptions"
    )
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def api_event(method: str, path: str, body: str | None = None, **extra: Any) -> dict[str, Any]:
    """An API Gateway REST proxy event as the Lambda integration delivers it."""
    resource = "/descriptions/{productId}" if path.count("/") > 1 else path
    path_parameters = {"productId": path.rsplit("/", 1)[1]} if path.count("/") > 1 else None
    event = {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {"Content-Type": ["application/json"]},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/v1{path}",
            "stage": "v1",
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": "192.0.2.1", "userArn": "arn:aws:iam::123456789012:user/t"},
        },
        "body": body,
        "isBase64Encoded": False,
    }
    event.update(extra)
    return event


def describe_body(image: bytes | None = None, **fields: Any) -> str:
    document = {
        "productId": "38642",
        "image": base64.b64encode(image if image is not None else image_bytes()).decode(),
        **fields,
    }
    return json.dumps(document)


def upload_event(bucket: str, key: str, *, version: str | None, size: int | None) -> str:
    """The EventBridge 'Object Created' event, as SQS delivers it in a record body."""
    obj: dict[str, Any] = {"key": key, "etag": "abc", "sequencer": "00"}
    if version is not None:
        obj["version-id"] = version
    if size is not None:
        obj["size"] = size
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Object Created",
            "source": "aws.s3",
            "account": "123456789012",
            "time": "2026-11-22T10:00:00Z",
            "region": "us-east-1",
            "resources": [f"arn:aws:s3:::{bucket}"],
            "detail": {
                "version": "0",
                "bucket": {"name": bucket},
                "object": obj,
                "request-id": "R",
                "requester": "123456789012",
                "reason": "PutObject",
            },
        }
    )


def sqs_record(body: str) -> dict[str, Any]:
    return {
        "messageId": str(uuid.uuid4()),
        "receiptHandle": "handle",
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:uploads",
        "awsRegion": "us-east-1",
    }


@dataclass
class InMemoryArchive:
    documents: dict[str, Mapping[str, Any]] = field(default_factory=dict)

    def put_json(self, key: str, document: Mapping[str, Any]) -> None:
        self.documents[key] = document


@dataclass
class InMemoryTable:
    items: dict[str, Any] = field(default_factory=dict)

    def put(self, description: Any) -> None:
        self.items[description.product_id] = description

    def get(self, product_id: str) -> Any:
        return self.items.get(product_id)


def create_products_table(dynamodb: Any, table_name: str) -> None:
    """The Data stack's products table (keys from TABLE_SCHEMA), in moto."""
    keys = (("HASH", TABLE_SCHEMA.partition_key), ("RANGE", TABLE_SCHEMA.sort_key))
    dynamodb.create_table(
        TableName=table_name,
        KeySchema=[{"AttributeName": name, "KeyType": kind} for kind, name in keys],
        AttributeDefinitions=[{"AttributeName": name, "AttributeType": "S"} for _, name in keys],
        BillingMode="PAY_PER_REQUEST",
    )
