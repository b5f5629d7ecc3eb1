"""What a catalog run reads from the customer's side: source objects, images, and the
descriptions already stored for its products.

Errors that belong to one product (a missing image, one the role may not read, one too large)
are `RequestError`s the build step turns into failure records; throttling and unavailability are
retryable `DependencyError`s that fail the step, so Step Functions retries the whole batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters.aws import as_dependency_error, client, error_code, unless_missing
from shared.adapters.dynamo_resends import BatchResends
from shared.adapters.storage import product_key
from shared.models.errors import DependencyError, RequestError

# BatchGetItem reads at most 100 keys per call.
BATCH_GET_MAX_KEYS = 100
_PRODUCT_PREFIX = "PRODUCT#"
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_DENIED_CODES = frozenset({"AccessDenied", "403", "Forbidden", "KMS.AccessDeniedException"})


@dataclass(frozen=True)
class ObjectHead:
    size: int


class S3CatalogSource:
    """Source prefixes, manifests and images in the buckets a run may read."""

    # Pages of a prefix listing to look through for one file before calling it empty (a
    # prefix whose first 5,000 keys are all folder markers is not a catalog).
    LISTING_PAGES = 5

    def __init__(self, *, s3: Any | None = None) -> None:
        self._client = s3 or client("s3")

    def has_objects(self, bucket: str, prefix: str) -> bool:
        """True when the prefix holds at least one object that is not a folder marker."""
        what = f"s3://{bucket}/{prefix}"
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix
            )
            for number, page in enumerate(pages):
                if any(not item["Key"].endswith("/") for item in page.get("Contents", [])):
                    return True
                if number + 1 >= self.LISTING_PAGES:
                    break
        except (ClientError, BotoCoreError) as error:
            raise as_dependency_error(error, code_prefix="source", what=what) from error
        return False

    def head(self, bucket: str, key: str) -> ObjectHead | None:
        """The object's size, or None when there is no such object."""
        where = f"s3://{bucket}/{key}"
        response = unless_missing(
            lambda: self._client.head_object(Bucket=bucket, Key=key),
            lambda error: as_dependency_error(error, code_prefix="source", what=where),
            missing=_MISSING_CODES,
        )
        return None if response is None else ObjectHead(size=int(response.get("ContentLength", 0)))

    def read_image(self, bucket: str, key: str, *, max_bytes: int) -> bytes:
        """The object's bytes; refuses to download more than `max_bytes`."""
        uri = f"s3://{bucket}/{key}"
        try:
            response = self._client.get_object(Bucket=bucket, Key=key)
            body = response["Body"]
            size = int(response.get("ContentLength", 0))
            if size > max_bytes:
                body.close()
                raise RequestError(
                    "image_too_large",
                    f"the image is {size:,} bytes; the limit is {max_bytes:,} bytes "
                    "(descriptions.image.max_bytes); use a smaller image",
                )
            data: bytes = body.read()
        except ClientError as error:
            code = error_code(error)
            if code in _MISSING_CODES:
                raise RequestError(
                    "image_missing", f"{uri} does not exist; fix image_key or upload the image"
                ) from None
            if code in _DENIED_CODES:
                raise RequestError(
                    "image_access_denied",
                    f"{uri} cannot be read ({code}): the workflow may read the catalog source "
                    "buckets only; check the bucket policy and the object's KMS key",
                ) from None
            raise as_dependency_error(error, code_prefix="source", what=uri) from error
        except BotoCoreError as error:
            raise as_dependency_error(error, code_prefix="source", what=uri) from error
        return data


class StoredLanguages(BatchResends):
    """Which languages each product's stored description already has.

    BatchGetItem reads 100 products per call and projects only the `language` field of the
    requested languages, so deciding "already described" never moves the descriptions' text.
    DynamoDB may leave keys unprocessed under load; those are asked again with exponential
    backoff and jitter, a bounded number of times.
    """

    def languages(
        self, product_ids: Sequence[str], languages: Sequence[str]
    ) -> dict[str, frozenset[str]]:
        """Product id → stored languages among `languages`, for products with a description."""
        unique = list(dict.fromkeys(product_ids))
        found: dict[str, frozenset[str]] = {}
        for start in range(0, len(unique), BATCH_GET_MAX_KEYS):
            chunk = unique[start : start + BATCH_GET_MAX_KEYS]
            for item in self._get([product_key(product_id) for product_id in chunk], languages):
                product_id, stored = _stored_languages(item)
                if product_id is not None:
                    found[product_id] = stored
        return found

    def _get(
        self, keys: list[dict[str, dict[str, str]]], languages: Sequence[str]
    ) -> list[Mapping[str, Any]]:
        names = {"#pk": "pk", "#d": "descriptions", "#lang": "language"}
        paths = ["#pk"]
        for index, code in enumerate(dict.fromkeys(languages)):
            names[f"#l{index}"] = code
            paths.append(f"#d.#l{index}.#lang")
        request: dict[str, Any] = {
            self.table_name: {
                "Keys": keys,
                "ProjectionExpression": ", ".join(paths),
                "ExpressionAttributeNames": names,
            }
        }
        items: list[Mapping[str, Any]] = []
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self._client.batch_get_item(RequestItems=request)
            except (ClientError, BotoCoreError) as error:
                raise self._error(error) from error
            items.extend(response.get("Responses", {}).get(self.table_name, []))
            unprocessed = response.get("UnprocessedKeys") or {}
            if not unprocessed.get(self.table_name, {}).get("Keys"):
                return items
            request = unprocessed
            self._wait_before_next(attempt)
        left = len(request[self.table_name]["Keys"])
        raise DependencyError(
            "table_unavailable",
            f"DynamoDB table {self.table_name} left {left} keys unprocessed after "
            f"{self.max_attempts} attempts",
            retryable=True,
        )


def _stored_languages(item: Mapping[str, Any]) -> tuple[str | None, frozenset[str]]:
    partition = item.get("pk", {}).get("S", "")
    if not partition.startswith(_PRODUCT_PREFIX):
        return None, frozenset()
    descriptions = item.get("descriptions", {}).get("M", {})
    stored = frozenset(
        code
        for code, value in descriptions.items()
        if value.get("M", {}).get("language", {}).get("S") == code
    )
    return partition[len(_PRODUCT_PREFIX) :], stored
