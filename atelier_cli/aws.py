"""The AWS session a command works with, and botocore's failures turned into `CliError`s.

Commands get clients from `Aws.client(name)`; tests hand in their own factory (moto-backed clients
or clients with a botocore Stubber) through `Aws(client_factory=...)`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    InvalidRegionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
)

from atelier_cli.errors import AccessError, CliError, NotDeployedError, ServiceError, UsageError

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config

# (service, region) -> client
ClientFactory = Callable[[str, str], Any]


@cache
def client_config() -> Config:
    """Standard retry mode: throttling and transient errors are retried by botocore before a
    command reports a service error (exit 5). Built on first use: botocore.config pulls in
    urllib3, which `atelier --help` must not wait for."""
    from botocore.config import Config

    return Config(retries={"mode": "standard", "max_attempts": 5}, user_agent_extra="atelier-cli")


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
# Where the region comes from: --region or ATELIER_REGION (the CLI's own), else boto3's chain,
# which reads AWS_DEFAULT_REGION and then the profile's `region`. boto3 does not read AWS_REGION
# (other SDKs and AWS CLI v2 do), so advice naming it would be wrong.
REGION_FIX = (
    "pass --region (e.g. --region us-east-1), or set ATELIER_REGION or AWS_DEFAULT_REGION, or "
    "a region in your AWS profile (aws configure set region us-east-1)"
)
# The shape of every AWS region name (us-east-1, us-gov-west-1, eusc-de-east-1; a test holds
# botocore's whole list to it): a malformed one is a usage error here, not an endpoint botocore
# fails to build or reach.
REGION_NAME = re.compile(r"^[a-z]+(-[a-z]+)+-[0-9]{1,2}$")
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
            # Imported here, not at the top: boto3 is a third of `atelier --help`'s start-up, and
            # help, usage errors and the dataset builders never need a session.
            import boto3

            with translated_errors():
                self._session = boto3.Session(profile_name=self._profile, region_name=self._region)
        return self._session

    @property
    def region(self) -> str:
        if self._region is not None:
            return checked_region(self._region, "--region (or ATELIER_REGION)")
        region = self.session.region_name
        if not region:
            raise no_region_error()
        if os.environ.get("AWS_DEFAULT_REGION") == region:
            return checked_region(region, "AWS_DEFAULT_REGION")
        return checked_region(region, f"the region of AWS profile {self.session.profile_name!r}")

    def client(self, service: str) -> Any:
        if service not in self._clients:
            if self._factory is not None:
                self._clients[service] = self._factory(service, self.region)
            else:
                with translated_errors():
                    self._clients[service] = self.session.client(
                        service, region_name=self.region, config=client_config()
                    )
        return self._clients[service]


def checked_region(region: str, source: str) -> str:
    """`region` if it has the shape of an AWS region name; a usage error naming `source` else."""
    if REGION_NAME.fullmatch(region):
        return region
    raise UsageError(
        f"{source} is {region!r}, not an AWS region name such as us-east-1 or eu-west-1",
        fix=f"set {source} to the region the stage is deployed in, e.g. us-east-1",
        code="invalid_region",
    )


def no_region_error() -> UsageError:
    message = "no AWS region given"
    ignored = os.environ.get("AWS_REGION")
    if ignored:
        message += f" (AWS_REGION={ignored} is set, but boto3 does not read it)"
    return UsageError(message, fix=REGION_FIX, code="no_region")


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
        raise no_region_error() from error
    except InvalidRegionError as error:
        raise UsageError(str(error), fix=REGION_FIX, code="invalid_region") from error
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
