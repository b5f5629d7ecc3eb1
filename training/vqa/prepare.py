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
import csv
import hashlib
import json
import mimetypes
import os
import re
import shutil
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from PIL import Image

if __package__ in (None, ""):
    # Run as a plain script: put the training/ import root on the path for the shared `common`.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import prepare_outputs, s3_destination
from common.prepare_outputs import EXIT_INVALID, EXIT_OK, EXIT_UPLOAD_FAILED, write_json

# Exactly the questions the description pipeline asks the endpoint (cdk.json
# context.atelier.defaults.descriptions.questions): a model trained on other wording would be
# asked questions it never saw. A test holds the two equal.
DEFAULT_QUESTIONS: dict[str, str] = {
    "fabric": "What is the fabric of the garment in this picture?",
    "fit": "What is the fit of the garment in this picture?",
    "collar": "What is the collar type of the garment in this picture?",
    "pattern": "What is the pattern of the garment in this picture?",
    "neck_type": "What is the neck type of the garment in this picture?",
    "sleeve_length": "What is the sleeve length of the garment in this picture?",
    "sleeve_styling": "What is the sleeve styling of the garment in this picture?",
    "colour": "What is the colour of the garment in this picture?",
}
# Where each default attribute's answer comes from, and the label that prefixes it.
_DEFAULT_SOURCES: dict[str, tuple[str, str]] = {
    "fabric": ("attributes:Fabric", "Fabric"),
    "fit": ("attributes:Fit", "Fit"),
    "collar": ("attributes:Collar", "Collar"),
    "pattern": ("attributes:Pattern", "Pattern"),
    "neck_type": ("attributes:Neck", "Neck Type"),
    "sleeve_length": ("attributes:Sleeve Length", "Sleeve Length"),
    "sleeve_styling": ("attributes:Sleeve Styling", "Sleeve Styling"),
    "colour": ("csv:baseColour", "Colour"),
}
# The reference kept only shirts and T-shirts.
DEFAULT_ARTICLE_TYPES: tuple[str, ...] = ("Shirts", "Tshirts")
DEFAULT_SEED = 42
# The name in error messages and usage (`python -m vqa.prepare`).
PROGRAM = "vqa.prepare"
DEFAULT_VALIDATION_FRACTION = 0.1

# The ten columns of the real styles.csv, in its order; productDisplayName is last, which is what
# lets the reader put back names that carry unquoted commas.
STYLES_COLUMNS: tuple[str, ...] = (
    "id",
    "gender",
    "masterCategory",
    "subCategory",
    "articleType",
    "baseColour",
    "season",
    "year",
    "usage",
    "productDisplayName",
)
NAME_COLUMN = "productDisplayName"
SPLITS: tuple[str, ...] = ("train", "validation")
# Everything a run writes into the output folder: --overwrite removes these and nothing else,
# and upload() sends these and nothing else.
OUTPUT_ENTRIES: tuple[str, ...] = ("train", "validation", "questions.json", "report.json")
# Preferred first when one id has several image files.
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp")

ATTRIBUTE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
# The description pipeline strips answer labels with this shape (descriptions.logic.grounding);
# a label it cannot strip would leak into the attributes Claude sees.
LABEL_PATTERN = re.compile(r"^[A-Za-z][A-Za-z _-]{0,30}$")
PRODUCT_ID = re.compile(r"^[0-9]{1,18}$")
# pandas names header cells it had to invent "Unnamed: N"; the original file has none.
_PLACEHOLDER_COLUMN = re.compile(r"^(Unnamed: \d+)?$")
# Values the catalog uses for "unknown": a row with one would teach the model to answer "NA".
_EMPTY_VALUES = frozenset({"", "na", "n/a", "-", "--", "nan", "null"})
MAX_QUESTION_CHARS = 500
MAX_VALUE_CHARS = 100
MAX_ATTRIBUTES = 64
# Kaggle's styles/<id>.json files are a few KB; anything this large is not one of them.
MAX_ATTRIBUTES_JSON_BYTES = 1_000_000
# styles.csv is read as UTF-8 with undecodable bytes kept as lone surrogates (surrogateescape),
# so that a bad byte marks its own field instead of failing the file or being replaced.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
RESAVE_AS_UTF8 = "re-save styles.csv as UTF-8 (e.g. iconv -f cp1252 -t utf-8)"


