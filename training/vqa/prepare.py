"""Build the attribute question/answer dataset for the BLIP-2 fine-tuning from the Kaggle layout.

Input (the Kaggle "Fashion Product Images" layout)::

    <source>/styles.csv           id,gender,masterCategory,...,baseColour,...,productDisplayName
    <source>/images/<id>.jpg
    <source>/styles/<id>.json     optional; data.articleAttributes holds Fabric, Fit, Collar...

Output (what train.py reads; keep it in step with it)::

    <out>/train/rows.jsonl        {"id", "image", "attribute", "question", "answer"} per line
    <out>/train/images/<id>.jpg   `image` in a row is relative to its split folder
    <out>/validation/rows.jsonl
    <out>/validation/images/<id>.jpg
    <out>/questions.json          attribute -> question text used
    <out>/report.json             counts, question map, seed, and every skipped product or row

Run from `training/` as `python -m vqa.prepare --source DIR --out DIR`, or as a plain script.
Only the standard library, Pillow and (for --upload, imported lazily) boto3: no torch here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

if __package__ in (None, ""):
    # Run as a plain script: put the training/ import root on the path for the shared `common`.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import prepare_outputs
from common.prepare_outputs import EXIT_INVALID, EXIT_OK, EXIT_UPLOAD_FAILED, write_json
from vqa.outcomes import CHECKING as CHECKING
from vqa.outcomes import READING as READING
from vqa.outcomes import WRITING as WRITING
from vqa.outcomes import PrepareError as PrepareError
from vqa.outcomes import ProgressCallback, SkippedItem, no_progress
from vqa.outcomes import Reason as Reason
from vqa.outcomes import UploadError as UploadError
from vqa.questions import DEFAULT_QUESTIONS as DEFAULT_QUESTIONS
from vqa.questions import AttributeSpec as AttributeSpec
from vqa.questions import default_question_map as default_question_map
from vqa.questions import load_question_map as load_question_map
from vqa.questions import parse_question_map as parse_question_map
from vqa.styles import RESAVE_AS_UTF8, StyleRecord
from vqa.styles import read_styles as read_styles
from vqa.upload import DESTINATION, OUTPUT_ENTRIES, SPLITS
from vqa.upload import S3Location as S3Location
from vqa.upload import dataset_files as dataset_files
from vqa.upload import parse_s3_uri as parse_s3_uri
from vqa.upload import upload as upload

# The reference kept only shirts and T-shirts.
DEFAULT_ARTICLE_TYPES: tuple[str, ...] = ("Shirts", "Tshirts")
DEFAULT_SEED = 42
# The name in error messages and usage (`python -m vqa.prepare`).
PROGRAM = "vqa.prepare"
# What `--help` says the command does.
DESCRIPTION = (
    "Build the BLIP-2 attribute question/answer dataset (train/validation "
    "rows.jsonl, images, questions.json, report.json) from the Kaggle Fashion Product "
    "Images layout."
)
DEFAULT_VALIDATION_FRACTION = 0.1

# Preferred first when one id has several image files.
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp")

# Values the catalog uses for "unknown": a row with one would teach the model to answer "NA".
_EMPTY_VALUES = frozenset({"", "na", "n/a", "-", "--", "nan", "null"})
MAX_VALUE_CHARS = 100
# Kaggle's styles/<id>.json files are a few KB; anything this large is not one of them.
MAX_ATTRIBUTES_JSON_BYTES = 1_000_000


class NoUsableDataError(PrepareError):
    """Every product was skipped; the report says why."""

    def __init__(self, message: str, report: Report) -> None:
        super().__init__(message)
        self.report = report


# --------------------------------------------------------------------------- article types


def parse_article_types(text: str) -> tuple[str, ...] | None:
    """`Shirts,Tshirts` -> ("Shirts", "Tshirts"); empty or `all` -> None (no filter)."""
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    if not names or (len(names) == 1 and names[0].casefold() == "all"):
        return None
    return names


# --------------------------------------------------------------------------- products


@dataclass(frozen=True)
class QaRow:
    id: str
    image: str
    attribute: str
    question: str
    answer: str

    def to_dict(self) -> dict[str, str]:
        return {
            "id": self.id,
            "image": self.image,
            "attribute": self.attribute,
            "question": self.question,
            "answer": self.answer,
        }


@dataclass(frozen=True)
class _Product:
    record: StyleRecord
    image: Path
    rows: tuple[QaRow, ...]


def _id_key(product_id: str) -> tuple[int, str]:
    return int(product_id), product_id


def _resolve_duplicates(
    records: Sequence[StyleRecord],
) -> tuple[list[StyleRecord], list[SkippedItem]]:
    """One record per id. Identical copies keep the first; conflicting copies are all dropped.

    Dropping every conflicting copy (instead of keeping the first) keeps the result independent of
    the order of lines in the file.
    """
    by_id: dict[str, list[StyleRecord]] = defaultdict(list)
    for record in records:
        by_id[record.id].append(record)
    kept: list[StyleRecord] = []
    skipped: list[SkippedItem] = []
    for record in records:
        copies = by_id[record.id]
        if len(copies) == 1 or (record is copies[0] and _identical(copies)):
            kept.append(record)
            continue
        lines = ", ".join(str(copy.line) for copy in copies)
        message = (
            f"id {record.id} repeats line {copies[0].line} (lines {lines}); kept once"
            if _identical(copies)
            else f"id {record.id} appears on lines {lines} with different data; all dropped"
        )
        skipped.append(SkippedItem(record.line, record.id, Reason.DUPLICATE_ID, message))
    return kept, skipped


def _identical(copies: Sequence[StyleRecord]) -> bool:
    return all(copy.values == copies[0].values for copy in copies)


def index_images(images_dir: Path) -> dict[str, Path]:
    """Product id -> image file, listing the folder once instead of probing per product."""

    def preference(path: Path) -> tuple[int, str]:
        return IMAGE_EXTENSIONS.index(path.suffix.lower()), path.name

    found: dict[str, Path] = {}
    with os.scandir(images_dir) as entries:
        for entry in entries:
            path = Path(entry.path)
            if path.suffix.lower() not in IMAGE_EXTENSIONS or not entry.is_file():
                continue
            current = found.get(path.stem)
            # Several files for one id (1.jpg, 1.png): the same one wins whatever the listing order.
            if current is None or preference(path) < preference(current):
                found[path.stem] = path
    return found


def verify_image(path: Path) -> str | None:
    """None if Pillow can open, verify and decode the file, else why not.

    verify() checks structure (PNG checksums...) but not a JPEG cut short by a partial download,
    the usual damage in a 44k-file download: decoding finds that. JPEGs decode at reduced scale
    (draft), which still reads all the data at a fraction of the cost.
    """
    try:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            image.draft("RGB", (64, 64))
            image.load()
    # Pillow raises OSError, SyntaxError, ValueError, struct.error... for broken files.
    except Exception as error:
        return f"{path.name} is not a readable image: {type(error).__name__}: {error}"
    return None


@dataclass(frozen=True)
class _Attributes:
    """A product's data.articleAttributes (keys folded), or why there are none."""

    values: Mapping[str, object]
    problem: tuple[Reason, str] | None = None


