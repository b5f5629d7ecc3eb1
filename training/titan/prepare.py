"""Check, fix and upload the training data of a Titan Image Generator G1 fine-tuning (Bedrock).

Input: a folder of images (only its top level is read) and their captions, given as one of::

    --captions captions.csv     header `filename,caption` (other columns ignored), one row per image
    --captions captions.json    {"ron_01.jpg": "Ron the dog laying on a white dog bed", ...}
    (no --captions)             a sidecar text file per image: ron_01.jpg + ron_01.txt

Output, in `--out` (a run replaces these and nothing else)::

    report.json           every record, each rule it breaks, the fixes applied, warnings, limits
    hyperparameters.json  {"stepCount", "batchSize", "learningRate"}, strings: the hyperParameters
                          map of CreateModelCustomizationJob (only when the dataset is valid)
    manifest.jsonl        {"image-ref": "s3://bucket/prefix/images/<file>", "caption": "..."} per
                          image (only when the dataset is valid and --upload or --s3-prefix is set)
    images/               with --fix: the fixed copies; the originals are never modified

With `--upload s3://bucket/prefix/` the images go to `<prefix>images/<file>` and then the manifest
to `<prefix>manifest.jsonl` (last, so it never names a missing image); objects already there with
the same bytes are skipped, so re-runs are cheap.

Limits checked (Bedrock's documented limits for Titan Image Generator G1 fine-tuning): JPEG/PNG by
content, at most 50 MB a file, sides 512-4,096 px, at most 12,582,912 pixels, aspect ratio between
1:4 and 4:1, captions of 3-1,024 characters, 5-10,000 records. Also: images without a caption,
captions without an image, file names that collide ignoring case, unreadable or truncated files,
and colour modes other than 8-bit RGB.

Run from `training/` as `python -m titan.prepare --images DIR --out DIR`, or as a plain script.
Exit status: 0 valid, 2 failing records or wrong layout/options, 1 upload failed. Only the standard
library, Pillow and (for --upload, imported lazily) boto3.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from itertools import pairwise
from math import sqrt
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

if __package__ in (None, ""):
    # Run as a plain script: put the training/ import root on the path for the shared `common`.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import image_checks, image_fixes, prepare_outputs, s3_destination, s3_upload
from common.image_checks import ACCEPTED_FORMATS, SWAPPING_ORIENTATIONS, ImageInfo
from common.prepare_outputs import EXIT_INVALID, EXIT_OK, EXIT_UPLOAD_FAILED, write_json

BASE_MODEL_ID = "amazon.titan-image-generator-v1:0"

# Bedrock's documented limits for Titan Image Generator G1 fine-tuning data.
MIN_SIDE = 512
MAX_SIDE = 4096
MAX_PIXELS = 12_582_912
# Long side over short side: 4:1 and 1:4 are both allowed.
MAX_ASPECT_RATIO = 4
# "50 MB" read as decimal megabytes, the stricter of the two readings: a file the service might
# refuse fails here instead of an hour into a job.
MAX_IMAGE_BYTES = 50_000_000
MIN_CAPTION_CHARS = 3
MAX_CAPTION_CHARS = 1024
MIN_RECORDS = 5
MAX_RECORDS = 10_000

# The documentation names formats only. The model trains on 8-bit RGB; a CMYK JPEG, a 16-bit or
# palette PNG or one with transparency may be refused or decoded unlike what the user sees (the
# colours hidden under transparent pixels), so only RGB passes and --fix converts the rest.
ACCEPTED_MODE = "RGB"
# Files with these extensions are taken as images (their content decides the format); HEIC and
# AVIF are listed so that they fail loudly as unreadable instead of being ignored.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"}
    | {".heic", ".heif", ".avif"}
)
CAPTION_SUFFIX = ".txt"
CAPTION_FILE_SUFFIXES = (".csv", ".json")
# Everything a run writes into --out: a run removes these first (and nothing else), so a failed
# run never leaves a stale manifest behind to be uploaded by mistake.
OUTPUT_ENTRIES: tuple[str, ...] = (
    "manifest.jsonl",
    "report.json",
    "hyperparameters.json",
    "images",
)
MANIFEST_NAME = "manifest.jsonl"
IMAGES_FOLDER = "images"
# High enough that a re-encoded photo shows no visible loss; fixed PNGs stay lossless.
JPEG_QUALITY = 95
# The Atelier customization workflow reads manifests only in a folder under this prefix of the
# datasets bucket (titan/<name>/manifest.jsonl): its role may read nothing else.
WORKFLOW_PREFIX = "titan/"
# The name in error messages and usage (`python -m titan.prepare`).
PROGRAM = "titan.prepare"
# Fewer words than this is likely a bare name ("Ron"): the reference advises "Ron the dog".
MIN_CAPTION_WORDS = 3
SUMMARY_LIMIT = 50

# Recommended stepCount by number of images for batch size 8 and learning rate 1e-5 (the table
# in docs/image-customization.md, "Recommended steps").
STEP_TABLE: tuple[tuple[int, int], ...] = (
    (8, 1_000),
    (32, 4_000),
    (64, 8_000),
    (1_000, 10_000),
    (10_000, 12_000),
)
# Recommendations are rounded to this many steps: finer precision means nothing for training.
STEP_ROUNDING = 100
STEP_COUNT_BOUNDS = (10, 40_000)
BATCH_SIZE_BOUNDS = (8, 192)
LEARNING_RATE_BOUNDS = (1e-7, 1.0)
DEFAULT_BATCH_SIZE = 8
DEFAULT_LEARNING_RATE = 1e-5


class Rule(StrEnum):
    """A rule a record (or the whole dataset) can break; the value is what report.json says."""

    UNREADABLE_IMAGE = "unreadable_image"
    UNSUPPORTED_FORMAT = "unsupported_format"
    EXTENSION_MISMATCH = "extension_mismatch"
    FILE_TOO_LARGE = "file_too_large"
    TOO_SMALL = "too_small"
    TOO_LARGE = "too_large"
    TOO_MANY_PIXELS = "too_many_pixels"
    ASPECT_RATIO = "aspect_ratio"
    COLOR_MODE = "color_mode"
    MISSING_CAPTION = "missing_caption"
    MISSING_IMAGE = "missing_image"
    CAPTION_TOO_SHORT = "caption_too_short"
    CAPTION_TOO_LONG = "caption_too_long"
    DUPLICATE_FILENAME = "duplicate_filename"
    TOO_FEW_RECORDS = "too_few_records"
    TOO_MANY_RECORDS = "too_many_records"


# What --fix repairs. Too small (upscaling blurs the subject), extreme aspect ratios (cropping
# could cut it out) and caption problems need a person.
FIXABLE_RULES = frozenset(
    {
        Rule.UNSUPPORTED_FORMAT,
        Rule.EXTENSION_MISMATCH,
        Rule.FILE_TOO_LARGE,
        Rule.TOO_LARGE,
        Rule.TOO_MANY_PIXELS,
        Rule.COLOR_MODE,
    }
)


_RULE_ORDER = {rule: index for index, rule in enumerate(Rule)}


class PrepareError(Exception):
    """Wrong layout or options, or a dataset that cannot be written: the CLI exits 2."""


class UploadError(Exception):
    """The dataset was written locally but could not be uploaded: the CLI exits 1."""


@dataclass(frozen=True)
class Finding:
    rule: Rule
    message: str

    @property
    def fixable(self) -> bool:
        return self.rule in FIXABLE_RULES

    def to_dict(self) -> dict[str, Any]:
        return {"rule": str(self.rule), "message": self.message, "fixable": self.fixable}


@dataclass(frozen=True)
class Record:
    """One image and its caption, or a caption whose image is missing (path None)."""

    # The file name the manifest uses (`<prefix>images/<name>`); a fixed copy may be renamed.
    name: str
    path: Path | None
    caption: str | None
    # Where the caption came from ("captions.csv line 4", "ron_01.txt"), for the report.
    caption_source: str | None = None
    # The user's file when `path` is a fixed copy; otherwise the same as `path`.
    original: Path | None = None
    fixes: tuple[str, ...] = ()
    # Problems found while pairing images with captions (duplicates, missing caption).
    issues: tuple[Finding, ...] = ()

    def __post_init__(self) -> None:
        if self.original is None and self.path is not None:
            object.__setattr__(self, "original", self.path)


@dataclass(frozen=True)
class Scan:
    images_dir: Path
    captions: Path | None
    records: list[Record]
    # Files and folders in images_dir that are neither images nor captions, reported as warnings.
    ignored: list[str] = field(default_factory=list)

    @property
    def caption_source(self) -> str:
        return str(self.captions) if self.captions else f"sidecar {CAPTION_SUFFIX} files"


# --------------------------------------------------------------------------- captions


@dataclass(frozen=True)
class _CaptionEntry:
    # The image file the entry names; "" for a CSV row without a file name.
    name: str
    caption: str | None
    where: str
    # Why the caption could not be read; caption is None then.
    problem: str | None = None


def normalize_caption(text: str) -> str:
    """Whitespace runs (newlines in a sidecar file, doubled spaces) become one space."""
    return " ".join(text.split())


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except OSError as error:
        raise PrepareError(f"cannot read the {what} {path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise PrepareError(f"the {what} {path} is not UTF-8 text: {error}") from None


def read_captions_csv(path: Path) -> list[_CaptionEntry]:
    """Rows of a `filename,caption` CSV (header required; other columns are ignored).

    When caption is the last column, surplus fields on a row are a caption with unquoted commas
    and are joined back instead of failing the row.
    """
    reader = csv.reader(io.StringIO(_read_text(path, "captions file"), newline=""), strict=True)
    try:
        header = next((row for row in reader if any(cell.strip() for cell in row)), None)
        if header is None:
            raise PrepareError(
                f"the captions file {path} is empty: expected a filename,caption header"
            )
        names = [cell.strip().casefold() for cell in header]
        if "filename" not in names or "caption" not in names:
            raise PrepareError(
                f"the captions file {path} needs a header naming the columns filename and caption "
                f"(found {header})"
            )
        name_index, caption_index = names.index("filename"), names.index("caption")
        caption_is_last = caption_index == len(names) - 1
        entries = []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            where = f"{path.name} line {reader.line_num}"
            name = row[name_index].strip() if name_index < len(row) else ""
            if caption_index >= len(row):
                entries.append(_CaptionEntry(name, None, where, f"{where} has no caption column"))
                continue
            cells = row[caption_index:] if caption_is_last else [row[caption_index]]
            entries.append(_CaptionEntry(name, normalize_caption(",".join(cells)), where))
    except csv.Error as error:
        raise PrepareError(f"the captions file {path} is not valid CSV: {error}") from None
    return entries


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its list of pairs, so that repeated keys stay visible."""


