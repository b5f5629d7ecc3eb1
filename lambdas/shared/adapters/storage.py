"""Where descriptions live: JSON documents in the results bucket, items in the products table.

Table layout (single table, `pk`/`sk`): a product's current description is
`pk = PRODUCT#<productId>`, `sk = DESCRIPTION`. Idempotency records of the upload worker share the
table under their own partition (see handlers/uploads.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters.aws import as_dependency_error, client, error_code
from shared.models.descriptions import StoredDescription
from shared.models.errors import DependencyError

DESCRIPTION_SORT_KEY = "DESCRIPTION"
_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()


def product_key(product_id: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": f"PRODUCT#{product_id}"}, "sk": {"S": DESCRIPTION_SORT_KEY}}


def description_item(description: StoredDescription) -> dict[str, Any]:
    """The table item of a product's current description: its key plus every field, typed."""
    document = description.model_dump(mode="json", by_alias=True)
    item = {name: _SERIALIZER.serialize(value) for name, value in document.items()}
    return {**product_key(description.product_id), **item}


class S3ResultsArchive:
    def __init__(self, bucket: str, *, s3: Any | None = None) -> None:
        self.bucket = bucket
        self._client = s3 or client("s3")

    def put_json(self, key: str, document: Mapping[str, Any]) -> None:
        try:
            self._client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=json.dumps(document, ensure_ascii=False, indent=2).encode(),
                ContentType="application/json; charset=utf-8",
            )
        except (ClientError, BotoCoreError) as error:
            raise as_dependency_error(
                error, code_prefix="results_bucket", what=f"S3 bucket {self.bucket}"
            ) from error


class DynamoDescriptionTable:
    def __init__(self, table_name: str, *, dynamodb: Any | None = None) -> None:
        self.table_name = table_name
        self._client = dynamodb or client("dynamodb")

    def put(self, description: StoredDescription) -> None:
        try:
            self._client.put_item(TableName=self.table_name, Item=description_item(description))
        except (ClientError, BotoCoreError) as error:
            raise self._error(error) from error

    def get(self, product_id: str) -> StoredDescription | None:
        try:
            response = self._client.get_item(
                TableName=self.table_name, Key=product_key(product_id), ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as error:
            raise self._error(error) from error
        item = response.get("Item")
        if item is None:
            return None
        document = {
            name: _plain(_DESERIALIZER.deserialize(value))
            for name, value in item.items()
            if name not in ("pk", "sk")
        }
        return StoredDescription.model_validate(document)

    def _error(self, error: ClientError | BotoCoreError) -> DependencyError:
        what = f"DynamoDB table {self.table_name}"
        if isinstance(error, ClientError) and error_code(error) == "ResourceNotFoundException":
            return DependencyError("table_missing", f"{what} does not exist", retryable=False)
        return as_dependency_error(error, code_prefix="table", what=what)


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; ours are whole numbers."""
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | set):
        return [_plain(item) for item in value]
    return value
