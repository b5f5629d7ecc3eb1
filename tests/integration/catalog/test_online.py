"""The online step (small catalogs) on moto: one product through the upload worker's pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from catalog.handlers import online
from catalog.handlers.environment import CatalogEnvironment
from catalog.handlers.online import OnlineStep, build_step
from catalog.logic import layout
from descriptions.logic.pipeline import DescriptionPipeline, result_key
from shared.adapters.bedrock_runtime import BedrockTextModel
from shared.adapters.run_files import RunFiles
from shared.adapters.sagemaker_runtime import SageMakerAttributeModel
from shared.adapters.storage import DynamoDescriptionTable, S3ResultsArchive
from shared.adapters.uploads import S3Uploads
from shared.models.catalog import FailureRecord, Stage
from shared.models.errors import DependencyError
from shared.retry import Deadline
from tests.catalog_support import (
    FOREIGN_BUCKET,
    RESULTS_BUCKET,
    TABLE_NAME,
    UPLOADS_BUCKET,
    catalog_settings,
    create_catalog_resources,
    descriptions_settings,
    list_keys,
    make_jpeg,
    read_json,
    read_jsonl,
)
from tests.descriptions_support import FakeAttributeModel, FakeContext, FakeTextModel

pytestmark = pytest.mark.integration

RUN = "20261122100000-abcdef12"


@pytest.fixture
def aws() -> Iterator[tuple[Any, Any]]:
    with mock_aws():
        s3, dynamodb = boto3.client("s3"), boto3.client("dynamodb")
        create_catalog_resources(s3, dynamodb, catalog_settings())
        yield s3, dynamodb


def _step(s3: Any, dynamodb: Any, **models: Any) -> OnlineStep:
    settings = descriptions_settings()
    return OnlineStep(
        settings=catalog_settings(),
        pipeline=DescriptionPipeline(
            settings=settings,
            attribute_model=models.get("attribute_model", FakeAttributeModel()),
            text_model=models.get("text_model", FakeTextModel()),
            archive=S3ResultsArchive(RESULTS_BUCKET, s3=s3),
            table=DynamoDescriptionTable(TABLE_NAME, dynamodb=dynamodb),
            sleep=lambda _: None,
        ),
        images=S3Uploads(s3=s3),
        files=RunFiles(RESULTS_BUCKET, s3=s3),
    )


def _event(product_id: str, image_key: str, **product: Any) -> dict[str, Any]:
    return {
        "runId": RUN,
        "product": {
            "product_id": product_id,
            "image_key": image_key,
            "category": "default",
            **product,
        },
        "languages": ["en", "de"],
    }


def _failure(s3: Any, product_id: str) -> FailureRecord:
    [line] = read_jsonl(s3, RESULTS_BUCKET, layout.failures_key(RUN, "online", product_id))
    return FailureRecord.model_validate(line)


def test_a_product_is_described_and_stored_like_an_upload(aws: tuple[Any, Any]) -> None:
    # Given a product image in an allowed bucket
    s3, dynamodb = aws
    s3.put_object(Bucket=UPLOADS_BUCKET, Key="catalog/P1.jpg", Body=make_jpeg())
    text_model = FakeTextModel()
    uri = f"s3://{UPLOADS_BUCKET}/catalog/P1.jpg"

    # When the online step runs
    result = _step(s3, dynamodb, text_model=text_model).run(_event("P1", uri), Deadline(60))

    # Then it is described in both languages, stored in the table and the results bucket, with
    # the image's URI as its key, and no failure is written
    assert result == {"described": True}
    stored = DynamoDescriptionTable(TABLE_NAME, dynamodb=dynamodb).get("P1")
    assert stored is not None
    assert list(stored.descriptions) == ["en", "de"]
    assert stored.image_key == uri
    assert read_json(s3, RESULTS_BUCKET, result_key("P1"))["productId"] == "P1"
    assert len(text_model.requests) == 1
    assert list_keys(s3, RESULTS_BUCKET, layout.failures_prefix(RUN)) == []


@pytest.mark.parametrize(
    ("image_key", "reason"),
    [
        (f"s3://{UPLOADS_BUCKET}/catalog/gone.jpg", "upload_missing"),
        (f"s3://{FOREIGN_BUCKET}/catalog/P2.jpg", "is not in catalog.source_buckets"),
        ("catalog/P2.jpg", "is not an s3:// URI"),
    ],
)
def test_a_product_that_cannot_be_read_is_reported_not_raised(
    aws: tuple[Any, Any], image_key: str, reason: str
) -> None:
    s3, dynamodb = aws
    s3.put_object(Bucket=FOREIGN_BUCKET, Key="catalog/P2.jpg", Body=make_jpeg())

    result = _step(s3, dynamodb).run(_event("P2", image_key), Deadline(60))

    assert result == {"described": False}
    failure = _failure(s3, "P2")
    assert failure.stage is Stage.ONLINE
    assert failure.image_key == image_key
    assert reason in failure.reason
    assert DynamoDescriptionTable(TABLE_NAME, dynamodb=dynamodb).get("P2") is None


def test_a_model_failure_is_reported_with_its_code(aws: tuple[Any, Any]) -> None:
    s3, dynamodb = aws
    s3.put_object(Bucket=UPLOADS_BUCKET, Key="catalog/P3.jpg", Body=make_jpeg())
    broken = FakeAttributeModel(
        failures=[DependencyError("attribute_model_failed", "ModelError 500", retryable=False)]
    )

    result = _step(s3, dynamodb, attribute_model=broken).run(
        _event("P3", f"s3://{UPLOADS_BUCKET}/catalog/P3.jpg"), Deadline(60)
    )

    assert result == {"described": False}
    assert _failure(s3, "P3").reason == "attribute_model_failed: ModelError 500"


def test_an_unexpected_error_raises_so_step_functions_retries(aws: tuple[Any, Any]) -> None:
    s3, dynamodb = aws
    s3.put_object(Bucket=UPLOADS_BUCKET, Key="catalog/P4.jpg", Body=make_jpeg())
    broken = FakeAttributeModel(failures=[RuntimeError("bug")])

    with pytest.raises(RuntimeError, match="bug"):
        _step(s3, dynamodb, attribute_model=broken).run(
            _event("P4", f"s3://{UPLOADS_BUCKET}/catalog/P4.jpg"), Deadline(60)
        )
    assert list_keys(s3, RESULTS_BUCKET, layout.failures_prefix(RUN)) == []


def test_the_wiring_is_the_upload_workers_pointed_at_the_catalog(aws: tuple[Any, Any]) -> None:
    # Given the catalog Lambda's environment (clients are created inside moto's mock)
    environment = CatalogEnvironment(
        catalog=catalog_settings(), descriptions=descriptions_settings()
    )

    # When the step is built
    step = build_step(environment)

    # Then its pipeline uses the real adapters on the configured endpoint, bucket and table
    pipeline = step.pipeline
    assert isinstance(pipeline.attribute_model, SageMakerAttributeModel)
    assert pipeline.attribute_model.endpoint_name == environment.descriptions.endpoint_name
    assert isinstance(pipeline.text_model, BedrockTextModel)
    assert isinstance(pipeline.archive, S3ResultsArchive)
    assert pipeline.archive.bucket == RESULTS_BUCKET
    assert isinstance(pipeline.table, DynamoDescriptionTable)
    assert pipeline.table.table_name == TABLE_NAME
    assert pipeline.settings == environment.descriptions


def test_the_handler_gives_the_pipeline_the_functions_remaining_time(
    aws: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a step whose text model never answers in time, and a function with 2 s left
    s3, dynamodb = aws
    s3.put_object(Bucket=UPLOADS_BUCKET, Key="catalog/P5.jpg", Body=make_jpeg())
    slow = FakeTextModel(
        reply=lambda request: (_ for _ in ()).throw(
            DependencyError("text_model_unavailable", "throttled", retryable=True)
        )
    )
    monkeypatch.setattr(online, "step", lambda: _step(s3, dynamodb, text_model=slow))

    # When the handler runs
    result = online.handler(
        _event("P5", f"s3://{UPLOADS_BUCKET}/catalog/P5.jpg"), FakeContext(remaining_ms=2_000)
    )

    # Then the retries stop within the deadline and the product is reported
    assert result == {"described": False}
    assert _failure(s3, "P5").reason == "text_model_unavailable: throttled"
    assert len(slow.requests) == 1