def read_captions_json(path: Path) -> list[_CaptionEntry]:
    """Entries of a `{filename: caption}` JSON object, repeated keys included."""
    try:
        document = json.loads(_read_text(path, "captions file"), object_pairs_hook=_Pairs)
    except json.JSONDecodeError as error:
        raise PrepareError(f"the captions file {path} is not valid JSON: {error}") from None
    if not isinstance(document, _Pairs):
        raise PrepareError(
            f"the captions file {path} must hold one JSON object {{filename: caption}}"
        )
    entries = []
    for name, value in document:
        where = f"{path.name} key {name!r}"
        if isinstance(value, str):
            entries.append(_CaptionEntry(name.strip(), normalize_caption(value), where))
        else:
            kind = "an object" if isinstance(value, _Pairs) else type(value).__name__
            problem = f"{where}: the caption is {kind}, not text"
            entries.append(_CaptionEntry(name.strip(), None, where, problem))
    return entries


def _read_sidecar(path: Path, image_stem: str) -> _CaptionEntry:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as error:
        return _CaptionEntry(image_stem, None, path.name, f"cannot read {path.name}: {error}")
    except UnicodeDecodeError:
        return _CaptionEntry(image_stem, None, path.name, f"{path.name} is not UTF-8 text")
    return _CaptionEntry(image_stem, normalize_caption(text), path.name)


