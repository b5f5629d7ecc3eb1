"""The catalog run's request and the products its source names: checks without I/O."""

from __future__ import annotations

import re
from typing import Any

import pytest

from catalog.logic.errors import CatalogInputError
from catalog.logic.sources import (
    BatchOptions,
    SourceKind,
    already_described,
    batch_id_for,
    parse_batch_options,
    parse_start_request,
    product_from_listing,
    product_from_row,
    run_id_for,
    screen_batch,
    start_result,
)
from shared.models.catalog import FailureRecord, ProductRef, Stage
from tests.catalog_support import (
    FOREIGN_BUCKET,
    RESULTS_BUCKET,
    UPLOADS_BUCKET,
    descriptions_settings,
)

ALLOWED = (UPLOADS_BUCKET, RESULTS_BUCKET)
SHIRT_QUESTIONS = ("fabric", "collar", "sleeve_length")
DESCRIPTIONS = descriptions_settings(
    categories={
        "default": list(descriptions_settings().categories["default"]),
        "Shirts": list(SHIRT_QUESTIONS),
    }
)


def _start(document: Any) -> Any:
    return parse_start_request(document, source_buckets=ALLOWED, descriptions=DESCRIPTIONS)


def _refused(document: Any) -> CatalogInputError:
    with pytest.raises(CatalogInputError) as caught:
        _start(document)
    return caught.value


def _options(kind: SourceKind = SourceKind.CSV, **overrides: Any) -> BatchOptions:
    values: dict[str, Any] = {
        "run_id": "20261122081645-0123abcd",
        "kind": kind,
        "bucket": UPLOADS_BUCKET,
        "languages": ("en",),
        "attribute_set": "default",
        "force": False,
    }
    values.update(overrides)
    return BatchOptions(**values)


def _row(**values: str) -> dict[str, str]:
    """A CSV row as the Distributed Map reads it: every column present, values strings."""
    row = {"product_id": "", "image_key": "", "category": ""}
    row.update(values)
    return row


# --- the start request ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "kind", "path"),
    [
        (f"s3://{UPLOADS_BUCKET}/catalog/images/", SourceKind.PREFIX, "catalog/images/"),
        (f"s3://{UPLOADS_BUCKET}/", SourceKind.PREFIX, ""),
        (f"s3://{UPLOADS_BUCKET}/manifests/spring.csv", SourceKind.CSV, "manifests/spring.csv"),
        (f"s3://{RESULTS_BUCKET}/catalog/run/failures.jsonl", SourceKind.JSONL, None),
        (f"s3://{UPLOADS_BUCKET}/Products.CSV", SourceKind.CSV, "Products.CSV"),
    ],
)
def test_source_kinds_follow_the_uri(source: str, kind: SourceKind, path: str | None) -> None:
    # Given a source URI  When the request is parsed
    request = _start({"source": source})
    # Then the kind, bucket and path follow it, with the configured defaults for the rest
    assert request.source.kind is kind
    assert request.source.uri == source
    if path is not None:
        assert request.source.path == path
    assert request.languages == DESCRIPTIONS.default_languages
    assert request.attribute_set == "default"
    assert request.force is False


def test_a_full_request_is_normalized() -> None:
    request = _start(
        {
            "source": f"s3://{UPLOADS_BUCKET}/m.jsonl",
            "languages": ["de", "en", "de"],
            "attributeSet": "Shirts",
            "force": True,
        }
    )
    assert request.languages == ("de", "en")
    assert request.attribute_set == "Shirts"
    assert request.force is True
    result = start_result("20261122081645-0123abcd", request)
    assert result == {
        "runId": "20261122081645-0123abcd",
        "kind": "jsonl",
        "bucket": UPLOADS_BUCKET,
        "key": "m.jsonl",
        "languages": ["de", "en"],
        "attributeSet": "Shirts",
        "force": True,
    }


def test_a_prefix_result_names_the_prefix_not_a_key() -> None:
    result = start_result("r", _start({"source": f"s3://{UPLOADS_BUCKET}/images/"}))
    assert result["prefix"] == "images/"
    assert "key" not in result