def _article_attributes(product_id: str, styles_dir: Path) -> _Attributes:
    path = styles_dir / f"{product_id}.json"
    if not path.is_file():
        return _Attributes({}, (Reason.MISSING_ATTRIBUTES_JSON, f"no styles/{path.name}"))
    try:
        if path.stat().st_size > MAX_ATTRIBUTES_JSON_BYTES:
            return _bad_json(f"{path.name} is larger than {MAX_ATTRIBUTES_JSON_BYTES} bytes")
        document = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as error:
        return _bad_json(f"cannot read styles/{path.name}: {error.strerror}")
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return _bad_json(f"styles/{path.name} is not valid JSON: {error}")
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, dict):
        return _bad_json(f"styles/{path.name} has no 'data' object")
    # Some products have no articleAttributes at all: each question then reports missing_value.
    attributes = data.get("articleAttributes", {})
    if not isinstance(attributes, dict):
        return _bad_json(f"styles/{path.name}: data.articleAttributes is not an object")
    return _Attributes({_attribute_key(key): value for key, value in attributes.items()})


def _bad_json(message: str) -> _Attributes:
    return _Attributes({}, (Reason.BAD_ATTRIBUTES_JSON, message))


def _attribute_key(key: str) -> str:
    # Matched leniently: "Sleeve  length" in one file is the same question as "Sleeve Length".
    return " ".join(key.split()).casefold()