# --------------------------------------------------------------------------- scan


def scan(images_dir: Path, captions: Path | None = None) -> Scan:
    """Pair every image in `images_dir` with its caption; raises PrepareError for a wrong layout.

    Images are files with an image extension, plus any file the captions file names. Captions come
    from `captions` (.csv or .json) or, without it, from a sidecar .txt per image. Names match
    ignoring case. Nothing is dropped: an image without caption, a caption without image and every
    other file appear in the result.
    """
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise PrepareError(f"image folder {images_dir} does not exist or is not a folder")
    entries = _caption_entries(Path(captions)) if captions is not None else None
    named = {entry.name.casefold() for entry in entries or ()}
    captions_file = Path(captions).resolve() if captions is not None else None
    images: list[Path] = []
    sidecars: list[Path] = []
    ignored: list[str] = []
    for path in sorted(images_dir.iterdir(), key=lambda p: (p.name.casefold(), p.name)):
        if captions_file is not None and path.resolve() == captions_file:
            continue
        if path.is_dir():
            ignored.append(f"{path.name}/ (sub-folders are not read)")
        elif not path.is_file():
            ignored.append(f"{path.name} (not a regular file)")
        elif path.suffix.lower() in IMAGE_SUFFIXES or path.name.casefold() in named:
            images.append(path)
        elif entries is None and path.suffix.lower() == CAPTION_SUFFIX:
            sidecars.append(path)
        else:
            ignored.append(path.name)
    if entries is None:
        records = _pair_sidecars(images, sidecars)
    else:
        records = _pair_caption_file(images, entries, Path(captions or ""), images_dir)
    return Scan(images_dir, None if captions is None else Path(captions), records, ignored)


def _caption_entries(captions: Path) -> list[_CaptionEntry]:
    suffix = captions.suffix.lower()
    if suffix not in CAPTION_FILE_SUFFIXES:
        raise PrepareError(
            f"captions file {captions} must be .csv (filename,caption) or .json "
            "({filename: caption}); leave --captions out to read sidecar .txt files"
        )
    if not captions.is_file():
        raise PrepareError(f"captions file {captions} does not exist")
    return read_captions_csv(captions) if suffix == ".csv" else read_captions_json(captions)


def _pair_caption_file(
    images: Sequence[Path], entries: Sequence[_CaptionEntry], captions: Path, images_dir: Path
) -> list[Record]:
    by_key: dict[str, list[_CaptionEntry]] = defaultdict(list)
    for entry in entries:
        by_key[entry.name.casefold()].append(entry)
    records: list[Record] = []
    for image in images:
        found = by_key.get(image.name.casefold(), [])
        # An exact-case entry wins over one that matches only ignoring case.
        found = sorted(found, key=lambda entry: entry.name != image.name)
        issues: list[Finding] = []
        if len(found) > 1:
            wheres = ", ".join(entry.where for entry in found)
            issues.append(
                Finding(
                    Rule.DUPLICATE_FILENAME,
                    f"{image.name} is captioned {len(found)} times ({wheres}); keep one",
                )
            )
        if not found:
            message = f"no caption: {captions.name} has no entry for {image.name}"
            issues.append(Finding(Rule.MISSING_CAPTION, message))
        records.append(_record(image, found[0] if found else None, issues))
    matched = {image.name.casefold() for image in images}
    for entry in entries:
        if entry.name.casefold() not in matched:
            message = (
                f"{entry.where} names no file"
                if not entry.name
                else f"{entry.where} names {entry.name}, which is not in {images_dir}"
            )
            records.append(_orphan_caption(entry.name or entry.where, entry, message))
    return sorted(records, key=_record_order)


def _pair_sidecars(images: Sequence[Path], sidecars: Sequence[Path]) -> list[Record]:
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for image in images:
        by_stem[image.stem.casefold()].append(image)
    texts: dict[str, list[Path]] = defaultdict(list)
    for sidecar in sidecars:
        texts[sidecar.stem.casefold()].append(sidecar)
    records: list[Record] = []
    for stem, group in by_stem.items():
        found = texts.get(stem, [])
        issues: list[Finding] = []
        if len(group) > 1:
            names = ", ".join(image.name for image in group)
            issues.append(
                Finding(
                    Rule.DUPLICATE_FILENAME,
                    f"{names} have the same name apart from the extension: one caption file "
                    f"{group[0].stem}{CAPTION_SUFFIX} cannot tell them apart; rename or remove one",
                )
            )
        if len(found) > 1:
            names = ", ".join(text.name for text in found)
            issues.append(
                Finding(Rule.DUPLICATE_FILENAME, f"several caption files for one image: {names}")
            )
        for image in group:
            if not found:
                message = f"no caption: no {image.stem}{CAPTION_SUFFIX} next to {image.name}"
                records.append(
                    _record(image, None, [*issues, Finding(Rule.MISSING_CAPTION, message)])
                )
            else:
                records.append(_record(image, _read_sidecar(found[0], image.stem), issues))
    for stem, found in texts.items():
        if stem not in by_stem:
            for text in found:
                message = f"{text.name} has no image next to it (no {text.stem}.jpg, .png...)"
                entry = _read_sidecar(text, text.stem)
                records.append(_orphan_caption(text.name, entry, message))
    return sorted(records, key=_record_order)


