"""The API handler end to end: moto for S3 and DynamoDB, botocore Stubber for the models.

Stubber checks every SageMaker and Bedrock call against the services' real API models, so a
malformed InvokeEndpoint or Converse request fails here, not in production.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ReadTimeoutError
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto import mock_aws

from descriptions.handlers import api
from descriptions.logic.pipeline import DescriptionPipeline
from descriptions.logic.prompt import converse_request
from descriptions.logic.requests import questions_for
from shared.adapters.bedrock_runtime import BedrockTextModel
from shared.adapters.sagemaker_runtime import SageMakerAttributeModel
from shared.adapters.storage import DynamoDescriptionTable, S3ResultsArchive
from tests.descriptions_support import (
    ATTRIBUTES,
    FakeContext,
    api_event,
    converse_json_response,
    converse_response,
    create_products_table,
    describe_body,
    image_bytes,
    settings,
    tool_input,
)

pytestmark = pytest.mark.integration

RESULTS_BUCKET = "atelier-dev-results"
TABLE = "atelier-dev-products"
SETTINGS = settings()


class Harness:
    def __init__(self) -> None:
        self.s3 = boto3.client("s3")
        self.dynamodb = boto3.client("dynamodb")
        self.sagemaker = boto3.client("sagemaker-runtime")
        self.bedrock = boto3.client("bedrock-runtime")
        self.endpoint = Stubber(self.sagemaker)
        self.text = Stubber(self.bedrock)
        self.s3.create_bucket(Bucket=RESULTS_BUCKET)
        create_products_table(self.dynamodb, TABLE)
        self.sleeps: list[float] = []
        self.pipeline = DescriptionPipeline(
            settings=SETTINGS,
            attribute_model=SageMakerAttributeModel(
                SETTINGS.endpoint_name, sagemaker_runtime=self.sagemaker
            ),
            text_model=BedrockTextModel(bedrock_runtime=self.bedrock),
            archive=S3ResultsArchive(RESULTS_BUCKET, s3=self.s3),
            table=DynamoDescriptionTable(TABLE, dynamodb=self.dynamodb),
            sleep=self.sleeps.append,
        )

    # -- expectations -------------------------------------------------------------------------
    def expect_attributes(self, image: bytes, answers: dict[str, str] = ATTRIBUTES) -> None:
        _, questions = questions_for(SETTINGS, None)
        body = json.dumps(
            {
                "image": base64.b64encode(image).decode(),
                "questions": [{"name": q.name, "text": q.text} for q in questions],
            }
        )
        payload = json.dumps({"attributes": answers}).encode()
        self.endpoint.add_response(
            "invoke_endpoint",
            {
                "Body": StreamingBody(_Stream(payload), len(payload)),
                "ContentType": "application/json",
            },
            expected_params={
                "EndpointName": SETTINGS.endpoint_name,
                "ContentType": "application/json",
                "Accept": "application/json",
                "Body": body,
            },
        )

    def expect_description(
        self,
        answer: dict[str, Any] | None = None,
        *,
        languages: tuple[str, ...] = ("en",),
        corrections: tuple[str, ...] = (),
    ) -> None:
        request = converse_request(
            model_id=SETTINGS.model_id,
            attributes={name: ATTRIBUTES[name] for name in SETTINGS.categories["default"]},
            category="default",
            languages=list(languages),
            max_tokens_per_language=SETTINGS.max_tokens_per_language,
            temperature=SETTINGS.temperature,
            structured_output=SETTINGS.structured_output,
            corrections=list(corrections),
        )
        # The answer in the shape of the stage's structured-output mode.
        reply = converse_json_response if "outputConfig" in request else converse_response
        self.text.add_response(
            "converse", reply(answer or tool_input(languages)), expected_params=request
        )

    def call(self, event: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        response = api.handler(event, FakeContext())
        headers = {
            name: values[-1] for name, values in response.get("multiValueHeaders", {}).items()
        }
        return response["statusCode"], json.loads(response["body"]), headers

    def stored_item(self, product_id: str) -> dict[str, Any] | None:
        item = self.dynamodb.get_item(
            TableName=TABLE, Key={"pk": {"S": f"PRODUCT#{product_id}"}, "sk": {"S": "DESCRIPTION"}}
        )
        return item.get("Item")


class _Stream:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self, *_: Any) -> bytes:
        data, self._data = self._data, b""
        return data


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    with mock_aws():
        harness = Harness()
        monkeypatch.setattr(api, "pipeline", lambda: harness.pipeline)
        with harness.endpoint, harness.text:
            yield harness
            # Every expected model call happened, and no other.
            harness.endpoint.assert_no_pending_responses()
            harness.text.assert_no_pending_responses()


def test_post_describes_stores_and_get_reads_it_back(harness: Harness) -> None:
    image = image_bytes()
    harness.expect_attributes(image)
    harness.expect_description()

    status, body, _ = harness.call(api_event("POST", "/descriptions", describe_body(image)))

    assert status == 200, body
    assert body["productId"] == "38642"
    assert body["attributes"]["fabric"] == "Fabric: Cotton"
    assert body["descriptions"]["en"]["title"].startswith("Navy striped")
    assert body["grounding"]["contradictions"] == []
    assert "fabric" in body["grounding"]["covered"]
    assert body["textModel"] == SETTINGS.model_id
    assert body["attributeModel"] == SETTINGS.endpoint_name
    assert body["usage"] == {"inputTokens": 300, "outputTokens": 250}
    assert {"validate", "attributes", "description", "store"} <= set(body["timingsMs"])
    archived = json.loads(
        harness.s3.get_object(Bucket=RESULTS_BUCKET, Key="descriptions/38642.json")["Body"].read()
    )
    assert archived["descriptions"] == body["descriptions"]
    assert harness.stored_item("38642") is not None

    status, fetched, _ = harness.call(api_event("GET", "/descriptions/38642"))

    assert status == 200
    assert fetched["descriptions"] == body["descriptions"]
    assert fetched["attributes"] == body["attributes"]


def test_several_languages_come_from_one_model_call(harness: Harness) -> None:
    image = image_bytes("PNG")
    harness.expect_attributes(image)
    harness.expect_description(languages=("en", "de"))

    status, body, _ = harness.call(
        api_event("POST", "/descriptions", describe_body(image, languages=["en", "de", "en"]))
    )

    assert status == 200, body
    assert list(body["descriptions"]) == ["en", "de"]


def test_unknown_product_is_a_404_and_a_bad_id_a_400(harness: Harness) -> None:
    status, body, _ = harness.call(api_event("GET", "/descriptions/nothing-here"))
    assert (status, body["error"]["code"]) == (404, "not_found")

    status, body, _ = harness.call(api_event("GET", "/descriptions/" + "x" * 200))
    assert (status, body["error"]["code"]) == (400, "invalid_request")


def _truncated_jpeg() -> str:
    return base64.b64encode(image_bytes()[:-200]).decode()


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (None, 400, "body_missing"),
        ("{not json", 400, "invalid_json"),
        (json.dumps({"productId": "1"}), 400, "invalid_request"),
        (json.dumps({"productId": "no spaces", "image": "aGk="}), 400, "invalid_request"),
        (json.dumps({"productId": "1", "image": "aGk=", "extra": 1}), 400, "invalid_request"),
        (json.dumps({"productId": "1", "image": "***"}), 400, "invalid_base64"),
        (json.dumps({"productId": "1", "image": "aGVsbG8gd29ybGQ="}), 400,
         "image_unsupported_format"),
        (json.dumps({"productId": "1", "image": _truncated_jpeg()}), 400, "image_truncated"),
        (json.dumps({"productId": "1", "image": "A" * 6_000_000}), 413, "image_too_large"),
        (describe_body(image_bytes(size=(20, 20))), 400, "image_too_small"),
        (describe_body(languages=["xx"]), 400, "unknown_language"),
        (describe_body(languages=[]), 400, "no_language"),
        (describe_body(languages=["en", "de", "fr", "es", "it"]), 400, "too_many_languages"),
        (describe_body(category="Spaceships"), 400, "unknown_category"),
        (json.dumps([1, 2]), 400, "invalid_request"),
    ],
)  # fmt: skip
def test_client_mistakes_are_4xx_before_any_model_call(
    harness: Harness, body: str | None, status: int, code: str
) -> None:
    got_status, got, _ = harness.call(api_event("POST", "/descriptions", body))

    assert (got_status, got["error"]["code"]) == (status, code), got
    assert got["error"]["message"]
    assert harness.stored_item("1") is None
    assert harness.stored_item("38642") is None


def test_endpoint_throttling_is_retried_then_answered_with_503_and_a_hint(
    harness: Harness,
) -> None:
    for _ in range(4):
        harness.endpoint.add_client_error(
            "invoke_endpoint", service_error_code="ThrottlingException", http_status_code=400
        )

    status, body, headers = harness.call(api_event("POST", "/descriptions", describe_body()))

    assert (status, body["error"]["code"]) == (503, "attribute_model_unavailable")
    assert headers["Retry-After"] == str(body["error"]["retryAfterSeconds"])
    assert len(harness.sleeps) == 3  # four attempts, three backoffs
    assert harness.stored_item("38642") is None


def test_a_throttled_endpoint_that_recovers_gives_a_description(harness: Harness) -> None:
    image = image_bytes()
    harness.endpoint.add_client_error(
        "invoke_endpoint", service_error_code="ThrottlingException", http_status_code=400
    )
    harness.expect_attributes(image)
    harness.text.add_client_error(
        "converse", service_error_code="ServiceUnavailableException", http_status_code=503
    )
    harness.expect_description()

    status, body, _ = harness.call(api_event("POST", "/descriptions", describe_body(image)))

    assert status == 200, body
    assert len(harness.sleeps) == 2


def test_a_model_error_is_a_502_without_retries(harness: Harness) -> None:
    harness.endpoint.add_client_error(
        "invoke_endpoint",
        service_error_code="ModelError",
        service_message="Received server error (500) from model",
        http_status_code=424,
        modeled_fields={"OriginalStatusCode": 500, "OriginalMessage": "CUDA error"},
    )

    status, body, headers = harness.call(api_event("POST", "/descriptions", describe_body()))

    assert (status, body["error"]["code"]) == (502, "attribute_model_failed")
    assert "ModelError" in body["error"]["message"]
    assert "Retry-After" not in headers
    assert harness.sleeps == []


def test_an_answer_in_neither_structured_shape_is_a_502_naming_the_setting(
    harness: Harness,
) -> None:
    # Given a model that answers the JSON-schema request with prose (no JSON, no tool call)
    image = image_bytes()
    harness.expect_attributes(image)
    request = converse_request(
        model_id=SETTINGS.model_id,
        attributes={name: ATTRIBUTES[name] for name in SETTINGS.categories["default"]},
        category="default",
        languages=["en"],
        max_tokens_per_language=SETTINGS.max_tokens_per_language,
        temperature=SETTINGS.temperature,
        structured_output=SETTINGS.structured_output,
    )
    prose = converse_json_response({})
    prose["output"]["message"]["content"] = [{"text": "A lovely navy shirt for every day."}]
    harness.text.add_response("converse", prose, expected_params=request)

    # When a description is asked for
    status, body, headers = harness.call(
        api_event("POST", "/descriptions", describe_body(image, productId="P-prose"))
    )

    # Then one call, a 502 that names the setting and the other mode, and nothing stored
    assert (status, body["error"]["code"]) == (502, "text_model_unstructured")
    assert "set descriptions.structured_output to 'tool'" in body["error"]["message"]
    assert "Retry-After" not in headers
    assert harness.stored_item("P-prose") is None


def test_bedrock_access_denied_is_a_502(harness: Harness) -> None:
    image = image_bytes()
    harness.expect_attributes(image)
    harness.text.add_client_error(
        "converse", service_error_code="AccessDeniedException", http_status_code=403
    )

    status, body, _ = harness.call(api_event("POST", "/descriptions", describe_body(image)))

    assert (status, body["error"]["code"]) == (502, "text_model_failed")


def test_an_ungrounded_description_is_rewritten_with_the_contradiction_named(
    harness: Harness,
) -> None:
    image = image_bytes()
    harness.expect_attributes(image)
    harness.expect_description(tool_input(fabric_word="silk"))
    harness.expect_description(corrections=("fabric is 'cotton' but the text says 'silk'",))

    status, body, _ = harness.call(api_event("POST", "/descriptions", describe_body(image)))

    assert status == 200, body
    assert body["grounding"]["contradictions"] == []
    assert body["usage"]["outputTokens"] == 500  # both answers are paid for


def test_a_description_that_stays_ungrounded_is_refused_and_not_stored(harness: Harness) -> None:
    image = image_bytes()
    harness.expect_attributes(image)
    harness.expect_description(tool_input(fabric_word="silk"))
    harness.expect_description(
        tool_input(fabric_word="silk"),
        corrections=("fabric is 'cotton' but the text says 'silk'",),
    )

    status, body, _ = harness.call(api_event("POST", "/descriptions", describe_body(image)))

    assert (status, body["error"]["code"]) == (502, "description_ungrounded")
    assert "silk" in body["error"]["message"]
    assert harness.stored_item("38642") is None


def test_a_throttled_table_is_a_503(harness: Harness) -> None:
    image = image_bytes()
    harness.expect_attributes(image)
    harness.expect_description()
    table = Stubber(harness.dynamodb)
    for _ in range(4):
        table.add_client_error(
            "put_item",
            service_error_code="ProvisionedThroughputExceededException",
            http_status_code=400,
        )

    with table:
        status, body, _ = harness.call(api_event("POST", "/descriptions", describe_body(image)))

    assert (status, body["error"]["code"]) == (503, "table_unavailable")
    table.assert_no_pending_responses()


def test_a_missing_table_is_a_502(harness: Harness) -> None:
    image = image_bytes()
    harness.expect_attributes(image)
    harness.expect_description()
    harness.dynamodb.delete_table(TableName=TABLE)

    status, body, _ = harness.call(api_event("POST", "/descriptions", describe_body(image)))

    assert (status, body["error"]["code"]) == (502, "table_missing")


def test_an_endpoint_timeout_is_retried_and_then_a_503(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def time_out(**_: Any) -> None:
        raise ReadTimeoutError(endpoint_url="https://runtime.sagemaker.us-east-1.amazonaws.com")

    monkeypatch.setattr(harness.sagemaker, "invoke_endpoint", time_out)

    status, body, _ = harness.call(api_event("POST", "/descriptions", describe_body()))

    assert (status, body["error"]["code"]) == (503, "attribute_model_unavailable")
    assert len(harness.sleeps) == 3


def test_unknown_routes_answer_in_the_error_shape(harness: Harness) -> None:
    status, body, _ = harness.call(api_event("DELETE", "/descriptions"))

    assert status in (404, 405)
    assert "code" in body["error"]
