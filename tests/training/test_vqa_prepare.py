"""vqa.prepare: Kaggle fashion layout -> question/answer rows split by product, with a report."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from PIL import Image

from tests.prepare_support import assert_runs_without_torch_or_boto3, mocked_bucket
from tests.support import cdk_json_context
from tests.vqa_data_support import (
    STYLES_HEADER,
    fashion_products,
    make_fashion_dataset,
    write_image,
    write_styles_json,
)
from vqa.prepare import (
    DEFAULT_QUESTIONS,
    PrepareError,
    Report,
    build_dataset,
    default_question_map,
    main,
    parse_article_types,
    parse_question_map,
    parse_s3_uri,
    read_styles,
    split_ids,
    upload,
    validation_count,
)

SAMPLE_CSV = Path(__file__).resolve().parents[3] / "shared" / "data" / "fashion-styles-sample.csv"
LABELS = {
    "fabric": "Fabric",
    "fit": "Fit",
    "collar": "Collar",
    "pattern": "Pattern",
    "neck_type": "Neck Type",
    "sleeve_length": "Sleeve Length",
    "sleeve_styling": "Sleeve Styling",
    "colour": "Colour",
}
SHIRT_ATTRIBUTES = {
    "Fabric": "Cotton",
    "Fit": "Slim Fit",
    "Collar": "Spread Collar",
    "Pattern": "Solid",
    "Neck": "Round Neck",
    "Sleeve Length": "Long Sleeves",
    "Sleeve Styling": "Regular Sleeves",
}


def read_rows(out: Path, split: str) -> list[dict[str, str]]:
    lines = (out / split / "rows.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def skipped(report: Report, product_id: str) -> list[tuple[str, str | None, int | None]]:
    return [
        (str(item.reason), item.attribute, item.line)
        for item in report.skipped
        if item.id == product_id
    ]


def write_source(root: Path, lines: list[str], *, images: dict[str, bytes | None]) -> Path:
    """styles.csv from `lines`; images/<id>.jpg real (None) or these bytes."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "styles.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for product_id, content in images.items():
        path = root / "images" / f"{product_id}.jpg"
        if content is None:
            write_image(path)
        else:
            path.write_bytes(content)
    return root


def line(
    product_id: str, article_type: str = "Shirts", colour: str = "Navy Blue", name: str = "A Shirt"
) -> str:
    return f"{product_id},Men,Apparel,Topwear,{article_type},{colour},Summer,2012,Casual,{name}"


# --------------------------------------------------------------------------- question map


def test_default_questions_are_the_ones_the_description_pipeline_asks() -> None:
    # Given the questions the deployed pipeline sends to the endpoint (cdk.json)
    asked = cdk_json_context()["atelier"]["defaults"]["descriptions"]["questions"]
    # Then the dataset is built on exactly those questions, in the same order
    assert asked == DEFAULT_QUESTIONS
    assert list(DEFAULT_QUESTIONS) == list(asked)
    assert {name: spec.question for name, spec in default_question_map().items()} == asked


def test_default_sources_are_the_kaggle_attribute_keys_and_base_colour() -> None:
    sources = {name: str(spec.source) for name, spec in default_question_map().items()}
    assert sources == {
        "fabric": "attributes:Fabric",
        "fit": "attributes:Fit",
        "collar": "attributes:Collar",
        "pattern": "attributes:Pattern",
        "neck_type": "attributes:Neck",
        "sleeve_length": "attributes:Sleeve Length",
        "sleeve_styling": "attributes:Sleeve Styling",
        "colour": "csv:baseColour",
    }
    assert {name: spec.label for name, spec in default_question_map().items()} == LABELS


