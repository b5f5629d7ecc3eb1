"""vqa.prepare and a styles.csv that is not all UTF-8: no undecodable byte becomes an answer.

The files are written as bytes: the Kaggle layout with some lines saved in latin-1 (what a
spreadsheet re-save on Windows does to "Bleu Foncé"), next to good UTF-8 lines.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.vqa_data_support import STYLES_HEADER, write_image, write_styles_json
from vqa.prepare import (
    AttributeSpec,
    PrepareError,
    Reason,
    build_dataset,
    main,
    parse_question_map,
    read_styles,
)

NAME_QUESTION: dict[str, AttributeSpec] = parse_question_map(
    {
        "name": {
            "question": "What is the name of this product?",
            "source": "csv:productDisplayName",
            "label": "Name",
        }
    }
)


def csv_line(
    product_id: str, colour: str, name: str = "A Shirt", article_type: str = "Shirts"
) -> str:
    return f"{product_id},Men,Apparel,Topwear,{article_type},{colour},Summer,2012,Casual,{name}"


def write_source(root: Path, lines: list[bytes]) -> Path:
    """styles.csv from raw byte lines, an image for every id, no styles/ folder."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "styles.csv").write_bytes(b"\n".join([STYLES_HEADER.encode(), *lines]) + b"\n")
    for raw in lines:
        write_image(root / "images" / f"{raw.split(b',')[0].decode('ascii')}.jpg")
    return root


def all_rows(out: Path) -> list[dict[str, str]]:
    return [
        json.loads(text)
        for split in ("train", "validation")
        for text in (out / split / "rows.jsonl").read_text(encoding="utf-8").splitlines()
    ]


@pytest.fixture
def mixed_source(tmp_path: Path) -> Path:
    return write_source(
        tmp_path / "src",
        [
            csv_line("1", "Bleu Foncé").encode("utf-8"),  # line 2: good UTF-8
            csv_line("2", "Bleu Foncé").encode("latin-1"),  # line 3: colour in latin-1
            csv_line("3", "Navy Blue", name="Chemise Été").encode("latin-1"),  # line 4
            csv_line("4", "Red").encode("utf-8"),  # line 5
        ],
    )


def test_a_latin1_value_is_reported_and_never_becomes_an_answer(
    mixed_source: Path, tmp_path: Path
) -> None:
    # When the dataset is built from a file with latin-1 bytes on two lines
    out = tmp_path / "out"
    report = build_dataset(mixed_source, out, questions=None, article_types=None)

    # Then no answer holds a replacement character or an escape, and UTF-8 accents survive
    answers = {row["id"]: row["answer"] for row in all_rows(out) if row["attribute"] == "colour"}
    assert answers == {"1": "Colour: Bleu Foncé", "3": "Colour: Navy Blue", "4": "Colour: Red"}
    # And the latin-1 colour is reported with its reason, its line and its raw byte; product 2
    # had no other answer (no styles/ folder), so it is reported as left out too
    item, left_out = [item for item in report.skipped if item.id == "2"]
    assert (item.reason, item.attribute, item.line) == (Reason.NOT_UTF8, "colour", 3)
    assert "'Bleu Fonc\\\\xe9' is not UTF-8" in item.message
    assert "re-save styles.csv as UTF-8" in item.message
    assert (left_out.reason, left_out.attribute) == (Reason.NO_ANSWERS, None)
    # And the report file names both lines, and says so in a warning
    document = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert document["undecodable_lines"] == [3, 4]
    assert document["counts"]["undecodable_lines"] == 2
    assert document["counts"]["skipped_by_reason"]["not_utf8"] == 1
    assert any("2 lines of styles.csv are not UTF-8 (lines 3, 4)" in w for w in report.warnings)
    assert "\ufffd" not in (out / "train" / "rows.jsonl").read_text(encoding="utf-8")


def test_a_latin1_name_is_refused_when_the_name_is_the_answer(
    mixed_source: Path, tmp_path: Path
) -> None:
    report = build_dataset(
        mixed_source, tmp_path / "out", questions=NAME_QUESTION, article_types=None
    )

    answers = {row["id"]: row["answer"] for row in all_rows(tmp_path / "out")}
    assert answers == {"1": "Name: A Shirt", "2": "Name: A Shirt", "4": "Name: A Shirt"}
    assert [(str(i.reason), i.attribute) for i in report.skipped if i.id == "3"] == [
        ("not_utf8", "name"),
        ("no_answers", None),
    ]


def test_an_undecodable_article_type_cannot_pass_the_filter(tmp_path: Path) -> None:
    source = write_source(
        tmp_path / "src",
        [
            csv_line("1", "Red").encode("utf-8"),
            csv_line("2", "Red", article_type="Tshirts\xe9").encode("latin-1"),
        ],
    )

    report = build_dataset(source, tmp_path / "out", article_types=("Shirts", "Tshirts"))

    assert [(str(i.reason), i.line) for i in report.skipped if i.id == "2"] == [("not_utf8", 3)]


def test_a_header_that_is_not_utf8_is_a_layout_error(tmp_path: Path) -> None:
    path = tmp_path / "styles.csv"
    path.write_bytes(STYLES_HEADER.replace("usage", "us\xe9").encode("latin-1") + b"\n")

    with pytest.raises(PrepareError, match=r"header line is not UTF-8 .*us\\\\xe9"):
        read_styles(path)


def test_a_utf8_file_with_a_byte_order_mark_reads_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "styles.csv"
    text = STYLES_HEADER + "\n" + csv_line("7", "Écru") + "\n"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))

    table = read_styles(path)

    assert [(r.id, r.values["baseColour"], r.undecodable) for r in table.records] == [
        ("7", "Écru", frozenset())
    ]
    assert table.undecodable_lines == []


def test_the_command_line_summary_warns_about_the_lines(
    mixed_source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    status = main(["--source", str(mixed_source), "--out", str(out), "--article-types", "all"])

    assert status == 0
    printed = capsys.readouterr().out
    assert "Skipped 2 products or rows: no_answers 1, not_utf8 1." in printed
    assert "Warning: 2 lines of styles.csv are not UTF-8 (lines 3, 4)" in printed


def test_styles_json_attributes_are_unaffected(tmp_path: Path) -> None:
    # A latin-1 name does not cost the product its articleAttributes answers.
    source = write_source(
        tmp_path / "src", [csv_line("5", "Red", name="Chemise Été").encode("latin-1")]
    )
    write_styles_json(source, "5", {"Fabric": "Cotton"})

    build_dataset(source, tmp_path / "out", article_types=None)

    answers = {row["attribute"]: row["answer"] for row in all_rows(tmp_path / "out")}
    assert answers == {"fabric": "Fabric: Cotton", "colour": "Colour: Red"}