@pytest.mark.parametrize(
    ("document", "code", "fragments"),
    [
        ("s3://x/", "input_malformed", ["JSON object"]),
        ({}, "source_missing", ["source is required", "s3://bucket/images/"]),
        ({"source": 3}, "source_invalid", ["s3:// URI"]),
        ({"source": "/local/images/"}, "source_invalid", ["not an s3:// URI"]),
        ({"source": "s3:///images/"}, "source_invalid", ["names no bucket"]),
        (
            {"source": f"s3://{UPLOADS_BUCKET}/images/38642.jpg"},
            "source_invalid",
            ["neither a prefix", ".csv", ".jsonl"],
        ),
        (
            {"source": f"s3://{FOREIGN_BUCKET}/images/"},
            "source_bucket_not_allowed",
            [FOREIGN_BUCKET, UPLOADS_BUCKET, "copy the images or the manifest"],
        ),
        (
            {"source": f"s3://{UPLOADS_BUCKET}/i/", "langauges": ["en"]},
            "input_unknown_field",
            ["'langauges'", "allowed fields: source, languages, attributeSet, force"],
        ),
        ({"source": f"s3://{UPLOADS_BUCKET}/i/", "languages": "en"}, "languages_invalid", []),
        (
            {"source": f"s3://{UPLOADS_BUCKET}/i/", "languages": ["xx"]},
            "unknown_language",
            ["languages:", "'xx'", "supported"],
        ),
        ({"source": f"s3://{UPLOADS_BUCKET}/i/", "languages": []}, "no_language", ["languages"]),
        (
            {"source": f"s3://{UPLOADS_BUCKET}/i/", "attributeSet": "Shoes"},
            "attribute_set_unknown",
            ["attributeSet", "'Shoes'", "Shirts", "descriptions.categories"],
        ),
        ({"source": f"s3://{UPLOADS_BUCKET}/i/", "attributeSet": 7}, "attribute_set_invalid", []),
        (
            {"source": f"s3://{UPLOADS_BUCKET}/i/", "force": "yes"},
            "force_invalid",
            ["true or false", '"yes"'],
        ),
    ],
)
def test_bad_requests_name_the_field_and_the_fix(
    document: Any, code: str, fragments: list[str]
) -> None:
    error = _refused(document)
    assert error.code == code
    for fragment in fragments:
        assert fragment in error.message
    # The class name is what Step Functions matches on.
    assert type(error).__name__ == "CatalogInputError"


def test_too_many_languages_are_refused() -> None:
    too_many = list(DESCRIPTIONS.languages)[: DESCRIPTIONS.max_languages_per_request + 1]
    if len(too_many) <= DESCRIPTIONS.max_languages_per_request:
        pytest.skip("the dev config lists no more languages than one request may ask for")
    assert _refused({"source": f"s3://{UPLOADS_BUCKET}/i/", "languages": too_many}).code == (
        "too_many_languages"
    )


# --- run and batch ids ----------------------------------------------------------------------


def test_run_id_is_start_time_and_execution_hash() -> None:
    run_id = run_id_for("spring-catalog", "2026-11-22T08:16:45.123Z")
    assert re.fullmatch(r"20261122081645-[0-9a-f]{8}", run_id)
    # Same execution → same id (a retried start writes over its own request.json)
    assert run_id_for("spring-catalog", "2026-11-22T08:16:45.123Z") == run_id
    assert run_id_for("autumn-catalog", "2026-11-22T08:16:45.123Z") != run_id
    # Offsets are normalized to UTC
    assert run_id_for("spring-catalog", "2026-11-22T09:16:45+01:00") == run_id


def test_run_id_refuses_a_start_time_that_is_not_iso() -> None:
    with pytest.raises(ValueError, match="StartTime"):
        run_id_for("x", "yesterday")


def test_batch_id_is_stable_and_depends_on_every_item() -> None:
    items = [_row(product_id=str(n), image_key=f"images/{n}.jpg") for n in range(500)]
    batch_id = batch_id_for(items)
    assert re.fullmatch(r"[0-9a-f]{16}", batch_id)
    # A retried child gets equal items (key order within an item does not matter)
    assert batch_id_for([dict(reversed(list(item.items()))) for item in items]) == batch_id
    changed = [*items[:-1], _row(product_id="499", image_key="images/499.png")]
    assert batch_id_for(changed) != batch_id
    assert batch_id_for(items[:-1]) != batch_id
    assert len({batch_id_for(items[n : n + 10]) for n in range(0, 500, 10)}) == 50


def test_batch_options_come_from_the_start_result() -> None:
    options = parse_batch_options(
        {
            "runId": "r",
            "kind": "prefix",
            "bucket": UPLOADS_BUCKET,
            "languages": ["en", "de"],
            "attributeSet": "Shirts",
            "force": True,
        }
    )
    assert options == BatchOptions(
        "r", SourceKind.PREFIX, UPLOADS_BUCKET, ("en", "de"), "Shirts", True
    )
    with pytest.raises(ValueError, match="BatchInput is malformed"):
        parse_batch_options({"runId": "r", "kind": "zip"})
    with pytest.raises(ValueError, match="BatchInput is missing"):
        parse_batch_options(None)


# --- items → products -----------------------------------------------------------------------