@dataclass(frozen=True)
class _Answer:
    """A usable value, or why the row is skipped; neither means the question is not asked."""

    value: str | None = None
    reason: Reason | None = None
    message: str = ""


def _clean_value(value: object, where: str) -> _Answer:
    if value is None:
        return _Answer(reason=Reason.EMPTY_VALUE, message=f"{where} is null")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return _Answer(reason=Reason.BAD_VALUE, message=f"{where} = {value!r} is not text")
    text = " ".join(str(value).split())
    if text.casefold() in _EMPTY_VALUES:
        return _Answer(reason=Reason.EMPTY_VALUE, message=f"{where} = {str(value)!r} (unknown)")
    if len(text) > MAX_VALUE_CHARS:
        message = f"{where} has {len(text)} characters; at most {MAX_VALUE_CHARS}"
        return _Answer(reason=Reason.BAD_VALUE, message=message)
    return _Answer(value=text)


@dataclass(frozen=True)
class _Sources:
    images: dict[str, Path]
    # None when the source has no styles/ folder (Kaggle's small download).
    styles_dir: Path | None


def _product_rows(
    record: StyleRecord,
    image_name: str,
    questions: Mapping[str, AttributeSpec],
    sources: _Sources,
    skipped: list[SkippedItem],
) -> list[QaRow]:
    needs_json = any(spec.source.kind == "attributes" for spec in questions.values())
    attributes = (
        _article_attributes(record.id, sources.styles_dir)
        if needs_json and sources.styles_dir is not None
        else None
    )
    rows: list[QaRow] = []
    for attribute, spec in questions.items():
        answer = _answer(record, spec, attributes)
        if answer.value is not None:
            text = f"{spec.label}: {answer.value}"
            rows.append(QaRow(record.id, image_name, attribute, spec.question, text))
        elif answer.reason is not None:
            skipped.append(
                SkippedItem(record.line, record.id, answer.reason, answer.message, attribute)
            )
    return rows


def _answer(record: StyleRecord, spec: AttributeSpec, attributes: _Attributes | None) -> _Answer:
    if spec.source.kind == "csv":
        column = spec.source.key
        if column in record.undecodable:
            return _not_utf8(record, column)
        return _clean_value(record.values.get(column, ""), column)
    if attributes is None:
        # No styles/ folder at all: one warning in the report instead of a row per product.
        return _Answer()
    if attributes.problem is not None:
        reason, message = attributes.problem
        return _Answer(reason=reason, message=message)
    key = _attribute_key(spec.source.key)
    if key not in attributes.values:
        return _Answer(
            reason=Reason.MISSING_VALUE, message=f"articleAttributes has no {spec.source.key!r}"
        )
    return _clean_value(attributes.values[key], f"articleAttributes[{spec.source.key!r}]")


def _not_utf8(record: StyleRecord, column: str) -> _Answer:
    message = f"{column} = {record.values[column]!r} is not UTF-8 text; {RESAVE_AS_UTF8}"
    return _Answer(reason=Reason.NOT_UTF8, message=message)


