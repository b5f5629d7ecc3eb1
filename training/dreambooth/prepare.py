"""Check, build and upload a Stable Diffusion DreamBooth dataset in JumpStart's layout.

JumpStart's DreamBooth layout, one folder or S3 prefix, read by `dreambooth/train.py` from the
`training` channel for both the text-to-image and the inpainting mode::

    dataset_info.json  {"instance_prompt": "a photo of sks dog", "class_prompt": "a photo of a dog"}
    dog_01.jpg ...     the instance images: .png/.jpg/.jpeg files at the top level
    class_data_dir/    optional class images for prior preservation (the job generates the
                       missing ones from class_prompt)

Two ways to run it, from `training/`::

    python -m dreambooth.prepare --images DIR --instance-prompt "a photo of sks dog" --out OUT
        builds OUT/dataset/ (the layout above) from a folder of images, and OUT/report.json
    python -m dreambooth.prepare --images DIR --check-only [--out OUT]
        checks DIR as it stands (a dataset in the layout above); the report goes to OUT/report.json

Errors are what fails the job or trains on something else than the user sees: a file that is not
a readable PNG/JPEG, a picture too small to be more than blur at the training resolution (below a
quarter of it), duplicates, no instance image, a missing or malformed dataset_info.json, no
instance prompt, and with prior preservation a missing class prompt or one equal to the instance
prompt. Warnings are what trains, maybe worse: pictures below the training resolution (training
upscales them), far from square (training crops a square), with an EXIF rotation, transparency,
16-bit or non-RGB colours; fewer than 4 or more than 20 instance images (the documented 4-20);
an instance prompt without a word the class prompt lacks (the rare identifier, "sks"); unknown
keys; files training ignores. The report names the file, the rule and the fix of each.

`--fix` writes upright 8-bit RGB copies (transparency flattened onto white, 16-bit scaled, CMYK
colour-managed), JPEG or PNG by content, into the built dataset; the originals are never modified.
A dataset with errors is not built (only report.json is written) and not uploaded.

With `--upload s3://bucket/dreambooth/<name>/` the images go first and dataset_info.json last;
objects already there with the same bytes are skipped (MD5 in metadata, `s3_upload`), so re-runs
are cheap. Training reads every image under the prefix, so images there that are not in this
dataset are listed, and deleted with `--prune`.

`instance_image_paths`, `class_image_paths` and `read_dataset_info` are what the training script
uses to read a dataset, so the checker and the job agree on what one is.

Exit status: 0 valid (warnings allowed), 2 errors or wrong options, 1 upload failed. Only the
standard library, Pillow and (for --upload, imported lazily) boto3.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import re
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from PIL import Image, ImageOps

if __package__ in (None, ""):
    # Run as a plain script: put the training/ import root on the path for the shared `common`.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import image_checks, image_fixes, prepare_outputs, s3_destination, s3_upload
from common.image_checks import ACCEPTED_FORMATS, SWAPPING_ORIENTATIONS, ImageInfo
from common.prepare_outputs import EXIT_INVALID, EXIT_OK, EXIT_UPLOAD_FAILED, write_json

DATASET_INFO = "dataset_info.json"
CLASS_DATA_DIR = "class_data_dir"
# What training reads as images (case-insensitive); everything else is ignored by it.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
# Files users mean as images that training does not read: named so the warning says "convert".
_OTHER_IMAGE_SUFFIXES = frozenset(
    {".webp", ".heic", ".heif", ".avif", ".gif", ".bmp", ".tif", ".tiff", ".jfif"}
)
KNOWN_KEYS = ("instance_prompt", "class_prompt")

# The training resolution (the `resolution` hyperparameter; SD 2.1 base is trained at 512).
DEFAULT_RESOLUTION = 512
# Training resizes the short side to the resolution. Up to this factor the upscaled picture still
# shows the subject (a warning); beyond it the model mostly learns blur (an error).
MAX_UPSCALE = 4
# Training crops a square: beyond this long/short ratio most of the picture is cut away.
MAX_ASPECT_RATIO = 2.0
MIN_IMAGES = 1
# DreamBooth's documented range: 4-20 good images are enough; outside it results usually suffer
# (too little of the subject, or more steps for no gain). Warnings, not errors.
RECOMMENDED_IMAGES = (4, 20)

# Output of a build, in --out: a run replaces these and nothing else.
DATASET_FOLDER = "dataset"
REPORT_NAME = "report.json"
OUTPUT_ENTRIES = (DATASET_FOLDER, REPORT_NAME)
# High enough that a re-encoded photo shows no visible loss; fixed PNGs stay lossless.
JPEG_QUALITY = 95
# The Atelier DreamBooth workflows read datasets under this prefix of the datasets bucket.
WORKFLOW_PREFIX = "dreambooth/"
# The name in error messages and usage (`python -m dreambooth.prepare`).
PROGRAM = "dreambooth.prepare"
SUMMARY_LIMIT = 50

Role = Literal["instance", "class"]


class Rule(StrEnum):
    """What a finding is about; the value is what report.json says."""

    UNREADABLE_IMAGE = "unreadable_image"
    UNSUPPORTED_FORMAT = "unsupported_format"
    EXTENSION_MISMATCH = "extension_mismatch"
    COLOR_MODE = "color_mode"
    TOO_SMALL = "too_small"
    ASPECT_RATIO = "aspect_ratio"
    EXIF_ORIENTATION = "exif_orientation"
    DUPLICATE_IMAGE = "duplicate_image"
    IGNORED_FILE = "ignored_file"
    IMAGE_COUNT = "image_count"
    DATASET_INFO = "dataset_info"
    INSTANCE_PROMPT = "instance_prompt"
    CLASS_PROMPT = "class_prompt"
    IDENTIFIER = "identifier"
    UNKNOWN_KEY = "unknown_key"
    CLASS_IMAGES_UNUSED = "class_images_unused"
    DESTINATION = "destination"


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


class PrepareError(Exception):
    """Wrong layout or options, or a dataset that cannot be written: the CLI exits 2."""


class UploadError(Exception):
    """The dataset is valid but could not be uploaded: the CLI exits 1."""


class DatasetError(ValueError):
    """A dataset the training job cannot use; the message names the file and the fix."""


@dataclass(frozen=True)
class DatasetInfo:
    instance_prompt: str
    class_prompt: str | None


@dataclass(frozen=True)
class Finding:
    rule: Rule
    severity: Severity
    message: str
    # Where in the dataset: "dog_01.jpg", "class_data_dir/c_01.png", "dataset_info.json"; None
    # for the dataset as a whole.
    file: str | None = None
    # Whether --fix repairs it.
    fixable: bool = False

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "rule": str(self.rule),
            "severity": str(self.severity),
            "message": self.message,
            "fixable": self.fixable,
        }

    def line(self) -> str:
        where = f"{self.file}: " if self.file else ""
        return f"{where}{self.message} [{self.rule}]"


def _error(rule: Rule, message: str, file: str | None = None, *, fixable: bool = False) -> Finding:
    return Finding(rule, Severity.ERROR, message, file, fixable)


def _warning(
    rule: Rule, message: str, file: str | None = None, *, fixable: bool = False
) -> Finding:
    return Finding(rule, Severity.WARNING, message, file, fixable)


# --------------------------------------------------------------------------- reading a dataset


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    )


def instance_image_paths(dataset_dir: Path) -> list[Path]:
    """The instance images: .png/.jpg/.jpeg files (any case) at the top level, sorted."""
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise DatasetError(f"dataset folder {dataset_dir} does not exist or is not a folder")
    return _image_files(dataset_dir)


def class_image_paths(dataset_dir: Path) -> list[Path]:
    """The class images in `class_data_dir/`, sorted; empty when the folder is absent."""
    folder = Path(dataset_dir) / CLASS_DATA_DIR
    return _image_files(folder) if folder.is_dir() else []


def read_dataset_info(dataset_dir: Path, *, prior_preservation: bool) -> DatasetInfo:
    """The prompts of `dataset_dir/dataset_info.json`, checked by the same rules as the checker.

    Raises DatasetError naming the file and the fix for every error (warnings are not raised).
    """
    path = Path(dataset_dir) / DATASET_INFO
    document, findings = load_dataset_info(path)
    if document is not None:
        findings += prompt_findings(document, prior_preservation=prior_preservation)
    errors = [finding.message for finding in findings if finding.is_error]
    if errors or document is None:
        raise DatasetError(f"{path}: " + "; ".join(errors))
    class_prompt = document.get("class_prompt")
    if not isinstance(class_prompt, str) or not class_prompt.strip():
        class_prompt = None
    return DatasetInfo(
        instance_prompt=str(document["instance_prompt"]).strip(),
        class_prompt=class_prompt.strip() if class_prompt is not None else None,
    )


# --------------------------------------------------------------------------- dataset_info.json

_EXAMPLE = '{"instance_prompt": "a photo of sks dog", "class_prompt": "a photo of a dog"}'


def load_dataset_info(path: Path) -> tuple[dict[str, Any] | None, list[Finding]]:
    """The JSON object in `path`, or None and the error that says why not."""
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        message = (
            f"{DATASET_INFO} is missing: add one like {_EXAMPLE} (--instance-prompt and "
            "--class-prompt write it)"
        )
        return None, [_error(Rule.DATASET_INFO, message, DATASET_INFO)]
    except OSError as error:
        message = f"cannot read {DATASET_INFO}: {error.strerror}"
        return None, [_error(Rule.DATASET_INFO, message, DATASET_INFO)]
    except UnicodeDecodeError:
        message = f"{DATASET_INFO} is not UTF-8 text: save it as UTF-8 JSON like {_EXAMPLE}"
        return None, [_error(Rule.DATASET_INFO, message, DATASET_INFO)]
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        message = f"{DATASET_INFO} is not valid JSON ({error}); expected {_EXAMPLE}"
        return None, [_error(Rule.DATASET_INFO, message, DATASET_INFO)]
    if not isinstance(document, dict):
        message = (
            f"{DATASET_INFO} holds a JSON {type(document).__name__}, not an object; "
            f"expected {_EXAMPLE}"
        )
        return None, [_error(Rule.DATASET_INFO, message, DATASET_INFO)]
    return document, []


def prompt_findings(document: dict[str, Any], *, prior_preservation: bool) -> list[Finding]:
    """The rules on the prompts and keys of a dataset_info.json object."""
    findings = [*_unknown_keys(document)]
    instance = document.get("instance_prompt")
    if "instance_prompt" not in document or instance is None:
        findings.append(
            _error(
                Rule.INSTANCE_PROMPT,
                "instance_prompt is missing: name the subject with a rare identifier, e.g. "
                '"a photo of sks dog" (--instance-prompt)',
                DATASET_INFO,
            )
        )
    elif not isinstance(instance, str) or not instance.strip():
        what = "empty" if isinstance(instance, str) else f"a JSON {type(instance).__name__}"
        findings.append(
            _error(
                Rule.INSTANCE_PROMPT,
                f'instance_prompt is {what}: it must be text such as "a photo of sks dog"',
                DATASET_INFO,
            )
        )
    klass = document.get("class_prompt")
    if not isinstance(klass, str) or not klass.strip():
        findings.extend(_class_prompt_missing(klass, prior_preservation=prior_preservation))
    elif isinstance(instance, str) and instance.strip():
        findings.extend(_compare_prompts(instance, klass, prior_preservation=prior_preservation))
    return findings


def _unknown_keys(document: dict[str, Any]) -> list[Finding]:
    findings = []
    for key in document:
        if key in KNOWN_KEYS:
            continue
        close = difflib.get_close_matches(str(key).replace(" ", "_").lower(), KNOWN_KEYS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        findings.append(
            _warning(
                Rule.UNKNOWN_KEY,
                f"unknown key {key!r}{hint}: training reads only instance_prompt and "
                "class_prompt, and a build does not copy it",
                DATASET_INFO,
            )
        )
    return findings


def _class_prompt_missing(klass: object, *, prior_preservation: bool) -> list[Finding]:
    if klass is None:
        if not prior_preservation:
            return []
        return [
            _error(
                Rule.CLASS_PROMPT,
                "class_prompt is required with prior preservation: the job generates and trains "
                'class images with it, e.g. "a photo of a dog" (--class-prompt)',
                DATASET_INFO,
            )
        ]
    what = "empty" if isinstance(klass, str) else f"a JSON {type(klass).__name__}"
    if prior_preservation:
        message = (
            f'class_prompt is {what}: prior preservation needs text such as "a photo of a dog"'
        )
        return [_error(Rule.CLASS_PROMPT, message, DATASET_INFO)]
    message = (
        f"class_prompt is {what}: ignored without prior preservation, but a prior-preservation "
        'run would fail; write the class (e.g. "a photo of a dog") or remove the key'
    )
    return [_warning(Rule.CLASS_PROMPT, message, DATASET_INFO)]


def _words(prompt: str) -> list[str]:
    return re.findall(r"\w+", prompt.casefold())


def _compare_prompts(instance: str, klass: str, *, prior_preservation: bool) -> list[Finding]:
    """The instance prompt should be the class prompt plus a rare identifier ("sks")."""
    if _words(instance) == _words(klass):
        if prior_preservation:
            message = (
                "class_prompt is the same as instance_prompt: prior preservation would teach the "
                "class prompt your subject; add a rare identifier to the instance prompt "
                '("a photo of sks dog" vs "a photo of a dog")'
            )
            return [_error(Rule.CLASS_PROMPT, message, DATASET_INFO)]
        message = (
            "class_prompt is the same as instance_prompt: give the instance prompt a rare "
            'identifier ("a photo of sks dog" vs "a photo of a dog")'
        )
        return [_warning(Rule.CLASS_PROMPT, message, DATASET_INFO)]
    rare = set(_words(instance)) - set(_words(klass))
    if not rare:
        message = (
            f"instance_prompt {instance!r} has no word that class_prompt {klass!r} lacks: the "
            "model cannot tell your subject from the class; add a rare identifier such as sks"
        )
        return [_warning(Rule.IDENTIFIER, message, DATASET_INFO)]
    return []


# --------------------------------------------------------------------------- images


def inspect_image(path: Path) -> ImageInfo | str:
    """What the image is, or why it cannot be read (not an image, truncated, corrupt); its decoded
    picture also goes through convert("RGB"), as in training."""
    try:
        return image_checks.inspect_image(path, draft_side=256, check_rgb=True)
    except image_checks.UnreadableImageError as error:
        return f"not a readable image ({error}); replace or remove it"


def image_findings(file: str, info: ImageInfo, *, resolution: int) -> list[Finding]:
    """The per-image rules (the file is its place in the dataset, for the report)."""
    findings = [*_format_findings(file, info), *_colour_findings(file, info)]
    width, height = info.width, info.height
    if info.orientation in SWAPPING_ORIENTATIONS:
        width, height = height, width
    short, long = min(width, height), max(width, height)
    floor = resolution // MAX_UPSCALE
    if short < floor:
        findings.append(
            _error(
                Rule.TOO_SMALL,
                f"{width}x{height} px: the short side is under {floor} px, so training at "
                f"{resolution} px would upscale it over {MAX_UPSCALE}x and learn mostly blur; use "
                "a larger original",
                file,
            )
        )
    elif short < resolution:
        findings.append(
            _warning(
                Rule.TOO_SMALL,
                f"{width}x{height} px: the short side is under the training resolution "
                f"{resolution} px, so training upscales it (softer detail); a larger original "
                "is better",
                file,
            )
        )
    if short and long / short > MAX_ASPECT_RATIO:
        cut = round(100 * (1 - short / long))
        findings.append(
            _warning(
                Rule.ASPECT_RATIO,
                f"{width}x{height} px: training crops a square, cutting {cut}% of the picture; "
                "crop it around the subject",
                file,
            )
        )
    if info.orientation != 1:
        findings.append(
            _warning(
                Rule.EXIF_ORIENTATION,
                f"EXIF orientation {info.orientation}: Atelier's training turns it upright like "
                "a viewer, a trainer that ignores EXIF would not (--fix writes an upright copy)",
                file,
                fixable=True,
            )
        )
    return findings


def _format_findings(file: str, info: ImageInfo) -> list[Finding]:
    match image_checks.format_problem(file, info):
        case ("unsupported", _):
            message = (
                f"holds {info.format or 'unknown'} data: the dataset takes only JPEG or PNG "
                "(--fix converts it to PNG)"
            )
            return [_error(Rule.UNSUPPORTED_FORMAT, message, file, fixable=True)]
        case ("extension", extensions):
            # Training reads by content, so this trains; but the name (and the S3 Content-Type
            # taken from it) lies.
            message = (
                f"holds {info.format} data but is named {Path(file).suffix.lower()}: rename it "
                f"to {' or '.join(extensions)} (--fix does)"
            )
            return [_warning(Rule.EXTENSION_MISMATCH, message, file, fixable=True)]
    return []


def _colour_findings(file: str, info: ImageInfo) -> list[Finding]:
    if info.rgb_problem is not None:
        return [
            _error(
                Rule.COLOR_MODE,
                f"colour mode {info.mode} cannot be converted to RGB ({info.rgb_problem}); "
                "save it as an 8-bit RGB JPEG or PNG",
                file,
            )
        ]
    if info.has_alpha:
        why = (
            "training drops the transparency, and the colours hidden under transparent pixels "
            "(often black) become the background"
        )
    elif info.mode in image_fixes.SIXTEEN_BIT_MODES:
        why = "a plain RGB conversion, as in training, clips it to mostly white"
    elif info.mode == "CMYK":
        why = "a plain RGB conversion, as in training, shifts its colours"
    elif info.mode != "RGB":
        why = "training converts it to RGB"
    else:
        return []
    alpha = " with transparency" if info.has_alpha else ""
    return [
        _warning(
            Rule.COLOR_MODE,
            f"colour mode {info.mode}{alpha}: {why} (--fix writes an 8-bit RGB copy)",
            file,
            fixable=True,
        )
    ]


def _sha256(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class ImageResult:
    role: Role
    # Its name in the dataset (a fixed copy may be renamed).
    name: str
    # The user's file.
    source: Path
    # The file that is (or would be) in the dataset: the source or its fixed copy.
    path: Path
    info: ImageInfo | None
    findings: tuple[Finding, ...]
    fixes: tuple[str, ...] = ()

    @property
    def file(self) -> str:
        """Its place in the dataset: the key under the dataset's folder or prefix."""
        return self.name if self.role == "instance" else f"{CLASS_DATA_DIR}/{self.name}"

    @property
    def ok(self) -> bool:
        return not any(finding.is_error for finding in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "role": self.role,
            "source": str(self.source),
            "ok": self.ok,
            "rules": list(dict.fromkeys(str(finding.rule) for finding in self.findings)),
            "fixes": list(self.fixes),
            "image": self.info.to_dict() if self.info else None,
        }


