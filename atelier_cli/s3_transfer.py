"""Uploading files to the stage's buckets: unchanged files are skipped, large ones go in parts
and an interrupted upload resumes where it stopped.

"Unchanged" is decided exactly as the dataset builders decide it (common/s3_upload.py: size and
the MD5 kept in the object's metadata), so files sent by either are not sent again by the other.
Files of `multipart_threshold` bytes or more are multipart uploads with a SHA-256 checksum per
part. If one is interrupted, S3 keeps its parts; the next run finds the open upload for that key,
checks that every part in it holds the file's bytes at its position (its SHA-256 checksum, or
where S3 reports none its MD5 ETag), sends the rest and completes it. An open upload with a part
that does not match (the file changed, or the part size did) is aborted and the file sent anew,
and one that turns out to have been started for another version of the file is sent again whole
(see `_multipart`). Older open uploads of the same key, and any not started with SHA-256
checksums, are aborted, so their parts stop costing storage.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atelier_cli.aws import translated_errors
from atelier_cli.checkout import use_training_code
from atelier_cli.errors import UsageError

MIB = 1024 * 1024
PART_SIZE = 16 * MIB
MULTIPART_THRESHOLD = 64 * MIB
# S3's own limits: parts of at least 5 MiB (but the last), at most 10,000 parts.
MIN_PART_SIZE = 5 * MIB
MAX_PARTS = 10_000

Progress = Callable[[int], None]


@dataclass
class TransferResult:
    uploaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    bytes_sent: int = 0
    bytes_skipped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "uploaded": self.uploaded,
            "unchanged": self.unchanged,
            "resumed": self.resumed,
            "bytesSent": self.bytes_sent,
            "bytesSkipped": self.bytes_skipped,
        }


@dataclass(frozen=True)
class Settings:
    kms_key_id: str | None = None
    part_size: int = PART_SIZE
    multipart_threshold: int = MULTIPART_THRESHOLD


def upload_files(
    client: Any,
    bucket: str,
    files: Sequence[tuple[Path, str]],
    *,
    settings: Settings = Settings(),
    progress: Progress | None = None,
) -> TransferResult:
    """Upload (local path, key) pairs in order; `progress` gets the bytes done as they go."""
    use_training_code()
    from common import s3_upload

    report = progress or (lambda done: None)
    result = TransferResult()
    for path, key in files:
        try:
            size = path.stat().st_size
            md5 = s3_upload.file_md5(path)
        except OSError as error:
            raise UsageError(f"cannot read {path}: {error}", code="file_unreadable") from error
        with translated_errors(f"check s3://{bucket}/{key}"):
            same = s3_upload.unchanged(client, bucket, key, size, md5, settings.kms_key_id)
        if same:
            result.unchanged.append(key)
            result.bytes_skipped += size
            report(size)
            continue
        with translated_errors(f"upload {path} to s3://{bucket}/{key}"):
            if size >= settings.multipart_threshold:
                resumed = _multipart(client, bucket, key, path, md5, settings, report)
                if resumed:
                    result.resumed.append(key)
            else:
                s3_upload.put(client, bucket, key, path, md5, settings.kms_key_id)
                report(size)
        result.uploaded.append(key)
        result.bytes_sent += size
    return result


def _extra(path: Path, md5: str, settings: Settings) -> dict[str, Any]:
    from common import s3_upload

    extra: dict[str, Any] = {
        "ContentType": s3_upload.CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream"),
        "Metadata": {"md5": md5},
    }
    if settings.kms_key_id is not None:
        extra |= {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": settings.kms_key_id}
    return extra


def part_size_for(size: int, wanted: int) -> int:
    """`wanted`, grown where the file would need more than S3's 10,000 parts."""
    minimum = -(-size // MAX_PARTS)
    return max(wanted, minimum, MIN_PART_SIZE)


def _part_count(size: int, part_size: int) -> int:
    return -(-size // part_size)


def _part_length(number: int, size: int, part_size: int) -> int:
    return min(part_size, size - (number - 1) * part_size)


def _checksum(chunk: bytes) -> str:
    return base64.b64encode(hashlib.sha256(chunk).digest()).decode()


def _multipart(
    client: Any,
    bucket: str,
    key: str,
    path: Path,
    md5: str,
    settings: Settings,
    report: Progress,
) -> bool:
    """Send `path` in parts, resuming an open upload of `key`; True if one was resumed."""
    part_size = part_size_for(path.stat().st_size, settings.part_size)
    parts = _Parts(client, bucket, key, path, md5, settings, part_size, report)
    upload_id, existing = _open_upload(client, bucket, key)
    kept = _matching_parts(path, part_size, existing) if upload_id is not None else None
    if upload_id is not None and kept is None:
        # A part it holds differs from the file: it was started for another version.
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    if upload_id is None or kept is None:
        _send_parts(parts, None, {})
        return False
    _send_parts(parts, upload_id, kept)
    # The open upload carries the metadata it was created with, which S3 shows only once it is
    # complete. If the file changed only where no part had been sent yet, that is the old
    # version's MD5, which `unchanged` would later trust: then the object is sent again, whole,
    # under this file's MD5 (rare, and the only way to set it without a copy).
    if client.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get("md5") != md5:
        _send_parts(parts, None, {})
        return False
    return True


def _matching_parts(
    path: Path, part_size: int, existing: dict[int, dict[str, Any]]
) -> dict[int, dict[str, Any]] | None:
    """The uploaded parts as the completion lists them, if every one holds the file's bytes at
    its position; None if one does not (the upload was started for another version). Only the
    uploaded parts are read."""
    size = path.stat().st_size
    if max(existing, default=0) > _part_count(size, part_size):
        return None
    kept: dict[int, dict[str, Any]] = {}
    with path.open("rb") as handle:
        for number, old in sorted(existing.items()):
            handle.seek((number - 1) * part_size)
            chunk = handle.read(part_size)
            checksum = _checksum(chunk)
            if not _same_part(old, chunk, checksum):
                return None
            kept[number] = {"PartNumber": number, "ETag": old["ETag"], "ChecksumSHA256": checksum}
    return kept


@dataclass(frozen=True)
class _Parts:
    """One file's multipart upload: where it goes, the file and its MD5, how it is cut."""

    client: Any
    bucket: str
    key: str
    path: Path
    md5: str
    settings: Settings
    part_size: int
    report: Progress


def _send_parts(parts: _Parts, upload_id: str | None, kept: dict[int, dict[str, Any]]) -> None:
    """Send every part of the file but those `kept` (already uploaded and checked), and complete
    the upload (a new one when `upload_id` is None)."""
    client, bucket, key, path = parts.client, parts.bucket, parts.key, parts.path
    part_size, report = parts.part_size, parts.report
    if upload_id is None:
        upload_id = client.create_multipart_upload(
            Bucket=bucket,
            Key=key,
            ChecksumAlgorithm="SHA256",
            **_extra(path, parts.md5, parts.settings),
        )["UploadId"]
    size = path.stat().st_size
    completed = []
    with path.open("rb") as handle:
        for number in range(1, _part_count(size, part_size) + 1):
            if number in kept:
                completed.append(kept[number])
                report(_part_length(number, size, part_size))
                continue
            handle.seek((number - 1) * part_size)
            chunk = handle.read(part_size)
            checksum = _checksum(chunk)
            etag = client.upload_part(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=chunk,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=checksum,
            )["ETag"]
            completed.append({"PartNumber": number, "ETag": etag, "ChecksumSHA256": checksum})
            report(len(chunk))
    client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": completed}
    )


def _same_part(old: dict[str, Any], chunk: bytes, checksum: str) -> bool:
    if old.get("Size") != len(chunk):
        return False
    if old.get("ChecksumSHA256"):
        return bool(old["ChecksumSHA256"] == checksum)
    # S3 reported no checksum: an ETag is the part's MD5 unless the bucket encrypts with KMS.
    md5 = hashlib.md5(chunk, usedforsecurity=False).hexdigest()
    return bool(old.get("ETag", "").strip('"') == md5)


def _open_upload(
    client: Any, bucket: str, key: str
) -> tuple[str | None, dict[int, dict[str, Any]]]:
    """The newest open multipart upload of exactly `key` and its parts; older ones are
    aborted (only the newest can be resumed, the rest would bill for their parts forever)."""
    uploads = [
        upload
        for upload in client.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", [])
        if upload["Key"] == key
    ]
    if not uploads:
        return None, {}
    uploads.sort(key=lambda upload: upload["Initiated"], reverse=True)
    newest, stale = uploads[0], uploads[1:]
    if newest.get("ChecksumAlgorithm") != "SHA256":
        # Not started by us (we always ask for SHA-256 part checksums): its parts cannot be
        # completed with checksums, so it cannot be resumed.
        stale = uploads
    for upload in stale:
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"])
    if stale is uploads:
        return None, {}
    upload_id = newest["UploadId"]
    parts: dict[int, dict[str, Any]] = {}
    marker = 0
    while True:
        page = client.list_parts(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker
        )
        for part in page.get("Parts", []):
            parts[part["PartNumber"]] = part
        if not page.get("IsTruncated"):
            break
        marker = page["NextPartNumberMarker"]
    return upload_id, parts