def test_question_map_short_forms_and_custom_attributes() -> None:
    # Given a bare question for a default attribute and a full entry for a new one
    parsed = parse_question_map(
        {
            "fabric": "What is the dress made of?",
            "season": {"question": "Which season?", "source": "csv:season", "label": "Season"},
            "hem": {"question": "  What   hem? ", "source": "attributes:Hemline"},
        }
    )
    # Then the default source and label are kept, and the new ones are taken as given
    assert str(parsed["fabric"].source) == "attributes:Fabric"
    assert parsed["fabric"].question == "What is the dress made of?"
    assert (str(parsed["season"].source), parsed["season"].label) == ("csv:season", "Season")
    assert (parsed["hem"].question, parsed["hem"].label) == ("What hem?", "Hem")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "non-empty JSON object"),
        ({}, "non-empty JSON object"),
        ({"Fabric": "What?"}, "attribute name 'Fabric' must match"),
        ({"a" * 49: "What?"}, "must match"),
        ({"fabric": ""}, "'question' must be a non-empty string"),
        ({"fabric": {"question": "   "}}, "'question' must be a non-empty string"),
        ({"fabric": 3}, "expected a question string or an object"),
        ({"hem": "What hem?"}, "'source' is required"),
        ({"hem": {"question": "Q?", "source": "json:Hem"}}, "is not 'attributes:"),
        ({"hem": {"question": "Q?", "source": "attributes:"}}, "is not 'attributes:"),
        ({"hem": {"question": "Q?", "source": "csv:price"}}, "column must be one of"),
        ({"hem": {"question": "Q?", "source": "csv:id"}}, "column must be one of"),
        ({"fabric": {"question": "Q?", "label": "Fab: ric"}}, "label 'Fab: ric' must match"),
        ({"fabric": {"question": "Q?", "colour": "x"}}, "unknown keys ['colour']"),
        ({"fabric": "Q" * 501}, "at most 500"),
    ],
)
def test_question_map_validation_names_the_problem(document: object, message: str) -> None:
    with pytest.raises(PrepareError) as raised:
        parse_question_map(document)
    assert message in str(raised.value)


def test_article_types_option() -> None:
    assert parse_article_types("Shirts, Tshirts,,Shirts") == ("Shirts", "Tshirts")
    assert parse_article_types("") is None
    assert parse_article_types(" ALL ") is None
    assert parse_article_types("Dresses") == ("Dresses",)


# --------------------------------------------------------------------------- styles.csv


@pytest.fixture
def sample_csv() -> Path:
    if not SAMPLE_CSV.is_file():
        pytest.skip(f"{SAMPLE_CSV} (shared sample of the Kaggle styles.csv) is not checked out")
    return SAMPLE_CSV


def test_reads_the_pandas_resave_of_the_real_file(sample_csv: Path) -> None:
    # Given the 295-product sample, re-saved by pandas with two empty "Unnamed" columns
    data_lines = [text for text in sample_csv.read_text().splitlines()[1:] if text.strip()]
    # When it is read
    table = read_styles(sample_csv)
    # Then every line is a product, and the placeholder columns never leak into the name
    assert len(table.records) == len(data_lines) == 295
    assert table.skipped == []
    assert table.repaired_lines == []
    assert "Unnamed: 10" not in table.columns
    by_id = {record.id: record for record in table.records}
    assert by_id["1163"].values["productDisplayName"] == (
        "Nike Sahara Team India Fanwear Round Neck Jersey"
    )
    assert by_id["1163"].line == 2
    assert not any(record.values["productDisplayName"].endswith(",") for record in table.records)


def test_puts_back_names_with_commas_in_the_original_format(tmp_path: Path) -> None:
    # Given the original 10-column file with unquoted commas in some names
    path = tmp_path / "styles.csv"
    path.write_text(
        "\n".join(
            [
                STYLES_HEADER,
                line("1", name="Plain Shirt"),
                line("2", name="Shirt, Navy, Slim"),
                "",
                line("3", name='"Classic" Polo, Red'),
                line("4", name="Trailing Comma Shirt,,"),
            ]
        ),
        encoding="utf-8",
    )
    # When it is read
    table = read_styles(path)
    names = {record.id: record.values["productDisplayName"] for record in table.records}
    # Then the surplus fields are joined back into the name, and nothing else moved
    assert names == {
        "1": "Plain Shirt",
        "2": "Shirt, Navy, Slim",
        "3": '"Classic" Polo, Red',
        "4": "Trailing Comma Shirt",
    }
    assert table.repaired_lines == [3, 5]
    assert (table.blank_lines, table.data_lines) == (1, 4)
    assert {record.values["baseColour"] for record in table.records} == {"Navy Blue"}