def _check_product(
    record: StyleRecord, selected_types: Collection[str] | None, sources: _Sources
) -> Path | SkippedItem:
    """The product's image, or why the whole product is left out."""

    def skip(reason: Reason, message: str) -> SkippedItem:
        return SkippedItem(record.line, record.id, reason, message)

    if selected_types is not None and "articleType" in record.undecodable:
        # Whether it is a selected type cannot be told from bytes of an unknown encoding.
        return skip(Reason.NOT_UTF8, _not_utf8(record, "articleType").message)
    article_type = record.values.get("articleType", "")
    if selected_types is not None and article_type.casefold() not in selected_types:
        return skip(Reason.FILTERED_ARTICLE_TYPE, f"articleType {article_type!r} is not selected")
    image = sources.images.get(record.id)
    if image is None:
        return skip(Reason.MISSING_IMAGE, f"no images/{record.id}.jpg (or .jpeg, .png, .webp)")
    problem = verify_image(image)
    if problem:
        return skip(Reason.UNREADABLE_IMAGE, problem)
    return image


# --------------------------------------------------------------------------- split


def validation_count(products: int, fraction: float) -> int:
    """At least one validation product once there are two, and always one left for training."""
    if products < 2:
        return 0
    return min(products - 1, max(1, int(products * fraction + 0.5)))


def split_ids(ids: Iterable[str], *, validation_fraction: float, seed: int) -> dict[str, str]:
    """Product id -> split. Ranks ids by a seeded hash, so the order of the CSV does not matter
    and adding products moves few existing ones between splits."""
    unique = sorted(set(ids), key=_id_key)

    def rank(product_id: str) -> str:
        return hashlib.sha256(f"{seed}\0{product_id}".encode()).hexdigest()

    ranked = sorted(unique, key=lambda product_id: (rank(product_id), _id_key(product_id)))
    validation = set(ranked[: validation_count(len(ranked), validation_fraction)])
    return {
        product_id: "validation" if product_id in validation else "train" for product_id in unique
    }


# --------------------------------------------------------------------------- report