@dataclass
class Report:
    mode: Literal["check", "build"]
    # The folder checked (check) or the instance-image folder (build).
    source: Path
    images: list[ImageResult]
    findings: list[Finding]
    # The prompts as read (check) or as written (build); None when there is no usable object.
    dataset_info: dict[str, Any] | None
    prior_preservation: bool
    resolution: int
    fixed: bool = False
    # Where the dataset is: the folder checked, or OUT/dataset once built (None if not built).
    dataset_dir: Path | None = None
    class_source: Path | None = None

    @property
    def all_findings(self) -> list[Finding]:
        return [*self.findings, *(finding for image in self.images for finding in image.findings)]

    @property
    def errors(self) -> list[Finding]:
        return [finding for finding in self.all_findings if finding.is_error]

    @property
    def warnings(self) -> list[Finding]:
        return [finding for finding in self.all_findings if not finding.is_error]

    @property
    def valid(self) -> bool:
        return not self.errors

    @property
    def instance_images(self) -> list[ImageResult]:
        return [image for image in self.images if image.role == "instance"]

    @property
    def class_images(self) -> list[ImageResult]:
        return [image for image in self.images if image.role == "class"]

    def rules(self, severity: Severity | None = None) -> dict[str, list[str]]:
        """File (or "" for the dataset) -> the rules it breaks, for tests and quick reading."""
        found: dict[str, list[str]] = {}
        for finding in self.all_findings:
            if severity is None or finding.severity is severity:
                rules = found.setdefault(finding.file or "", [])
                if str(finding.rule) not in rules:
                    rules.append(str(finding.rule))
        return found

    def dataset_files(self) -> list[tuple[Path, str]]:
        """(local file, key under the dataset prefix): the images, then dataset_info.json."""
        if not self.valid or self.dataset_dir is None:
            raise PrepareError("the dataset has errors: fix them first (see report.json)")
        files = [(image.path, image.file) for image in self.images]
        if self.mode == "build":
            files = [(self.dataset_dir / key, key) for _, key in files]
        return [*files, (self.dataset_dir / DATASET_INFO, DATASET_INFO)]

    def to_dict(self) -> dict[str, Any]:
        by_rule = Counter(str(finding.rule) for finding in self.all_findings)
        return {
            "valid": self.valid,
            "mode": self.mode,
            "source": str(self.source),
            "class_source": str(self.class_source) if self.class_source else None,
            "dataset_dir": str(self.dataset_dir) if self.dataset_dir else None,
            "prior_preservation": self.prior_preservation,
            "resolution": self.resolution,
            "fix": self.fixed,
            "dataset_info": self.dataset_info,
            "counts": {
                "instance_images": len(self.instance_images),
                "class_images": len(self.class_images),
                "errors": len(self.errors),
                "warnings": len(self.warnings),
                "fixed": sum(1 for image in self.images if image.fixes),
                "by_rule": dict(sorted(by_rule.items())),
            },
            "errors": [finding.to_dict() for finding in self.errors],
            "warnings": [finding.to_dict() for finding in self.warnings],
            "limits": limits(self.resolution),
            "images": [image.to_dict() for image in self.images],
        }

    def summary(self, limit: int = SUMMARY_LIMIT) -> str:
        """A few lines for a person at a terminal; report.json has every detail."""
        verdict = "valid" if self.valid else f"NOT valid: {len(self.errors)} errors to fix"
        lines = [
            f"Checked {len(self.instance_images)} instance images and {len(self.class_images)} "
            f"class images from {self.source}: {verdict}, {len(self.warnings)} warnings."
        ]
        fixed = [image for image in self.images if image.fixes]
        if fixed:
            lines.append(f"Fixed {len(fixed)} images (copies; the originals are unchanged).")
        lines.extend(_listed("Error", self.errors, limit))
        fixable = [finding for finding in self.errors if finding.fixable]
        if fixable and not self.fixed:
            lines.append(f"{len(fixable)} of the errors can be repaired with --fix.")
        lines.extend(_listed("Warning", self.warnings, limit))
        if self.prior_preservation and self.valid:
            lines.append(
                f"Prior preservation: {len(self.class_images)} class images; the job generates "
                "the rest of num_class_images from class_prompt."
            )
        return "\n".join(lines)