def _record(image: Path, entry: _CaptionEntry | None, issues: list[Finding]) -> Record:
    if entry is not None and entry.problem is not None:
        issues = [*issues, Finding(Rule.MISSING_CAPTION, entry.problem)]
    return Record(
        name=image.name,
        path=image,
        caption=entry.caption if entry is not None else None,
        caption_source=entry.where if entry is not None else None,
        issues=tuple(issues),
    )


def _orphan_caption(name: str, entry: _CaptionEntry, message: str) -> Record:
    return Record(
        name=name,
        path=None,
        caption=entry.caption,
        caption_source=entry.where,
        issues=(Finding(Rule.MISSING_IMAGE, message),),
    )


def _record_order(record: Record) -> tuple[str, str]:
    return record.name.casefold(), record.name


# --------------------------------------------------------------------------- images


def inspect_image(path: Path) -> ImageInfo | str:
    """What the image is, or why it cannot be read (not an image, truncated, corrupt)."""
    try:
        return image_checks.inspect_image(path, draft_side=MIN_SIDE)
    except image_checks.UnreadableImageError as error:
        return f"{path.name} is not a readable image: {error}"


def image_findings(name: str, info: ImageInfo) -> list[Finding]:
    """Every documented limit the image breaks (a file can break several)."""
    findings = [*_format_findings(name, info)]
    width, height = info.width, info.height
    size = f"{name} is {width}x{height} px"
    if info.file_size > MAX_IMAGE_BYTES:
        findings.append(
            Finding(
                Rule.FILE_TOO_LARGE,
                f"{name} has {info.file_size:,} bytes; at most {MAX_IMAGE_BYTES:,}",
            )
        )
    if min(width, height) < MIN_SIDE:
        findings.append(
            Finding(
                Rule.TOO_SMALL,
                f"{size}: each side must be at least {MIN_SIDE} px (upscaling would blur the "
                "subject, so --fix leaves it: use a larger original)",
            )
        )
    if max(width, height) > MAX_SIDE:
        findings.append(Finding(Rule.TOO_LARGE, f"{size}: each side at most {MAX_SIDE:,} px"))
    if info.pixels > MAX_PIXELS:
        findings.append(
            Finding(
                Rule.TOO_MANY_PIXELS,
                f"{size} = {info.pixels:,} pixels; at most {MAX_PIXELS:,}",
            )
        )
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        ratio = max(width, height) / max(1, min(width, height))
        findings.append(
            Finding(
                Rule.ASPECT_RATIO,
                f"{size}: aspect ratio {ratio:.2f}:1 is outside 1:{MAX_ASPECT_RATIO} to "
                f"{MAX_ASPECT_RATIO}:1 (--fix does not crop: crop it around the subject)",
            )
        )
    if info.mode != ACCEPTED_MODE or info.has_alpha:
        alpha = " with transparency" if info.has_alpha else ""
        findings.append(
            Finding(
                Rule.COLOR_MODE,
                f"{name} is in colour mode {info.mode}{alpha}; the training data must be 8-bit RGB",
            )
        )
    return findings


def _format_findings(name: str, info: ImageInfo) -> list[Finding]:
    match image_checks.format_problem(name, info):
        case ("unsupported", _):
            message = f"{name} holds {info.format or 'unknown'} data; Titan takes only JPEG or PNG"
            return [Finding(Rule.UNSUPPORTED_FORMAT, message)]
        case ("extension", extensions):
            suffix = Path(name).suffix.lower()
            message = (
                f"{name} holds {info.format} data but is named {suffix or 'without an extension'}"
                f"; expected {' or '.join(extensions)}"
            )
            return [Finding(Rule.EXTENSION_MISMATCH, message)]
    return []


def image_warnings(name: str, info: ImageInfo) -> list[str]:
    if info.orientation != 1:
        return [
            f"{name} has EXIF orientation {info.orientation}: the service may train on the "
            "unrotated pixels (--fix applies the rotation)"
        ]
    return []


def caption_findings(record: Record) -> list[Finding]:
    caption = record.caption
    if caption is None:
        if any(issue.rule is Rule.MISSING_CAPTION for issue in record.issues):
            return []
        return [Finding(Rule.MISSING_CAPTION, f"{record.name} has no caption")]
    if len(caption) < MIN_CAPTION_CHARS:
        return [
            Finding(
                Rule.CAPTION_TOO_SHORT,
                f"caption of {record.name} has {len(caption)} characters ({caption!r}); "
                f"at least {MIN_CAPTION_CHARS}",
            )
        ]
    if len(caption) > MAX_CAPTION_CHARS:
        return [
            Finding(
                Rule.CAPTION_TOO_LONG,
                f"caption of {record.name} has {len(caption):,} characters; at most "
                f"{MAX_CAPTION_CHARS:,}",
            )
        ]
    return []


def caption_warnings(record: Record) -> list[str]:
    """A caption of one or two words is likely a bare name the model may mistake for something
    else (a person, a city): the reference writes "Ron the dog", "Smila the cat"."""
    caption = record.caption
    if caption is None or len(caption) < MIN_CAPTION_CHARS:
        return []
    if len(caption.split()) < MIN_CAPTION_WORDS:
        return [
            f"caption of {record.name} ({caption!r}) is very short: say what the subject is and "
            "what it does (e.g. 'Ron the dog laying on a white dog bed')"
        ]
    return []


