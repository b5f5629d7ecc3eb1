"""`POST /images` end to end: moto for SSM and S3, botocore Stubber for Bedrock's InvokeModel.

Stubber checks every InvokeModel call against bedrock-runtime's real API model (moto's
invoke_model answers `{}`, which proves nothing), so a malformed call fails here, not in
production. Presigned URLs are fetched back through moto.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto import mock_aws

from images.handlers import api
from images.logic.service import ImageService
from shared.adapters.bedrock_runtime import BedrockImageModel
from shared.adapters.image_store import S3ImageStore
from shared.adapters.parameters import CachedParameter
from tests.descriptions_support import FakeContext, api_event
from tests.images_support import (
    MODEL_ARN,
    NEW_MODEL_ARN,
    PARAMETER,
    RESULTS_BUCKET,
    images_body,
    settings,
    titan_answer,
)

pytestmark = pytest.mark.integration

SEED = 777
SETTINGS = settings()
CONTENT_FILTERED = (
    "This request has been blocked by our content filters. Our filters automatically flagged "
    "this prompt because it may conflict our AUP or AWS Responsible AI Policy."
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Harness:
    def __init__(self) -> None:
        # As the function signs: SigV4, virtual-hosted URLs.
        self.s3 = boto3.client(
            "s3", config=Config(signature_version="s3v4", s3={"addressing_style": "virtual"})
        )
        self.ssm = boto3.client("ssm")
        self.bedrock = boto3.client("bedrock-runtime")
        self.titan = Stubber(self.bedrock)
        self.s3.create_bucket(Bucket=RESULTS_BUCKET)
        self.parameter_reads = 0
        self.ssm.meta.events.register("before-call.ssm.GetParameter", self._count_read)
        self.clock = Clock()
        self.sleeps: list[float] = []
        self.service = ImageService(
            settings=SETTINGS,
            model_arn=CachedParameter(
                PARAMETER,
                ttl_seconds=SETTINGS.model_arn_cache_seconds,
                ssm=self.ssm,
                clock=self.clock,
            ),
            image_model=BedrockImageModel(bedrock_runtime=self.bedrock),
            store=S3ImageStore(RESULTS_BUCKET, s3=self.s3),
            sleep=self.sleeps.append,
            seed=lambda: SEED,
        )

    def _count_read(self, **_: Any) -> None:
        self.parameter_reads += 1

    # -- the world ----------------------------------------------------------------------------
    def provision(self, arn: str = MODEL_ARN) -> None:
        """What the Bedrock stack's workflow does once the throughput is in service."""
        self.ssm.put_parameter(Name=PARAMETER, Value=arn, Type="String", Overwrite=True)

    def release(self) -> None:
        self.ssm.delete_parameter(Name=PARAMETER)

    def expect_titan(
        self,
        answer: bytes,
        *,
        arn: str = MODEL_ARN,
        text: dict[str, str] | None = None,
        **generation: Any,
    ) -> None:
        config = {
            "numberOfImages": 1,
            "quality": "standard",
            "width": 1024,
            "height": 1024,
            "cfgScale": 8.0,
            "seed": SEED,
            **generation,
        }
        body = {
            "taskType": "TEXT_IMAGE",
            "textToImageParams": text or {"text": "Ron the dog on a white dog bed"},
            "imageGenerationConfig": config,
        }
        self.titan.add_response(
            "invoke_model",
            {
                "body": StreamingBody(io.BytesIO(answer), len(answer)),
                "contentType": "application/json",
            },
            expected_params={
                "modelId": arn,
                "body": json.dumps(body),
                "contentType": "application/json",
                "accept": "application/json",
            },
        )

    def titan_fails(self, code: str, message: str = "", status: int = 400, times: int = 1) -> None:
        for _ in range(times):
            self.titan.add_client_error(
                "invoke_model",
                service_error_code=code,
                service_message=message or code,
                http_status_code=status,
            )

    def call(self, body: str | None) -> tuple[int, dict[str, Any], dict[str, str]]:
        response = api.handler(api_event("POST", "/images", body), FakeContext())
        headers = {
            name: values[-1] for name, values in response.get("multiValueHeaders", {}).items()
        }
        return response["statusCode"], json.loads(response["body"]), headers

    def stored_keys(self) -> list[str]:
        listing = self.s3.list_objects_v2(Bucket=RESULTS_BUCKET, Prefix="images/")
        return sorted(item["Key"] for item in listing.get("Contents", []))


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    with mock_aws():
        harness = Harness()
        monkeypatch.setattr(api, "service", lambda: harness.service)
        with harness.titan:
            yield harness
            # Every expected Titan call happened, and no other.
            harness.titan.assert_no_pending_responses()