def _listed(label: str, findings: Sequence[Finding], limit: int) -> list[str]:
    lines = [f"{label}: {finding.line()}" for finding in findings[:limit]]
    if len(findings) > limit:
        lines.append(f"... and {len(findings) - limit} more (see report.json)")
    return lines


def limits(resolution: int = DEFAULT_RESOLUTION) -> dict[str, Any]:
    return {
        "formats": sorted(ACCEPTED_FORMATS),
        "extensions": sorted(IMAGE_SUFFIXES),
        "resolution": resolution,
        "min_side_error": resolution // MAX_UPSCALE,
        "min_side_warning": resolution,
        "max_aspect_ratio": MAX_ASPECT_RATIO,
        "min_images": MIN_IMAGES,
        "recommended_images": list(RECOMMENDED_IMAGES),
    }


# --------------------------------------------------------------------------- scan


@dataclass(frozen=True)
class _Candidate:
    role: Role
    source: Path


@dataclass
class _Scan:
    candidates: list[_Candidate] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


def _scan(folder: Path, role: Role, scan: _Scan) -> None:
    """Add `folder`'s images to `scan`, and a warning for every entry training ignores."""
    prefix = "" if role == "instance" else f"{CLASS_DATA_DIR}/"
    for path in sorted(folder.iterdir()):
        name = path.name
        if role == "instance" and name == DATASET_INFO:
            continue
        if role == "instance" and name == CLASS_DATA_DIR and path.is_dir():
            continue
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            scan.candidates.append(_Candidate(role, path))
            continue
        where = "the top level" if role == "instance" else f"{CLASS_DATA_DIR}/"
        if path.is_dir():
            message = f"a folder: training reads only images at {where}"
            if role == "instance":
                message += f" and in {CLASS_DATA_DIR}/"
            file = f"{prefix}{name}/"
        elif path.suffix.lower() in _OTHER_IMAGE_SUFFIXES:
            message = "ignored by training, which reads only .png/.jpg/.jpeg: convert it if it "
            message += "belongs to the dataset"
            file = f"{prefix}{name}"
        else:
            message = (
                f"not an image: ignored by training (only .png/.jpg/.jpeg at {where} are read)"
            )
            file = f"{prefix}{name}"
        scan.findings.append(_warning(Rule.IGNORED_FILE, message, file))


