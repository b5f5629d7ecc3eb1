"""The upload of a valid `dreambooth.prepare` dataset to `s3://bucket/dreambooth/<name>/`: images
first and dataset_info.json last (a job started on the prefix never finds prompts without their
images), unchanged objects skipped, then the prefix listed for images training would read that
are not in this dataset (deleted with --prune).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import s3_destination, s3_upload
from dreambooth.findings import PrepareError, UploadError
from dreambooth.layout import CLASS_DATA_DIR, IMAGE_SUFFIXES
from dreambooth.report import Report

# Its prefix ends in "/" (parse_s3_uri requires it).
S3Location = s3_destination.S3Location
DESTINATION = s3_destination.DestinationRules(
    max_prefix_bytes=768,
    location_type=S3Location,
    error=PrepareError,
    folder_example="s3://bucket/dreambooth/<name>/",
)

# What the builder and its callers use: `parse_s3_uri("s3://bucket/prefix/")`.
parse_s3_uri = DESTINATION.parse
check_kms_key_id = DESTINATION.check_kms


@dataclass
class DatasetUpload:
    uploaded: list[str]
    unchanged: list[str]
    # Images under the prefix that are not in this dataset (training would read them).
    stale: list[str]
    # Those of `stale` deleted (with prune).
    deleted: list[str]
    # Why the prefix could not be listed for stale images, when it could not.
    listing_problem: str | None = None


def upload_dataset(
    report: Report,
    destination: S3Location,
    *,
    kms_key_id: str | None = None,
    prune: bool = False,
    client: Any = None,
    progress: Callable[[str], None] | None = None,
) -> DatasetUpload:
    """Upload a valid dataset: images first, dataset_info.json last (so a job started on the
    prefix never finds prompts without their images). Unchanged objects are skipped.

    Then lists the prefix: images training would read that are not in this dataset (left from an
    earlier upload) come back as `stale`, and are deleted with `prune`.
    """
    if kms_key_id is not None:
        check_kms_key_id(kms_key_id)
    files = [(path, destination.prefix + key) for path, key in report.dataset_files()]
    if client is None:
        import boto3  # Only uploads need it: the rest runs without AWS libraries.

        client = boto3.client("s3")
    try:
        result = s3_upload.upload_files(
            files, destination.bucket, kms_key_id=kms_key_id, client=client, progress=progress
        )
    except s3_upload.S3UploadError as error:
        raise UploadError(str(error)) from error
    wanted = {key for _, key in files}
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        stale = [key for key in _training_keys(client, destination) if key not in wanted]
    # A role that may write but not list: the upload itself is done.
    except (BotoCoreError, ClientError) as error:
        return DatasetUpload(result.uploaded, result.unchanged, [], [], str(error))
    deleted: list[str] = []
    if prune and stale:
        deleted = _delete(client, destination.bucket, stale)
        if progress is not None:
            progress(f"deleted {len(deleted)} stale images under {destination.uri}")
    return DatasetUpload(result.uploaded, result.unchanged, stale, deleted)


def _training_keys(client: Any, destination: S3Location) -> list[str]:
    """The keys under the prefix that training reads as images."""
    keys = []
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=destination.bucket, Prefix=destination.prefix
    )
    for page in pages:
        for item in page.get("Contents", []):
            key = item["Key"]
            folder, _, name = key[len(destination.prefix) :].rpartition("/")
            if folder in ("", CLASS_DATA_DIR) and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                keys.append(key)
    return sorted(keys)


def _delete(client: Any, bucket: str, keys: Sequence[str]) -> list[str]:
    from botocore.exceptions import BotoCoreError, ClientError

    deleted: list[str] = []
    try:
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            response = client.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True}
            )
            failed = response.get("Errors", [])
            if failed:
                raise UploadError(f"could not delete stale images in s3://{bucket}: {failed}")
            deleted.extend(batch)
    except (BotoCoreError, ClientError) as error:
        raise UploadError(f"deleting stale images in s3://{bucket} failed: {error}") from error
    return deleted