def test_puts_back_names_split_over_the_pandas_placeholder_columns(tmp_path: Path) -> None:
    # Given a pandas re-save where a broken name spilled into "Unnamed: 10" and quoting is used
    path = tmp_path / "styles.csv"
    header = STYLES_HEADER + ",Unnamed: 10,Unnamed: 11"
    path.write_text(
        "\n".join(
            [
                header,
                line("1", name="Whole Name") + ",,",
                line("2", name="Name A") + ", Part B,",
                line("3", name='"Quoted, Name"') + ",,",
                line("4", name="Ten Columns Only"),
            ]
        ),
        encoding="utf-8",
    )
    table = read_styles(path)
    names = {record.id: record.values["productDisplayName"] for record in table.records}
    assert names == {
        "1": "Whole Name",
        "2": "Name A, Part B",
        "3": "Quoted, Name",
        "4": "Ten Columns Only",
    }
    assert table.repaired_lines == [3]


def test_lines_that_cannot_be_put_back_are_reported(tmp_path: Path) -> None:
    # Given a file whose name column is not last, so surplus fields are ambiguous
    path = tmp_path / "styles.csv"
    path.write_text(
        "productDisplayName,id,articleType,baseColour\n"
        "Good Shirt,1,Shirts,Red\n"
        "Bad, Shirt,2,Shirts,Red\n"
        "Short,3\n"
        "Name,x7,Shirts,Red\n",
        encoding="utf-8",
    )
    table = read_styles(path)
    assert [record.id for record in table.records] == ["1"]
    problems = [(item.line, item.id, str(item.reason)) for item in table.skipped]
    assert problems == [
        (3, None, "malformed_line"),
        (4, "3", "malformed_line"),
        (5, "x7", "bad_id"),
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ("\n\n", "is empty"),
        ("id,gender,baseColour\n1,Men,Red\n", "lacks the columns ['articleType']"),
        ("id,id,articleType\n", "repeats the columns ['id']"),
    ],
)
def test_a_wrong_header_is_a_layout_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "styles.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(PrepareError) as raised:
        read_styles(path)
    assert message in str(raised.value)


# --------------------------------------------------------------------------- building


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Report]:
    """One source with every kind of problem, built once (line numbers in the comments)."""
    root = tmp_path_factory.mktemp("messy")
    lines = [
        STYLES_HEADER,  # 1
        line("101", name="Shirt, with, commas"),  # 2  kept, name repaired
        line("102"),  # 3  missing image
        line("103"),  # 4  corrupt image
        line("104", colour=""),  # 5  empty baseColour: colour row only
        line("105", article_type="Jeans"),  # 6  filtered
        line("106", colour="Red"),  # 7  duplicate id, conflicting
        line("106", colour="Blue"),  # 8
        line("107"),  # 9  duplicate id, identical copy
        line("107"),  # 10
        line("108"),  # 11 bad JSON: only colour survives
        line("109", colour="NA"),  # 12 bad JSON and NA colour: nothing left
        "",  # 13 blank
        line("abc"),  # 14 non-numeric id
        "110,Men,Apparel",  # 15 too few fields
        line("111"),  # 16 no styles JSON
        line("112", article_type="tshirts"),  # 17 kept: the filter ignores case
    ]
    images: dict[str, bytes | None] = {
        product_id: None
        for product_id in ("101", "104", "105", "106", "107", "108", "109", "111", "112")
    }
    images["103"] = b"\xff\xd8\xff\xe0 not really a jpeg"
    write_source(root, lines, images=images)
    for product_id in ("101", "103", "104", "105", "106", "107", "112"):
        write_styles_json(root, product_id, SHIRT_ATTRIBUTES)
    write_styles_json(root, "101", {**SHIRT_ATTRIBUTES, "Fabric": "NA", "Fit": "-", "Collar": None})
    write_styles_json(root, "112", {**SHIRT_ATTRIBUTES, "Pattern": ["Solid"], "Neck": "  "})
    for product_id in ("108", "109"):
        (root / "styles" / f"{product_id}.json").write_text("{not json", encoding="utf-8")
    report = build_dataset(root, root.parent / f"{root.name}-out", validation_fraction=0.3)
    return root.parent / f"{root.name}-out", report