# -- success -------------------------------------------------------------------------------------


def test_images_are_stored_and_handed_out_as_presigned_urls(harness: Harness) -> None:
    harness.provision()
    harness.expect_titan(titan_answer(3), numberOfImages=3)
    before = datetime.now(UTC)

    status, body, _ = harness.call(images_body(numberOfImages=3))

    assert status == 200, body
    request_id = body["requestId"]
    assert body["seed"] == SEED
    day = before.strftime("%Y/%m/%d")
    keys = [f"images/{day}/{request_id}/{n}.png" for n in (1, 2, 3)]
    assert [image["key"] for image in body["images"]] == keys
    assert harness.stored_keys() == keys
    for image in body["images"]:
        stored = harness.s3.get_object(Bucket=RESULTS_BUCKET, Key=image["key"])
        assert stored["ContentType"] == "image/png"
        data = stored["Body"].read()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")

        url = urlsplit(image["url"])
        query = {name: values[0] for name, values in parse_qs(url.query).items()}
        assert url.scheme == "https"
        assert url.netloc == f"{RESULTS_BUCKET}.s3.amazonaws.com"
        assert url.path == f"/{image['key']}"
        assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
        assert query["X-Amz-Expires"] == str(SETTINGS.presigned_url_seconds) == "900"
        assert query["X-Amz-Credential"].endswith("/us-east-1/s3/aws4_request")
        assert query["X-Amz-SignedHeaders"] == "host"
        assert query["X-Amz-Security-Token"] == "testing"  # the function's session credentials
        expires_at = datetime.fromisoformat(image["expiresAt"].replace("Z", "+00:00"))
        expected = before + timedelta(seconds=900)
        assert expected - timedelta(seconds=2) <= expires_at <= expected + timedelta(seconds=5)
        # And the URL really GETs the image.
        fetched = requests.get(image["url"], timeout=5)
        assert fetched.status_code == 200
        assert fetched.content == data


def test_every_setting_of_the_request_reaches_titan(harness: Harness) -> None:
    harness.provision()
    harness.expect_titan(
        titan_answer(2),
        text={"text": "Smila the cat on a sofa", "negativeText": "blurry, text"},
        numberOfImages=2,
        quality="premium",
        width=1173,
        height=640,
        cfgScale=3.5,
        seed=0,
    )

    status, body, _ = harness.call(
        images_body(
            prompt="Smila the cat on a sofa",
            negativePrompt="blurry, text",
            numberOfImages=2,
            quality="premium",
            width=1173,
            height=640,
            cfgScale=3.5,
            seed=0,
        )
    )

    assert status == 200, body
    assert body["seed"] == 0
    assert len(body["images"]) == 2


# -- the provisioned model's ARN -----------------------------------------------------------------


def test_without_provisioned_throughput_the_answer_is_409_provision_first(
    harness: Harness,
) -> None:
    status, body, headers = harness.call(images_body())

    assert (status, body["error"]["code"]) == (409, "no_customized_model")
    assert PARAMETER in body["error"]["message"]
    assert "provisioning workflow" in body["error"]["message"]
    # Where the workflow comes from: none is deployed while titan.base_model_id is null.
    assert "titan.base_model_id" in body["error"]["message"]
    assert "Retry-After" not in headers
    assert harness.stored_keys() == []


