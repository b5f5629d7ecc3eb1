"""`POST /generations` and `POST /styling` end to end through the Lambda handler: moto for S3,
botocore Stubber for SageMaker's InvokeEndpoint.

Stubber checks every InvokeEndpoint call against sagemaker-runtime's real API model and the body
against the endpoint contracts (contracts.md); moto holds the uploads and results buckets, and the
presigned URLs are fetched back through it.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from moto import mock_aws

from diffusion.handlers import api
from diffusion.logic.service import DiffusionService
from shared.adapters.diffusion_images import S3InputImages, S3OutputImages
from shared.adapters.sagemaker_diffusion import SageMakerDiffusionModel
from tests.descriptions_support import FakeContext, api_event
from tests.diffusion_support import (
    GENERATION_ENDPOINT,
    RESULTS_BUCKET,
    STYLING_ENDPOINT,
    UPLOADS_BUCKET,
    FakeDiffusionModel,
    FakeInputImages,
    InMemoryOutputStore,
    b64,
    endpoint_answer,
    generation_body,
    mask_bytes,
    photo_bytes,
    settings,
    styling_body,
)

pytestmark = pytest.mark.integration

SEED = 1234
SETTINGS = settings()
PHOTO = photo_bytes((96, 64))
TOOLKIT_400 = '{"code": 400, "type": "InternalServerException", "message": "%s"}'


class Harness:
    def __init__(self) -> None:
        # As the function signs: SigV4, virtual-hosted URLs.
        self.s3 = boto3.client(
            "s3", config=Config(signature_version="s3v4", s3={"addressing_style": "virtual"})
        )
        self.s3.create_bucket(Bucket=UPLOADS_BUCKET)
        self.s3.create_bucket(Bucket=RESULTS_BUCKET)
        self.runtime = boto3.client("sagemaker-runtime")
        self.endpoint = Stubber(self.runtime)
        self.sleeps: list[float] = []
        self.service = DiffusionService(
            settings=SETTINGS,
            uploads=S3InputImages(UPLOADS_BUCKET, s3=self.s3),
            model=SageMakerDiffusionModel(sagemaker_runtime=self.runtime),
            store=S3OutputImages(RESULTS_BUCKET, s3=self.s3),
            sleep=self.sleeps.append,
            seed=lambda: SEED,
        )

    # -- the world ----------------------------------------------------------------------------
    def upload(self, key: str, data: bytes) -> None:
        self.s3.put_object(Bucket=UPLOADS_BUCKET, Key=key, Body=data)

    def expect(self, name: str, body: dict[str, Any] | None, answer: bytes) -> None:
        """One InvokeEndpoint call on `name` whose JSON body equals `body` (None: any body)."""
        self.endpoint.add_response(
            "invoke_endpoint",
            {"Body": StreamingBody(io.BytesIO(answer), len(answer)), "ContentType": "json"},
            expected_params={
                "EndpointName": name,
                "ContentType": "application/json",
                "Accept": "application/json",
                "Body": ANY if body is None else _Json(body),
            },
        )

    def fails(self, code: str, message: str, status: int, times: int = 1, **fields: Any) -> None:
        for _ in range(times):
            self.endpoint.add_client_error(
                "invoke_endpoint",
                service_error_code=code,
                service_message=message,
                http_status_code=status,
                modeled_fields=fields or None,
            )

    def call(self, path: str, body: str | None) -> tuple[int, dict[str, Any], dict[str, str]]:
        response = api.handler(api_event("POST", path, body), FakeContext())
        headers = {
            name: values[-1] for name, values in response.get("multiValueHeaders", {}).items()
        }
        return response["statusCode"], json.loads(response["body"]), headers

    def stored_keys(self) -> list[str]:
        listing = self.s3.list_objects_v2(Bucket=RESULTS_BUCKET)
        return sorted(item["Key"] for item in listing.get("Contents", []))


class _Json:
    """Equal to a JSON document given as bytes (the adapter sends compact JSON)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def __eq__(self, other: object) -> bool:
        return isinstance(other, bytes) and json.loads(other) == self.document

    def __repr__(self) -> str:
        return f"JSON {self.document!r}"


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    with mock_aws():
        harness = Harness()
        monkeypatch.setattr(api, "service", lambda: harness.service)
        with harness.endpoint:
            yield harness
            # Every expected endpoint call happened, and no other.
            harness.endpoint.assert_no_pending_responses()


# -- POST /generations ---------------------------------------------------------------------------