def test_listing_entries_become_products_named_by_file_stem() -> None:
    entry = {"Key": "catalog/images/38642.JPG", "Size": 1234, "Etag": '"abc"'}
    assert product_from_listing(entry, bucket=UPLOADS_BUCKET, attribute_set="Shirts") == ProductRef(
        product_id="38642",
        image_key=f"s3://{UPLOADS_BUCKET}/catalog/images/38642.JPG",
        category="Shirts",
    )
    nested = product_from_listing(
        {"Key": "catalog/images/summer/a-1.b_2.webp"}, bucket=UPLOADS_BUCKET, attribute_set="x"
    )
    assert isinstance(nested, ProductRef)
    assert nested.product_id == "a-1.b_2"


def test_folder_markers_are_the_only_silent_skip() -> None:
    assert (
        product_from_listing({"Key": "catalog/images/"}, bucket=UPLOADS_BUCKET, attribute_set="d")
        is None
    )


@pytest.mark.parametrize(
    ("key", "product_id", "fragments"),
    [
        ("catalog/images/notes.txt", "", ["'notes.txt' is not an image file name", ".jpg"]),
        ("catalog/images/README", "", ["not an image file name", "move other files"]),
        ("catalog/images/bad id.jpg", "bad id", ["product id 'bad id'", "rename the file"]),
        ("catalog/images/.hidden.png", ".hidden", ["starting with a letter or digit"]),
    ],
)
def test_other_files_under_a_prefix_are_failures(
    key: str, product_id: str, fragments: list[str]
) -> None:
    failure = product_from_listing({"Key": key}, bucket=UPLOADS_BUCKET, attribute_set="Shirts")
    assert isinstance(failure, FailureRecord)
    assert failure.stage is Stage.INPUT
    assert failure.image_key == f"s3://{UPLOADS_BUCKET}/{key}"
    assert failure.product_id == product_id
    assert failure.category == "Shirts"
    for fragment in fragments:
        assert fragment in failure.reason


def _parse_row(row: Any, attribute_set: str = "default") -> ProductRef | FailureRecord:
    return product_from_row(
        row, manifest_bucket=UPLOADS_BUCKET, source_buckets=ALLOWED, attribute_set=attribute_set
    )


def test_csv_rows_resolve_keys_in_the_manifest_bucket() -> None:
    assert _parse_row(_row(product_id=" 38642 ", image_key="images/38642.jpg")) == ProductRef(
        product_id="38642", image_key=f"s3://{UPLOADS_BUCKET}/images/38642.jpg", category="default"
    )
    # A full URI in another allowed bucket, the row's own category, extra columns ignored
    parsed = _parse_row(
        {
            **_row(product_id="7", image_key=f"s3://{RESULTS_BUCKET}/x/7.png", category="Shirts"),
            "stage": "input",
            "reason": "earlier failure",
            "Unnamed: 10": "",
        },
        attribute_set="default",
    )
    assert parsed == ProductRef(
        product_id="7", image_key=f"s3://{RESULTS_BUCKET}/x/7.png", category="Shirts"
    )


def test_jsonl_rows_may_carry_numeric_ids_and_omit_category() -> None:
    parsed = _parse_row({"product_id": 38642, "image_key": "images/38642.jpg"}, "Shirts")
    assert parsed == ProductRef(
        product_id="38642", image_key=f"s3://{UPLOADS_BUCKET}/images/38642.jpg", category="Shirts"
    )


@pytest.mark.parametrize(
    ("row", "fragments"),
    [
        ("38642,images/38642.jpg", ["not an object", "one JSON object per line"]),
        (_row(image_key="images/1.jpg"), ["no product_id", "add one"]),
        ({"product_id": None, "image_key": "images/1.jpg"}, ["no product_id"]),
        ({"product_id": True, "image_key": "i/1.jpg"}, ["product_id must be text, not bool"]),
        ({"product_id": ["1"], "image_key": "i/1.jpg"}, ["product_id must be text, not list"]),
        (_row(product_id="a/b", image_key="images/1.jpg"), ["product_id 'a/b' is not valid"]),
        (_row(product_id="x" * 129, image_key="images/1.jpg"), ["is not valid", "1-128"]),
        (_row(product_id="1"), ["no image_key", "s3://bucket/key"]),
        ({"product_id": "1", "image_key": 5}, ["image_key must be text"]),
        (_row(product_id="1", image_key="images/"), ["names a folder"]),
        (_row(product_id="1", image_key="s3://"), ["names no bucket"]),
        (
            _row(product_id="1", image_key=f"s3://{FOREIGN_BUCKET}/1.jpg"),
            [f"image bucket '{FOREIGN_BUCKET}'", UPLOADS_BUCKET, "copy the image"],
        ),
        ({"product_id": "1", "image_key": "i/1.jpg", "category": 3}, ["category must be text"]),
    ],
)
def test_bad_rows_are_failures_with_an_actionable_reason(row: Any, fragments: list[str]) -> None:
    failure = _parse_row(row)
    assert isinstance(failure, FailureRecord), failure
    assert failure.stage is Stage.INPUT
    for fragment in fragments:
        assert fragment in failure.reason, failure.reason