class Reason(StrEnum):
    """Why a product (attribute None) or one of its rows (attribute set) was left out."""

    MALFORMED_LINE = "malformed_line"
    BAD_ID = "bad_id"
    DUPLICATE_ID = "duplicate_id"
    FILTERED_ARTICLE_TYPE = "filtered_article_type"
    MISSING_IMAGE = "missing_image"
    UNREADABLE_IMAGE = "unreadable_image"
    MISSING_ATTRIBUTES_JSON = "missing_attributes_json"
    BAD_ATTRIBUTES_JSON = "bad_attributes_json"
    MISSING_VALUE = "missing_value"
    EMPTY_VALUE = "empty_value"
    BAD_VALUE = "bad_value"
    # The value's bytes in styles.csv are not UTF-8: decoding them would mean guessing the
    # encoding, and a wrong guess ("Bleu Fonc\ufffd") would become a training answer.
    NOT_UTF8 = "not_utf8"
    NO_ANSWERS = "no_answers"


# (step, done, total) as the build goes: "reading" styles.csv lines (total None until the end,
# which also lists images/), "checking" products (every image is opened and decoded: most of the
# time on a large catalog), then "writing" products (rows and image copies).
ProgressCallback = Callable[[str, int, int | None], None]
READING, CHECKING, WRITING = "reading", "checking", "writing"
_READING_EVERY = 2000  # lines between two "reading" reports


def _no_progress(step: str, done: int, total: int | None) -> None:
    del step, done, total


class PrepareError(Exception):
    """Wrong input layout or options: the CLI prints the message and exits 2."""


class NoUsableDataError(PrepareError):
    """Every product was skipped; the report says why."""

    def __init__(self, message: str, report: Report) -> None:
        super().__init__(message)
        self.report = report


class UploadError(Exception):
    """The dataset was written locally but could not be uploaded: the CLI exits 1."""


# --------------------------------------------------------------------------- question map


@dataclass(frozen=True)
class Source:
    """Where an answer comes from: a key of data.articleAttributes or a styles.csv column."""

    kind: Literal["attributes", "csv"]
    key: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.key}"


@dataclass(frozen=True)
class AttributeSpec:
    question: str
    source: Source
    label: str

    def to_dict(self) -> dict[str, str]:
        return {"question": self.question, "source": str(self.source), "label": self.label}


def parse_source(text: str) -> Source:
    """`attributes:<articleAttributes key>` or `csv:<styles.csv column>`."""
    kind, sep, key = text.partition(":")
    key = key.strip()
    if not sep or not key or kind not in ("attributes", "csv"):
        raise PrepareError(
            f"source {text!r} is not 'attributes:<articleAttributes key>' or 'csv:<column>'"
        )
    if kind == "csv" and (key not in STYLES_COLUMNS or key == "id"):
        columns = ", ".join(column for column in STYLES_COLUMNS if column != "id")
        raise PrepareError(f"source {text!r}: the styles.csv column must be one of {columns}")
    return Source("attributes" if kind == "attributes" else "csv", key)


def default_question_map() -> dict[str, AttributeSpec]:
    return {
        attribute: AttributeSpec(question, parse_source(source), label)
        for attribute, question in DEFAULT_QUESTIONS.items()
        for source, label in [_DEFAULT_SOURCES[attribute]]
    }


def parse_question_map(document: object) -> dict[str, AttributeSpec]:
    """Validate a question map: `{attribute: {"question", "source"?, "label"?} | "question"}`.

    The short forms (a bare question string, or no source/label) only work for the default
    attributes, whose source and label are known.
    """
    if not isinstance(document, dict) or not document:
        raise PrepareError("the question map must be a non-empty JSON object of attributes")
    if len(document) > MAX_ATTRIBUTES:
        raise PrepareError(f"the question map has {len(document)} attributes; at most 64")
    return {
        _attribute_name(attribute): _attribute_spec(attribute, entry)
        for attribute, entry in document.items()
    }


