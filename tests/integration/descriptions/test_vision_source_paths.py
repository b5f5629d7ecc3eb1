"""The `vision-llm` attribute source on every path: `POST /descriptions`, the upload worker and
the catalog's online step, with Converse answers checked by botocore's Stubber (the request
against the real API model and against the exact expected parameters).

Each path meets a good answer, a malformed one and a refused one; the API also a throttled
call (503 with Retry-After) and an image over Bedrock's byte limit (413 before any call). And
switching the source changes nothing in the stored item but the recorded source.
"""

from __future__ import annotations

import base64
import io
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto import mock_aws
from PIL import Image

from catalog.handlers.online import OnlineStep
from catalog.logic import layout
from descriptions.handlers import api
from descriptions.logic.pipeline import DescriptionJob, DescriptionPipeline, result_document
from descriptions.logic.requests import questions_for
from descriptions.logic.vision import BEDROCK_IMAGE_LIMITS
from shared.adapters.run_files import RunFiles
from shared.adapters.sagemaker_runtime import SageMakerAttributeModel
from shared.adapters.storage import DynamoDescriptionTable, S3ResultsArchive, description_item
from shared.adapters.uploads import S3Uploads
from shared.models.catalog import FailureRecord
from shared.retry import Deadline
from tests.catalog_support import RESULTS_BUCKET as CATALOG_RESULTS
from tests.catalog_support import TABLE_NAME as CATALOG_TABLE
from tests.catalog_support import (
    UPLOADS_BUCKET,
    catalog_settings,
    create_catalog_resources,
    read_jsonl,
)
from tests.descriptions_support import (
    ATTRIBUTES,
    FakeContext,
    FakeTextModel,
    InMemoryArchive,
    InMemoryTable,
    api_event,
    create_products_table,
    describe_body,
    image_bytes,
    settings,
)
from tests.uploads_support import Harness as UploadHarness
from tests.vision_support import VISION_MODEL, StubbedVision, refusal_reply, vision_reply

pytestmark = pytest.mark.integration

SETTINGS = settings()
_, QUESTIONS = questions_for(SETTINGS, None)
ANSWERS = {name: ATTRIBUTES[name] for name in SETTINGS.categories["default"]}
RESULTS_BUCKET = "atelier-dev-results"
TABLE = "atelier-dev-products"
MODES = ["tool", "json_schema"]
RUN = "20261207100000-abcdef12"


def _pipeline(source: Any, s3: Any, dynamodb: Any) -> DescriptionPipeline:
    return DescriptionPipeline(
        settings=SETTINGS,
        attribute_model=source,
        text_model=FakeTextModel(),
        archive=S3ResultsArchive(RESULTS_BUCKET, s3=s3),
        table=DynamoDescriptionTable(TABLE, dynamodb=dynamodb),
        sleep=lambda _: None,
    )


def _over_bedrocks_limit() -> bytes:
    """A PNG above Bedrock's 3.75 MB but within the stage's own 4 MiB and 4096 px limits."""
    noise = random.Random(0).randbytes(1200 * 1100 * 3)  # noqa: S311 (test data)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (1200, 1100), noise).save(buffer, format="PNG", compress_level=0)
    data = buffer.getvalue()
    assert BEDROCK_IMAGE_LIMITS.max_bytes < len(data) <= SETTINGS.image.max_bytes
    return data


# --- POST /descriptions ----------------------------------------------------------------------


@pytest.fixture
def aws() -> Iterator[tuple[Any, Any]]:
    with mock_aws():
        s3, dynamodb = boto3.client("s3"), boto3.client("dynamodb")
        s3.create_bucket(Bucket=RESULTS_BUCKET)
        create_products_table(dynamodb, TABLE)
        yield s3, dynamodb


def _post(
    monkeypatch: pytest.MonkeyPatch, pipeline: DescriptionPipeline, image: bytes
) -> tuple[int, dict[str, Any], dict[str, str]]:
    monkeypatch.setattr(api, "pipeline", lambda: pipeline)
    response = api.handler(api_event("POST", "/descriptions", describe_body(image)), FakeContext())
    headers = {name: values[-1] for name, values in response.get("multiValueHeaders", {}).items()}
    return response["statusCode"], json.loads(response["body"]), headers