# --------------------------------------------------------------------------- check


def check_dataset(
    dataset_dir: Path,
    *,
    prior_preservation: bool = False,
    resolution: int = DEFAULT_RESOLUTION,
    destination: S3Location | None = None,
) -> Report:
    """Check a dataset folder in the JumpStart layout as it stands; nothing is written.

    Raises PrepareError when `dataset_dir` is not a folder or the resolution is not usable.
    """
    dataset_dir = Path(dataset_dir)
    _check_resolution(resolution)
    if not dataset_dir.is_dir():
        raise PrepareError(f"dataset folder {dataset_dir} does not exist or is not a folder")
    document, info_findings = load_dataset_info(dataset_dir / DATASET_INFO)
    class_dir = dataset_dir / CLASS_DATA_DIR
    report = _check(
        "check",
        dataset_dir,
        class_dir if class_dir.is_dir() else None,
        document,
        info_findings,
        prior_preservation=prior_preservation,
        resolution=resolution,
        destination=destination,
    )
    report.dataset_dir = dataset_dir
    return report


def _check(
    mode: Literal["check", "build"],
    images_dir: Path,
    class_dir: Path | None,
    document: dict[str, Any] | None,
    info_findings: list[Finding],
    *,
    prior_preservation: bool,
    resolution: int,
    destination: S3Location | None,
    fix_into: Path | None = None,
) -> Report:
    scan = _Scan()
    _scan(images_dir, "instance", scan)
    if class_dir is not None:
        _scan(class_dir, "class", scan)
    images = _check_images(scan.candidates, resolution=resolution, fix_into=fix_into)
    findings = [*scan.findings, *info_findings]
    if document is not None:
        findings += prompt_findings(document, prior_preservation=prior_preservation)
    findings += _count_findings(images, images_dir)
    class_count = sum(1 for image in images if image.role == "class")
    if class_count and not prior_preservation:
        findings.append(
            _warning(
                Rule.CLASS_IMAGES_UNUSED,
                f"{class_count} class images are used only with prior preservation "
                "(--prior-preservation, with_prior_preservation=True in training)",
                f"{CLASS_DATA_DIR}/",
            )
        )
    if destination is not None and not destination.is_named_folder_of(WORKFLOW_PREFIX):
        findings.append(
            _warning(
                Rule.DESTINATION,
                f"{destination.uri} is not a folder under {WORKFLOW_PREFIX} of the bucket: the "
                f"Atelier DreamBooth workflows read datasets in {WORKFLOW_PREFIX}<name>/ of the "
                "datasets bucket (e.g. s3://<datasets bucket>/dreambooth/dog/)",
            )
        )
    return Report(
        mode=mode,
        source=images_dir,
        images=images,
        findings=findings,
        dataset_info=document,
        prior_preservation=prior_preservation,
        resolution=resolution,
        fixed=fix_into is not None,
        class_source=class_dir,
    )


