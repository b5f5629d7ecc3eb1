"""The small S3 operations a catalog step does on its run's files besides streaming lines:
list a prefix, read or write a small JSON document, read lines of a file that may not exist yet,
and delete a prefix in DeleteObjects calls of at most 1,000 keys."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters.aws import as_dependency_error, client, unless_missing
from shared.adapters.s3_lines import iter_lines
from shared.models.errors import DependencyError

MAX_KEYS_PER_DELETE = 1000


class RunFiles:
    def __init__(self, bucket: str, *, s3: Any | None = None) -> None:
        self.bucket = bucket
        self.s3 = s3 or client("s3")

    def list_keys(self, prefix: str) -> Iterator[str]:
        """Every key under `prefix`, in S3's (lexicographic) order, page by page."""
        try:
            for page in self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            ):
                for item in page.get("Contents", []):
                    yield str(item["Key"])
        except (ClientError, BotoCoreError) as error:
            raise self._error(error, prefix) from error

    def get_json(self, key: str) -> Any | None:
        """The parsed document, or None when there is no such object."""
        body = unless_missing(
            lambda: self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read(),
            lambda error: self._error(error, key),
        )
        return None if body is None else json.loads(body)

    def put_json(self, key: str, document: Mapping[str, Any]) -> None:
        try:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=json.dumps(document, ensure_ascii=False, indent=2).encode(),
                ContentType="application/json; charset=utf-8",
            )
        except (ClientError, BotoCoreError) as error:
            raise self._error(error, key) from error

    def metadata(self, key: str) -> dict[str, str] | None:
        """The object's user metadata, or None when the object does not exist."""
        response = unless_missing(
            lambda: self.s3.head_object(Bucket=self.bucket, Key=key),
            lambda error: self._error(error, key),
        )
        if response is None:
            return None
        return {str(name): str(value) for name, value in response.get("Metadata", {}).items()}

    def lines_if_exists(self, key: str) -> Iterator[bytes] | None:
        """The object's lines (streamed), or None when the object does not exist."""
        if self.metadata(key) is None:
            return None
        return iter_lines(self.bucket, key, s3=self.s3)

    def lines(self, key: str) -> Iterator[bytes]:
        return iter_lines(self.bucket, key, s3=self.s3)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix`; returns how many. Raises if S3 refuses any."""
        keys = self.list_keys(prefix)
        deleted = 0
        while batch := list(islice(keys, MAX_KEYS_PER_DELETE)):
            deleted += self.delete_keys(batch)
        return deleted

    def delete_keys(self, keys: Iterable[str]) -> int:
        objects = [{"Key": key} for key in keys]
        if not objects:
            return 0
        if len(objects) > MAX_KEYS_PER_DELETE:
            raise ValueError(f"DeleteObjects takes at most {MAX_KEYS_PER_DELETE} keys")
        try:
            response = self.s3.delete_objects(
                Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
            )
        except (ClientError, BotoCoreError) as error:
            raise self._error(error, objects[0]["Key"]) from error
        errors = response.get("Errors", [])
        if errors:
            first = errors[0]
            raise DependencyError(
                "results_bucket_failed",
                f"S3 did not delete {len(errors)} of {len(objects)} objects in {self.bucket}, "
                f"e.g. {first.get('Key')}: {first.get('Code')} {first.get('Message', '')}"[:500],
                retryable=True,
            )
        return len(objects)

    def _error(self, error: ClientError | BotoCoreError, key: str) -> DependencyError:
        return as_dependency_error(
            error, code_prefix="results_bucket", what=f"s3://{self.bucket}/{key}"
        )
