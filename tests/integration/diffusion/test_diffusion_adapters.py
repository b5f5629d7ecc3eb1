"""The diffusion adapters against botocore's real service models (Stubber) and moto's S3.

Stubber checks each InvokeEndpoint call against sagemaker-runtime's API model, and answers with
the errors SageMaker really sends: `ValidationError` for a missing endpoint, `ModelError` carrying
the container's status and body (the Hugging Face toolkit's `{"code", "type", "message"}`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ReadTimeoutError
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto import mock_aws

from shared.adapters.diffusion_images import S3InputImages, S3OutputImages
from shared.adapters.sagemaker_diffusion import SageMakerDiffusionModel, container_message
from shared.models.diffusion import (
    EndpointNotDeployedError,
    ModelRejectedError,
    ModelTimeoutError,
)
from shared.models.errors import AtelierError, DependencyError, RequestError
from tests.diffusion_support import UPLOADS_BUCKET, endpoint, photo_bytes

pytestmark = pytest.mark.integration

BODY = b'{"prompt":"a photo of riobugger cat"}'
TOOLKIT_400 = json.dumps(
    {"code": 400, "type": "InternalServerException", "message": "image_length must be 512 or 768"},
    indent=2,
)
WRAPPED_400 = (
    f'Received client error (400) from primary with message "{TOOLKIT_400}". See '
    "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#logEventViewer:"
    "group=/aws/sagemaker/Endpoints/atelier-dev-styling in account 123456789012 for more "
    "information."
)


@pytest.fixture
def runtime() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("sagemaker-runtime")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def _fail(stubber: Stubber, code: str, message: str, status: int, **fields: Any) -> None:
    stubber.add_client_error(
        "invoke_endpoint",
        service_error_code=code,
        service_message=message,
        http_status_code=status,
        modeled_fields=fields or None,
    )


def _invoke(client: Any, route: str = "styling") -> bytes:
    model = SageMakerDiffusionModel(sagemaker_runtime=client)
    return model.invoke(endpoint(route), BODY, timeout_seconds=20)


def test_the_call_names_the_endpoint_and_sends_json(runtime: tuple[Any, Stubber]) -> None:
    client, stubber = runtime
    stubber.add_response(
        "invoke_endpoint",
        {"Body": StreamingBody(io.BytesIO(b'{"ok": 1}'), 9), "ContentType": "application/json"},
        expected_params={
            "EndpointName": "atelier-dev-dreambooth",
            "ContentType": "application/json",
            "Accept": "application/json",
            "Body": BODY,
        },
    )
    assert _invoke(client, "generation") == b'{"ok": 1}'


@pytest.mark.parametrize(
    ("route", "config_key"),
    [("generation", "dreambooth.hosting.model_data_url"),
     ("styling", "styling.hosting.model_data_url")],
)  # fmt: skip
def test_a_missing_endpoint_is_a_409_naming_the_config_key(
    runtime: tuple[Any, Stubber], route: str, config_key: str
) -> None:
    client, stubber = runtime
    name = endpoint(route).endpoint_name
    _fail(stubber, "ValidationError", f"Endpoint {name} of account 123456789012 not found.", 400)

    with pytest.raises(EndpointNotDeployedError) as caught:
        _invoke(client, route)

    assert (caught.value.status, caught.value.code) == (409, "endpoint_not_deployed")
    assert f"Set {config_key} in cdk.json" in caught.value.message
    assert name in caught.value.message


def test_another_validation_error_is_not_taken_for_a_missing_endpoint(
    runtime: tuple[Any, Stubber],
) -> None:
    client, stubber = runtime
    _fail(stubber, "ValidationError", "1 validation error detected: Value at 'body'", 400)
    with pytest.raises(DependencyError) as caught:
        _invoke(client)
    assert (caught.value.status, caught.value.code) == (502, "model_failed")


def test_the_handlers_value_error_reaches_the_caller_as_a_422(
    runtime: tuple[Any, Stubber],
) -> None:
    client, stubber = runtime
    _fail(
        stubber, "ModelError", WRAPPED_400, 424, OriginalStatusCode=400, OriginalMessage=TOOLKIT_400
    )
    with pytest.raises(ModelRejectedError) as caught:
        _invoke(client)
    assert (caught.value.status, caught.value.code) == (422, "model_rejected_request")
    assert caught.value.message == (
        "the styling endpoint refused the request: image_length must be 512 or 768"
    )


def test_without_original_message_the_wrapped_one_is_unpacked(
    runtime: tuple[Any, Stubber],
) -> None:
    client, stubber = runtime
    _fail(stubber, "ModelError", WRAPPED_400, 424, OriginalStatusCode=400)
    with pytest.raises(ModelRejectedError, match=r"image_length must be 512 or 768$"):
        _invoke(client)


@pytest.mark.parametrize(
    ("status", "message", "expected", "http"),
    [
        (503, "Model server is busy", "model_unavailable", 503),
        (429, "Too many requests", "model_unavailable", 503),
        (500, "Worker died.", "model_failed", 502),
        (507, "Out of resources", "model_failed", 502),
    ],
)
def test_container_failures_say_whether_a_retry_may_help(
    runtime: tuple[Any, Stubber], status: int, message: str, expected: str, http: int
) -> None:
    client, stubber = runtime
    wrapped = f'Received server error ({status}) from primary with message "{message}". See x'
    _fail(stubber, "ModelError", wrapped, 424, OriginalStatusCode=status, OriginalMessage=message)
    with pytest.raises(DependencyError) as caught:
        _invoke(client)
    assert (caught.value.code, caught.value.status) == (expected, http)
    assert message in caught.value.message
    assert ("fewer images" in caught.value.message) is (status == 507)


def test_a_container_that_takes_over_60_seconds_is_a_504_with_a_hint(
    runtime: tuple[Any, Stubber],
) -> None:
    client, stubber = runtime
    message = (
        'Received server error (0) from primary with message "Your invocation timed out while '
        'waiting for a response from container primary. Review the latency metrics". See x'
    )
    _fail(stubber, "ModelError", message, 424, OriginalStatusCode=0)
    with pytest.raises(ModelTimeoutError) as caught:
        _invoke(client)
    assert (caught.value.status, caught.value.code) == (504, "model_timeout")
    # Not retried: the same request would take as long again.
    assert not caught.value.retryable
    assert "fewer images, fewer steps or a smaller size" in caught.value.message


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("ThrottlingException", 400, (503, "model_unavailable")),
        ("ServiceUnavailable", 503, (503, "model_unavailable")),
        ("InternalFailure", 500, (503, "model_unavailable")),
        ("AccessDeniedException", 403, (502, "model_failed")),
    ],
)
def test_service_errors_map_like_every_other_dependency(
    runtime: tuple[Any, Stubber], code: str, status: int, expected: tuple[int, str]
) -> None:
    client, stubber = runtime
    _fail(stubber, code, code, status)
    with pytest.raises(AtelierError) as caught:
        _invoke(client)
    assert (caught.value.status, caught.value.code) == expected


def test_our_own_read_timeout_is_a_504() -> None:
    class SlowRuntime:
        def invoke_endpoint(self, **_: Any) -> dict[str, Any]:
            raise ReadTimeoutError(endpoint_url="https://runtime.sagemaker.us-east-1.amazonaws.com")

    model = SageMakerDiffusionModel(sagemaker_runtime=SlowRuntime())
    with pytest.raises(ModelTimeoutError, match="no answer within 20 s"):
        model.invoke(endpoint("generation"), BODY, timeout_seconds=20)


def test_each_attempt_gets_a_client_whose_read_timeout_fits_the_time_left() -> None:
    model = SageMakerDiffusionModel(read_timeout=26)
    assert model.client_for(60).meta.config.read_timeout == 26
    assert model.client_for(9).meta.config.read_timeout == 9
    assert model.client_for(9).meta.config.retries["total_max_attempts"] == 1


@pytest.mark.parametrize(
    ("original", "wrapper", "expected"),
    [
        (TOOLKIT_400, "", "image_length must be 512 or 768"),
        (None, WRAPPED_400, "image_length must be 512 or 768"),
        ("plain words", "", "plain words"),
        (None, "no structure at all", "no structure at all"),
        ('{"detail": "x"}', "", '{"detail": "x"}'),
    ],
)
def test_the_containers_message_is_unwrapped(
    original: str | None, wrapper: str, expected: str
) -> None:
    assert container_message(original, wrapper) == expected


# -- S3 ------------------------------------------------------------------------------------------


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=UPLOADS_BUCKET)
        yield client


def test_an_upload_is_read(s3: Any) -> None:
    photo = photo_bytes()
    s3.put_object(Bucket=UPLOADS_BUCKET, Key="styling/a.jpg", Body=photo)
    uploads = S3InputImages(UPLOADS_BUCKET, s3=s3)
    assert uploads.read("styling/a.jpg", max_bytes=len(photo), field="image.key") == photo


def test_a_missing_upload_is_a_400_naming_the_bucket_and_key(s3: Any) -> None:
    uploads = S3InputImages(UPLOADS_BUCKET, s3=s3)
    with pytest.raises(RequestError) as caught:
        uploads.read("styling/nope.jpg", max_bytes=100, field="mask.key")
    assert (caught.value.status, caught.value.code) == (400, "input_missing")
    assert caught.value.message.startswith(f"mask.key: s3://{UPLOADS_BUCKET}/styling/nope.jpg")


def test_an_upload_over_the_limit_is_a_413_without_reading_it(s3: Any) -> None:
    s3.put_object(Bucket=UPLOADS_BUCKET, Key="styling/big.jpg", Body=b"x" * 101)
    uploads = S3InputImages(UPLOADS_BUCKET, s3=s3)
    with pytest.raises(RequestError) as caught:
        uploads.read("styling/big.jpg", max_bytes=100, field="image.key")
    assert (caught.value.status, caught.value.code) == (413, "image_too_large")
    assert "101 bytes; the limit is 100 bytes" in caught.value.message


def test_access_denied_reads_as_missing_but_a_kms_refusal_does_not() -> None:
    # Without s3:ListBucket, S3 answers a missing key with 403 AccessDenied.
    client = boto3.client("s3")
    uploads = S3InputImages(UPLOADS_BUCKET, s3=client)
    with Stubber(client) as stubber:
        stubber.add_client_error("get_object", "AccessDenied", "Access Denied", 403)
        with pytest.raises(RequestError, match="does not exist"):
            uploads.read("styling/a.jpg", max_bytes=100, field="image.key")
        stubber.add_client_error(
            "get_object",
            "AccessDenied",
            "User: arn:aws:sts::1:assumed-role/x is not authorized to perform: kms:Decrypt",
            403,
        )
        with pytest.raises(DependencyError) as caught:
            uploads.read("styling/a.jpg", max_bytes=100, field="image.key")
        assert (caught.value.status, caught.value.code) == (502, "uploads_bucket_failed")


def test_outputs_keep_their_content_type(s3: Any) -> None:
    s3.create_bucket(Bucket="atelier-dev-results")
    store = S3OutputImages("atelier-dev-results", s3=s3)
    store.put_image("styling/x/mask.png", b"\x89PNG...", content_type="image/png")
    stored = s3.get_object(Bucket="atelier-dev-results", Key="styling/x/mask.png")
    assert stored["ContentType"] == "image/png"