def test_generated_images_are_stored_and_handed_out_as_presigned_urls(harness: Harness) -> None:
    harness.expect(
        GENERATION_ENDPOINT,
        {
            "prompt": "a photo of riobugger cat on a beach",
            "negative_prompt": "blurry",
            "width": 768,
            "height": 512,
            "num_images_per_prompt": 2,
            "num_inference_steps": 30,
            "guidance_scale": 6.5,
            "seed": 7,
        },
        endpoint_answer(2),
    )
    day = datetime.now(UTC).strftime("%Y/%m/%d")

    status, body, _ = harness.call(
        "/generations",
        generation_body(
            negativePrompt="blurry", width=768, height=512, numImages=2, steps=30,
            guidanceScale=6.5, seed=7,
        ),
    )  # fmt: skip

    assert status == 200, body
    assert set(body) == {"requestId", "images", "seed"}
    assert body["seed"] == 7
    keys = [f"generations/{day}/{body['requestId']}/{n}.jpg" for n in (1, 2)]
    assert [image["key"] for image in body["images"]] == keys
    assert harness.stored_keys() == keys
    for image in body["images"]:
        stored = harness.s3.get_object(Bucket=RESULTS_BUCKET, Key=image["key"])
        assert stored["ContentType"] == "image/jpeg"
        data = stored["Body"].read()
        assert data.startswith(b"\xff\xd8\xff")
        url = urlsplit(image["url"])
        query = {name: values[0] for name, values in parse_qs(url.query).items()}
        assert url.netloc == f"{RESULTS_BUCKET}.s3.amazonaws.com"
        assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
        assert query["X-Amz-Expires"] == "900"
        fetched = requests.get(image["url"], timeout=5)
        assert (fetched.status_code, fetched.content) == (200, data)


def test_omitted_settings_take_the_stages_defaults_and_the_seed_is_returned(
    harness: Harness,
) -> None:
    harness.expect(
        GENERATION_ENDPOINT,
        {
            "prompt": "a photo of riobugger cat on a beach",
            "width": 512,
            "height": 512,
            "num_images_per_prompt": 1,
            "num_inference_steps": 25,
            "guidance_scale": 7.5,
            "seed": SEED,
        },
        endpoint_answer(1),
    )
    status, body, _ = harness.call("/generations", generation_body())
    assert status == 200, body
    assert body["seed"] == SEED


def test_an_endpoint_that_is_not_deployed_is_a_409_naming_the_config_key(
    harness: Harness,
) -> None:
    harness.fails(
        "ValidationError", f"Endpoint {GENERATION_ENDPOINT} of account 123456789012 not found.", 400
    )

    status, body, headers = harness.call("/generations", generation_body())

    assert (status, body["error"]["code"]) == (409, "endpoint_not_deployed")
    message = body["error"]["message"]
    assert "dreambooth.hosting.model_data_url" in message
    assert "/atelier/dev/dreambooth/model-data-url" in message
    assert "Retry-After" not in headers
    assert harness.sleeps == []
    assert harness.stored_keys() == []


def test_throttling_is_retried_then_answered_with_503_and_a_hint(harness: Harness) -> None:
    harness.fails("ThrottlingException", "Rate exceeded", 400, times=3)

    status, body, headers = harness.call("/generations", generation_body())

    assert (status, body["error"]["code"]) == (503, "model_unavailable")
    assert headers["Retry-After"] == str(body["error"]["retryAfterSeconds"])
    assert len(harness.sleeps) == 2  # three attempts
    assert harness.stored_keys() == []


def test_a_busy_endpoint_that_recovers_gives_images(harness: Harness) -> None:
    harness.fails("ModelError", "busy", 424, OriginalStatusCode=503, OriginalMessage="busy")
    harness.expect(GENERATION_ENDPOINT, None, endpoint_answer(1))

    status, body, _ = harness.call("/generations", generation_body())

    assert status == 200, body
    assert len(harness.sleeps) == 1


def test_an_endpoint_timeout_is_a_504_with_a_hint(harness: Harness) -> None:
    harness.fails(
        "ModelError",
        'Received server error (0) from primary with message "Your invocation timed out". See x',
        424,
        OriginalStatusCode=0,
    )

    status, body, headers = harness.call("/generations", generation_body(numImages=4))

    assert (status, body["error"]["code"]) == (504, "model_timeout")
    assert "fewer images" in body["error"]["message"]
    assert "Retry-After" not in headers
    assert harness.sleeps == []  # the same request would time out again


def test_the_handlers_refusal_is_passed_through_as_a_422(harness: Harness) -> None:
    message = "width must be a multiple of 8"
    harness.fails(
        "ModelError",
        f'Received client error (400) from primary with message "{TOOLKIT_400 % message}". See x',
        424,
        OriginalStatusCode=400,
        OriginalMessage=TOOLKIT_400 % message,
    )

    status, body, _ = harness.call("/generations", generation_body())

    assert (status, body["error"]["code"]) == (422, "model_rejected_request")
    assert body["error"]["message"].endswith(message)
    assert harness.sleeps == []


