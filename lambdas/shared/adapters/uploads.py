"""Reading uploaded photos, and parking uploads that can never be described."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters.aws import as_dependency_error, client, error_code
from shared.models.errors import RequestError


@dataclass(frozen=True)
class UploadedObject:
    data: bytes
    metadata: Mapping[str, str]


class S3Uploads:
    def __init__(self, *, s3: Any | None = None) -> None:
        self._client = s3 or client("s3")

    def read(
        self, *, bucket: str, key: str, version_id: str | None, max_bytes: int
    ) -> UploadedObject:
        """The object's bytes and user metadata; refuses to download more than `max_bytes`."""
        arguments = {"Bucket": bucket, "Key": key}
        if version_id:
            arguments["VersionId"] = version_id
        try:
            response = self._client.get_object(**arguments)
            body = response["Body"]
            if int(response.get("ContentLength", 0)) > max_bytes:
                body.close()
                raise RequestError(
                    "image_too_large",
                    f"the upload is {int(response['ContentLength']):,} bytes; the limit is "
                    f"{max_bytes:,} bytes",
                    status=413,
                )
            data = body.read()
        except ClientError as error:
            if error_code(error) in ("NoSuchKey", "NoSuchVersion", "404"):
                raise RequestError(
                    "upload_missing", f"s3://{bucket}/{key} (version {version_id}) is gone"
                ) from None
            raise as_dependency_error(
                error, code_prefix="uploads_bucket", what=f"S3 bucket {bucket}"
            ) from error
        except BotoCoreError as error:
            raise as_dependency_error(
                error, code_prefix="uploads_bucket", what=f"S3 bucket {bucket}"
            ) from error
        return UploadedObject(data=data, metadata=dict(response.get("Metadata", {})))


class DeadLetters:
    """Sends an upload that can never succeed straight to the dead-letter queue, with why.

    The body stays the original event and the reason travels in message attributes, so once
    the cause is fixed an SQS redrive from the dead-letter queue retries it unchanged.
    """

    def __init__(self, queue_url: str, *, sqs: Any | None = None) -> None:
        self.queue_url = queue_url
        self._client = sqs or client("sqs")

    def park(self, *, original_body: str, code: str, message: str) -> None:
        try:
            self._client.send_message(
                QueueUrl=self.queue_url,
                MessageBody=original_body,
                MessageAttributes={
                    "errorCode": {"DataType": "String", "StringValue": code},
                    "errorMessage": {"DataType": "String", "StringValue": message[:1000]},
                },
            )
        except (ClientError, BotoCoreError) as error:
            raise as_dependency_error(
                error, code_prefix="dead_letter_queue", what="the dead-letter queue"
            ) from error