def test_the_arn_is_read_from_ssm_once_per_ttl(harness: Harness) -> None:
    harness.provision()
    for _ in range(3):
        harness.expect_titan(titan_answer(1))

    assert harness.call(images_body())[0] == 200
    harness.clock.now += SETTINGS.model_arn_cache_seconds - 1
    assert harness.call(images_body())[0] == 200
    assert harness.parameter_reads == 1

    harness.clock.now += 1
    assert harness.call(images_body())[0] == 200
    assert harness.parameter_reads == 2


def test_a_released_model_is_noticed_within_the_ttl(harness: Harness) -> None:
    harness.provision()
    harness.expect_titan(titan_answer(1))
    assert harness.call(images_body())[0] == 200

    harness.release()
    harness.clock.now += SETTINGS.model_arn_cache_seconds

    status, body, _ = harness.call(images_body())
    assert (status, body["error"]["code"]) == (409, "no_customized_model")


@pytest.mark.parametrize(
    ("code", "message", "status"),
    [
        ("ResourceNotFoundException", "The provisioned model was not found.", 404),
        ("ValidationException", "The provided model identifier is invalid.", 400),
    ],
)
def test_a_stale_arn_is_a_409_and_the_next_request_reads_ssm_again(
    harness: Harness, code: str, message: str, status: int
) -> None:
    # Given an ARN cached from a throughput that has since been released
    harness.provision()
    harness.titan_fails(code, message, status)

    got_status, body, _ = harness.call(images_body())

    assert (got_status, body["error"]["code"]) == (409, "provisioned_model_unavailable")
    assert MODEL_ARN in body["error"]["message"]
    assert "Provision throughput again" in body["error"]["message"]
    assert harness.sleeps == []  # a stale ARN is not retried
    # When the workflow provisions again, Then the next request uses the new ARN at once
    harness.provision(NEW_MODEL_ARN)
    harness.expect_titan(titan_answer(1), arn=NEW_MODEL_ARN)
    assert harness.call(images_body())[0] == 200
    assert harness.parameter_reads == 2


def test_a_parameter_that_is_not_a_provisioned_model_arn_is_a_502(harness: Harness) -> None:
    harness.provision("arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-image-generator-v1")

    status, body, _ = harness.call(images_body())

    assert (status, body["error"]["code"]) == (502, "model_parameter_invalid")


# -- Titan failures --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ThrottlingException", 429),
        ("ServiceUnavailableException", 503),
        ("ModelTimeoutException", 408),
    ],
)
def test_throttling_is_retried_then_answered_with_503_and_a_hint(
    harness: Harness, code: str, status: int
) -> None:
    harness.provision()
    harness.titan_fails(code, status=status, times=4)

    got_status, body, headers = harness.call(images_body())

    assert (got_status, body["error"]["code"]) == (503, "image_model_unavailable")
    assert headers["Retry-After"] == str(body["error"]["retryAfterSeconds"])
    assert len(harness.sleeps) == 3  # four attempts, three backoffs
    assert harness.stored_keys() == []


def test_a_throttled_model_that_recovers_gives_images(harness: Harness) -> None:
    harness.provision()
    harness.titan_fails("ThrottlingException", status=429, times=2)
    harness.expect_titan(titan_answer(1))

    status, body, _ = harness.call(images_body())

    assert status == 200, body
    assert len(harness.sleeps) == 2


def test_a_refused_prompt_is_a_422_and_nothing_is_stored(harness: Harness) -> None:
    harness.provision()
    harness.titan_fails("ValidationException", CONTENT_FILTERED)

    status, body, _ = harness.call(images_body())

    assert (status, body["error"]["code"]) == (422, "content_filtered")
    assert "change the prompt" in body["error"]["message"]
    assert harness.sleeps == []
    assert harness.stored_keys() == []


def test_refused_output_in_the_answer_body_is_a_422_too(harness: Harness) -> None:
    harness.provision()
    harness.expect_titan(json.dumps({"images": [], "error": CONTENT_FILTERED}).encode())

    status, body, _ = harness.call(images_body())

    assert (status, body["error"]["code"]) == (422, "content_filtered")