def test_a_malformed_answer_is_a_502_and_nothing_is_stored(harness: Harness) -> None:
    harness.expect(GENERATION_ENDPOINT, None, b'{"generated_images": []}')

    status, body, headers = harness.call("/generations", generation_body())

    assert (status, body["error"]["code"]) == (502, "model_bad_response")
    assert "Retry-After" not in headers
    assert harness.stored_keys() == []


# -- POST /styling -------------------------------------------------------------------------------


def test_a_photo_by_key_is_restyled_and_the_mask_is_stored(harness: Harness) -> None:
    harness.upload("styling/look-7.jpg", PHOTO)
    harness.expect(
        STYLING_ENDPOINT,
        {
            "image": b64(PHOTO),
            "mask_prompt": "the skirt",
            "prompt": "a long floral summer skirt",
            "mask_threshold": 0.4,
            "num_images_per_prompt": 2,
            "num_inference_steps": 25,
            # POST /styling's default guidance (the reference workflow's), not the stage's 7.5
            "guidance_scale": 6.5,
            "image_length": 768,
            "seed": SEED,
        },
        endpoint_answer(2, mask=True),
    )

    status, body, _ = harness.call(
        "/styling",
        styling_body(
            image={"key": "styling/look-7.jpg"}, numImages=2, imageLength=768, maskThreshold=0.4
        ),
    )

    assert status == 200, body
    assert set(body) == {"requestId", "images", "mask", "seed"}
    folder = body["mask"]["key"].removesuffix("mask.png")
    assert folder.startswith("styling/")
    assert folder.endswith(f"/{body['requestId']}/")
    assert [image["key"] for image in body["images"]] == [f"{folder}1.jpg", f"{folder}2.jpg"]
    assert harness.stored_keys() == [f"{folder}1.jpg", f"{folder}2.jpg", f"{folder}mask.png"]
    mask = requests.get(body["mask"]["url"], timeout=5)
    assert mask.status_code == 200
    assert mask.content.startswith(b"\x89PNG")
    assert (
        harness.s3.head_object(Bucket=RESULTS_BUCKET, Key=body["mask"]["key"])["ContentType"]
        == "image/png"
    )


def test_an_inline_photo_and_mask_use_the_spec_form_and_return_no_mask(harness: Harness) -> None:
    mask = mask_bytes((96, 64))
    harness.expect(
        STYLING_ENDPOINT,
        {
            "inputs": "a long floral summer skirt",
            "input_img": b64(PHOTO),
            "mask_img": b64(mask),
            "negative_prompt": "blurry",
            # POST /styling's defaults (the reference workflow's): 2 images, guidance 6.5
            "num_images_per_prompt": 2,
            "num_inference_steps": 25,
            "guidance_scale": 6.5,
            "image_length": 512,
            "seed": 5,
        },
        endpoint_answer(2),
    )

    status, body, _ = harness.call(
        "/styling",
        styling_body(
            image={"base64": b64(PHOTO)},
            maskPrompt=None,
            mask={"base64": f"data:image/png;base64,{b64(mask)}"},
            negativePrompt="blurry",
            seed=5,
        ),
    )

    assert status == 200, body
    assert "mask" not in body
    assert len(body["images"]) == 2


def test_a_missing_upload_is_a_400_naming_the_key(harness: Harness) -> None:
    status, body, _ = harness.call("/styling", styling_body(image={"key": "styling/not-there.jpg"}))
    assert (status, body["error"]["code"]) == (400, "input_missing")
    assert f"s3://{UPLOADS_BUCKET}/styling/not-there.jpg" in body["error"]["message"]


def test_the_styling_endpoint_not_deployed_names_its_own_config_key(harness: Harness) -> None:
    harness.fails(
        "ValidationError", f"Endpoint {STYLING_ENDPOINT} of account 123456789012 not found.", 400
    )
    status, body, _ = harness.call("/styling", styling_body())
    assert (status, body["error"]["code"]) == (409, "endpoint_not_deployed")
    assert "styling.hosting.model_data_url" in body["error"]["message"]