def _attribute_name(attribute: object) -> str:
    if not isinstance(attribute, str) or not ATTRIBUTE_NAME.fullmatch(attribute):
        raise PrepareError(
            f"attribute name {attribute!r} must match {ATTRIBUTE_NAME.pattern} "
            "(lowercase letters, digits and _, starting with a letter, at most 48 characters)"
        )
    return attribute


def _attribute_spec(attribute: str, entry: object) -> AttributeSpec:
    if isinstance(entry, str):
        entry = {"question": entry}
    if not isinstance(entry, dict):
        raise PrepareError(f"attribute {attribute!r}: expected a question string or an object")
    unknown = sorted(set(entry) - {"question", "source", "label"})
    if unknown:
        raise PrepareError(f"attribute {attribute!r}: unknown keys {unknown}")
    default_source, default_label = _DEFAULT_SOURCES.get(attribute, (None, None))
    question = _question_text(attribute, entry.get("question"))
    source_text = entry.get("source", default_source)
    if not isinstance(source_text, str):
        raise PrepareError(
            f"attribute {attribute!r}: 'source' is required (not a default attribute) and must "
            "be 'attributes:<articleAttributes key>' or 'csv:<column>'"
        )
    try:
        source = parse_source(source_text)
    except PrepareError as error:
        raise PrepareError(f"attribute {attribute!r}: {error}") from None
    label = entry.get("label", default_label or attribute.replace("_", " ").title())
    if not isinstance(label, str) or not LABEL_PATTERN.fullmatch(label):
        raise PrepareError(
            f"attribute {attribute!r}: label {label!r} must match {LABEL_PATTERN.pattern} "
            "(the description pipeline strips labels of that shape from answers)"
        )
    return AttributeSpec(question, source, label)


def _question_text(attribute: str, question: object) -> str:
    if not isinstance(question, str) or not question.strip():
        raise PrepareError(f"attribute {attribute!r}: 'question' must be a non-empty string")
    text = " ".join(question.split())
    if len(text) > MAX_QUESTION_CHARS:
        raise PrepareError(
            f"attribute {attribute!r}: the question has {len(text)} characters; at most "
            f"{MAX_QUESTION_CHARS}"
        )
    return text


def load_question_map(path: Path) -> dict[str, AttributeSpec]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise PrepareError(f"cannot read the question map {path}: {error.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PrepareError(f"the question map {path} is not valid JSON: {error}") from None
    try:
        return parse_question_map(document)
    except PrepareError as error:
        raise PrepareError(f"{path}: {error}") from None


def parse_article_types(text: str) -> tuple[str, ...] | None:
    """`Shirts,Tshirts` -> ("Shirts", "Tshirts"); empty or `all` -> None (no filter)."""
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    if not names or (len(names) == 1 and names[0].casefold() == "all"):
        return None
    return names


# --------------------------------------------------------------------------- styles.csv


@dataclass(frozen=True)
class SkippedItem:
    """A product (attribute None) or one question row of it that did not make it into the data."""

    line: int | None
    id: str | None
    reason: Reason
    message: str
    attribute: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "id": self.id,
            "attribute": self.attribute,
            "reason": str(self.reason),
            "message": self.message,
        }


@dataclass(frozen=True)
class StyleRecord:
    line: int
    id: str
    # A value in `undecodable` holds its bytes as escapes (`Bleu Fonc\\xe9`), for messages only.
    values: dict[str, str]
    # The line's productDisplayName had unquoted commas (or bad quoting) and was put back together.
    repaired: bool = False
    # Columns whose bytes are not UTF-8: never used as an answer (Reason.NOT_UTF8).
    undecodable: frozenset[str] = frozenset()


@dataclass
class StylesTable:
    columns: tuple[str, ...]
    records: list[StyleRecord] = field(default_factory=list)
    skipped: list[SkippedItem] = field(default_factory=list)
    data_lines: int = 0
    blank_lines: int = 0
    # Data lines with bytes that are not UTF-8, whatever became of the line.
    undecodable_lines: list[int] = field(default_factory=list)

    @property
    def repaired_lines(self) -> list[int]:
        return [record.line for record in self.records if record.repaired]


