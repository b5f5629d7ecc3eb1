"""The manifest `titan.prepare` writes for a valid dataset and its upload: one
`{"image-ref", "caption"}` line per image, the images under `<prefix>images/`, the manifest at
`<prefix>manifest.jsonl`, uploaded last so that it never names an image not yet there.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common import s3_destination, s3_upload
from titan.findings import PrepareError, UploadError

if TYPE_CHECKING:
    from titan.prepare import Report

MANIFEST_NAME = "manifest.jsonl"
IMAGES_FOLDER = "images"


@dataclass(frozen=True)
class S3Location(s3_destination.S3Location):
    @property
    def manifest_key(self) -> str:
        return f"{self.prefix}{MANIFEST_NAME}"

    def image_key(self, name: str) -> str:
        return f"{self.prefix}{IMAGES_FOLDER}/{name}"


DESTINATION = s3_destination.DestinationRules(
    max_prefix_bytes=768, location_type=S3Location, error=PrepareError
)

# What the builder and its callers use: `parse_s3_uri("s3://bucket/prefix/")`.
parse_s3_uri = DESTINATION.parse
check_kms_key_id = DESTINATION.check_kms


@dataclass(frozen=True)
class ManifestEntry:
    image_ref: str
    caption: str
    # The local file to upload to `key`.
    path: Path
    key: str

    def to_json(self) -> str:
        # ensure_ascii=False: captions stay readable UTF-8; the file is written as UTF-8.
        return json.dumps(
            {"image-ref": self.image_ref, "caption": self.caption}, ensure_ascii=False
        )


def manifest_entries(report: Report, destination: S3Location) -> list[ManifestEntry]:
    """One entry per image, in file-name order; refuses a report with failing records."""
    if not report.valid:
        raise PrepareError(
            f"the dataset has {len(report.failing)} failing records or dataset problems: "
            "no manifest for it"
        )
    entries = []
    for result in report.images:
        record = result.record
        # A valid report has a path and a caption on every image record.
        assert record.path is not None
        assert record.caption is not None
        key = destination.image_key(record.name)
        entries.append(
            ManifestEntry(f"s3://{destination.bucket}/{key}", record.caption, record.path, key)
        )
    return entries


def write_manifest(report: Report, destination: S3Location, path: Path) -> list[ManifestEntry]:
    """Write `path` as JSONL, one `{"image-ref", "caption"}` line per image; return the entries."""
    entries = manifest_entries(report, destination)
    Path(path).write_text("".join(entry.to_json() + "\n" for entry in entries), encoding="utf-8")
    return entries


def upload(
    entries: Sequence[ManifestEntry],
    manifest: Path,
    destination: S3Location,
    *,
    kms_key_id: str | None = None,
    client: Any = None,
    progress: Callable[[str], None] | None = None,
) -> s3_upload.UploadResult:
    """Upload the images, then the manifest (last, so it never names an image not yet there).

    An object already at its key with the same size and MD5 is skipped (`s3_upload`). With
    `kms_key_id` every object is written with SSE-KMS and an existing object not encrypted so is
    replaced.
    """
    if kms_key_id is not None:
        check_kms_key_id(kms_key_id)
    files = [(entry.path, entry.key) for entry in entries] + [
        (Path(manifest), destination.manifest_key)
    ]
    try:
        return s3_upload.upload_files(
            files, destination.bucket, kms_key_id=kms_key_id, client=client, progress=progress
        )
    except s3_upload.S3UploadError as error:
        raise UploadError(str(error)) from error