def test_an_oversized_inline_photo_is_a_413_that_says_upload_and_pass_a_key(
    harness: Harness,
) -> None:
    oversized = "A" * (SETTINGS.max_inline_image_bytes // 3 * 4 + 8)

    status, body, _ = harness.call("/styling", styling_body(image={"base64": oversized}))

    assert (status, body["error"]["code"]) == (413, "inline_image_too_large")
    assert "upload the image to the uploads bucket under styling/" in body["error"]["message"]
    assert '{"image": {"key": "styling/..."}}' in body["error"]["message"]


def test_an_uploaded_photo_over_the_image_limit_is_a_413(harness: Harness) -> None:
    harness.upload("styling/huge.jpg", b"\xff\xd8\xff" + b"\0" * SETTINGS.image.max_bytes)
    status, body, _ = harness.call("/styling", styling_body(image={"key": "styling/huge.jpg"}))
    assert (status, body["error"]["code"]) == (413, "image_too_large")


# -- client mistakes: 400 in our shape, before S3 or the endpoint --------------------------------


@dataclass
class Fakes:
    """The same handler and service with in-memory dependencies: enough to show that nothing
    was read, called or stored (and much cheaper than moto for a long table of cases)."""

    uploads: FakeInputImages = field(default_factory=FakeInputImages)
    model: FakeDiffusionModel = field(default_factory=FakeDiffusionModel)
    store: InMemoryOutputStore = field(default_factory=InMemoryOutputStore)


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Fakes:
    fakes = Fakes()
    service = DiffusionService(
        settings=SETTINGS, uploads=fakes.uploads, model=fakes.model, store=fakes.store
    )
    monkeypatch.setattr(api, "service", lambda: service)
    return fakes


@pytest.mark.parametrize(
    ("path", "body", "code", "field"),
    [
        ("/generations", None, "body_missing", ""),
        ("/generations", "{not json", "invalid_json", ""),
        ("/generations", json.dumps({"width": 512}), "invalid_request", "prompt"),
        ("/generations", generation_body(prompt=""), "invalid_request", "prompt"),
        ("/generations", generation_body(numImages=9), "invalid_request", "numImages"),
        ("/generations", generation_body(numImages="2"), "invalid_request", "numImages"),
        ("/generations", generation_body(steps=0), "invalid_request", "steps"),
        ("/generations", generation_body(seed=-1), "invalid_request", "seed"),
        ("/generations", generation_body(quality="premium"), "invalid_request", "quality"),
        # 4 is both the shipped stage's limit and the endpoint's: the model refuses 5.
        ("/generations", generation_body(numImages=5), "invalid_request", "numImages"),
        ("/generations", generation_body(numImages=4, width=1024, height=768), "unsupported_size",
         "numImages"),
        ("/generations", generation_body(steps=80), "too_many_steps", "steps"),
        ("/generations", generation_body(width=513), "unsupported_size", "width"),
        ("/generations", generation_body(width=1024, height=1024), "unsupported_size", "1024x1024"),
        ("/styling", json.dumps({"prompt": "x", "maskPrompt": "y"}), "invalid_request", "image"),
        ("/styling", styling_body(maskPrompt=None), "invalid_request", "maskPrompt"),
        ("/styling", styling_body(mask={"key": "styling/m.png"}), "invalid_request", "mask"),
        ("/styling", styling_body(image={"key": "a", "base64": "b"}), "invalid_request", "base64"),
        ("/styling", styling_body(image={"url": "https://x"}), "invalid_request", "image"),
        ("/styling", styling_body(imageLength=1024), "invalid_request", "imageLength"),
        ("/styling", styling_body(image={"key": "private/x.jpg"}), "input_key_not_allowed",
         "image.key"),
        ("/styling", styling_body(image={"base64": "%%%"}), "invalid_base64", "image.base64"),
        ("/styling", styling_body(image={"base64": b64(b"GIF89a")}), "image_unsupported_format",
         "image"),
        ("/styling", styling_body(maskPrompt=None, mask={"base64": b64(mask_bytes((8, 8)))}),
         "image_too_small", "mask"),
    ],
)  # fmt: skip
def test_every_invalid_field_is_a_400_in_our_shape(
    fakes: Fakes, path: str, body: str | None, code: str, field: str
) -> None:
    response = api.handler(api_event("POST", path, body), FakeContext())
    got = json.loads(response["body"])

    assert response["statusCode"] == 400, got
    assert set(got) == {"error"}
    assert got["error"]["code"] == code
    assert field in got["error"]["message"]
    # Refused before any dependency.
    assert (fakes.uploads.reads, fakes.model.calls, fakes.store.objects) == ([], [], {})


def test_unknown_routes_answer_in_the_error_shape(fakes: Fakes) -> None:
    for method, path in (("GET", "/generations"), ("POST", "/generation")):
        response = api.handler(api_event(method, path), FakeContext())
        assert response["statusCode"] in (404, 405)
        assert "code" in json.loads(response["body"])["error"]