def _check_images(
    candidates: Sequence[_Candidate], *, resolution: int, fix_into: Path | None
) -> list[ImageResult]:
    seen: dict[str, str] = {}
    taken: dict[Role, set[str]] = {"instance": set(), "class": set()}
    for candidate in candidates:
        taken[candidate.role].add(candidate.source.name.casefold())
    results = []
    for candidate in candidates:
        result = _check_image(candidate, resolution=resolution, fix_into=fix_into, taken=taken)
        digest = _sha256(candidate.source)
        if digest is not None and digest in seen:
            result = replace(result, findings=(*result.findings, _duplicate(result, seen[digest])))
        elif digest is not None:
            seen[digest] = result.file
        results.append(result)
    return results


def _duplicate(result: ImageResult, first: str) -> Finding:
    message = f"the same bytes as {first}: it would count twice; remove one"
    if result.role == "class" and not first.startswith(f"{CLASS_DATA_DIR}/"):
        message = (
            f"the same bytes as the instance image {first}: the subject among the class images "
            "works against prior preservation; remove it"
        )
    return _error(Rule.DUPLICATE_IMAGE, message, result.file)


def _check_image(
    candidate: _Candidate,
    *,
    resolution: int,
    fix_into: Path | None,
    taken: dict[Role, set[str]],
) -> ImageResult:
    source = candidate.source
    prefix = "" if candidate.role == "instance" else f"{CLASS_DATA_DIR}/"
    inspected = inspect_image(source)
    if isinstance(inspected, str):
        finding = _error(Rule.UNREADABLE_IMAGE, inspected, prefix + source.name)
        return ImageResult(candidate.role, source.name, source, source, None, (finding,))
    findings = image_findings(prefix + source.name, inspected, resolution=resolution)
    if fix_into is None or not any(finding.fixable for finding in findings):
        return ImageResult(candidate.role, source.name, source, source, inspected, tuple(findings))
    folder = fix_into if candidate.role == "instance" else fix_into / CLASS_DATA_DIR
    try:
        name, fixes = _write_fixed(source, inspected, folder, taken[candidate.role])
    # A mode Pillow cannot convert, a full disk...: the image keeps its findings, and says why.
    except (OSError, ValueError) as error:
        failed = (f"fix failed: {type(error).__name__}: {error}",)
        return ImageResult(
            candidate.role, source.name, source, source, inspected, tuple(findings), failed
        )
    fixed = folder / name
    info = inspect_image(fixed)
    if isinstance(info, str):  # pragma: no cover - Pillow reading back what it wrote
        raise PrepareError(f"the fixed copy {fixed} of {source} is unreadable: {info}")
    refound = image_findings(prefix + name, info, resolution=resolution)
    return ImageResult(candidate.role, name, source, fixed, info, tuple(refound), fixes)


