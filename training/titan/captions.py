"""Pairing `titan.prepare`'s images with their captions: from a CSV (`filename,caption`), a JSON
object (`{filename: caption}`) or a sidecar `.txt` beside each image. Every image without a
caption, caption without an image and name given twice becomes a finding on its record, so the
report lists them all at once instead of stopping at the first.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from titan.findings import Finding, PrepareError, Record, Rule

# Files with these extensions are taken as images (their content decides the format); HEIC and
# AVIF are listed so that they fail loudly as unreadable instead of being ignored.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"}
    | {".heic", ".heif", ".avif"}
)


CAPTION_SUFFIX = ".txt"
CAPTION_FILE_SUFFIXES = (".csv", ".json")


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
