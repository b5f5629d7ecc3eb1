"""boto3 clients and the translation of their failures into DependencyError.

Clients for model calls make exactly one attempt: the pipeline retries them itself within the
function's remaining time. Clients for S3, DynamoDB and SQS keep botocore's standard retries,
which are short and bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cache
from typing import Any, TypeVar

import boto3
import botocore.session
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    IncompleteReadError,
    ReadTimeoutError,
)
from botocore.retries import standard

from shared.models.errors import DependencyError

_MODEL_CALL = Config(
    connect_timeout=3,
    read_timeout=25,
    retries={"mode": "standard", "total_max_attempts": 1},
    tcp_keepalive=True,
)
_DATA_CALL = Config(
    connect_timeout=3,
    read_timeout=10,
    retries={"mode": "standard", "total_max_attempts": 3},
    # Catalog steps share one client among up to `catalog.io_concurrency` (at most 64) threads;
    # botocore's default pool of 10 connections would make the rest wait and log warnings.
    max_pool_connections=64,
)
_MODEL_SERVICES = frozenset({"sagemaker-runtime", "bedrock-runtime"})

# What retrying can fix is decided by botocore's own standard-mode rules (the same ones its
# clients apply to every call), so a code AWS adds to them is picked up with botocore itself:
# - transient: codes RequestTimeout, RequestTimeoutException, PriorRequestNotComplete; HTTP
#   500/502/503/504 (S3's InternalError and SlowDown, ServiceUnavailable...); and connection
#   and HTTP-client failures (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError,
#   ConnectionClosedError, ResponseStreamingError);
# - throttled: the throttling codes (Throttling, ThrottlingException, SlowDown,
#   ProvisionedThroughputExceededException, ...) and HTTP 429.
_BOTOCORE_RULES = (
    standard.TransientRetryableChecker(),
    standard.ThrottledRetryableChecker(),
    standard.ThrottlingStatusCodeChecker(),
)
# What botocore's rules leave out, and why retrying helps anyway:
EXTRA_RETRYABLE_CODES = frozenset({
    # SageMaker runtime: the endpoint's model is still loading (HTTP 429, modeled there as not
    # retryable; Bedrock runtime marks the same code retryable).
    "ModelNotReadyException",
    # Bedrock runtime, HTTP 408: the model took too long this time.
    "ModelTimeoutException",
    # SageMaker runtime, HTTP 530: a dependency of the endpoint failed.
    "InternalDependencyException",
})  # fmt: skip
# Raised while a response body is read, after botocore's retries are over, so botocore never
# classifies it: the connection dropped mid-body, and a new request reads the object afresh.
EXTRA_TRANSIENT_EXCEPTIONS: tuple[type[BotoCoreError], ...] = (IncompleteReadError,)
# The services the adapters call; their models mark some error codes retryable.
_SERVICES_CALLED = (
    "s3", "dynamodb", "sqs", "sns", "ssm", "stepfunctions", "bedrock", "bedrock-runtime",
    "sagemaker-runtime",
)  # fmt: skip


_Answer = TypeVar("_Answer")
# What S3 answers for an object that is not there: GetObject says NoSuchKey, HeadObject a bare 404.
S3_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


def unless_missing(
    call: Callable[[], _Answer],
    failed: Callable[[ClientError | BotoCoreError], Exception],
    *,
    missing: Iterable[str] = S3_MISSING_CODES,
) -> _Answer | None:
    """`call()`'s answer, or None when AWS says the resource is `missing`; any other failure
    is raised as `failed(error)`."""
    try:
        return call()
    except ClientError as error:
        if error_code(error) in missing:
            return None
        raise failed(error) from error
    except BotoCoreError as error:
        raise failed(error) from error


@cache
def client(service: str) -> Any:
    """One client per service and process: creating clients is slow and they are thread-safe."""
    config = _MODEL_CALL if service in _MODEL_SERVICES else _DATA_CALL
    return boto3.client(service, config=config)


@cache
def slow_model_client(service: str, *, read_timeout: int) -> Any:
    """A one-attempt model client for calls that outlast the usual read timeout (images)."""
    return boto3.client(service, config=_MODEL_CALL.merge(Config(read_timeout=read_timeout)))


@cache
def presigning_s3_client() -> Any:
    """S3 that signs with Signature Version 4 (the only one S3 accepts for SSE-KMS objects) and
    virtual-hosted, regional URLs."""
    return boto3.client(
        "s3",
        config=_DATA_CALL.merge(
            Config(signature_version="s3v4", s3={"addressing_style": "virtual"})
        ),
    )


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "Unknown"))


def is_transient(error: ClientError | BotoCoreError, *, extra_codes: Iterable[str] = ()) -> bool:
    """Whether the same request may succeed later: botocore's standard retry rules, the error
    codes the services' models mark retryable, and the additions above (plus `extra_codes`)."""
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        context = standard.RetryContext(
            attempt_number=1,
            parsed_response=error.response,
            http_response=AWSResponse("", status, {}, None) if isinstance(status, int) else None,
        )
        code = error_code(error)
        return (
            any(rule.is_retryable(context) for rule in _BOTOCORE_RULES)
            or code in EXTRA_RETRYABLE_CODES
            or code in set(extra_codes)
            or code in modeled_retryable_codes()
        )
    context = standard.RetryContext(attempt_number=1, caught_exception=error)
    return any(rule.is_retryable(context) for rule in _BOTOCORE_RULES) or isinstance(
        error, EXTRA_TRANSIENT_EXCEPTIONS
    )


@cache
def modeled_retryable_codes() -> frozenset[str]:
    """Error codes the called services' API models mark `retryable` (botocore's modeled-retry
    rule; a ClientError does not say which service raised it, so all of them are read, once)."""
    loader = botocore.session.get_session()
    codes: set[str] = set()
    for service in _SERVICES_CALLED:
        try:
            model = loader.get_service_model(service)
        except BotoCoreError:  # a botocore without that service: nothing to learn from it
            continue
        for shape in model.error_shapes:
            if shape.metadata.get("retryable") is not None:
                codes.add(shape.metadata.get("error", {}).get("code") or shape.name)
    return frozenset(codes)


def as_dependency_error(
    error: ClientError | BotoCoreError,
    *,
    code_prefix: str,
    what: str,
    extra_retryable_codes: Iterable[str] = (),
) -> DependencyError:
    """A DependencyError naming the dependency and AWS's own code, never the request payload.

    Retryable (503, or an SQS retry) when `is_transient` says so; otherwise final (502, or
    parked), because repeating the same call cannot help.
    """
    retryable = is_transient(error, extra_codes=extra_retryable_codes)
    suffix = "unavailable" if retryable else "failed"
    if isinstance(error, ClientError):
        message = error.response.get("Error", {}).get("Message", "")
        return DependencyError(
            f"{code_prefix}_{suffix}",
            f"{what} answered {error_code(error)}: {message}"[:500],
            retryable=retryable,
        )
    if isinstance(error, ReadTimeoutError | ConnectTimeoutError):
        return DependencyError(
            f"{code_prefix}_{suffix}", f"{what} did not answer in time", retryable=retryable
        )
    return DependencyError(
        f"{code_prefix}_{suffix}",
        f"{what}: {type(error).__name__}: {error}"[:500],
        retryable=retryable,
    )
