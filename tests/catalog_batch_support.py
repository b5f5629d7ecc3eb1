"""Synthetic files of a catalog group for the batch steps' tests: transform index and output
lines, ledger lines, and Bedrock output lines (answers, error records, malformed lines)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from botocore.exceptions import ClientError

from catalog.logic import layout
from catalog.logic.bedrock_records import record_id
from shared.models.catalog import IndexRecord, LedgerRecord
from shared.models.descriptions import PipelineSettings
from tests.catalog_support import UPLOADS_BUCKET, descriptions_settings
from tests.descriptions_support import ATTRIBUTES, converse_json_response, tool_input

SHIRT_QUESTIONS = ("fabric", "sleeve_length", "colour")


def batch_settings() -> PipelineSettings:
    """The dev pipeline settings plus a `Shirts` category with fewer questions than default."""
    base = descriptions_settings()
    return descriptions_settings(categories={**base.categories, "Shirts": SHIRT_QUESTIONS})


def product_id(number: int) -> str:
    return f"P{number:06d}"


def index_record(number: int, *, category: str = "default") -> IndexRecord:
    identifier = product_id(number)
    return IndexRecord(
        product_id=identifier,
        image_key=f"s3://{UPLOADS_BUCKET}/catalog/{identifier}.jpg",
        category=category,
        image_sha256=hashlib.sha256(identifier.encode()).hexdigest(),
    )


def index_line(record: IndexRecord) -> bytes:
    return record.model_dump_json().encode()


def transform_output_line(
    record: IndexRecord, answer: Any = None, *, product: str | None = None
) -> bytes:
    """What Batch Transform writes with the workflow's join and output filter."""
    return json.dumps(
        {
            "product_id": product if product is not None else record.product_id,
            "image_key": record.image_key,
            "category": record.category,
            "SageMakerOutput": answer if answer is not None else {"attributes": dict(ATTRIBUTES)},
        }
    ).encode()


def ledger_record(
    number: int,
    sequence: int | None = None,
    *,
    languages: Sequence[str] = ("en",),
    attributes: Mapping[str, str] | None = None,
) -> LedgerRecord:
    record = index_record(number)
    return LedgerRecord(
        record_id=record_id(number if sequence is None else sequence),
        product_id=record.product_id,
        image_key=record.image_key,
        category=record.category,
        image_sha256=record.image_sha256,
        attributes=dict(attributes if attributes is not None else ATTRIBUTES),
        languages=tuple(languages),
    )


def anthropic_response(
    payload: Mapping[str, Any], *, stop_reason: str = "tool_use"
) -> dict[str, Any]:
    """An Anthropic Messages API response (an InvokeModel batch job's `modelOutput`) whose
    content is one forced tool call."""
    return {
        "id": "msg_bdrk_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-6",
        "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "record_descriptions", "input": payload}
        ],
        "stop_reason": stop_reason,
        "usage": {"input_tokens": 300, "output_tokens": 250},
    }


def answer_line(
    identifier: str,
    *,
    languages: Sequence[str] = ("en",),
    payload: Mapping[str, Any] | None = None,
    stop_reason: str | None = None,
    mode: str = "json_schema",
) -> bytes:
    """A batch output line as the job of `mode` writes it: a Converse response whose text is the
    JSON answer (json_schema), or an Anthropic Messages response with the tool call (tool)."""
    answer = payload if payload is not None else tool_input(languages)
    if mode == "tool":
        output = anthropic_response(answer, stop_reason=stop_reason or "tool_use")
    else:
        output = converse_json_response(answer, stop_reason=stop_reason or "end_turn")
    return json.dumps(
        {"recordId": identifier, "modelInput": {"messages": []}, "modelOutput": output}
    ).encode()


def error_line(identifier: str, code: Any = 400, message: str = "Malformed input request") -> bytes:
    return json.dumps(
        {
            "recordId": identifier,
            "modelInput": {"messages": []},
            "error": {"errorCode": code, "errorMessage": message},
        }
    ).encode()


def put_lines(s3: Any, bucket: str, key: str, lines: Sequence[bytes]) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=b"".join(line + b"\n" for line in lines))


def put_group_parts(
    s3: Any,
    bucket: str,
    run_id: str,
    group: str,
    parts: Mapping[str, tuple[Sequence[IndexRecord], Sequence[bytes] | None]],
) -> dict[str, Any]:
    """A planned group as the plan step and Batch Transform leave it: the SageMaker manifest,
    each part's transform index and (unless None) its output. Returns the plan's group entry."""
    manifest: list[Any] = [{"prefix": f"s3://{bucket}/{layout.transform_input_prefix(run_id)}"}]
    records = 0
    for batch_id, (index, outputs) in parts.items():
        manifest.append(f"{batch_id}.jsonl")
        records += len(index)
        put_lines(
            s3, bucket, layout.transform_index_key(run_id, batch_id), [index_line(r) for r in index]
        )
        if outputs is not None:
            put_lines(s3, bucket, layout.transform_output_key(run_id, group, batch_id), outputs)
    s3.put_object(
        Bucket=bucket,
        Key=layout.transform_manifest_key(run_id, group),
        Body=json.dumps(manifest).encode(),
    )
    return {
        "group": group,
        "records": records,
        "manifestUri": layout.s3_uri(bucket, layout.transform_manifest_key(run_id, group)),
        "outputUri": layout.s3_uri(bucket, layout.transform_output_prefix(run_id, group)),
        "bedrockInputUri": layout.s3_uri(bucket, layout.bedrock_input_prefix(run_id, group)),
        "bedrockOutputUri": layout.s3_uri(bucket, layout.bedrock_output_prefix(run_id, group)),
    }


class UnprocessingProxy:
    """Forwards BatchWriteItem to moto, but returns the requests of `held` products as
    unprocessed until each has been held `times` times; can also throttle whole calls."""

    def __init__(self, client: Any, *, held: set[str], times: int, throttle_calls: int = 0) -> None:
        self._client = client
        self.held = held
        self.times = times
        self.throttle_calls = throttle_calls
        self.holds: dict[str, int] = {}
        self.call_sizes: list[int] = []

    def batch_write_item(self, RequestItems: dict[str, list[Any]]) -> dict[str, Any]:  # noqa: N803
        [(table, requests)] = RequestItems.items()
        self.call_sizes.append(len(requests))
        if self.throttle_calls:
            self.throttle_calls -= 1
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}},
                "BatchWriteItem",
            )
        forward, unprocessed = [], []
        for request in requests:
            product = request["PutRequest"]["Item"]["productId"]["S"]
            if product in self.held and self.holds.get(product, 0) < self.times:
                self.holds[product] = self.holds.get(product, 0) + 1
                unprocessed.append(request)
            else:
                forward.append(request)
        response = self._client.batch_write_item(RequestItems={table: forward}) if forward else {}
        unprocessed += response.get("UnprocessedItems", {}).get(table, [])
        return {"UnprocessedItems": {table: unprocessed} if unprocessed else {}}
