"""Checks a Titan Image Generator G1 training manifest before a customization job is paid for.

A manifest is JSON Lines in the datasets bucket, one image per line:

    {"image-ref": "s3://<datasets>/titan/dogs/ron_01.jpg", "caption": "Ron the dog on a bed"}

Bedrock's rules for Titan Image Generator G1 fine-tuning: 5 to 10,000 records, captions of
3-1,024 characters, JPEG or PNG images of at most 50 MB. Ours on top: every image lies in the
datasets bucket under the manifest's own folder, because the customization role may read
`titan/*` of that bucket and nothing else. Every problem is reported at once (the first
`MAX_REPORTED_PROBLEMS` in full), so one round of fixes is enough.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Protocol

MIN_RECORDS = 5
MAX_RECORDS = 10_000
MIN_CAPTION_CHARACTERS = 3
MAX_CAPTION_CHARACTERS = 1_024
# "At most 50 MB": read as 50,000,000 bytes, the stricter reading.
MAX_IMAGE_BYTES = 50_000_000
# 10,000 lines of a 1,024-character caption and a long S3 URI fit well within this.
MAX_MANIFEST_BYTES = 32 * 1024 * 1024
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DATASETS_PREFIX = "titan/"
MAX_REPORTED_PROBLEMS = 20
MAX_PROBLEM_CHARACTERS = 300
# HeadObject calls in flight at once: 10,000 images take seconds, and S3 allows thousands/s.
HEAD_CONCURRENCY = 32

# Recommended steps by number of images (batch size 8, learning rate 1e-5; the table in
# docs/image-customization.md, "Recommended steps").
STEPS_BY_IMAGES: tuple[tuple[int, int], ...] = (
    (8, 1_000),
    (32, 4_000),
    (64, 8_000),
    (1_000, 10_000),
    (10_000, 12_000),
)


class DatasetStore(Protocol):
    """The datasets bucket, as the checker needs it."""

    def read(self, key: str, *, max_bytes: int) -> bytes | None:
        """The object's bytes; None if it does not exist. Raises ValueError past max_bytes."""
        ...

    def size(self, key: str) -> int | None:
        """The object's size in bytes; None if it does not exist."""
        ...


@dataclass(frozen=True)
class Record:
    line: int
    key: str
    caption: str


@dataclass
class ManifestReport:
    manifest_uri: str
    records: int = 0
    images: int = 0
    total_bytes: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """The Step Functions task result (camelCase, like the rest of the workflow's data)."""
        shown = [problem[:MAX_PROBLEM_CHARACTERS] for problem in self.problems]
        return {
            "valid": self.valid,
            "manifestUri": self.manifest_uri,
            "records": self.records,
            "images": self.images,
            "totalBytes": self.total_bytes,
            "recommendedStepCount": recommended_step_count(self.records),
            "problemCount": len(self.problems),
            "problems": shown[:MAX_REPORTED_PROBLEMS],
        }


def recommended_step_count(images: int) -> int:
    """The recommended steps, linearly interpolated between its rows and rounded to 100 steps."""
    first_images, first_steps = STEPS_BY_IMAGES[0]
    if images <= first_images:
        return first_steps
    for (low_images, low_steps), (high_images, high_steps) in pairwise(STEPS_BY_IMAGES):
        if images <= high_images:
            share = (images - low_images) / (high_images - low_images)
            return int(round((low_steps + share * (high_steps - low_steps)) / 100) * 100)
    return STEPS_BY_IMAGES[-1][1]


def manifest_folder(key: str) -> str | None:
    """`titan/dogs/manifest.jsonl` → `titan/dogs/`; None for a key outside a `titan/` folder."""
    folder = posixpath.dirname(key)
    if not key.startswith(DATASETS_PREFIX) or not folder or folder + "/" == DATASETS_PREFIX:
        return None
    return folder + "/"


def parse_lines(text: str, *, bucket: str, folder: str) -> tuple[list[Record], list[str]]:
    """Records and the problems of each line (blank lines are skipped, not counted)."""
    records: list[Record] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        record, line_problems = _parse_line(line, number, bucket=bucket, folder=folder)
        problems.extend(line_problems)
        if record is not None:
            records.append(record)
    return records, problems


