"""Upload a dataset builder's files to S3, skipping objects already there with the same bytes
(`titan.prepare`, `dreambooth.prepare`), so that re-running a builder after fixing one image
sends one image.

"The same bytes" is the size and the MD5, kept in the object's metadata because an ETag is not
the MD5 under SSE-KMS; for objects written otherwise a plain ETag is compared instead. With a KMS
key every object is written with SSE-KMS, and an object already there without it is replaced.

boto3 is imported only when no client is given, so that the builders run without AWS libraries
until they upload. Failures are `S3UploadError`, naming the key and the bucket; each builder turns
them into its own error type.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONTENT_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".json": "application/json",
    ".jsonl": "application/x-ndjson",
}


class S3UploadError(Exception):
    """An object could not be checked or written."""


@dataclass
class UploadResult:
    uploaded: list[str] = field(default_factory=list)
    # Already in the bucket with the same bytes (and the requested encryption): not sent again.
    unchanged: list[str] = field(default_factory=list)


def upload_files(
    files: Sequence[tuple[Path, str]],
    bucket: str,
    *,
    kms_key_id: str | None = None,
    client: Any = None,
    progress: Callable[[str], None] | None = None,
) -> UploadResult:
    """Upload each (local file, key) pair in order, skipping those already there unchanged.

    The order is the caller's: a file that names others (a manifest, dataset_info.json) goes
    last, so it never exists in the bucket before what it names. Stops at the first failure.
    """
    if client is None:
        import boto3  # Only uploads need it: the rest runs without AWS libraries.

        client = boto3.client("s3")
    from botocore.exceptions import BotoCoreError, ClientError

    result = UploadResult()
    for path, key in files:
        try:
            digest = file_md5(path)
            if unchanged(client, bucket, key, path.stat().st_size, digest, kms_key_id):
                result.unchanged.append(key)
                continue
            put(client, bucket, key, path, digest, kms_key_id)
        except (BotoCoreError, ClientError, OSError) as error:
            raise S3UploadError(f"upload of {key} to s3://{bucket} failed: {error}") from error
        result.uploaded.append(key)
        if progress is not None:
            progress(f"uploaded s3://{bucket}/{key}")
    return result


def file_md5(path: Path) -> str:
    # Not a security use: S3's Content-MD5 and ETag are MD5.
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def unchanged(
    client: Any, bucket: str, key: str, size: int, md5: str, kms_key_id: str | None
) -> bool:
    """Whether `key` already holds these bytes (size and MD5) with the requested encryption.
    Also used by the `atelier upload` command, so both skip what the other sent."""
    from botocore.exceptions import ClientError

    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        # 404: not there. 403: a write-only role may not read it; the upload decides.
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound", "403"):
            return False
        raise
    if head.get("ContentLength") != size:
        return False
    kms = head.get("ServerSideEncryption") == "aws:kms"
    if kms_key_id is not None and not _same_kms_key(kms, head.get("SSEKMSKeyId"), kms_key_id):
        return False
    if head.get("Metadata", {}).get("md5") == md5:
        return True
    return not kms and head.get("ETag", "").strip('"') == md5


def _same_kms_key(kms: bool, actual: str | None, wanted: str) -> bool:
    if not kms:
        return False
    # An alias cannot be compared with the key ARN S3 reports without asking KMS: any KMS key
    # counts then. A key id or ARN must match.
    if wanted.startswith("alias/") or ":alias/" in wanted:
        return True
    return actual is not None and (actual == wanted or actual.endswith(f"/{wanted}"))


def put(client: Any, bucket: str, key: str, path: Path, md5: str, kms_key_id: str | None) -> None:
    """One PUT with the MD5 in the metadata (what `unchanged` compares), SSE-KMS with a key."""
    extra: dict[str, Any] = {}
    if kms_key_id is not None:
        extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id}
    content_type = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
    with path.open("rb") as body:
        # One PUT (dataset images are at most tens of MB): S3 checks the Content-MD5, and the
        # ETag stays simple.
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentMD5=base64.b64encode(bytes.fromhex(md5)).decode(),
            ContentType=content_type,
            Metadata={"md5": md5},
            **extra,
        )