JSON_ATTRIBUTES = [
    "fabric",
    "fit",
    "collar",
    "pattern",
    "neck_type",
    "sleeve_length",
    "sleeve_styling",
]


@pytest.mark.parametrize(
    ("product_id", "expected"),
    [
        (
            "101",
            [
                ("empty_value", "fabric", 2),
                ("empty_value", "fit", 2),
                ("empty_value", "collar", 2),
            ],
        ),
        ("102", [("missing_image", None, 3)]),
        ("103", [("unreadable_image", None, 4)]),
        ("104", [("empty_value", "colour", 5)]),
        ("105", [("filtered_article_type", None, 6)]),
        ("106", [("duplicate_id", None, 7), ("duplicate_id", None, 8)]),
        ("107", [("duplicate_id", None, 10)]),
        ("108", [("bad_attributes_json", name, 11) for name in JSON_ATTRIBUTES]),
        (
            "109",
            [
                *[("bad_attributes_json", name, 12) for name in JSON_ATTRIBUTES],
                ("empty_value", "colour", 12),
                ("no_answers", None, 12),
            ],
        ),
        ("abc", [("bad_id", None, 14)]),
        ("110", [("malformed_line", None, 15)]),
        ("111", [("missing_attributes_json", name, 16) for name in JSON_ATTRIBUTES]),
        ("112", [("bad_value", "pattern", 17), ("empty_value", "neck_type", 17)]),
    ],
)
def test_every_skipped_product_or_row_is_reported_with_its_reason(
    messy: tuple[Path, Report], product_id: str, expected: list[tuple[str, str | None, int]]
) -> None:
    _, report = messy
    assert skipped(report, product_id) == expected


def test_problem_products_keep_their_good_rows(messy: tuple[Path, Report]) -> None:
    out, report = messy
    rows = read_rows(out, "train") + read_rows(out, "validation")
    by_product: dict[str, list[str]] = {}
    for row in rows:
        by_product.setdefault(row["id"], []).append(row["attribute"])
    # Kept: repaired name, empty colour, identical duplicate once, bad JSON (colour), no JSON
    # (colour), lowercase article type; every other product has no row at all.
    assert sorted(by_product) == ["101", "104", "107", "108", "111", "112"]
    assert by_product["101"] == [
        "pattern",
        "neck_type",
        "sleeve_length",
        "sleeve_styling",
        "colour",
    ]
    assert by_product["104"] == JSON_ATTRIBUTES
    assert by_product["108"] == by_product["111"] == ["colour"]
    assert len(rows) == report.rows_per_split["train"] + report.rows_per_split["validation"]
    assert report.products_kept == 6
    assert report.products_read == 11  # distinct well-formed ids: 101-109, 111, 112
    assert (report.data_lines, report.blank_lines, report.repaired_lines) == (15, 1, [2])


def test_the_report_file_has_counts_questions_seed_and_every_skip(
    messy: tuple[Path, Report],
) -> None:
    out, report = messy
    document = json.loads((out / "report.json").read_text())
    assert document["seed"] == 42
    assert document["questions"]["colour"] == {
        "question": DEFAULT_QUESTIONS["colour"],
        "source": "csv:baseColour",
        "label": "Colour",
    }
    counts = document["counts"]
    assert counts["products_kept"] == 6
    assert counts["skipped_by_reason"] == report.skipped_by_reason
    assert (
        sum(counts["skipped_by_reason"].values()) == len(document["skipped"]) == len(report.skipped)
    )
    assert counts["skipped_by_reason"]["bad_attributes_json"] == 14
    assert counts["rows_per_attribute"]["colour"] == {
        "train": sum(r["attribute"] == "colour" for r in read_rows(out, "train")),
        "validation": sum(r["attribute"] == "colour" for r in read_rows(out, "validation")),
    }
    assert {
        "line": 6,
        "id": "105",
        "attribute": None,
        "reason": "filtered_article_type",
    }.items() <= (next(item for item in document["skipped"] if item["id"] == "105").items())
    assert json.loads((out / "questions.json").read_text()) == DEFAULT_QUESTIONS


