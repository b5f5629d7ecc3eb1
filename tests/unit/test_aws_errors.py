"""What retrying can fix, as shared.adapters.aws decides it from botocore's own retry rules."""

from __future__ import annotations

import re
from pathlib import Path

import botocore.session
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    IncompleteReadError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from botocore.retries.standard import ThrottledRetryableChecker, TransientRetryableChecker

from shared.adapters import aws

LAMBDAS = Path(__file__).resolve().parents[2] / "lambdas"


def client_error(code: str, status: int | None) -> ClientError:
    response: dict = {"Error": {"Code": code, "Message": "m"}}
    if status is not None:
        response["ResponseMetadata"] = {"HTTPStatusCode": status}
    return ClientError(response, "Operation")


def test_every_service_the_functions_call_is_read_for_modeled_retryable_codes() -> None:
    # The modeled-retry rule reads the API models of these services; a new client must join.
    pattern = re.compile(r"""(?:client|model_client)\(\s*["']([a-z0-9-]+)["']""")
    called = {
        match for path in LAMBDAS.rglob("*.py") for match in pattern.findall(path.read_text())
    }
    assert called, "no boto3 clients found: the pattern is out of date"
    missing = called - set(aws._SERVICES_CALLED)
    assert not missing, f"add {sorted(missing)} to _SERVICES_CALLED in shared/adapters/aws.py"


@pytest.mark.parametrize("service", aws._SERVICES_CALLED)
def test_every_error_a_service_model_marks_retryable_is_transient(service: str) -> None:
    model = botocore.session.get_session().get_service_model(service)
    for shape in model.error_shapes:
        if shape.metadata.get("retryable") is None:
            continue
        error = shape.metadata.get("error", {})
        code = error.get("code") or shape.name
        assert aws.is_transient(client_error(code, error.get("httpStatusCode", 400))), code


@pytest.mark.parametrize(
    "code",
    TransientRetryableChecker._TRANSIENT_ERROR_CODES
    + ThrottledRetryableChecker._THROTTLED_ERROR_CODES
    + sorted(aws.EXTRA_RETRYABLE_CODES),
)
def test_botocores_transient_and_throttling_codes_are_transient_whatever_the_status(
    code: str,
) -> None:
    assert aws.is_transient(client_error(code, 400))
    assert aws.is_transient(client_error(code, None))


@pytest.mark.parametrize(
    ("code", "status", "transient"),
    [
        ("InternalError", 500, True),  # S3: botocore retries every 500, 502, 503 and 504
        ("ServiceUnavailable", 503, True),
        ("503", 503, True),  # S3's answer to a HEAD, which has no body to name a code
        ("ModelError", 424, False),
        ("AccessDenied", 403, False),
        ("ValidationException", 400, False),
        ("NoSuchBucket", 404, False),
        ("ServiceQuotaExceededException", 400, False),
        ("UnknownCode", 429, True),  # any 429 the model does not name
        ("UnknownCode", 400, False),
    ],
)
def test_status_codes_decide_for_unnamed_codes(code: str, status: int, transient: bool) -> None:
    assert aws.is_transient(client_error(code, status)) is transient


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ConnectionClosedError(endpoint_url="u"), True),
        (ResponseStreamingError(error="connection broken"), True),
        (IncompleteReadError(actual_bytes=1, expected_bytes=2), True),
        (ReadTimeoutError(endpoint_url="u"), True),
        (EndpointConnectionError(endpoint_url="u"), True),
        (NoCredentialsError(), False),
        (ParamValidationError(report="bad"), False),
    ],
    ids=lambda value: type(value).__name__ if not isinstance(value, bool) else str(value),
)
def test_botocore_exceptions(error: Exception, transient: bool) -> None:
    assert aws.is_transient(error) is transient  # type: ignore[arg-type]
    dependency_error = aws.as_dependency_error(error, code_prefix="x", what="X")  # type: ignore[arg-type]
    assert dependency_error.retryable is transient
    assert dependency_error.status == (503 if transient else 502)


def test_an_extra_code_makes_one_call_site_retry() -> None:
    error = client_error("ModelError", 424)

    assert not aws.as_dependency_error(error, code_prefix="m", what="M").retryable
    assert aws.as_dependency_error(
        error, code_prefix="m", what="M", extra_retryable_codes=("ModelError",)
    ).retryable
