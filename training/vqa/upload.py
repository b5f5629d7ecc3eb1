"""Where `vqa.prepare` writes and uploads: the entries a run owns in its output folder (nothing
else there is touched or sent) and the upload of those files under `s3://bucket/prefix/`, keys
keeping the local layout, optionally encrypted with a KMS key.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

from common import s3_destination
from vqa.outcomes import PrepareError, UploadError

SPLITS: tuple[str, ...] = ("train", "validation")
# Everything a run writes into the output folder: --overwrite removes these and nothing else,
# and upload() sends these and nothing else.
OUTPUT_ENTRIES: tuple[str, ...] = ("train", "validation", "questions.json", "report.json")
S3Location = s3_destination.S3Location
DESTINATION = s3_destination.DestinationRules(
    max_prefix_bytes=900, location_type=S3Location, error=PrepareError
)

# What the builder and its callers use: `parse_s3_uri("s3://bucket/prefix/")`.
parse_s3_uri = DESTINATION.parse
check_kms_key_id = DESTINATION.check_kms


def dataset_files(out_dir: Path) -> list[Path]:
    """The files a run wrote, sorted; other files in the folder are not part of the dataset."""
    files: list[Path] = []
    for name in OUTPUT_ENTRIES:
        path = out_dir / name
        if path.is_dir():
            files.extend(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            files.append(path)
    return sorted(files)


def upload(
    out_dir: Path, s3_uri: str, *, kms_key_id: str | None = None, client: Any = None
) -> list[str]:
    """Upload the dataset in `out_dir` under `s3_uri`; returns the keys written.

    Keys keep the local layout: `<prefix>train/rows.jsonl`, `<prefix>report.json`... With
    `kms_key_id` every object is encrypted with that key (SSE-KMS); without it the bucket's
    default encryption applies.
    """
    location = parse_s3_uri(s3_uri)
    if kms_key_id is not None:
        check_kms_key_id(kms_key_id)
    out_dir = Path(out_dir)
    if not all((out_dir / split / "rows.jsonl").is_file() for split in SPLITS):
        raise PrepareError(f"{out_dir} does not hold a dataset (no train/ and validation/ rows)")
    if client is None:
        import boto3  # Only uploads need it: the rest runs without AWS libraries.

        client = boto3.client("s3")
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    keys: list[str] = []
    for path in dataset_files(out_dir):
        key = location.prefix + path.relative_to(out_dir).as_posix()
        try:
            client.upload_file(
                str(path), location.bucket, key, ExtraArgs=_extra_args(path, kms_key_id)
            )
        # upload_file wraps client errors in S3UploadFailedError (a Boto3Error).
        except (Boto3Error, BotoCoreError, ClientError, OSError) as error:
            raise UploadError(
                f"upload of {key} to s3://{location.bucket} failed: {error}"
            ) from error
        keys.append(key)
    return keys


def _extra_args(path: Path, kms_key_id: str | None) -> dict[str, str]:
    extra: dict[str, str] = {}
    content_type = "application/x-ndjson" if path.suffix == ".jsonl" else None
    content_type = content_type or mimetypes.guess_type(path.name)[0]
    if content_type:
        extra["ContentType"] = content_type
    if kms_key_id:
        extra["ServerSideEncryption"] = "aws:kms"
        extra["SSEKMSKeyId"] = kms_key_id
    return extra
