"""The datasets bucket, read by the Titan manifest checker: whole small objects, and sizes."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters.aws import as_dependency_error, client, unless_missing


class S3Datasets:
    def __init__(self, bucket: str, *, s3: Any | None = None) -> None:
        self.bucket = bucket
        self._client = s3 or client("s3")

    def read(self, key: str, *, max_bytes: int) -> bytes | None:
        """The object's bytes; None if it does not exist; ValueError if larger than max_bytes."""
        response = unless_missing(
            lambda: self._client.get_object(Bucket=self.bucket, Key=key), self._error
        )
        if response is None:
            return None
        body = response["Body"]
        try:
            if int(response.get("ContentLength", 0)) > max_bytes:
                raise ValueError(f"s3://{self.bucket}/{key} is larger than {max_bytes:,} bytes")
            data: bytes = body.read()
        finally:
            body.close()
        return data

    def size(self, key: str) -> int | None:
        """The object's size in bytes; None if it does not exist."""
        response = unless_missing(
            lambda: self._client.head_object(Bucket=self.bucket, Key=key), self._error
        )
        return None if response is None else int(response["ContentLength"])

    def _error(self, error: ClientError | BotoCoreError) -> Exception:
        return as_dependency_error(
            error, code_prefix="datasets_bucket", what=f"S3 bucket {self.bucket}"
        )
