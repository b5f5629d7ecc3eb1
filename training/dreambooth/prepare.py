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
import hashlib
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

if __package__ in (None, ""):
    # Run as a plain script: put the training/ import root on the path for the shared `common`.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import image_checks, image_fixes, prepare_outputs
from common.image_checks import ACCEPTED_FORMATS, SWAPPING_ORIENTATIONS, ImageInfo
from common.prepare_outputs import EXIT_INVALID, EXIT_OK, EXIT_UPLOAD_FAILED, write_json
from dreambooth import layout
from dreambooth.findings import Finding, Role, Rule, error_finding, warning_finding
from dreambooth.findings import PrepareError as PrepareError
from dreambooth.findings import Severity as Severity
from dreambooth.findings import UploadError as UploadError
from dreambooth.layout import CLASS_DATA_DIR, DATASET_INFO, IMAGE_SUFFIXES, KNOWN_KEYS
from dreambooth.layout import DatasetError as DatasetError
from dreambooth.layout import DatasetInfo as DatasetInfo
from dreambooth.layout import class_image_paths as class_image_paths
from dreambooth.layout import instance_image_paths as instance_image_paths
from dreambooth.layout import read_dataset_info as read_dataset_info
from dreambooth.report import SUMMARY_LIMIT, ImageResult
from dreambooth.report import Report as Report
from dreambooth.upload import DESTINATION
from dreambooth.upload import S3Location as S3Location
from dreambooth.upload import parse_s3_uri as parse_s3_uri
from dreambooth.upload import upload_dataset as upload_dataset

# Files users mean as images that training does not read: named so the warning says "convert".
_OTHER_IMAGE_SUFFIXES = frozenset(
    {".webp", ".heic", ".heif", ".avif", ".gif", ".bmp", ".tif", ".tiff", ".jfif"}
)

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
# What `--help` says the command does.
DESCRIPTION = (
    "Check a Stable Diffusion DreamBooth dataset (JumpStart layout: instance "
    "images, dataset_info.json, optional class_data_dir/), build it from a folder of images, "
    "and optionally upload it to S3."
)


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
            error_finding(
                Rule.TOO_SMALL,
                f"{width}x{height} px: the short side is under {floor} px, so training at "
                f"{resolution} px would upscale it over {MAX_UPSCALE}x and learn mostly blur; use "
                "a larger original",
                file,
            )
        )
    elif short < resolution:
        findings.append(
            warning_finding(
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
            warning_finding(
                Rule.ASPECT_RATIO,
                f"{width}x{height} px: training crops a square, cutting {cut}% of the picture; "
                "crop it around the subject",
                file,
            )
        )
    if info.orientation != 1:
        findings.append(
            warning_finding(
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
            return [error_finding(Rule.UNSUPPORTED_FORMAT, message, file, fixable=True)]
        case ("extension", extensions):
            # Training reads by content, so this trains; but the name (and the S3 Content-Type
            # taken from it) lies.
            message = (
                f"holds {info.format} data but is named {Path(file).suffix.lower()}: rename it "
                f"to {' or '.join(extensions)} (--fix does)"
            )
            return [warning_finding(Rule.EXTENSION_MISMATCH, message, file, fixable=True)]
    return []


def _colour_findings(file: str, info: ImageInfo) -> list[Finding]:
    if info.rgb_problem is not None:
        return [
            error_finding(
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
        warning_finding(
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
        scan.findings.append(warning_finding(Rule.IGNORED_FILE, message, file))


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
    document, info_findings = layout.load_dataset_info(dataset_dir / DATASET_INFO)
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
        findings += layout.prompt_findings(document, prior_preservation=prior_preservation)
    findings += _count_findings(images, images_dir)
    class_count = sum(1 for image in images if image.role == "class")
    if class_count and not prior_preservation:
        findings.append(
            warning_finding(
                Rule.CLASS_IMAGES_UNUSED,
                f"{class_count} class images are used only with prior preservation "
                "(--prior-preservation, with_prior_preservation=True in training)",
                f"{CLASS_DATA_DIR}/",
            )
        )
    if destination is not None and not destination.is_named_folder_of(WORKFLOW_PREFIX):
        findings.append(
            warning_finding(
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
        limits=limits(resolution),
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
    return error_finding(Rule.DUPLICATE_IMAGE, message, result.file)


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
        finding = error_finding(Rule.UNREADABLE_IMAGE, inspected, prefix + source.name)
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
    image_fixes.write_upright_rgb(
        source, target, image_format=out_format, jpeg_quality=JPEG_QUALITY
    )
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
        return [error_finding(Rule.IMAGE_COUNT, message)]
    if count < low:
        message = (
            f"only {count} instance images: the model sees too little of the subject; "
            f"{low}-{high} varied images (poses, backgrounds, light) work best"
        )
        return [warning_finding(Rule.IMAGE_COUNT, message)]
    if count > high:
        message = (
            f"{count} instance images: more than {high} rarely helps and costs steps; "
            f"{low}-{high} good, varied images work best"
        )
        return [warning_finding(Rule.IMAGE_COUNT, message)]
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
        document, info_findings = layout.load_dataset_info(images_dir / DATASET_INFO)
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


# --------------------------------------------------------------------------- CLI


def _resolution(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = prepare_outputs.argument_parser(PROGRAM, DESCRIPTION)
    prepare_outputs.add_input_folder(
        parser,
        "--images",
        "folder of instance images (.png/.jpg/.jpeg at its top level); with --check-only, "
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
    prepare_outputs.add_upload_option(
        parser, "upload the valid dataset to s3://bucket/dreambooth/<name>/ (trailing slash)"
    )
    prepare_outputs.add_kms_key_option(parser)
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


def _check_only(args: argparse.Namespace) -> Report:
    """`--check-only`: the folder checked as it is; the report also goes to `--out` when given."""
    report = check_dataset(
        args.images,
        prior_preservation=args.prior_preservation,
        resolution=args.resolution,
        destination=args.destination,
    )
    if args.out is not None:
        if args.out.resolve().is_relative_to(args.images.resolve()):
            raise PrepareError(
                f"--out {args.out} is inside the dataset {args.images}: the next check "
                "would find report.json there; choose a folder outside it"
            )
        args.out.mkdir(parents=True, exist_ok=True)
        write_json(args.out / REPORT_NAME, report.to_dict())
    return report


def _build(args: argparse.Namespace) -> Report:
    return build_dataset(
        args.images,
        args.out,
        instance_prompt=args.instance_prompt,
        class_prompt=args.class_prompt,
        class_images_dir=args.class_images,
        prior_preservation=args.prior_preservation,
        fix=args.fix,
        resolution=args.resolution,
        destination=args.destination,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 valid (warnings allowed), 2 errors or wrong options, 1 upload failed."""
    args = parse_args(argv)
    destination: S3Location | None = args.destination
    try:
        report = _check_only(args) if args.check_only else _build(args)
    except PrepareError as error:
        return prepare_outputs.error_exit(PROGRAM, error, EXIT_INVALID)
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
        return prepare_outputs.error_exit(PROGRAM, error, EXIT_UPLOAD_FAILED)
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
