"""boto3 clients and the translation of their failures into DependencyError.

Clients for model calls make exactly one attempt: the pipeline retries them itself within the
function's remaining time. Clients for S3, DynamoDB and SQS keep botocore's standard retries,
which are short and bounded.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, ReadTimeoutError

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

# Error codes that mean "try again later" in any of the services we call.
RETRYABLE_CODES = frozenset({
    "ThrottlingException", "Throttling", "ThrottledException", "TooManyRequestsException",
    "ServiceUnavailable", "ServiceUnavailableException", "InternalFailure",
    "InternalServerException", "InternalServerError", "InternalDependencyException",
    "ModelNotReadyException", "ModelTimeoutException", "ProvisionedThroughputExceededException",
    "RequestLimitExceeded", "SlowDown", "503", "500",
})  # fmt: skip


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


def as_dependency_error(
    error: ClientError | BotoCoreError,
    *,
    code_prefix: str,
    what: str,
    retryable_codes: Iterable[str] = RETRYABLE_CODES,
) -> DependencyError:
    """A DependencyError naming the dependency and AWS's own code, never the request payload."""
    if isinstance(error, ClientError):
        aws_code = error_code(error)
        retryable = aws_code in set(retryable_codes)
        suffix = "unavailable" if retryable else "failed"
        message = error.response.get("Error", {}).get("Message", "")
        return DependencyError(
            f"{code_prefix}_{suffix}",
            f"{what} answered {aws_code}: {message}"[:500],
            retryable=retryable,
        )
    if isinstance(error, ReadTimeoutError | ConnectionError):
        return DependencyError(
            f"{code_prefix}_unavailable", f"{what} did not answer in time", retryable=True
        )
    return DependencyError(f"{code_prefix}_failed", f"{what}: {error}"[:500], retryable=False)
