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
import shutil
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from math import sqrt
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a plain script: put the training/ import root on the path for the shared `common`.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import image_checks, image_fixes, prepare_outputs
from common.image_checks import ACCEPTED_FORMATS, SWAPPING_ORIENTATIONS, ImageInfo
from common.prepare_outputs import EXIT_INVALID, EXIT_OK, EXIT_UPLOAD_FAILED, write_json
from titan.captions import scan as scan
from titan.findings import RULE_ORDER, Finding, Rule
from titan.findings import PrepareError as PrepareError
from titan.findings import Record as Record
from titan.findings import UploadError as UploadError
from titan.hyperparameters import Recommendation
from titan.hyperparameters import recommend_hyperparameters as recommend_hyperparameters
from titan.hyperparameters import recommended_step_count as recommended_step_count
from titan.manifest import DESTINATION, IMAGES_FOLDER
from titan.manifest import MANIFEST_NAME as MANIFEST_NAME
from titan.manifest import S3Location as S3Location
from titan.manifest import manifest_entries as manifest_entries
from titan.manifest import parse_s3_uri as parse_s3_uri
from titan.manifest import upload as upload
from titan.manifest import write_manifest as write_manifest

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
# Everything a run writes into --out: a run removes these first (and nothing else), so a failed
# run never leaves a stale manifest behind to be uploaded by mistake.
OUTPUT_ENTRIES: tuple[str, ...] = (
    "manifest.jsonl",
    "report.json",
    "hyperparameters.json",
    "images",
)
# High enough that a re-encoded photo shows no visible loss; fixed PNGs stay lossless.
JPEG_QUALITY = 95
# The Atelier customization workflow reads manifests only in a folder under this prefix of the
# datasets bucket (titan/<name>/manifest.jsonl): its role may read nothing else.
WORKFLOW_PREFIX = "titan/"
# The name in error messages and usage (`python -m titan.prepare`).
PROGRAM = "titan.prepare"
# What `--help` says the command does.
DESCRIPTION = (
    "Check (and with --fix repair) images and captions for a Titan Image "
    "Generator G1 fine-tuning, write manifest.jsonl, report.json and hyperparameters.json, "
    "and optionally upload the dataset to S3."
)
# Fewer words than this is likely a bare name ("Ron"): the reference advises "Ron the dog".
MIN_CAPTION_WORDS = 3
SUMMARY_LIMIT = 50


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
        findings.sort(key=lambda finding: RULE_ORDER[finding.rule])
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
    image_fixes.write_upright_rgb(
        source, target, image_format=plan.format, jpeg_quality=JPEG_QUALITY, size=plan.size
    )


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
    parser = prepare_outputs.argument_parser(PROGRAM, DESCRIPTION)
    prepare_outputs.add_input_folder(parser, "--images", "folder of JPEG/PNG images")
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
    prepare_outputs.add_upload_option(
        destination,
        "upload the images and the manifest to s3://bucket/prefix/ (images under "
        "prefix/images/, prefix/manifest.jsonl)",
    )
    destination.add_argument(
        "--s3-prefix",
        metavar="S3_URI",
        help="write the manifest for this destination without uploading",
    )
    prepare_outputs.add_kms_key_option(parser)
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
        return prepare_outputs.error_exit(PROGRAM, error, EXIT_INVALID)
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
            return prepare_outputs.error_exit(PROGRAM, error, EXIT_UPLOAD_FAILED)
        print(
            prepare_outputs.upload_summary(
                len(result.uploaded), len(result.unchanged), destination.uri
            )
        )
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