@dataclass(frozen=True)
class _Header:
    cells: tuple[str, ...]
    # (index, name) of every real column; pandas' "Unnamed: N" cells are left out.
    named: tuple[tuple[int, str], ...]

    def product_id(self, fields: Sequence[str]) -> str | None:
        """The id of a bad line, for the report: None unless the id column holds an id."""
        index = next(index for index, name in self.named if name == "id")
        value = fields[index].strip() if index < len(fields) else ""
        return value if PRODUCT_ID.fullmatch(value) else None

    @property
    def min_fields(self) -> int:
        return max(index for index, _ in self.named) + 1

    @property
    def name_index(self) -> int | None:
        """Index of productDisplayName if it is the last real column, else None.

        Only then do surplus fields on a line belong to the name: the real file's broken lines
        are names with commas, and pandas' re-save adds empty placeholder columns after it.
        """
        last_index, last_name = self.named[-1]
        return last_index if last_name == NAME_COLUMN else None


def read_styles(
    path: Path,
    *,
    required_columns: Iterable[str] = ("id", "articleType"),
    progress: ProgressCallback = _no_progress,
) -> StylesTable:
    """Read styles.csv line by line, repairing names with commas and reporting bad lines.

    Lines are parsed one at a time (not as one CSV stream) so that a stray quote cannot swallow
    the lines after it; the real file is unquoted, pandas' re-save quotes names with commas.
    The file must be UTF-8: a value with other bytes (a latin-1 `\\xe9`) is kept out of the
    answers and named in the report, never decoded by a guess.
    """
    try:
        handle = path.open(encoding="utf-8-sig", errors="surrogateescape")
    except OSError as error:
        raise PrepareError(f"cannot read {path}: {error.strerror}") from None
    with handle:
        lines = enumerate((line.rstrip("\n") for line in handle), start=1)
        header = _read_header(path, lines, required_columns)
        table = StylesTable(columns=tuple(name for _, name in header.named))
        for number, line in lines:
            _read_line(table, header, number, line)
            if number % _READING_EVERY == 0:
                progress(READING, number, None)
    return table


def _read_header(
    path: Path, lines: Iterator[tuple[int, str]], required_columns: Iterable[str]
) -> _Header:
    for _number, line in lines:
        if not line.strip():
            continue
        if _ESCAPED_BYTE.search(line):
            raise PrepareError(
                f"{path}: the header line is not UTF-8 ({_escaped(line)!r}); {RESAVE_AS_UTF8}"
            )
        cells = tuple(cell.strip() for cell in _split_line(line)[0])
        named = tuple(
            (index, cell) for index, cell in enumerate(cells) if not _PLACEHOLDER_COLUMN.match(cell)
        )
        names = [name for _, name in named]
        duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
        if duplicates:
            raise PrepareError(f"{path}: the header repeats the columns {duplicates}")
        # Every product needs an id: it names the image and the attributes file.
        wanted = dict.fromkeys(["id", *required_columns])
        missing = [column for column in wanted if column not in names]
        if missing:
            raise PrepareError(
                f"{path}: the header lacks the columns {missing} (found {names}); expected the "
                f"Kaggle styles.csv columns {', '.join(STYLES_COLUMNS)}"
            )
        return _Header(cells, named)
    raise PrepareError(f"{path} is empty: expected a header line and one line per product")


def _split_line(line: str) -> tuple[list[str], bool]:
    """Fields of one line, and whether its quoting was broken (then it is read as plain text)."""
    try:
        return next(csv.reader([line], strict=True)), False
    except csv.Error:
        # The real file has no quoting at all: a name like `"Classic" Polo` is literal text.
        return line.split(","), True