@pytest.mark.parametrize("mode", MODES)
def test_the_api_describes_from_the_vision_models_answers(
    aws: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch, mode: Any
) -> None:
    vision = StubbedVision(mode)
    image = image_bytes()
    vision.expect_answer(image, QUESTIONS, {**ANSWERS, "collar": "  ", "fit": " Slim Fit "})

    with vision.stubber:
        status, body, _ = _post(monkeypatch, _pipeline(vision.source, *aws), image)
        vision.stubber.assert_no_pending_responses()

    assert status == 200, body
    assert body["attributesSource"] == {"kind": "vision-llm", "model": VISION_MODEL}
    assert body["attributeModel"] == VISION_MODEL
    # Cleaned like the endpoint's answers: stripped, empty ones dropped.
    assert body["attributes"]["fit"] == "Slim Fit"
    assert "collar" not in body["attributes"]
    assert DynamoDescriptionTable(TABLE, dynamodb=aws[1]).get("38642") is not None


@pytest.mark.parametrize(
    ("response", "code"),
    [
        (vision_reply({"fabric": ["Cotton"]}, "tool"), "attribute_model_bad_response"),
        (refusal_reply("content_filtered"), "attribute_model_refused"),
        (refusal_reply("guardrail_intervened"), "attribute_model_refused"),
    ],
    ids=["malformed", "content-filtered", "guardrail"],
)
def test_the_api_answers_502_to_a_malformed_or_refused_answer_and_stores_nothing(
    aws: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch, response: Any, code: str
) -> None:
    vision = StubbedVision("tool")
    image = image_bytes()
    vision.expect(image, QUESTIONS, response)

    with vision.stubber:
        status, body, _ = _post(monkeypatch, _pipeline(vision.source, *aws), image)

    assert status == 502
    assert body["error"]["code"] == code
    assert DynamoDescriptionTable(TABLE, dynamodb=aws[1]).get("38642") is None