def test_a_failure_keeps_what_a_rerun_needs() -> None:
    failure = _parse_row(_row(product_id="1", image_key=f"s3://{FOREIGN_BUCKET}/1.jpg"), "Shirts")
    assert isinstance(failure, FailureRecord)
    assert (failure.product_id, failure.image_key, failure.category) == (
        "1",
        f"s3://{FOREIGN_BUCKET}/1.jpg",
        "Shirts",
    )


# --- a whole batch --------------------------------------------------------------------------


def test_screening_keeps_order_and_names_every_loss() -> None:
    # Given 3,000 products: every 7th with an unknown category, every 13th with a bad id, and
    # every 10th followed by a second row (another image) for the same id, without category
    rows: list[dict[str, str]] = []
    for n in range(3000):
        product_id = f"p{n}" if n % 13 else f"p {n}"
        category = "Shoes" if n % 7 == 0 else ("Shirts" if n % 2 else "")
        rows.append(_row(product_id=product_id, image_key=f"images/{n}.jpg", category=category))
        if n % 10 == 0:
            rows.append(_row(product_id=product_id, image_key=f"images/{n}-b.jpg"))
    # When the batch is screened
    screened = screen_batch(rows, _options(), source_buckets=ALLOWED, descriptions=DESCRIPTIONS)
    # Then every row is a product or a failure, and the good ones keep their order: a row wins
    # when its id and category are valid and no earlier row of that id did
    expected_good: list[str] = []
    duplicates = 0
    for row in rows:
        valid = " " not in row["product_id"] and row["category"] in ("", "Shirts")
        if valid and row["product_id"] in expected_good:
            duplicates += 1
        elif valid:
            expected_good.append(row["product_id"])
    assert [p.ref.product_id for p in screened.products] == expected_good
    assert len(screened.products) + len(screened.failures) == len(rows)
    reasons = [failure.reason for failure in screened.failures]
    assert sum("appears more than once" in reason for reason in reasons) == duplicates > 200
    assert sum("'Shoes' is not configured" in reason for reason in reasons) == sum(
        1 for n in range(3000) if n % 7 == 0 and n % 13
    )
    assert sum("is not valid" in reason for reason in reasons) == sum(
        1 + (n % 10 == 0) for n in range(0, 3000, 13)
    )
    # Categories resolve to their question sets
    shirt = next(p for p in screened.products if p.category == "Shirts")
    assert tuple(q.name for q in shirt.questions) == SHIRT_QUESTIONS
    default = next(p for p in screened.products if p.category == "default")
    assert tuple(q.name for q in default.questions) == DESCRIPTIONS.categories["default"]


def test_the_first_of_duplicate_rows_wins() -> None:
    rows = [
        _row(product_id="1", image_key="images/1.jpg"),
        _row(product_id="1", image_key="images/1-new.jpg"),
    ]
    screened = screen_batch(rows, _options(), source_buckets=ALLOWED, descriptions=DESCRIPTIONS)
    assert [p.ref.image_key for p in screened.products] == [f"s3://{UPLOADS_BUCKET}/images/1.jpg"]
    (failure,) = screened.failures
    assert failure.image_key == f"s3://{UPLOADS_BUCKET}/images/1-new.jpg"
    assert "more than once" in failure.reason
    assert f"s3://{UPLOADS_BUCKET}/images/1.jpg" in failure.reason


def test_prefix_batches_use_the_attribute_set() -> None:
    entries = [
        {"Key": "imgs/"},
        {"Key": "imgs/1.jpg"},
        {"Key": "imgs/2.png"},
        {"Key": "imgs/x.csv"},
    ]
    screened = screen_batch(
        entries,
        _options(SourceKind.PREFIX, attribute_set="Shirts"),
        source_buckets=ALLOWED,
        descriptions=DESCRIPTIONS,
    )
    assert [(p.ref.product_id, p.category) for p in screened.products] == [
        ("1", "Shirts"),
        ("2", "Shirts"),
    ]
    assert [f.image_key for f in screened.failures] == [f"s3://{UPLOADS_BUCKET}/imgs/x.csv"]


def test_already_described_needs_every_requested_language() -> None:
    stored = {"1": frozenset({"en"}), "2": frozenset({"en", "de"})}
    assert already_described(stored, "1", ["en"])
    assert not already_described(stored, "1", ["en", "de"])
    assert already_described(stored, "2", ["de", "en"])
    assert not already_described(stored, "3", ["en"])
