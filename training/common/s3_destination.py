"""Where a dataset builder uploads: `s3://bucket/prefix/` and an optional KMS key, checked for
shape before anything is read or written (`vqa.prepare`, `titan.prepare`).

Only the shape: whether the bucket exists and the key may be used is for S3 and KMS to say at
upload time. Errors are `ValueError`s; each builder turns them into its own error type.
"""

from __future__ import annotations

import re

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_KMS_KEY_ID = re.compile(r"^[A-Za-z0-9:/_.-]{1,2048}$")


def split_s3_uri(uri: str, *, max_prefix_bytes: int) -> tuple[str, str]:
    """`s3://bucket/prefix/` -> (bucket, prefix); the prefix gets a trailing slash if it lacks
    one. `max_prefix_bytes` leaves room in S3's 1,024-byte keys for what the builder appends."""
    if not uri.startswith("s3://"):
        raise ValueError(f"{uri!r} is not an S3 URI: expected s3://bucket/prefix/")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not _BUCKET_NAME.fullmatch(bucket) or ".." in bucket:
        raise ValueError(f"{uri!r}: {bucket!r} is not a valid S3 bucket name")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if prefix.startswith("/") or "//" in prefix or any(ord(c) < 32 for c in prefix):
        raise ValueError(f"{uri!r}: the key prefix has an empty path segment or control chars")
    if len(prefix.encode()) > max_prefix_bytes:
        raise ValueError(f"{uri!r}: the key prefix leaves too little of S3's 1,024-byte keys")
    return bucket, prefix


def check_kms_key_id(kms_key_id: str) -> None:
    if not _KMS_KEY_ID.fullmatch(kms_key_id):
        raise ValueError(f"{kms_key_id!r} is not a KMS key id, key ARN, alias or alias ARN")