def _parse_line(
    line: str, number: int, *, bucket: str, folder: str
) -> tuple[Record | None, list[str]]:
    """The line's record (None if it is not a JSON object) and its problems. A record with
    problems still counts: the number of records is what Bedrock would see."""
    where = f"line {number}"
    try:
        document = json.loads(line)
    except json.JSONDecodeError as error:
        return None, [f"{where}: not valid JSON ({error.msg} at column {error.colno})"]
    if not isinstance(document, dict):
        return None, [f'{where}: expected an object with "image-ref" and "caption"']
    problems: list[str] = []
    key = _image_key(document.get("image-ref"), where, bucket=bucket, folder=folder, into=problems)
    caption = document.get("caption")
    if not isinstance(caption, str):
        problems.append(f'{where}: "caption" must be a string')
    elif not MIN_CAPTION_CHARACTERS <= len(caption) <= MAX_CAPTION_CHARACTERS:
        problems.append(
            f"{where}: the caption has {len(caption):,} characters; "
            f"{MIN_CAPTION_CHARACTERS}-{MAX_CAPTION_CHARACTERS:,} allowed"
        )
    text = caption if isinstance(caption, str) else ""
    return Record(line=number, key=key or "", caption=text), problems


def _image_key(
    reference: Any, where: str, *, bucket: str, folder: str, into: list[str]
) -> str | None:
    if not isinstance(reference, str):
        into.append(f'{where}: "image-ref" must be an s3:// URI string')
        return None
    scheme, _, rest = reference.partition("://")
    ref_bucket, _, key = rest.partition("/")
    if scheme != "s3" or not ref_bucket or not key:
        into.append(f"{where}: image-ref {reference!r} is not an s3://bucket/key URI")
        return None
    if ref_bucket != bucket:
        into.append(
            f"{where}: image-ref {reference!r} is outside the datasets bucket {bucket!r}, which "
            "is all the customization role may read"
        )
        return None
    if not key.startswith(folder) or ".." in key.split("/"):
        into.append(f"{where}: image-ref {reference!r} is not under the manifest's folder {folder}")
        return None
    if not key.lower().endswith(IMAGE_SUFFIXES):
        into.append(f"{where}: image-ref {reference!r} is not a .jpg, .jpeg or .png file")
        return None
    return key


def check_sizes(
    records: Sequence[Record], sizes: Callable[[str], int | None], *, bucket: str
) -> tuple[int, int, list[str]]:
    """(distinct images, their total bytes, problems) for the records that name a valid key."""
    keys = sorted({record.key for record in records if record.key})
    with ThreadPoolExecutor(max_workers=max(1, min(HEAD_CONCURRENCY, len(keys)))) as pool:
        found = dict(zip(keys, pool.map(sizes, keys), strict=True))
    problems: list[str] = []
    reported: set[str] = set()
    for record in records:
        size = found.get(record.key) if record.key else None
        if not record.key or record.key in reported:
            continue
        uri = f"s3://{bucket}/{record.key}"
        if size is None:
            problems.append(f"line {record.line}: {uri} does not exist")
        elif size == 0:
            problems.append(f"line {record.line}: {uri} is empty")
        elif size > MAX_IMAGE_BYTES:
            problems.append(
                f"line {record.line}: {uri} is {size:,} bytes; at most {MAX_IMAGE_BYTES:,} allowed"
            )
        else:
            continue
        reported.add(record.key)
    total = sum(size for size in found.values() if size)
    return len(keys), total, problems


class ManifestChecker:
    def __init__(self, *, store: DatasetStore, bucket: str) -> None:
        self.store = store
        self.bucket = bucket

    def check(self, key: str) -> ManifestReport:
        report = ManifestReport(manifest_uri=f"s3://{self.bucket}/{key}")
        folder = manifest_folder(key)
        if folder is None:
            report.problems.append(
                f"the manifest {key!r} must lie in a folder under {DATASETS_PREFIX} of the "
                "datasets bucket, such as titan/dogs/manifest.jsonl"
            )
            return report
        text = self._read(key, report)
        if text is None:
            return report
        records, problems = parse_lines(text, bucket=self.bucket, folder=folder)
        report.records = len(records)
        report.problems.extend(problems)
        if not MIN_RECORDS <= len(records) <= MAX_RECORDS:
            report.problems.insert(
                0,
                f"the manifest has {len(records):,} records; Titan Image Generator takes "
                f"{MIN_RECORDS}-{MAX_RECORDS:,}",
            )
            if len(records) > MAX_RECORDS:
                return report  # not worth 10,000+ HeadObject calls
        report.images, report.total_bytes, missing = check_sizes(
            records, self.store.size, bucket=self.bucket
        )
        report.problems.extend(missing)
        return report

    def _read(self, key: str, report: ManifestReport) -> str | None:
        try:
            data = self.store.read(key, max_bytes=MAX_MANIFEST_BYTES)
        except ValueError:
            report.problems.append(
                f"{report.manifest_uri} is larger than {MAX_MANIFEST_BYTES:,} bytes; no valid "
                "manifest of 10,000 records is that large"
            )
            return None
        if data is None:
            report.problems.append(f"{report.manifest_uri} does not exist")
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as error:
            report.problems.append(
                f"{report.manifest_uri} is not UTF-8 text (byte {error.start:,})"
            )
            return None
