"""Reading the catalog's styles.csv for `vqa.prepare`, line by line, so that one bad line costs one
product and is reported, never the whole file.

The real file has quirks the reader keeps: product names with unquoted commas (put back, since the
name is the last column), header cells pandas invented ("Unnamed: N"), and bytes that are not
UTF-8 (kept as lone surrogates, so that a bad byte marks its own field instead of failing the
file or being replaced by a guess).
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vqa.outcomes import READING, PrepareError, ProgressCallback, Reason, SkippedItem, no_progress

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
PRODUCT_ID = re.compile(r"^[0-9]{1,18}$")
# pandas names header cells it had to invent "Unnamed: N"; the original file has none.
_PLACEHOLDER_COLUMN = re.compile(r"^(Unnamed: \d+)?$")
# styles.csv is read as UTF-8 with undecodable bytes kept as lone surrogates (surrogateescape),
# so that a bad byte marks its own field instead of failing the file or being replaced.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
RESAVE_AS_UTF8 = "re-save styles.csv as UTF-8 (e.g. iconv -f cp1252 -t utf-8)"
_READING_EVERY = 2000  # lines between two "reading" reports


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
    progress: ProgressCallback = no_progress,
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