def _write_fixed(
    source: Path, info: ImageInfo, folder: Path, taken: set[str]
) -> tuple[str, tuple[str, ...]]:
    """An upright 8-bit RGB copy of `source` in `folder`, JPEG if it was JPEG, else PNG."""
    out_format = "JPEG" if info.format == "JPEG" else "PNG"
    actions: list[str] = []
    if info.format != out_format:
        actions.append(f"converted {info.format or 'unknown'} to {out_format}")
    if info.orientation != 1:
        actions.append(f"applied EXIF orientation {info.orientation}")
    if info.mode != "RGB" or info.has_alpha:
        flattened = " (transparency flattened onto white)" if info.has_alpha else ""
        actions.append(f"converted colour mode {info.mode} to RGB{flattened}")
    reencode = bool(actions)
    name = source.name
    if source.suffix.lower() not in ACCEPTED_FORMATS[out_format]:
        name = _free_name(source.stem, ACCEPTED_FORMATS[out_format][0], taken)
        actions.append(f"renamed {source.name} to {name} ({out_format} content)")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    if not reencode:
        # Only the name was wrong: the bytes are copied as they are.
        shutil.copyfile(source, target)
        return name, tuple(actions)
    with Image.open(source) as opened:
        icc_profile = opened.info.get("icc_profile")
        upright = ImageOps.exif_transpose(opened) or opened
        rgb = image_fixes.to_rgb(upright, icc_profile)
        options: dict[str, Any] = {}
        # Keep an RGB-space profile so colours stay as shot; EXIF is not carried over (the
        # orientation is applied, and a GPS location has no place in a bucket).
        if icc_profile and opened.mode in image_fixes.RGB_SPACE_MODES:
            options["icc_profile"] = icc_profile
        if out_format == "JPEG":
            options["quality"] = JPEG_QUALITY
        rgb.save(target, format=out_format, **options)
    return name, tuple(actions)


def _free_name(stem: str, suffix: str, taken: set[str]) -> str:
    name, number = f"{stem}{suffix}", 2
    while name.casefold() in taken:
        name, number = f"{stem}-{number}{suffix}", number + 1
    taken.add(name.casefold())
    return name