@pytest.mark.parametrize(
    "answer",
    [
        b"<html>oops</html>",
        json.dumps({"images": ["bm90IGEgcG5n"]}).encode(),  # base64 of "not a png"
        json.dumps({"artifacts": []}).encode(),
        json.dumps({"error": "Model failed to generate"}).encode(),
    ],
)
def test_a_malformed_or_failed_answer_is_a_502_and_nothing_is_stored(
    harness: Harness, answer: bytes
) -> None:
    harness.provision()
    harness.expect_titan(answer)

    status, body, headers = harness.call(images_body())

    assert status == 502
    assert body["error"]["code"] in {"image_model_bad_response", "image_model_failed"}
    assert "Retry-After" not in headers
    assert harness.stored_keys() == []


def test_access_denied_is_a_502_without_retries(harness: Harness) -> None:
    harness.provision()
    harness.titan_fails("AccessDeniedException", "not authorized", 403)

    status, body, _ = harness.call(images_body())

    assert (status, body["error"]["code"]) == (502, "image_model_failed")
    assert harness.sleeps == []


def test_a_missing_results_bucket_is_a_502(harness: Harness) -> None:
    harness.provision()
    harness.expect_titan(titan_answer(1))
    harness.s3.delete_bucket(Bucket=RESULTS_BUCKET)

    status, body, _ = harness.call(images_body())

    assert (status, body["error"]["code"]) == (502, "results_bucket_failed")


# -- client mistakes: 400 in our shape, before SSM or Titan ---------------------------------------


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        (None, "body_missing", ""),
        ("{not json", "invalid_json", ""),
        (json.dumps([1, 2]), "invalid_request", "body"),
        (json.dumps({"width": 1024, "height": 1024}), "invalid_request", "prompt"),
        (json.dumps({"prompt": "a dog", "height": 1024}), "invalid_request", "width"),
        (json.dumps({"prompt": "a dog", "width": 1024}), "invalid_request", "height"),
        (images_body(prompt=""), "invalid_request", "prompt"),
        (images_body(prompt="x" * 513), "invalid_request", "prompt"),
        (images_body(prompt="   "), "invalid_request", "prompt"),
        (images_body(negativePrompt=""), "invalid_request", "negativePrompt"),
        (images_body(negativePrompt="x" * 513), "invalid_request", "negativePrompt"),
        (images_body(numberOfImages=0), "invalid_request", "numberOfImages"),
        (images_body(numberOfImages=6), "invalid_request", "numberOfImages"),
        (images_body(numberOfImages="2"), "invalid_request", "numberOfImages"),
        (images_body(cfgScale=1.0), "invalid_request", "cfgScale"),
        (images_body(cfgScale=10.5), "invalid_request", "cfgScale"),
        (images_body(seed=-1), "invalid_request", "seed"),
        (images_body(seed=2_147_483_647), "invalid_request", "seed"),
        (images_body(quality="ultra"), "invalid_request", "quality"),
        (images_body(width="1024"), "invalid_request", "width"),
        (images_body(height=1024.5), "invalid_request", "height"),
        (images_body(width=1000, height=1000), "unsupported_size", "1000x1000"),
        (images_body(width=640, height=1173), "unsupported_size", "640x1173"),
        (images_body(steps=50), "invalid_request", "steps"),
    ],
)  # fmt: skip
def test_every_invalid_field_is_a_400_in_our_shape(
    harness: Harness, body: str | None, code: str, field: str
) -> None:
    harness.provision()

    status, got, _ = harness.call(body)

    assert status == 400, got
    assert set(got) == {"error"}
    assert got["error"]["code"] == code
    assert field in got["error"]["message"]
    assert harness.parameter_reads == 0  # refused before any dependency
    assert harness.stored_keys() == []


def test_the_message_of_a_wrong_size_names_the_nearest_allowed(harness: Harness) -> None:
    status, body, _ = harness.call(images_body(width=1000, height=1000))

    assert status == 400
    assert body["error"]["message"].endswith("nearest allowed: 1024x1024, 896x1152, 1152x896")


def test_unknown_routes_answer_in_the_error_shape(harness: Harness) -> None:
    response = api.handler(api_event("GET", "/images"), FakeContext())
    assert response["statusCode"] in (404, 405)
    assert "code" in json.loads(response["body"])["error"]
