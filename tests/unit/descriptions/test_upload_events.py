"""Reading the upload behind an event, and its product id, category and languages."""

from __future__ import annotations

import pytest

from descriptions.logic.uploads import options_from_metadata, parse_upload_event, product_id_for
from shared.models.errors import RequestError
from tests.descriptions_support import upload_event


def test_an_object_created_event_names_bucket_key_version_and_size() -> None:
    upload = parse_upload_event(upload_event("b", "incoming/1.jpg", version="v1", size=10))

    assert upload is not None
    assert (upload.bucket, upload.key, upload.version_id, upload.size) == (
        "b",
        "incoming/1.jpg",
        "v1",
        10,
    )
    assert upload.idempotency_data() == {"bucket": "b", "key": "incoming/1.jpg", "version": "v1"}


def test_events_that_announce_no_upload_are_ignored() -> None:
    assert parse_upload_event('{"Event": "s3:TestEvent"}') is None


@pytest.mark.parametrize("body", ["not json", "[1]", '{"source": "aws.s3", "detail-type": '
                                  '"Object Created", "detail": {}}'])  # fmt: skip
def test_malformed_events_are_refused(body: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_upload_event(body)
    assert caught.value.code == "event_malformed"


@pytest.mark.parametrize(
    ("key", "metadata", "expected"),
    [
        ("incoming/38642.jpg", {}, "38642"),
        ("incoming/38642/front.png", {}, "38642"),
        ("incoming/SKU-1.2_a.webp", {}, "SKU-1.2_a"),
        ("incoming/photo.jpg", {"product-id": " 99 "}, "99"),
    ],
)
def test_product_id_comes_from_metadata_or_key(
    key: str, metadata: dict[str, str], expected: str
) -> None:
    assert product_id_for(key, metadata) == expected


@pytest.mark.parametrize(
    ("key", "metadata", "code"),
    [
        ("incoming/bad id!.jpg", {}, "product_id_invalid"),
        ("incoming/.jpg", {}, "product_id_invalid"),
        ("incoming/a.jpg", {"product-id": "x" * 200}, "product_id_invalid"),
        ("elsewhere/1.jpg", {}, "upload_outside_prefix"),
    ],
)
def test_bad_product_ids_are_refused_with_a_code(
    key: str, metadata: dict[str, str], code: str
) -> None:
    with pytest.raises(RequestError) as caught:
        product_id_for(key, metadata)
    assert caught.value.code == code


def test_category_and_languages_come_from_metadata() -> None:
    assert options_from_metadata({"category": "Shirts", "languages": "en, de,"}) == (
        "Shirts",
        ["en", "de"],
    )
    assert options_from_metadata({}) == (None, None)


def test_infra_and_lambda_code_agree_on_prefixes_and_product_ids() -> None:
    from descriptions.logic.pipeline import RESULTS_PREFIX as LAMBDA_RESULTS_PREFIX
    from descriptions.logic.uploads import UPLOAD_PREFIX
    from infra.stacks.api import RESULTS_PREFIX
    from infra.stacks.api_rest import PRODUCT_ID_PATTERN
    from infra.stacks.data import UPLOADS_PREFIX
    from shared.models.descriptions import PRODUCT_ID_PATTERN as LAMBDA_PRODUCT_ID_PATTERN

    # The IAM grants are scoped to these prefixes: a mismatch would deny every call.
    assert UPLOAD_PREFIX == UPLOADS_PREFIX
    assert LAMBDA_RESULTS_PREFIX == RESULTS_PREFIX
    # API Gateway's request model and the handler's pydantic model accept the same ids.
    assert LAMBDA_PRODUCT_ID_PATTERN == PRODUCT_ID_PATTERN