def _count_findings(images: Sequence[ImageResult], images_dir: Path) -> list[Finding]:
    count = sum(1 for image in images if image.role == "instance")
    low, high = RECOMMENDED_IMAGES
    if count < MIN_IMAGES:
        message = (
            f"no instance images: put the subject's .png/.jpg/.jpeg files at the top level of "
            f"{images_dir} (4-20 good images are the sweet spot)"
        )
        return [_error(Rule.IMAGE_COUNT, message)]
    if count < low:
        message = (
            f"only {count} instance images: the model sees too little of the subject; "
            f"{low}-{high} varied images (poses, backgrounds, light) work best"
        )
        return [_warning(Rule.IMAGE_COUNT, message)]
    if count > high:
        message = (
            f"{count} instance images: more than {high} rarely helps and costs steps; "
            f"{low}-{high} good, varied images work best"
        )
        return [_warning(Rule.IMAGE_COUNT, message)]
    return []


def _check_resolution(resolution: int) -> None:
    if resolution < 64 or resolution % 8:
        raise PrepareError(
            f"resolution {resolution} is not usable: Stable Diffusion needs a multiple of 8, "
            "at least 64 (512 for SD 2.1 base, 768 for SD 2 inpainting at full size)"
        )


# --------------------------------------------------------------------------- build


def build_dataset(
    images_dir: Path,
    out_dir: Path,
    *,
    instance_prompt: str | None = None,
    class_prompt: str | None = None,
    class_images_dir: Path | None = None,
    prior_preservation: bool = False,
    fix: bool = False,
    resolution: int = DEFAULT_RESOLUTION,
    destination: S3Location | None = None,
) -> Report:
    """Check the images in `images_dir` and, when there are no errors, build OUT/dataset/.

    The prompts come from `instance_prompt`/`class_prompt` when either is given, otherwise from
    `images_dir/dataset_info.json`. Class images come from `class_images_dir`, or
    `images_dir/class_data_dir/` when it exists. OUT/report.json is always written; OUT/dataset/
    only for a valid dataset (a previous one is removed first, so a failed run never leaves a
    stale dataset to upload). The originals are never modified. Raises PrepareError for a wrong
    layout or options.
    """
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    _check_resolution(resolution)
    if not images_dir.is_dir():
        raise PrepareError(f"image folder {images_dir} does not exist or is not a folder")
    class_dir = _class_dir(images_dir, class_images_dir)
    _check_out_dir(out_dir, [images_dir, *([class_dir] if class_dir else [])])
    out_dir.mkdir(parents=True, exist_ok=True)
    prepare_outputs.clear_outputs(out_dir, OUTPUT_ENTRIES)
    dataset_dir = out_dir / DATASET_FOLDER
    document: dict[str, Any] | None
    info_findings: list[Finding] = []
    if instance_prompt is not None or class_prompt is not None:
        document = {"instance_prompt": instance_prompt}
        if class_prompt is not None:
            document["class_prompt"] = class_prompt
    else:
        document, info_findings = load_dataset_info(images_dir / DATASET_INFO)
    report = _check(
        "build",
        images_dir,
        class_dir,
        document,
        info_findings,
        prior_preservation=prior_preservation,
        resolution=resolution,
        destination=destination,
        fix_into=dataset_dir if fix else None,
    )
    if report.valid:
        assert document is not None  # No dataset_info error: there is an object.
        _write_dataset(dataset_dir, report, document)
        report.dataset_dir = dataset_dir
    elif dataset_dir.exists():
        shutil.rmtree(dataset_dir)
    write_json(out_dir / REPORT_NAME, report.to_dict())
    return report


def _class_dir(images_dir: Path, class_images_dir: Path | None) -> Path | None:
    if class_images_dir is None:
        default = images_dir / CLASS_DATA_DIR
        return default if default.is_dir() else None
    class_dir = Path(class_images_dir)
    if not class_dir.is_dir():
        raise PrepareError(f"class image folder {class_dir} does not exist or is not a folder")
    return class_dir


def _check_out_dir(out_dir: Path, sources: Iterable[Path]) -> None:
    """OUT may not be inside an image folder (the next check would find it there), nor an image
    folder inside OUT/dataset (a run deletes that first)."""
    out = out_dir.resolve()
    for source in sources:
        resolved = source.resolve()
        if out.is_relative_to(resolved) or resolved.is_relative_to(out / DATASET_FOLDER):
            raise PrepareError(
                f"output folder {out_dir} overlaps the image folder {source}: a run replaces "
                f"{', '.join(OUTPUT_ENTRIES)} in it; choose a folder outside the images"
            )
    if out.exists() and not out.is_dir():
        raise PrepareError(f"output path {out_dir} exists and is not a folder")


def _write_dataset(dataset_dir: Path, report: Report, document: dict[str, Any]) -> None:
    for image in report.images:
        target = dataset_dir / image.file
        if image.path != target:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image.source, target)
    dataset_dir.mkdir(parents=True, exist_ok=True)
    info = {key: document[key].strip() for key in KNOWN_KEYS if isinstance(document.get(key), str)}
    write_json(dataset_dir / DATASET_INFO, info)


# --------------------------------------------------------------------------- upload


# Its prefix ends in "/" (parse_s3_uri requires it).
S3Location = s3_destination.S3Location


DESTINATION = s3_destination.DestinationRules(
    max_prefix_bytes=768,
    location_type=S3Location,
    error=PrepareError,
    folder_example="s3://bucket/dreambooth/<name>/",
)


def parse_s3_uri(uri: str) -> S3Location:
    """`s3://bucket/prefix/` -> S3Location. The trailing slash is required: the dataset is
    everything under the prefix, and s3://b/dreambooth/dog would also match dreambooth/dog2/."""
    return DESTINATION.parse(uri)


def check_kms_key_id(kms_key_id: str) -> None:
    DESTINATION.check_kms(kms_key_id)


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


# --------------------------------------------------------------------------- CLI


