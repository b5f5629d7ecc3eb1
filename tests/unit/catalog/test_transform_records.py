"""Batch Transform request lines: the endpoint's contract, the join keys, the payload limit."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

import pytest

from catalog.logic.transform_records import (
    INPUT_FILTER,
    OUTPUT_FILTER,
    PAYLOAD_SETTING,
    TRANSFORM_LINE_KEYS,
    TransformRecord,
    base64_size,
    build_transform_record,
    payload_problem,
    request_bytes,
)
from descriptions.logic.requests import questions_for
from shared.models.catalog import IndexRecord
from tests.catalog_support import descriptions_settings, make_jpeg

DESCRIPTIONS = descriptions_settings()


def _select(json_path: str, document: dict[str, Any]) -> dict[str, Any]:
    """Batch Transform's filters here are JSONPath unions of top-level names, `$['a','b']`."""
    assert re.fullmatch(r"\$\[('[A-Za-z_]+',)*'[A-Za-z_]+'\]", json_path), json_path
    return {name: document[name] for name in re.findall(r"'([A-Za-z_]+)'", json_path)}


def _record(image: bytes, product_id: str = "38642") -> TransformRecord:
    category, questions = questions_for(DESCRIPTIONS, None)
    return build_transform_record(
        product_id=product_id,
        image_key=f"s3://uploads/images/{product_id}.jpg",
        category=category,
        questions=questions,
        image=image,
    )


def test_the_line_has_exactly_the_contract_keys_and_one_line() -> None:
    image = make_jpeg()
    record = _record(image)
    assert b"\n" not in record.line
    document = json.loads(record.line)
    assert tuple(document) == TRANSFORM_LINE_KEYS
    assert base64.b64decode(document["image"]) == image
    _, questions = questions_for(DESCRIPTIONS, None)
    assert document["questions"] == [{"name": q.name, "text": q.text} for q in questions]
    assert document["category"] == "default"


def test_the_index_record_matches_the_line() -> None:
    image = make_jpeg(seed=3)
    record = _record(image, "p-1")
    assert record.index == IndexRecord(
        product_id="p-1",
        image_key="s3://uploads/images/p-1.jpg",
        category="default",
        image_sha256=hashlib.sha256(image).hexdigest(),
    )


@pytest.mark.slow  # imports the serving code, hence torch and transformers (~8 s)
def test_what_the_input_filter_passes_is_a_request_the_model_accepts() -> None:
    from vqa.inference import RefusedRequest, VqaRequest, input_fn

    # Given a line as Batch Transform reads it
    image = make_jpeg(128, 96)
    line = json.loads(_record(image).line)
    # When the InputFilter selects the model's part
    model_input = _select(INPUT_FILTER, line)
    # Then the serving code's own parser takes it, with every question
    request = input_fn(json.dumps(model_input), "application/json")
    assert set(model_input) == {"image", "questions", "errors"}
    assert isinstance(request, VqaRequest)
    assert [q.name for q in request.questions] == list(DESCRIPTIONS.categories["default"])
    assert request.image.size == (128, 96)

    # And an image whose header passed the Lambda's check but whose body is corrupt is refused
    # for that record alone: an answer, not an exception that fails the whole input file
    whole = make_jpeg(128, 96)
    corrupt = json.loads(_record(whole[: len(whole) // 2] + b"\x00" * 32).line)
    refused = input_fn(json.dumps(_select(INPUT_FILTER, corrupt)), "application/json")
    assert isinstance(refused, RefusedRequest)
    assert '"image"' in refused.message


def test_the_output_filter_keeps_the_join_keys_and_drops_the_image() -> None:
    line = json.loads(_record(make_jpeg()).line)
    joined = {**line, "SageMakerOutput": {"attributes": {"fabric": "Cotton"}}}
    kept = _select(OUTPUT_FILTER, joined)
    assert set(kept) == {"product_id", "image_key", "category", "SageMakerOutput"}
    assert kept["product_id"] == line["product_id"]
    assert "image" not in _select(OUTPUT_FILTER, joined)


def test_payload_limit_counts_the_whole_line() -> None:
    record = _record(make_jpeg())
    size = request_bytes(record)
    assert size == len(record.line) + 1
    assert payload_problem(size, image_bytes=10, limit=size) is None
    problem = payload_problem(size, image_bytes=10, limit=size - 1)
    assert problem is not None
    assert f"{size:,} bytes" in problem
    assert f"{size - 1:,}-byte" in problem
    assert PAYLOAD_SETTING == "catalog.transform.max_payload_mb"
    assert PAYLOAD_SETTING in problem


@pytest.mark.parametrize("count", [0, 1, 2, 3, 4, 1000, 1001, 1002, 4_194_304])
def test_base64_size_is_exact(count: int) -> None:
    assert base64_size(count) == len(base64.b64encode(b"\0" * count))
