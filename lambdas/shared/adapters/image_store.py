"""Generated images in the results bucket, handed out through presigned GET URLs.

Objects are encrypted by the bucket's default (SSE-KMS with the data key); nothing here names a
key. A presigned URL carries the function's own (temporary) credentials, so the function's role
must be allowed to GET what it hands out, and the URL stops working when those credentials expire
even if its own expiry is later.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters.aws import as_dependency_error, presigning_s3_client


class S3ImageStore:
    def __init__(self, bucket: str, *, s3: Any | None = None) -> None:
        self.bucket = bucket
        self._client = s3 or presigning_s3_client()

    def put_png(self, key: str, data: bytes) -> None:
        try:
            self._client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType="image/png")
        except (ClientError, BotoCoreError) as error:
            raise as_dependency_error(
                error, code_prefix="results_bucket", what=f"S3 bucket {self.bucket}"
            ) from error

    def presign_get(self, key: str, *, expires_in: int) -> str:
        """An HTTPS URL that GETs the object for `expires_in` seconds (signed locally, no call)."""
        try:
            url: str = self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=expires_in,
                HttpMethod="GET",
            )
        except (ClientError, BotoCoreError) as error:
            raise as_dependency_error(
                error, code_prefix="results_bucket", what=f"S3 bucket {self.bucket}"
            ) from error
        return url