def test_a_throttled_vision_model_is_a_503_with_a_retry_hint(
    aws: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    vision = StubbedVision("tool")
    for _ in range(4):  # every attempt of the pipeline's retry policy
        vision.expect_error("ThrottlingException", 429, "Too many requests")

    with vision.stubber:
        status, body, headers = _post(monkeypatch, _pipeline(vision.source, *aws), image_bytes())
        vision.stubber.assert_no_pending_responses()

    assert status == 503
    assert body["error"]["code"] == "attribute_model_unavailable"
    assert int(headers["Retry-After"]) == body["error"]["retryAfterSeconds"] > 0


def test_an_image_over_bedrocks_byte_limit_is_a_413_naming_it_before_any_call(
    aws: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    vision = StubbedVision("tool")  # no answer planned: a call would fail the test

    with vision.stubber:
        status, body, _ = _post(monkeypatch, _pipeline(vision.source, *aws), _over_bedrocks_limit())

    assert status == 413
    assert body["error"]["code"] == "image_too_large"
    assert f"{BEDROCK_IMAGE_LIMITS.max_bytes:,} bytes" in body["error"]["message"]


# --- the upload worker -----------------------------------------------------------------------


def test_the_worker_describes_parks_a_refusal_and_retries_throttling() -> None:
    with mock_aws():
        vision = StubbedVision("json_schema")
        harness = UploadHarness(attribute_model=vision.source)
        good, refused, malformed = image_bytes(), image_bytes("PNG"), image_bytes(size=(300, 200))
        vision.expect_answer(good, QUESTIONS, ANSWERS)
        vision.expect(refused, QUESTIONS, refusal_reply())
        vision.expect(malformed, QUESTIONS, vision_reply("Cotton", "json_schema"))
        vision.expect_error("ThrottlingException", 429)

        with vision.stubber:
            described = harness.handle(harness.upload("incoming/1.jpg", good))
            parked = harness.handle(harness.upload("incoming/2.png", refused))
            parked_too = harness.handle(harness.upload("incoming/3.jpg", malformed))
            # One attempt left in the function's time: the throttled record goes back to SQS.
            harness.worker.pipeline.retry_policy = type(harness.worker.pipeline.retry_policy)(
                attempts=1
            )
            retried = harness.handle(harness.upload("incoming/4.jpg", good))
            vision.stubber.assert_no_pending_responses()

        assert described == parked == parked_too == {"batchItemFailures": []}
        assert len(retried["batchItemFailures"]) == 1
        stored = harness.description("1")
        assert stored.attributes_source.model_dump() == {
            "kind": "vision-llm",
            "model": VISION_MODEL,
        }
        codes = sorted(
            message["MessageAttributes"]["errorCode"]["StringValue"]
            for message in harness.dead_letters()
        )
        assert codes == ["attribute_model_bad_response", "attribute_model_refused"]
        assert harness.description("2") is None
        assert harness.description("4") is None


# --- the catalog's online step ---------------------------------------------------------------


def test_the_catalog_online_step_describes_and_reports_refused_and_malformed_answers() -> None:
    with mock_aws():
        s3, dynamodb = boto3.client("s3"), boto3.client("dynamodb")
        create_catalog_resources(s3, dynamodb, catalog_settings())
        vision = StubbedVision("tool")
        step = OnlineStep(
            settings=catalog_settings(),
            pipeline=DescriptionPipeline(
                settings=SETTINGS,
                attribute_model=vision.source,
                text_model=FakeTextModel(),
                archive=S3ResultsArchive(CATALOG_RESULTS, s3=s3),
                table=DynamoDescriptionTable(CATALOG_TABLE, dynamodb=dynamodb),
                sleep=lambda _: None,
            ),
            images=S3Uploads(s3=s3),
            files=RunFiles(CATALOG_RESULTS, s3=s3),
        )
        images = {"P1": image_bytes(), "P2": image_bytes("PNG"), "P3": image_bytes(size=(200, 200))}
        for product, data in images.items():
            s3.put_object(Bucket=UPLOADS_BUCKET, Key=f"catalog/{product}", Body=data)
        vision.expect_answer(images["P1"], QUESTIONS, ANSWERS)
        vision.expect(images["P2"], QUESTIONS, refusal_reply())
        vision.expect(images["P3"], QUESTIONS, vision_reply({"fabric": 1}, "tool"))

        with vision.stubber:
            results = [
                step.run(
                    {
                        "runId": RUN,
                        "product": {
                            "product_id": product,
                            "image_key": f"s3://{UPLOADS_BUCKET}/catalog/{product}",
                            "category": "default",
                        },
                        "languages": ["en"],
                    },
                    Deadline(60),
                )
                for product in images
            ]
            vision.stubber.assert_no_pending_responses()

        assert results == [{"described": True}, {"described": False}, {"described": False}]
        stored = DynamoDescriptionTable(CATALOG_TABLE, dynamodb=dynamodb).get("P1")
        assert stored is not None
        assert stored.attributes_source.model_dump() == {
            "kind": "vision-llm",
            "model": VISION_MODEL,
        }

        def reason(product: str) -> str:
            [line] = read_jsonl(s3, CATALOG_RESULTS, layout.failures_key(RUN, "online", product))
            return FailureRecord.model_validate(line).reason

        assert reason("P2").startswith("attribute_model_refused: ")
        assert reason("P3").startswith("attribute_model_bad_response: ")


# --- switching the source --------------------------------------------------------------------


class _Stream(io.BytesIO):
    pass


def test_switching_the_source_changes_only_the_recorded_source() -> None:
    image = image_bytes()
    job = DescriptionJob(product_id="38642", image=image)
    fixed = datetime(2026, 12, 7, tzinfo=UTC)

    # The endpoint, through the real adapter on a Stubber-checked client
    sagemaker = boto3.client("sagemaker-runtime", region_name="us-east-1")
    payload = json.dumps({"attributes": ANSWERS}).encode()
    endpoint_stub = Stubber(sagemaker)
    endpoint_stub.add_response(
        "invoke_endpoint",
        {"Body": StreamingBody(_Stream(payload), len(payload)), "ContentType": "application/json"},
        expected_params={
            "EndpointName": SETTINGS.endpoint_name,
            "ContentType": "application/json",
            "Accept": "application/json",
            "Body": json.dumps(
                {
                    "image": base64.b64encode(image).decode(),
                    "questions": [{"name": q.name, "text": q.text} for q in QUESTIONS],
                }
            ),
        },
    )
    vision = StubbedVision("tool")
    vision.expect_answer(image, QUESTIONS, ANSWERS)

    items = {}
    for name, source, stubber in (
        (
            "endpoint",
            SageMakerAttributeModel(SETTINGS.endpoint_name, sagemaker_runtime=sagemaker),
            endpoint_stub,
        ),
        ("vision", vision.source, vision.stubber),
    ):
        archive, table = InMemoryArchive(), InMemoryTable()
        pipeline = DescriptionPipeline(
            settings=SETTINGS,
            attribute_model=source,
            text_model=FakeTextModel(),
            archive=archive,
            table=table,
            now=lambda: fixed,
        )
        with stubber:
            stored = pipeline.describe(job, deadline=Deadline(60))
        item = description_item(table.items["38642"])
        assert archive.documents[stored.result_key] == result_document(table.items["38642"])
        items[name] = {key: value for key, value in item.items() if key != "timingsMs"}

    differing = {key for key in items["endpoint"] if items["endpoint"][key] != items["vision"][key]}
    assert set(items["endpoint"]) == set(items["vision"])
    assert differing == {"attributesSource", "attributeModel"}
    assert items["vision"]["attributesSource"] == {
        "M": {"kind": {"S": "vision-llm"}, "model": {"S": VISION_MODEL}}
    }
