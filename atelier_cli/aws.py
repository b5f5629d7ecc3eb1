"""The AWS session a command works with, and botocore's failures turned into `CliError`s.

Commands get clients from `Aws.client(name)`; tests hand in their own factory (moto-backed clients
or clients with a botocore Stubber) through `Aws(client_factory=...)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
)

from atelier_cli.errors import AccessError, CliError, NotDeployedError, ServiceError, UsageError

# (service, region) -> client
ClientFactory = Callable[[str, str], Any]

# Standard retry mode: throttling and transient errors are retried by botocore before a command
# reports a service error (exit 5).
CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5}, user_agent_extra="atelier-cli"
)

ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "SignatureDoesNotMatch",
        "AuthFailure",
    }
)
MISSING_CODES = frozenset(
    {
        "ParameterNotFound",
        "ResourceNotFoundException",
        "ResourceNotFound",
        "StateMachineDoesNotExist",
        "ExecutionDoesNotExist",
        "NoSuchBucket",
        "NoSuchKey",
        "404",
        "NotFound",
    }
)
INVALID_CODES = frozenset(
    {
        "ValidationException",
        "ValidationError",
        "InvalidParameterValue",
        "InvalidParameterValueException",
        "InvalidArn",
        "InvalidExecutionInput",
        "InvalidName",
    }
)
CREDENTIALS_FIX = (
    "configure credentials (aws configure, aws sso login, or AWS_PROFILE / --profile) for the "
    "account the stage is deployed in"
)


class Aws:
    """One boto3 session per command: the region and profile of the global options."""

    def __init__(
        self,
        *,
        region: str | None = None,
        profile: str | None = None,
        client_factory: ClientFactory | None = None,
    ) -> None:
        self._region = region
        self._profile = profile
        self._factory = client_factory
        self._session: boto3.Session | None = None
        self._clients: dict[str, Any] = {}

    @property
    def session(self) -> boto3.Session:
        if self._session is None:
            with translated_errors():
                self._session = boto3.Session(profile_name=self._profile, region_name=self._region)
        return self._session

    @property
    def region(self) -> str:
        region = self._region or self.session.region_name
        if not region:
            raise UsageError(
                "no AWS region given",
                fix="pass --region, or set AWS_REGION (or a region in your AWS profile)",
                code="no_region",
            )
        return region

    def client(self, service: str) -> Any:
        if service not in self._clients:
            if self._factory is not None:
                self._clients[service] = self._factory(service, self.region)
            else:
                with translated_errors():
                    self._clients[service] = self.session.client(
                        service, region_name=self.region, config=CLIENT_CONFIG
                    )
        return self._clients[service]


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def error_message(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message", "")) or str(error)


@contextmanager
def translated_errors(what: str | None = None) -> Iterator[None]:
    """Turn botocore's exceptions raised inside the block into `CliError`s.

    `what` names the action for the message ("start the VQA training workflow"); without it the
    API operation is named.
    """
    try:
        yield
    except CliError:
        raise
    except ClientError as error:
        raise client_error(error, what) from error
    except (NoCredentialsError, PartialCredentialsError) as error:
        raise AccessError(
            f"no usable AWS credentials: {error}", fix=CREDENTIALS_FIX, code="no_credentials"
        ) from error
    except ProfileNotFound as error:
        raise UsageError(
            str(error), fix="name a profile from ~/.aws/config", code="profile_not_found"
        ) from error
    except NoRegionError as error:
        raise UsageError(
            "no AWS region given",
            fix="pass --region, or set AWS_REGION (or a region in your AWS profile)",
            code="no_region",
        ) from error
    except ConnectionError as error:
        raise ServiceError(
            f"could not reach AWS: {error}",
            fix="check the network and the region, then run the command again",
            code="connection_failed",
        ) from error
    except BotoCoreError as error:
        raise ServiceError(str(error)) from error


def client_error(error: ClientError, what: str | None = None) -> CliError:
    code = error_code(error)
    operation = getattr(error, "operation_name", "") or "the AWS call"
    action = what or f"call {operation}"
    message = f"could not {action}: {code}: {error_message(error)}"
    if code in ACCESS_CODES:
        denied = code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation")
        fix = (
            f"grant your role the permission for {operation} (the message names the action and "
            "the resource), or pass --profile with a role that has it"
            if denied
            else CREDENTIALS_FIX
        )
        return AccessError(message, fix=fix)
    if code in MISSING_CODES:
        return NotDeployedError(message, code="not_found")
    if code in INVALID_CODES:
        return UsageError(message, code="invalid_request")
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code.startswith("Throttl") or code in ("TooManyRequestsException", "RequestLimitExceeded"):
        return ServiceError(
            message, fix="wait a moment and run the command again", code="throttled"
        )
    if isinstance(status, int) and 400 <= status < 500:
        return UsageError(message, code="request_refused")
    return ServiceError(message, fix="run the command again; AWS reported a failure on its side")