def _resolution(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"python -m {PROGRAM}",
        description="Check a Stable Diffusion DreamBooth dataset (JumpStart layout: instance "
        "images, dataset_info.json, optional class_data_dir/), build it from a folder of images, "
        "and optionally upload it to S3.",
    )
    parser.add_argument(
        "--images",
        type=Path,
        required=True,
        help="folder of instance images (.png/.jpg/.jpeg at its top level); with --check-only, "
        "the dataset folder to check",
    )
    parser.add_argument(
        "--instance-prompt",
        help='e.g. "a photo of sks dog" (with a rare identifier); replaces '
        "IMAGES/dataset_info.json",
    )
    parser.add_argument(
        "--class-prompt", help='e.g. "a photo of a dog"; required with --prior-preservation'
    )
    parser.add_argument(
        "--class-images",
        type=Path,
        help="folder of class images for prior preservation (default: IMAGES/class_data_dir/)",
    )
    parser.add_argument(
        "--prior-preservation",
        action="store_true",
        help="check for a run with with_prior_preservation=True (class_prompt required)",
    )
    parser.add_argument(
        "--resolution",
        type=_resolution,
        default=DEFAULT_RESOLUTION,
        help="the training resolution images are checked against (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="output folder: OUT/dataset/ and OUT/report.json (required unless --check-only)",
    )
    parser.add_argument(
        "--check-only",
        action="store_true",
        help="check IMAGES as a dataset as it stands; build nothing",
    )
    parser.add_argument(
        "--fix",
        action="store_true",
        help="write upright 8-bit RGB copies (JPEG or PNG by content) into the built dataset; "
        "never modifies the originals, never upscales or crops",
    )
    parser.add_argument(
        "--upload",
        metavar="S3_URI",
        help="upload the valid dataset to s3://bucket/dreambooth/<name>/ (trailing slash)",
    )
    parser.add_argument("--kms-key-id", help="KMS key for SSE-KMS on the uploaded objects")
    parser.add_argument(
        "--prune",
        action="store_true",
        help="delete images under the upload prefix that are not in this dataset",
    )
    args = parser.parse_args(argv)
    if args.check_only:
        building = [
            flag
            for flag, value in (
                ("--instance-prompt", args.instance_prompt),
                ("--class-prompt", args.class_prompt),
                ("--class-images", args.class_images),
                ("--fix", args.fix),
            )
            if value
        ]
        if building:
            parser.error(
                f"{', '.join(building)} only apply when building; --check-only checks "
                "IMAGES/dataset_info.json and IMAGES/class_data_dir/ as they are"
            )
    elif args.out is None:
        parser.error("--out is required to build a dataset (or pass --check-only)")
    if (args.kms_key_id or args.prune) and not args.upload:
        parser.error("--kms-key-id and --prune only apply with --upload")
    args.destination = DESTINATION.from_options(parser, args.upload, args.kms_key_id)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 valid (warnings allowed), 2 errors or wrong options, 1 upload failed."""
    args = parse_args(argv)
    destination: S3Location | None = args.destination
    try:
        if args.check_only:
            report = check_dataset(
                args.images,
                prior_preservation=args.prior_preservation,
                resolution=args.resolution,
                destination=destination,
            )
            if args.out is not None:
                if args.out.resolve().is_relative_to(args.images.resolve()):
                    raise PrepareError(
                        f"--out {args.out} is inside the dataset {args.images}: the next check "
                        "would find report.json there; choose a folder outside it"
                    )
                args.out.mkdir(parents=True, exist_ok=True)
                write_json(args.out / REPORT_NAME, report.to_dict())
        else:
            report = build_dataset(
                args.images,
                args.out,
                instance_prompt=args.instance_prompt,
                class_prompt=args.class_prompt,
                class_images_dir=args.class_images,
                prior_preservation=args.prior_preservation,
                fix=args.fix,
                resolution=args.resolution,
                destination=destination,
            )
    except PrepareError as error:
        prepare_outputs.print_error(PROGRAM, error)
        return EXIT_INVALID
    details = f" Details: {args.out / REPORT_NAME}" if args.out is not None else ""
    if not report.valid:
        print(report.summary(), file=sys.stderr)
        print(
            f"{PROGRAM}: error: {len(report.errors)} errors: fix them and run again"
            + ("" if args.check_only else "; no dataset built")
            + ("; nothing uploaded" if destination else "")
            + f".{details}",
            file=sys.stderr,
        )
        return EXIT_INVALID
    print(report.summary())
    print(f"The dataset is in {report.dataset_dir}.{details}")
    if destination is None:
        return EXIT_OK
    try:
        uploaded = upload_dataset(
            report, destination, kms_key_id=args.kms_key_id, prune=args.prune, progress=print
        )
    except UploadError as error:
        prepare_outputs.print_error(PROGRAM, error)
        return EXIT_UPLOAD_FAILED
    print(
        prepare_outputs.upload_summary(
            len(uploaded.uploaded), len(uploaded.unchanged), destination.uri
        )
    )
    if uploaded.stale and not uploaded.deleted:
        print(
            f"Warning: {len(uploaded.stale)} images under {destination.uri} are not in this "
            "dataset, and training reads them: "
            + ", ".join(uploaded.stale[:SUMMARY_LIMIT])
            + ". Re-run with --prune to delete them.",
            file=sys.stderr,
        )
    if uploaded.listing_problem is not None:
        print(
            f"Warning: could not list {destination.uri} to look for images not in this dataset "
            f"({uploaded.listing_problem}); make sure it holds only this dataset.",
            file=sys.stderr,
        )
    print(f"Train with the dataset {destination.uri}")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