def test_rows_answers_images_and_layout(tmp_path: Path) -> None:
    # Given a generated Kaggle folder with 12 varied products
    source = make_fashion_dataset(tmp_path / "kaggle", products=12, image_size=(16, 16))
    products = {product.id: product for product in fashion_products(12)}
    # When the dataset is built
    out = tmp_path / "out"
    report = build_dataset(source, out)
    # Then each row's answer is "<Label>: <value>" from the product's attributes or colour
    for split in ("train", "validation"):
        for row in read_rows(out, split):
            assert list(row) == ["id", "image", "attribute", "question", "answer"]
            product = products[row["id"]]
            assert row["question"] == DEFAULT_QUESTIONS[row["attribute"]]
            label, value = row["answer"].split(": ", 1)
            assert label == LABELS[row["attribute"]]
            key = default_question_map()[row["attribute"]].source.key
            assert value == (product.colour if key == "baseColour" else product.attributes[key])
            # and the image path is relative to the split folder and holds the product's image
            assert row["image"] == f"images/{row['id']}.jpg"
            assert (out / split / row["image"]).read_bytes() == (
                source / "images" / f"{row['id']}.jpg"
            ).read_bytes()
    answers = {row["answer"] for row in read_rows(out, "train") + read_rows(out, "validation")}
    assert {"Colour: Navy Blue", "Colour: Red"} <= answers
    assert any(answer.startswith("Sleeve Length: ") for answer in answers)
    assert report.products_per_split == {"train": 11, "validation": 1}
    assert sorted(p.name for p in out.iterdir()) == [
        "questions.json",
        "report.json",
        "train",
        "validation",
    ]


def test_split_is_by_product_and_disjoint(tmp_path: Path) -> None:
    source = make_fashion_dataset(tmp_path / "kaggle", products=30, image_size=(8, 8))
    out = tmp_path / "out"
    report = build_dataset(source, out, validation_fraction=0.2, seed=7)
    ids = {split: {row["id"] for row in read_rows(out, split)} for split in ("train", "validation")}
    images = {split: {p.stem for p in (out / split / "images").iterdir()} for split in ids}
    assert ids["train"].isdisjoint(ids["validation"])
    assert ids == images
    assert (len(ids["train"]), len(ids["validation"])) == (24, 6)
    assert report.products_per_split == {"train": 24, "validation": 6}


def test_same_inputs_and_seed_give_the_same_dataset_whatever_the_line_order(tmp_path: Path) -> None:
    # Given one source, and a copy whose styles.csv lines are shuffled
    source = make_fashion_dataset(tmp_path / "kaggle", products=25, image_size=(8, 8))
    header, *lines = (source / "styles.csv").read_text().splitlines()
    random.Random(3).shuffle(lines)  # noqa: S311 (a test's line order)
    shuffled = make_fashion_dataset(tmp_path / "shuffled", products=25, image_size=(8, 8))
    (shuffled / "styles.csv").write_text("\n".join([header, *lines]) + "\n")
    # When the dataset is built twice from the first and once from the shuffled copy
    outputs = [
        (source, tmp_path / "a"),
        (source, tmp_path / "b"),
        (shuffled, tmp_path / "c"),
    ]
    for src, out in outputs:
        build_dataset(src, out, validation_fraction=0.2, seed=11)
    # Then the rows files are byte for byte the same
    for split in ("train", "validation"):
        contents = {(out / split / "rows.jsonl").read_bytes() for _, out in outputs}
        assert len(contents) == 1
    # and another seed gives another split
    build_dataset(source, tmp_path / "d", validation_fraction=0.2, seed=12)
    assert read_rows(tmp_path / "d", "validation") != read_rows(tmp_path / "a", "validation")


