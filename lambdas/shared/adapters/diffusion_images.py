"""Images of `POST /generations` and `POST /styling` in S3: inputs from the uploads bucket, outputs
(JPEGs and masks) into the results bucket, handed out through presigned GET URLs.

The function's role may read only the input prefixes and holds no `s3:ListBucket`, so S3 answers
a missing key with 403 AccessDenied rather than 404 NoSuchKey: both mean "not there (for this
API)" and become a 400 naming the key. A KMS refusal is reported as a deployment problem instead.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters.aws import as_dependency_error, client, error_code
from shared.adapters.image_store import S3ImageStore
from shared.models.errors import RequestError

_MISSING = frozenset({"NoSuchKey", "404", "NotFound", "AccessDenied", "403"})


class S3InputImages:
    def __init__(self, bucket: str, *, s3: Any | None = None) -> None:
        self.bucket = bucket
        self._client = s3 or client("s3")

    def read(self, key: str, *, max_bytes: int, field: str) -> bytes:
        """The object's bytes; refuses to download more than `max_bytes`."""
        location = f"s3://{self.bucket}/{key}"
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
            body = response["Body"]
            size = int(response.get("ContentLength", 0))
            if size > max_bytes:
                body.close()
                raise RequestError(
                    "image_too_large",
                    f"{field}: {location} is {size:,} bytes; the limit is {max_bytes:,} bytes",
                    status=413,
                )
            data: bytes = body.read()
        except ClientError as error:
            message = str(error.response.get("Error", {}).get("Message", ""))
            if error_code(error) in _MISSING and "kms" not in message.lower():
                raise RequestError(
                    "input_missing",
                    f"{field}: {location} does not exist; upload the image there first (or fix "
                    "the key: keys are case-sensitive)",
                ) from None
            raise as_dependency_error(
                error, code_prefix="uploads_bucket", what=f"S3 bucket {self.bucket}"
            ) from error
        except BotoCoreError as error:
            raise as_dependency_error(
                error, code_prefix="uploads_bucket", what=f"S3 bucket {self.bucket}"
            ) from error
        return data


class S3OutputImages(S3ImageStore):
    """The results bucket: any image type (generated JPEGs, PNG masks), presigned like images."""

    def put_image(self, key: str, data: bytes, *, content_type: str) -> None:
        try:
            self._client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType=content_type
            )
        except (ClientError, BotoCoreError) as error:
            raise as_dependency_error(
                error, code_prefix="results_bucket", what=f"S3 bucket {self.bucket}"
            ) from error