@dataclass
class Report:
    source_dir: str
    out_dir: str
    seed: int
    validation_fraction: float
    article_types: list[str] | None
    questions: dict[str, AttributeSpec]
    data_lines: int = 0
    blank_lines: int = 0
    repaired_lines: list[int] = field(default_factory=list)
    undecodable_lines: list[int] = field(default_factory=list)
    products_read: int = 0
    products_per_split: dict[str, int] = field(default_factory=dict)
    rows_per_split: dict[str, int] = field(default_factory=dict)
    rows_per_attribute: dict[str, dict[str, int]] = field(default_factory=dict)
    skipped: list[SkippedItem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def products_kept(self) -> int:
        return sum(self.products_per_split.values())

    @property
    def skipped_by_reason(self) -> dict[str, int]:
        counts = Counter(str(item.reason) for item in self.skipped)
        return dict(sorted(counts.items()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "source_dir": self.source_dir,
            "out_dir": self.out_dir,
            "seed": self.seed,
            "validation_fraction": self.validation_fraction,
            "article_types": self.article_types,
            "questions": {name: spec.to_dict() for name, spec in self.questions.items()},
            "counts": {
                "data_lines": self.data_lines,
                "blank_lines": self.blank_lines,
                "repaired_lines": len(self.repaired_lines),
                "undecodable_lines": len(self.undecodable_lines),
                "products_read": self.products_read,
                "products_kept": self.products_kept,
                "products_per_split": self.products_per_split,
                "rows_per_split": self.rows_per_split,
                "rows_per_attribute": self.rows_per_attribute,
                "skipped_by_reason": self.skipped_by_reason,
            },
            "repaired_lines": self.repaired_lines,
            "undecodable_lines": self.undecodable_lines,
            "warnings": self.warnings,
            "skipped": [item.to_dict() for item in self.skipped],
        }

    def summary(self) -> str:
        """A few lines for a person at a terminal; report.json has the details."""
        lines = [
            f"Read {self.products_read} products from {self.data_lines} lines "
            f"({len(self.repaired_lines)} names with commas repaired, "
            f"{self.blank_lines} blank lines).",
            f"Kept {self.products_kept} products: "
            + ", ".join(
                f"{split} {self.products_per_split.get(split, 0)} "
                f"({self.rows_per_split.get(split, 0)} rows)"
                for split in SPLITS
            )
            + ".",
            "Rows per attribute: "
            + ", ".join(f"{name} {sum(c.values())}" for name, c in self.rows_per_attribute.items())
            + ".",
        ]
        if self.skipped:
            reasons = ", ".join(f"{r} {n}" for r, n in self.skipped_by_reason.items())
            lines.append(f"Skipped {len(self.skipped)} products or rows: {reasons}.")
        lines.extend(f"Warning: {warning}" for warning in self.warnings)
        return "\n".join(lines)


# --------------------------------------------------------------------------- build


def build_dataset(
    source_dir: Path,
    out_dir: Path,
    *,
    questions: Mapping[str, AttributeSpec] | None = None,
    article_types: Collection[str] | None = DEFAULT_ARTICLE_TYPES,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    seed: int = DEFAULT_SEED,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> Report:
    """Read the Kaggle layout in `source_dir`, write the dataset into `out_dir`, return the report.

    `article_types` None keeps every article type. `progress` hears of every product checked
    and written (ProgressCallback). Raises PrepareError for a wrong layout or a
    non-empty `out_dir` (without `overwrite`), NoUsableDataError when every product is skipped;
    nothing is written in either case.
    """
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    if isinstance(article_types, str):
        # A lone string would otherwise be taken as a collection of one-letter types.
        article_types = parse_article_types(article_types)
    elif article_types is not None and not article_types:
        article_types = None  # As on the command line: no types named means no filter.
    question_map = dict(questions) if questions is not None else default_question_map()
    if not question_map:
        raise PrepareError("the question map is empty")
    if not 0.0 < validation_fraction < 1.0:
        raise PrepareError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    _check_source(source_dir)
    _check_out_dir(source_dir, out_dir, overwrite=overwrite)
    # articleType is matched case-insensitively: "Tshirts" and "TShirts" are one type.
    selected = None if article_types is None else {name.casefold() for name in article_types}
    report = Report(
        source_dir=str(source_dir),
        out_dir=str(out_dir),
        seed=seed,
        validation_fraction=validation_fraction,
        article_types=None if article_types is None else list(article_types),
        questions=question_map,
    )
    progress = progress or no_progress
    products = _collect_products(source_dir, question_map, selected, report, progress)
    if not products:
        reasons = ", ".join(f"{r} {n}" for r, n in report.skipped_by_reason.items())
        raise NoUsableDataError(
            f"no usable products: every product was skipped ({reasons or 'none read'})", report
        )
    splits = split_ids(
        (p.record.id for p in products), validation_fraction=validation_fraction, seed=seed
    )
    _fill_counts(report, products, splits)
    _write_dataset(out_dir, products, splits, report, progress)
    return report


def _check_source(source_dir: Path) -> None:
    layout = "expected the Kaggle layout: styles.csv, images/<id>.jpg, optional styles/<id>.json"
    if not source_dir.is_dir():
        raise PrepareError(f"source folder {source_dir} does not exist; {layout}")
    if not (source_dir / "styles.csv").is_file():
        raise PrepareError(f"no styles.csv in {source_dir}; {layout}")
    if not (source_dir / "images").is_dir():
        raise PrepareError(f"no images/ folder in {source_dir}; {layout}")


def _check_out_dir(source_dir: Path, out_dir: Path, *, overwrite: bool) -> None:
    source, out = source_dir.resolve(), out_dir.resolve()
    if out == source or out.is_relative_to(source / "images") or source.is_relative_to(out):
        raise PrepareError(
            f"output folder {out_dir} overlaps the source folder {source_dir}: choose another"
        )
    if out.exists() and not out.is_dir():
        raise PrepareError(f"output path {out_dir} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise PrepareError(
            f"output folder {out_dir} is not empty; pass --overwrite to replace the dataset in it"
        )


def _collect_products(
    source_dir: Path,
    questions: Mapping[str, AttributeSpec],
    selected_types: Collection[str] | None,
    report: Report,
    progress: ProgressCallback,
) -> list[_Product]:
    """Every product with an image and at least one answer; the rest go to report.skipped."""
    required = ["id", "articleType"] + [
        spec.source.key for spec in questions.values() if spec.source.kind == "csv"
    ]
    progress(READING, 0, None)
    table = read_styles(source_dir / "styles.csv", required_columns=required, progress=progress)
    report.data_lines, report.blank_lines = table.data_lines, table.blank_lines
    report.repaired_lines = table.repaired_lines
    report.undecodable_lines = table.undecodable_lines
    if table.undecodable_lines:
        shown = ", ".join(str(number) for number in table.undecodable_lines[:10])
        more = ", ..." if len(table.undecodable_lines) > 10 else ""
        report.warnings.append(
            f"{len(table.undecodable_lines)} lines of styles.csv are not UTF-8 (lines "
            f"{shown}{more}): their undecodable values were not used (reason not_utf8); "
            f"{RESAVE_AS_UTF8}"
        )
    report.products_read = len({record.id for record in table.records})
    records, duplicates = _resolve_duplicates(table.records)
    skipped = [*table.skipped, *duplicates]
    styles_dir = source_dir / "styles"
    sources = _Sources(
        index_images(source_dir / "images"), styles_dir if styles_dir.is_dir() else None
    )
    lines = table.data_lines + table.blank_lines
    progress(READING, lines, lines)
    if sources.styles_dir is None:
        unavailable = [name for name, spec in questions.items() if spec.source.kind == "attributes"]
        if unavailable:
            report.warnings.append(
                f"no styles/ folder in {source_dir}: no rows for {', '.join(unavailable)}"
            )
    products: list[_Product] = []
    progress(CHECKING, 0, len(records))
    for done, record in enumerate(records, start=1):
        product = _product(record, questions, selected_types, sources, skipped)
        if product is not None:
            products.append(product)
        progress(CHECKING, done, len(records))
    report.skipped = sorted(skipped, key=lambda item: item.line or 0)
    return sorted(products, key=lambda product: _id_key(product.record.id))


def _product(
    record: StyleRecord,
    questions: Mapping[str, AttributeSpec],
    selected_types: Collection[str] | None,
    sources: _Sources,
    skipped: list[SkippedItem],
) -> _Product | None:
    image = _check_product(record, selected_types, sources)
    if isinstance(image, SkippedItem):
        skipped.append(image)
        return None
    image_name = f"images/{record.id}{image.suffix}"
    rows = _product_rows(record, image_name, questions, sources, skipped)
    if not rows:
        message = "no attribute has a usable answer (see this product's rows above)"
        skipped.append(SkippedItem(record.line, record.id, Reason.NO_ANSWERS, message))
        return None
    return _Product(record, image, tuple(rows))


def _fill_counts(report: Report, products: Sequence[_Product], splits: Mapping[str, str]) -> None:
    report.products_per_split = {split: 0 for split in SPLITS}
    report.rows_per_split = {split: 0 for split in SPLITS}
    report.rows_per_attribute = {name: {split: 0 for split in SPLITS} for name in report.questions}
    for product in products:
        split = splits[product.record.id]
        report.products_per_split[split] += 1
        report.rows_per_split[split] += len(product.rows)
        for row in product.rows:
            report.rows_per_attribute[row.attribute][split] += 1
    for split in SPLITS:
        if report.products_per_split[split] == 0:
            report.warnings.append(f"the {split} split is empty")


def _write_dataset(
    out_dir: Path,
    products: Sequence[_Product],
    splits: Mapping[str, str],
    report: Report,
    progress: ProgressCallback,
) -> None:
    prepare_outputs.clear_outputs(out_dir, OUTPUT_ENTRIES)
    written = 0
    progress(WRITING, written, len(products))
    for split in SPLITS:
        (out_dir / split / "images").mkdir(parents=True, exist_ok=True)
        members = [product for product in products if splits[product.record.id] == split]
        with (out_dir / split / "rows.jsonl").open("w", encoding="utf-8") as handle:
            for product in members:
                shutil.copyfile(product.image, out_dir / split / product.rows[0].image)
                for row in product.rows:
                    handle.write(json.dumps(row.to_dict(), ensure_ascii=False) + "\n")
                written += 1
                progress(WRITING, written, len(products))
    questions = {name: spec.question for name, spec in report.questions.items()}
    write_json(out_dir / "questions.json", questions)
    write_json(out_dir / "report.json", report.to_dict())


# --------------------------------------------------------------------------- CLI


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1 (exclusive)")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError("the seed must be 0 or more")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = prepare_outputs.argument_parser(PROGRAM, DESCRIPTION)
    prepare_outputs.add_input_folder(
        parser,
        "--source",
        "folder with styles.csv, images/<id>.jpg and optionally styles/<id>.json",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--questions",
        type=Path,
        help="JSON file: {attribute: {question, "
        "source ('attributes:<key>' or 'csv:<column>'), label}} (default: the "
        "description pipeline's questions)",
    )
    parser.add_argument(
        "--article-types",
        default=",".join(DEFAULT_ARTICLE_TYPES),
        help="comma-separated articleType values to keep; '' or 'all' keeps "
        "every product (default: %(default)s)",
    )
    parser.add_argument(
        "--validation-fraction",
        type=_fraction,
        default=DEFAULT_VALIDATION_FRACTION,
        help="share of products in the validation split (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=_seed, default=DEFAULT_SEED, help="seed of the split (default: %(default)s)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a dataset already in --out"
    )
    prepare_outputs.add_upload_option(parser, "also upload the dataset to s3://bucket/prefix/")
    prepare_outputs.add_kms_key_option(parser)
    args = parser.parse_args(argv)
    if args.kms_key_id and not args.upload:
        parser.error("--kms-key-id only applies with --upload")
    DESTINATION.from_options(parser, args.upload, args.kms_key_id)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 done, 2 wrong layout or options or nothing usable, 1 upload failed."""
    args = parse_args(argv)
    try:
        questions = load_question_map(args.questions) if args.questions else None
        report = build_dataset(
            args.source,
            args.out,
            questions=questions,
            article_types=parse_article_types(args.article_types),
            validation_fraction=args.validation_fraction,
            seed=args.seed,
            overwrite=args.overwrite,
        )
    except NoUsableDataError as error:
        print(error.report.summary(), file=sys.stderr)
        return prepare_outputs.error_exit(PROGRAM, error, EXIT_INVALID)
    except PrepareError as error:
        return prepare_outputs.error_exit(PROGRAM, error, EXIT_INVALID)
    print(report.summary())
    print(f"Wrote {args.out} (report: {args.out / 'report.json'}).")
    if args.upload:
        try:
            keys = upload(args.out, args.upload, kms_key_id=args.kms_key_id)
        except (PrepareError, UploadError) as error:
            return prepare_outputs.error_exit(PROGRAM, error, EXIT_UPLOAD_FAILED)
        print(f"Uploaded {len(keys)} files to {args.upload}.")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