def test_split_helpers() -> None:
    assert [validation_count(n, 0.1) for n in (0, 1, 2, 10, 14, 15, 100)] == [0, 0, 1, 1, 1, 2, 10]
    assert validation_count(10, 0.99) == 9
    ids = [str(n) for n in range(50)]
    forward = split_ids(ids, validation_fraction=0.1, seed=5)
    assert forward == split_ids(reversed(ids), validation_fraction=0.1, seed=5)
    assert sum(split == "validation" for split in forward.values()) == 5
    assert split_ids(["9"], validation_fraction=0.5, seed=0) == {"9": "train"}


def test_real_sample_keeps_its_tshirts(sample_csv: Path, tmp_path: Path) -> None:
    # Given the real sample with an image for every product and attributes for the T-shirts
    source = tmp_path / "kaggle"
    (source / "images").mkdir(parents=True)
    (source / "styles.csv").write_bytes(sample_csv.read_bytes())
    table = read_styles(sample_csv)
    tshirts = {r.id for r in table.records if r.values["articleType"] in ("Shirts", "Tshirts")}
    for record in table.records:
        write_image(source / "images" / f"{record.id}.jpg", (4, 4))
        if record.id in tshirts:
            write_styles_json(source, record.id, SHIRT_ATTRIBUTES)
    # When the dataset is built with the default filter
    out = tmp_path / "out"
    report = build_dataset(source, out)
    # Then exactly the T-shirts are kept (8 rows each), the rest are reported as filtered
    assert len(tshirts) == 139
    assert report.products_kept == 139
    assert report.skipped_by_reason == {"filtered_article_type": 295 - 139}
    assert {item.id for item in report.skipped} == {r.id for r in table.records} - tshirts
    assert sum(report.rows_per_split.values()) == 139 * 8
    assert report.products_per_split["validation"] == 14
    ids = {split: {row["id"] for row in read_rows(out, split)} for split in ("train", "validation")}
    assert ids["train"].isdisjoint(ids["validation"])
    assert ids["train"] | ids["validation"] == tshirts


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_a_truncated_image_is_unreadable(tmp_path: Path, suffix: str) -> None:
    # Given an image whose header is intact but whose data stops early (a partial download):
    # Image.open accepts it, verify() catches the PNG, only decoding catches the JPEG
    source = write_source(tmp_path / "kaggle", [STYLES_HEADER, line("1"), line("2")], images={})
    write_image(source / "images" / "1.jpg")
    noise = Image.effect_noise((64, 64), 80).convert("RGB")
    noise.save(source / "images" / f"2{suffix}")
    whole = (source / "images" / f"2{suffix}").read_bytes()
    (source / "images" / f"2{suffix}").write_bytes(whole[: len(whole) * 9 // 10])
    with Image.open(source / "images" / f"2{suffix}") as opened:
        assert opened.size == (64, 64)
    # When the dataset is built, then the product is reported as unreadable
    report = build_dataset(source, tmp_path / "out")
    assert skipped(report, "2") == [("unreadable_image", None, 3)]
    assert "truncated" in report.skipped[0].message.lower()
    assert report.products_kept == 1


def test_no_styles_folder_gives_colour_rows_and_a_warning(tmp_path: Path) -> None:
    source = write_source(
        tmp_path / "kaggle", [STYLES_HEADER, line("1"), line("2")], images={"1": None, "2": None}
    )
    report = build_dataset(source, tmp_path / "out")
    assert report.skipped == []
    assert {
        name: sum(c.values()) for name, c in report.rows_per_attribute.items() if sum(c.values())
    } == {"colour": 2}
    assert any("no styles/ folder" in warning for warning in report.warnings)


def test_keeps_the_image_extension(tmp_path: Path) -> None:
    source = write_source(tmp_path / "kaggle", [STYLES_HEADER, line("1"), line("2")], images={})
    write_image(source / "images" / "1.png")
    write_image(source / "images" / "2.jpeg")
    out = tmp_path / "out"
    build_dataset(source, out, article_types=None)
    images = sorted(
        row["image"] for split in ("train", "validation") for row in read_rows(out, split)
    )
    assert images == ["images/1.png", "images/2.jpeg"]
    assert all((out / split / "images").is_dir() for split in ("train", "validation"))


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def small_source(tmp_path: Path) -> Path:
    return make_fashion_dataset(tmp_path / "kaggle", products=6, image_size=(8, 8))


def test_cli_builds_and_summarises(
    small_source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["--source", str(small_source), "--out", str(out), "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "Kept 6 products: train 5 (" in printed
    assert "Skipped 6 products or rows: missing_value 6." in printed
    assert json.loads((out / "report.json").read_text())["seed"] == 3


def test_cli_refuses_a_non_empty_output_unless_overwrite(
    small_source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an output folder that already holds a dataset plus a stale image and a user file
    out = tmp_path / "out"
    args = ["--source", str(small_source), "--out", str(out)]
    assert main(args) == 0
    stale = write_image(out / "train" / "images" / "999.jpg")
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    # When it is run again without --overwrite, it refuses and changes nothing
    assert main(args) == 2
    assert "is not empty; pass --overwrite" in capsys.readouterr().err
    assert stale.exists()
    # With --overwrite the old dataset is replaced, and the user's file is left alone
    assert main([*args, "--overwrite"]) == 0
    assert not stale.exists()
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("missing", "does not exist"),
        ("no-csv", "no styles.csv in"),
        ("no-images", "no images/ folder in"),
    ],
)
def test_cli_wrong_layout_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], layout: str, message: str
) -> None:
    source = tmp_path / "kaggle"
    if layout != "missing":
        (source / "images").mkdir(parents=True)
    if layout == "no-images":
        (source / "images").rmdir()
        (source / "styles.csv").write_text(STYLES_HEADER + "\n")
    assert main(["--source", str(source), "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_nothing_usable_exits_2_and_writes_nothing(
    small_source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert (
        main(["--source", str(small_source), "--out", str(out), "--article-types", "Dresses"]) == 2
    )
    err = capsys.readouterr().err
    assert "no usable products: every product was skipped (filtered_article_type 6)" in err
    assert not out.exists()


def test_cli_all_article_types_and_custom_questions(small_source: Path, tmp_path: Path) -> None:
    # Given a question map with one default attribute (short form) and one from another column
    questions = tmp_path / "questions.json"
    questions.write_text(
        json.dumps(
            {
                "colour": "What colour is it?",
                "usage": {"question": "What is it for?", "source": "csv:usage"},
            }
        )
    )
    (small_source / "styles.csv").write_text(
        (small_source / "styles.csv").read_text() + line("777", article_type="Jeans") + "\n"
    )
    write_image(small_source / "images" / "777.jpg")
    out = tmp_path / "out"
    argv = ["--source", str(small_source), "--out", str(out), "--questions", str(questions)]
    assert main([*argv, "--article-types", "all"]) == 0
    rows = read_rows(out, "train") + read_rows(out, "validation")
    assert {row["attribute"] for row in rows} == {"colour", "usage"}
    assert {row["answer"] for row in rows if row["attribute"] == "usage"} == {"Usage: Casual"}
    assert "777" in {row["id"] for row in rows}
    assert json.loads((out / "questions.json").read_text()) == {
        "colour": "What colour is it?",
        "usage": "What is it for?",
    }


def test_cli_bad_question_file_exits_2(
    small_source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    questions = tmp_path / "questions.json"
    questions.write_text('{"Bad Name": "Q?"}')
    argv = [
        "--source",
        str(small_source),
        "--out",
        str(tmp_path / "out"),
        "--questions",
        str(questions),
    ]
    assert main(argv) == 2
    assert "attribute name 'Bad Name' must match" in capsys.readouterr().err
    questions.write_text("{nope")
    assert main(argv) == 2
    assert "is not valid JSON" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--validation-fraction", "0"], "not between 0 and 1"),
        (["--validation-fraction", "1.5"], "not between 0 and 1"),
        (["--seed", "-1"], "the seed must be 0 or more"),
        (["--kms-key-id", "alias/x"], "--kms-key-id only applies with --upload"),
        (["--upload", "https://bucket/x"], "is not an S3 URI"),
        (["--upload", "s3://Bad_Bucket/x"], "not a valid S3 bucket name"),
        (["--upload", "s3://bucket/x", "--kms-key-id", "my key"], "is not a KMS key id"),
    ],
)
def test_cli_rejects_bad_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["--source", str(tmp_path), "--out", str(tmp_path / "out"), *extra])
    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def test_runs_as_module_and_as_script_without_torch_or_boto3(tmp_path: Path) -> None:
    assert_runs_without_torch_or_boto3("vqa", "--validation-fraction", tmp_path)


# --------------------------------------------------------------------------- upload


@pytest.mark.parametrize(
    ("uri", "bucket", "prefix"),
    [
        ("s3://my-bucket/vqa/data/", "my-bucket", "vqa/data/"),
        ("s3://my-bucket/vqa/data", "my-bucket", "vqa/data/"),
        ("s3://my-bucket", "my-bucket", ""),
        ("s3://my-bucket/", "my-bucket", ""),
    ],
)
def test_s3_uri_parsing(uri: str, bucket: str, prefix: str) -> None:
    location = parse_s3_uri(uri)
    assert (location.bucket, location.prefix) == (bucket, prefix)


@pytest.mark.parametrize(
    "uri",
    [
        "my-bucket/x",
        "s3://",
        "s3://ab/x",
        "s3://a..b/x",
        "s3://-bucket/x",
        "s3://bucket//x",
        "s3://bucket/a\nb/",
    ],
)
def test_bad_s3_uris_are_refused(uri: str) -> None:
    with pytest.raises(PrepareError):
        parse_s3_uri(uri)


@pytest.fixture
def s3() -> Iterator[Any]:
    with mocked_bucket("atelier-data") as client:
        yield client


def expected_keys(out: Path, prefix: str) -> list[str]:
    return sorted(prefix + p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())


def test_upload_sends_the_whole_dataset(small_source: Path, tmp_path: Path, s3: Any) -> None:
    out = tmp_path / "out"
    build_dataset(small_source, out)
    keys = upload(out, "s3://atelier-data/vqa/run-1/")
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket="atelier-data")["Contents"]]
    assert sorted(keys) == sorted(listed) == expected_keys(out, "vqa/run-1/")
    assert {
        "vqa/run-1/train/rows.jsonl",
        "vqa/run-1/validation/rows.jsonl",
        "vqa/run-1/report.json",
    } <= set(listed)
    body = s3.get_object(Bucket="atelier-data", Key="vqa/run-1/train/rows.jsonl")["Body"].read()
    assert body == (out / "train" / "rows.jsonl").read_bytes()


def test_cli_upload_with_kms(
    small_source: Path, tmp_path: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    key_id = boto3.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["KeyId"]
    out = tmp_path / "out"
    argv = [
        "--source",
        str(small_source),
        "--out",
        str(out),
        "--upload",
        "s3://atelier-data/p",
        "--kms-key-id",
        key_id,
    ]
    assert main(argv) == 0
    assert re.search(r"Uploaded \d+ files to s3://atelier-data/p\.", capsys.readouterr().out)
    head = s3.head_object(Bucket="atelier-data", Key="p/validation/rows.jsonl")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert key_id in head["SSEKMSKeyId"]
    listed = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="atelier-data")["Contents"])
    assert listed == expected_keys(out, "p/")


def test_cli_upload_failure_exits_1(
    small_source: Path, tmp_path: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a bucket that does not exist, the local dataset is still written
    out = tmp_path / "out"
    assert (
        main(
            ["--source", str(small_source), "--out", str(out), "--upload", "s3://no-such-bucket/p/"]
        )
        == 1
    )
    assert "upload of p/" in capsys.readouterr().err
    assert (out / "train" / "rows.jsonl").is_file()
