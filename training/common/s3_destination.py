"""Where a dataset builder uploads: `s3://bucket/prefix/` and an optional KMS key, checked for
shape before anything is read or written (`vqa.prepare`, `titan.prepare`, `dreambooth.prepare`).

Only the shape: whether the bucket exists and the key may be used is for S3 and KMS to say at
upload time. Errors are `ValueError`s, or the builder's own error type where it passes one.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import Generic, TypeVar

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_KMS_KEY_ID = re.compile(r"^[A-Za-z0-9:/_.-]{1,2048}$")


@dataclass(frozen=True)
class S3Location:
    bucket: str
    # Empty or ending in "/".
    prefix: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def is_named_folder_of(self, folder: str) -> bool:
        """Whether the prefix is a named folder inside `folder` ("titan/dogs/" in "titan/"): the
        only place the Atelier workflows read a dataset from."""
        return self.prefix.startswith(folder) and self.prefix != folder


Location = TypeVar("Location", bound=S3Location)


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


@dataclass(frozen=True)
class DestinationRules(Generic[Location]):
    """One builder's destination: how long its prefix may be (room for the keys it appends), the
    location type it returns, the error type its callers catch and, for a builder whose dataset is
    everything under the prefix, the folder example that says a trailing slash is required."""

    max_prefix_bytes: int
    location_type: type[Location]
    error: type[Exception]
    folder_example: str | None = None

    def parse(self, uri: str) -> Location:
        """`s3://bucket/prefix/` -> a location; the prefix gets a trailing slash if it lacks one
        (unless a folder is required, then a missing slash is an error)."""
        if self.folder_example is not None and not uri.endswith("/"):
            raise self.error(
                f"{uri!r} must end with '/': the dataset prefix is a folder ({self.folder_example})"
            )
        try:
            return self.location_type(*split_s3_uri(uri, max_prefix_bytes=self.max_prefix_bytes))
        except ValueError as problem:
            raise self.error(str(problem)) from None

    def check_kms(self, kms_key_id: str) -> None:
        try:
            check_kms_key_id(kms_key_id)
        except ValueError as problem:
            raise self.error(str(problem)) from None

    def from_options(
        self, parser: argparse.ArgumentParser, uri: str | None, kms_key_id: str | None
    ) -> Location | None:
        """The command line's destination (`--upload`...) and `--kms-key-id`, checked before any
        work: a wrong shape is a usage error (exit status 2), like any other wrong option."""
        try:
            destination = self.parse(uri) if uri else None
            if kms_key_id:
                self.check_kms(kms_key_id)
        except self.error as problem:
            parser.error(str(problem))
        return destination