# --------------------------------------------------------------------------- validate


@dataclass(frozen=True)
class RecordResult:
    record: Record
    findings: tuple[Finding, ...]
    warnings: tuple[str, ...] = ()
    image: ImageInfo | None = None

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def rules(self) -> list[str]:
        return list(dict.fromkeys(str(finding.rule) for finding in self.findings))

    def to_dict(self) -> dict[str, Any]:
        record = self.record
        return {
            "file": record.name,
            "source": str(record.original) if record.original else None,
            "caption": record.caption,
            "caption_source": record.caption_source,
            "ok": self.ok,
            "rules": self.rules,
            "findings": [finding.to_dict() for finding in self.findings],
            "fixes": list(record.fixes),
            "warnings": list(self.warnings),
            "image": self.image.to_dict(with_orientation=False) if self.image else None,
        }


@dataclass
class Report:
    records: list[RecordResult]
    dataset_findings: list[Finding] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    images_dir: str | None = None
    caption_source: str | None = None
    fixed: bool = False
    hyperparameters: Recommendation | None = None

    @property
    def valid(self) -> bool:
        return not self.dataset_findings and all(result.ok for result in self.records)

    @property
    def failing(self) -> list[RecordResult]:
        return [result for result in self.records if not result.ok]

    @property
    def images(self) -> list[RecordResult]:
        """The records that would be manifest lines (those with an image file)."""
        return [result for result in self.records if result.record.path is not None]

    @property
    def rule_counts(self) -> dict[str, int]:
        counts = Counter(
            str(finding.rule)
            for finding in [*self.dataset_findings]
            + [finding for result in self.records for finding in result.findings]
        )
        return dict(sorted(counts.items()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "base_model_id": BASE_MODEL_ID,
            "images_dir": self.images_dir,
            "captions": self.caption_source,
            "fix": self.fixed,
            "valid": self.valid,
            "counts": {
                "records": len(self.records),
                "images": len(self.images),
                "passing": len(self.records) - len(self.failing),
                "failing": len(self.failing),
                "fixed": sum(1 for result in self.records if result.record.fixes),
                "by_rule": self.rule_counts,
            },
            "dataset_findings": [finding.to_dict() for finding in self.dataset_findings],
            "warnings": self.warnings,
            "hyperparameters": self.hyperparameters.to_dict() if self.hyperparameters else None,
            "limits": limits(),
            "records": [result.to_dict() for result in self.records],
        }

    def summary(self, limit: int = SUMMARY_LIMIT) -> str:
        """A few lines for a person at a terminal; report.json has every detail."""
        lines = [
            f"Checked {len(self.records)} records ({len(self.images)} images) in "
            f"{self.images_dir or 'the image folder'} with captions from "
            f"{self.caption_source or 'the records'}: {len(self.records) - len(self.failing)} "
            f"pass, {len(self.failing)} fail."
        ]
        fixed = [result for result in self.records if result.record.fixes]
        if fixed:
            lines.append(f"Fixed {len(fixed)} images (copies; the originals are unchanged).")
        if self.failing:
            lines.append("Failing records:")
            lines.extend(
                f"  {result.record.name}: "
                + "; ".join(f"{finding.rule} ({finding.message})" for finding in result.findings)
                for result in self.failing[:limit]
            )
            if len(self.failing) > limit:
                lines.append(f"  ... and {len(self.failing) - limit} more (see report.json)")
        lines.extend(f"Dataset: {f.rule} ({f.message})" for f in self.dataset_findings)
        if self.rule_counts:
            lines.append(
                "Rules broken: " + ", ".join(f"{r} {n}" for r, n in self.rule_counts.items()) + "."
            )
        fixable = sum(1 for r in self.failing if all(f.fixable for f in r.findings))
        if fixable and not self.fixed:
            lines.append(f"{fixable} of the failing records can be repaired with --fix.")
        notes = [*self.warnings, *(w for result in self.records for w in result.warnings)]
        lines.extend(f"Warning: {warning}" for warning in notes[:limit])
        if len(notes) > limit:
            lines.append(f"... and {len(notes) - limit} more warnings (see report.json)")
        return "\n".join(lines)


def limits() -> dict[str, Any]:
    return {
        "formats": sorted(ACCEPTED_FORMATS),
        "mode": ACCEPTED_MODE,
        "max_image_bytes": MAX_IMAGE_BYTES,
        "min_side": MIN_SIDE,
        "max_side": MAX_SIDE,
        "max_pixels": MAX_PIXELS,
        "max_aspect_ratio": f"{MAX_ASPECT_RATIO}:1",
        "caption_chars": [MIN_CAPTION_CHARS, MAX_CAPTION_CHARS],
        "records": [MIN_RECORDS, MAX_RECORDS],
    }


def validate(records: Sequence[Record], *, warnings: Iterable[str] = ()) -> Report:
    """Check every record against Titan's limits; a record keeps every rule it breaks."""
    name_counts = Counter(r.name.casefold() for r in records if r.path is not None)
    results = []
    for record in records:
        findings = list(record.issues)
        notes: list[str] = []
        info: ImageInfo | None = None
        if record.path is not None:
            if name_counts[record.name.casefold()] > 1 and not _has(
                findings, Rule.DUPLICATE_FILENAME
            ):
                findings.append(
                    Finding(
                        Rule.DUPLICATE_FILENAME,
                        f"{record.name}: another image has the same name ignoring case; both "
                        "would be images/<name> in the bucket and collide on most file systems",
                    )
                )
            inspected = inspect_image(record.path)
            if isinstance(inspected, str):
                findings.append(Finding(Rule.UNREADABLE_IMAGE, inspected))
            else:
                info = inspected
                findings.extend(image_findings(record.name, info))
                notes.extend(image_warnings(record.name, info))
        findings.extend(caption_findings(record))
        notes.extend(caption_warnings(record))
        # In the order of Rule (image rules, then caption rules): reports read the same each run.
        findings.sort(key=lambda finding: _RULE_ORDER[finding.rule])
        results.append(RecordResult(record, tuple(findings), tuple(notes), info))
    image_count = sum(1 for record in records if record.path is not None)
    return Report(results, _count_findings(image_count), list(warnings))


def _has(findings: Iterable[Finding], rule: Rule) -> bool:
    return any(finding.rule is rule for finding in findings)


def _count_findings(image_count: int) -> list[Finding]:
    if image_count < MIN_RECORDS:
        message = f"{image_count} images; a fine-tuning job needs at least {MIN_RECORDS}"
        return [Finding(Rule.TOO_FEW_RECORDS, message)]
    if image_count > MAX_RECORDS:
        message = f"{image_count:,} images; a fine-tuning job takes at most {MAX_RECORDS:,}"
        return [Finding(Rule.TOO_MANY_RECORDS, message)]
    return []


# --------------------------------------------------------------------------- fix


def fit_within_limits(width: int, height: int) -> tuple[int, int]:
    """The largest size with the same aspect ratio within the side and pixel limits.

    Never upscales. The short side is rounded up from the long one, so the aspect ratio never
    grows (an image at exactly 4:1 stays within 4:1); the pixel limit is then met exactly.
    """
    scale = min(1.0, MAX_SIDE / max(width, height), sqrt(MAX_PIXELS / (width * height)))
    if scale >= 1.0:
        return width, height
    long_side, short_side = max(width, height), min(width, height)
    new_long = max(1, int(long_side * scale))
    while True:
        new_short = max(1, -(-new_long * short_side // long_side))
        if new_long * new_short <= MAX_PIXELS and new_long <= MAX_SIDE:
            break
        new_long -= 1
    return (new_long, new_short) if width >= height else (new_short, new_long)


@dataclass(frozen=True)
class _Plan:
    name: str
    format: str
    size: tuple[int, int]
    actions: tuple[str, ...]
    # False when only the name changes: the bytes are copied as they are.
    reencode: bool


def _plan(name: str, info: ImageInfo) -> _Plan:
    source_format = info.format or "unknown"
    out_format = source_format if source_format in ACCEPTED_FORMATS else "PNG"
    actions: list[str] = []
    if out_format != source_format:
        actions.append(f"converted {source_format} to {out_format}")
    width, height = info.width, info.height
    if info.orientation != 1:
        actions.append(f"applied EXIF orientation {info.orientation}")
        if info.orientation in SWAPPING_ORIENTATIONS:
            width, height = height, width
    if info.mode != ACCEPTED_MODE or info.has_alpha:
        flattened = " (transparency flattened onto white)" if info.has_alpha else ""
        actions.append(f"converted colour mode {info.mode} to RGB{flattened}")
    size = fit_within_limits(width, height)
    if size != (width, height):
        actions.append(f"downscaled {width}x{height} to {size[0]}x{size[1]}")
    if info.file_size > MAX_IMAGE_BYTES:
        actions.append(f"re-encoded to shrink {info.file_size:,} bytes")
    reencode = bool(actions)
    path = Path(name)
    out_name = name
    if path.suffix.lower() not in ACCEPTED_FORMATS[out_format]:
        out_name = path.stem + ACCEPTED_FORMATS[out_format][0]
        if not reencode:
            actions.append(f"renamed to {out_name} to match its {out_format} content")
    return _Plan(out_name, out_format, size, tuple(actions), reencode)


def fix(records: Sequence[Record], staging_dir: Path) -> list[Record]:
    """Fixed copies in `staging_dir` for the records that need them; the originals stay as they
    are. Converts formats Pillow reads (WebP, TIFF, BMP, GIF...) to PNG, colour modes to RGB,
    applies EXIF orientation, downscales to the side and pixel limits (high-quality Lanczos),
    re-encodes files over the size limit and renames files whose extension lies. Records that
    need nothing, cannot be read, or are broken beyond repair come back as they were, to fail
    (or pass) validation like before.
    """
    return [_fix_record(record, Path(staging_dir)) for record in records]


def _fix_record(record: Record, staging_dir: Path) -> Record:
    if record.path is None:
        return record
    info = inspect_image(record.path)
    if isinstance(info, str):
        return record
    plan = _plan(record.name, info)
    if not plan.actions:
        return record
    staging_dir.mkdir(parents=True, exist_ok=True)
    target = staging_dir / plan.name
    if target.resolve() == record.path.resolve():
        raise PrepareError(f"the staging folder {staging_dir} holds the original {record.path}")
    try:
        if plan.reencode:
            _write_fixed(record.path, target, plan)
        else:
            shutil.copyfile(record.path, target)
    # A mode Pillow cannot convert, a full disk...: the record keeps its findings, and says why.
    except (OSError, ValueError) as error:
        target.unlink(missing_ok=True)
        return replace(record, fixes=(f"fix failed: {type(error).__name__}: {error}",))
    return replace(record, name=plan.name, path=target, fixes=plan.actions)


def _write_fixed(source: Path, target: Path, plan: _Plan) -> None:
    with Image.open(source) as opened:
        if opened.format in ("JPEG", "MPO"):
            # Decoding a big JPEG at reduced scale is much faster; Lanczos then does the rest.
            stored = (
                plan.size
                if image_fixes.exif_orientation(opened) not in SWAPPING_ORIENTATIONS
                else plan.size[::-1]
            )
            opened.draft(opened.mode if opened.mode in ("RGB", "L") else None, stored)
        icc_profile = opened.info.get("icc_profile")
        image = ImageOps.exif_transpose(opened) or opened
        rgb = image_fixes.to_rgb(image, icc_profile)
        if rgb.size != plan.size:
            rgb = rgb.resize(plan.size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        options: dict[str, Any] = {}
        # Keep an RGB-space profile so colours stay as shot; a CMYK or grey one no longer
        # applies. EXIF is not carried over: the orientation is applied, and a GPS location has
        # no place in a bucket.
        if icc_profile and opened.mode in image_fixes.RGB_SPACE_MODES:
            options["icc_profile"] = icc_profile
        if plan.format == "JPEG":
            options["quality"] = JPEG_QUALITY
        rgb.save(target, format=plan.format, **options)


# --------------------------------------------------------------------------- hyperparameters


@dataclass(frozen=True)
class Recommendation:
    image_count: int
    step_count: int
    batch_size: int
    learning_rate: float
    notes: tuple[str, ...] = ()

    @property
    def image_passes(self) -> int:
        """Images the job processes in all: what its cost grows with."""
        return self.step_count * self.batch_size

    @property
    def passes_per_image(self) -> float:
        return self.image_passes / self.image_count

    def hyper_parameters(self) -> dict[str, str]:
        """CreateModelCustomizationJob's hyperParameters: a map of strings, not numbers."""
        return {
            "stepCount": str(self.step_count),
            "batchSize": str(self.batch_size),
            "learningRate": format_learning_rate(self.learning_rate),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "hyperParameters": self.hyper_parameters(),
            "imageCount": self.image_count,
            "imagePasses": self.image_passes,
            "passesPerImage": round(self.passes_per_image, 2),
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        lines = [
            f"Recommended for {self.image_count} images: stepCount {self.step_count}, batchSize "
            f"{self.batch_size}, learningRate {format_learning_rate(self.learning_rate)} = "
            f"{self.image_passes:,} image passes, {self.passes_per_image:,.1f} per image.",
            "More steps if the style does not show; fewer if it shows with artifacts or blur.",
        ]
        lines.extend(f"Note: {note}" for note in self.notes)
        return "\n".join(lines)


def format_learning_rate(value: float) -> str:
    """Plain decimal, never exponent notation: 1e-05 -> "0.00001"."""
    return format(Decimal(repr(value)).normalize(), "f")


def recommended_step_count(image_count: int) -> int:
    """stepCount from the reference table, interpolated linearly in the number of images.

    Linear, not in log(image count): from 8 to 64 images the table is exactly 125 steps per image
    (1,000 passes over each image at batch 8), and linear interpolation keeps that proportion for
    every size in between, where most subject fine-tunings (a pet, a product) sit; log
    interpolation would over-train them (16 images: 2,500 steps instead of 2,000). Above 64 images
    the table flattens and the two choices differ by at most about 600 steps (5-7%). Below 8
    images the 8-image value applies, above 10,000 the 10,000-image value.

    Rounded to the nearest 100 steps, ties to even like Python's round(): the same formula as the
    customization workflow's manifest check (lambdas/customization/logic/manifest.py), so the CLI
    and the workflow recommend the same number.
    """
    (first_count, first_steps), (last_count, last_steps) = STEP_TABLE[0], STEP_TABLE[-1]
    if image_count <= first_count:
        return first_steps
    if image_count >= last_count:
        return last_steps
    for (x0, y0), (x1, y1) in pairwise(STEP_TABLE):
        if x0 <= image_count <= x1:
            # Exact fractions: a float could land a hair off a tie and round the other way.
            steps = y0 + Fraction((y1 - y0) * (image_count - x0), x1 - x0)
            return round(steps / STEP_ROUNDING) * STEP_ROUNDING
    raise AssertionError("unreachable: STEP_TABLE covers every count in its range")


def recommend_hyperparameters(
    image_count: int,
    *,
    step_count: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    learning_rate: float = DEFAULT_LEARNING_RATE,
) -> Recommendation:
    """stepCount from the table (or `step_count`), all three clamped to the documented bounds;
    each clamp is named in `notes`."""
    if image_count < 1:
        raise ValueError(f"image_count must be at least 1, got {image_count}")
    notes: list[str] = []
    steps = _clamp(
        "stepCount",
        recommended_step_count(image_count) if step_count is None else step_count,
        STEP_COUNT_BOUNDS,
        notes,
    )
    batch = _clamp("batchSize", batch_size, BATCH_SIZE_BOUNDS, notes)
    rate = _clamp("learningRate", learning_rate, LEARNING_RATE_BOUNDS, notes)
    return Recommendation(image_count, int(steps), int(batch), float(rate), tuple(notes))


def _clamp(name: str, value: float, bounds: tuple[float, float], notes: list[str]) -> float:
    low, high = bounds
    clamped = min(max(value, low), high)
    if clamped != value:
        notes.append(f"{name} {value} is outside {low}-{high}: clamped to {clamped}")
    return clamped


# --------------------------------------------------------------------------- manifest


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


def parse_s3_uri(uri: str) -> S3Location:
    """`s3://bucket/prefix/` -> S3Location; the prefix gets a trailing slash if it lacks one."""
    return DESTINATION.parse(uri)


def check_kms_key_id(kms_key_id: str) -> None:
    DESTINATION.check_kms(kms_key_id)


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


# --------------------------------------------------------------------------- upload


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


# --------------------------------------------------------------------------- build


def prepare_dataset(
    images_dir: Path,
    out_dir: Path,
    *,
    captions: Path | None = None,
    apply_fixes: bool = False,
    destination: S3Location | None = None,
) -> Report:
    """Scan, optionally fix, validate; write report.json, and when valid hyperparameters.json and
    (with a destination) manifest.jsonl into `out_dir`. Raises PrepareError for a wrong layout."""
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    _check_out_dir(images_dir, out_dir)
    scanned = scan(images_dir, captions)
    out_dir.mkdir(parents=True, exist_ok=True)
    prepare_outputs.clear_outputs(out_dir, OUTPUT_ENTRIES)
    records = fix(scanned.records, out_dir / IMAGES_FOLDER) if apply_fixes else scanned.records
    ignored = [
        f"ignored {len(scanned.ignored)} entries that are not images or captions: "
        + ", ".join(scanned.ignored)
    ]
    warnings = ignored if scanned.ignored else []
    if destination is not None and not destination.is_named_folder_of(WORKFLOW_PREFIX):
        warnings.append(
            f"{destination.uri} is not a folder under {WORKFLOW_PREFIX} of the bucket: the Atelier "
            f"customization workflow only reads manifests in {WORKFLOW_PREFIX}<name>/ of the "
            "datasets bucket (e.g. s3://<datasets bucket>/titan/dogs/)"
        )
    report = validate(records, warnings=warnings)
    report.images_dir = str(images_dir)
    report.caption_source = scanned.caption_source
    report.fixed = apply_fixes
    if report.valid:
        report.hyperparameters = recommend_hyperparameters(len(report.images))
        write_json(out_dir / "hyperparameters.json", report.hyperparameters.hyper_parameters())
        if destination is not None:
            write_manifest(report, destination, out_dir / MANIFEST_NAME)
    write_json(out_dir / "report.json", report.to_dict())
    return report


def _check_out_dir(images_dir: Path, out_dir: Path) -> None:
    images, out = images_dir.resolve(), out_dir.resolve()
    if out == images or images.is_relative_to(out / IMAGES_FOLDER):
        raise PrepareError(
            f"output folder {out_dir} overlaps the image folder {images_dir}: a run replaces "
            f"{', '.join(OUTPUT_ENTRIES)} in it; choose another"
        )
    if out.exists() and not out.is_dir():
        raise PrepareError(f"output path {out_dir} exists and is not a folder")


# --------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"python -m {PROGRAM}",
        description="Check (and with --fix repair) images and captions for a Titan Image "
        "Generator G1 fine-tuning, write manifest.jsonl, report.json and hyperparameters.json, "
        "and optionally upload the dataset to S3.",
    )
    parser.add_argument("--images", type=Path, required=True, help="folder of JPEG/PNG images")
    parser.add_argument(
        "--captions",
        type=Path,
        help="captions as a CSV (header filename,caption) or a JSON object {filename: caption}; "
        "without it each image needs a sidecar .txt (ron_01.jpg + ron_01.txt)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--fix",
        action="store_true",
        help="write fixed copies into OUT/images (other formats to PNG, colour modes to RGB, "
        "EXIF rotation applied, downscaled to the limits); never upscales or crops",
    )
    destination = parser.add_mutually_exclusive_group()
    destination.add_argument(
        "--upload",
        metavar="S3_URI",
        help="upload the images and the manifest to s3://bucket/prefix/ (images under "
        "prefix/images/, prefix/manifest.jsonl)",
    )
    destination.add_argument(
        "--s3-prefix",
        metavar="S3_URI",
        help="write the manifest for this destination without uploading",
    )
    parser.add_argument("--kms-key-id", help="KMS key for SSE-KMS on the uploaded objects")
    args = parser.parse_args(argv)
    if args.kms_key_id and not args.upload:
        parser.error("--kms-key-id only applies with --upload")
    args.destination = DESTINATION.from_options(
        parser, args.upload or args.s3_prefix, args.kms_key_id
    )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 valid, 2 failing records or wrong layout/options, 1 upload failed."""
    args = parse_args(argv)
    destination: S3Location | None = args.destination
    try:
        report = prepare_dataset(
            args.images,
            args.out,
            captions=args.captions,
            apply_fixes=args.fix,
            destination=destination,
        )
    except PrepareError as error:
        prepare_outputs.print_error(PROGRAM, error)
        return EXIT_INVALID
    report_path = args.out / "report.json"
    if not report.valid:
        print(report.summary(), file=sys.stderr)
        print(
            f"{PROGRAM}: error: the dataset is not valid ({len(report.failing)} of "
            f"{len(report.records)} records fail"
            + (
                f", {len(report.dataset_findings)} dataset problems"
                if report.dataset_findings
                else ""
            )
            + f"); no manifest written. Details: {report_path}",
            file=sys.stderr,
        )
        return EXIT_INVALID
    print(report.summary())
    assert report.hyperparameters is not None  # Set on every valid report.
    print(report.hyperparameters.summary())
    print(f"Wrote {report_path} and {args.out / 'hyperparameters.json'}.")
    if destination is None:
        print("No manifest written: pass --s3-prefix s3://bucket/prefix/ or --upload to get one.")
        return EXIT_OK
    manifest = args.out / MANIFEST_NAME
    print(f"Wrote {manifest} ({len(report.images)} lines) for {destination.uri}.")
    if args.upload:
        try:
            result = upload(
                manifest_entries(report, destination),
                manifest,
                destination,
                kms_key_id=args.kms_key_id,
                progress=print,
            )
        except UploadError as error:
            prepare_outputs.print_error(PROGRAM, error)
            return EXIT_UPLOAD_FAILED
        print(
            prepare_outputs.upload_summary(
                len(result.uploaded), len(result.unchanged), destination.uri
            )
        )
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