def _read_line(table: StylesTable, header: _Header, number: int, line: str) -> None:
    fields, broken_quotes = _split_line(line)
    if not any(cell.strip() for cell in fields):
        table.blank_lines += 1
        return
    table.data_lines += 1
    if _ESCAPED_BYTE.search(line):
        table.undecodable_lines.append(number)
    problem = _field_count_problem(header, fields)
    if problem:
        table.skipped.append(
            SkippedItem(number, header.product_id(fields), Reason.MALFORMED_LINE, problem)
        )
        return
    values = {name: fields[index].strip() for index, name in header.named}
    repaired = broken_quotes
    name_index = header.name_index
    if name_index is not None:
        values[NAME_COLUMN], rejoined = _rejoin_name(fields[name_index:])
        repaired = repaired or rejoined
    undecodable = frozenset(name for name, value in values.items() if _ESCAPED_BYTE.search(value))
    values = {
        name: _escaped(value) if name in undecodable else value for name, value in values.items()
    }
    product_id = values["id"]
    if not PRODUCT_ID.fullmatch(product_id):
        table.skipped.append(
            SkippedItem(
                number,
                product_id or None,
                Reason.BAD_ID,
                f"product id {product_id!r} is not a number (the image is images/<id>.jpg)",
            )
        )
        return
    table.records.append(StyleRecord(number, product_id, values, repaired, undecodable))


def _escaped(text: str) -> str:
    """Text read with surrogateescape, its undecodable bytes shown as `\\xe9` escapes."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _field_count_problem(header: _Header, fields: Sequence[str]) -> str | None:
    if len(fields) < header.min_fields:
        return f"{len(fields)} fields where the header has {header.min_fields} columns"
    surplus = fields[len(header.cells) :]
    if header.name_index is None and any(cell.strip() for cell in surplus):
        return (
            f"{len(fields)} fields where the header has {len(header.cells)} columns, and "
            f"{NAME_COLUMN} is not the last column, so the extra fields cannot be put back"
        )
    return None


def _rejoin_name(parts: Sequence[str]) -> tuple[str, bool]:
    """productDisplayName from its field and every field after it.

    Trailing empty fields are pandas' placeholder columns (or stray trailing commas), not text.
    """
    kept = list(parts)
    while len(kept) > 1 and not kept[-1].strip():
        kept.pop()
    return ",".join(kept).strip(), len(kept) > 1


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
    progress = progress or _no_progress
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


# --------------------------------------------------------------------------- upload


S3Location = s3_destination.S3Location


DESTINATION = s3_destination.DestinationRules(
    max_prefix_bytes=900, location_type=S3Location, error=PrepareError
)


def parse_s3_uri(uri: str) -> S3Location:
    """`s3://bucket/prefix/` -> S3Location; the prefix gets a trailing slash if it lacks one."""
    return DESTINATION.parse(uri)


def check_kms_key_id(kms_key_id: str) -> None:
    DESTINATION.check_kms(kms_key_id)


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
    parser = argparse.ArgumentParser(
        prog=f"python -m {PROGRAM}",
        description="Build the BLIP-2 attribute question/answer dataset (train/validation "
        "rows.jsonl, images, questions.json, report.json) from the Kaggle Fashion Product "
        "Images layout.",
    )
    parser.add_argument(
        "--source",
        type=Path,
        required=True,
        help="folder with styles.csv, images/<id>.jpg and optionally styles/<id>.json",
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
    parser.add_argument(
        "--upload", metavar="S3_URI", help="also upload the dataset to s3://bucket/prefix/"
    )
    parser.add_argument("--kms-key-id", help="KMS key for SSE-KMS on the uploaded objects")
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
        prepare_outputs.print_error(PROGRAM, error)
        return EXIT_INVALID
    except PrepareError as error:
        prepare_outputs.print_error(PROGRAM, error)
        return EXIT_INVALID
    print(report.summary())
    print(f"Wrote {args.out} (report: {args.out / 'report.json'}).")
    if args.upload:
        try:
            keys = upload(args.out, args.upload, kms_key_id=args.kms_key_id)
        except (PrepareError, UploadError) as error:
            prepare_outputs.print_error(PROGRAM, error)
            return EXIT_UPLOAD_FAILED
        print(f"Uploaded {len(keys)} files to {args.upload}.")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
