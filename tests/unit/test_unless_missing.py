"""`unless_missing`: the one reading of "that object is not there" for the S3 adapters."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from shared.adapters.aws import S3_MISSING_CODES, unless_missing


class CallerError(Exception):
    pass


def failed(error: ClientError | BotoCoreError) -> Exception:
    return CallerError(str(error))


def raising(error: Exception) -> Callable[[], object]:
    def call() -> object:
        raise error

    return call


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}}, "GetObject")


def test_the_answer_passes_through() -> None:
    assert unless_missing(lambda: {"Body": b"x"}, failed) == {"Body": b"x"}


@pytest.mark.parametrize("code", sorted(S3_MISSING_CODES))
def test_a_missing_object_is_none(code: str) -> None:
    assert unless_missing(raising(client_error(code)), failed) is None


@pytest.mark.parametrize(
    "error",
    [
        client_error("AccessDenied"),
        client_error("SlowDown"),
        EndpointConnectionError(endpoint_url="u"),
    ],
)
def test_any_other_failure_is_the_callers_error_chained_to_the_cause(error: Exception) -> None:
    with pytest.raises(CallerError) as raised:
        unless_missing(raising(error), failed)
    assert raised.value.__cause__ is error


def test_the_missing_codes_can_be_the_callers_own() -> None:
    assert (
        unless_missing(
            raising(client_error("ParameterNotFound")), failed, missing={"ParameterNotFound"}
        )
        is None
    )
    with pytest.raises(CallerError):
        unless_missing(raising(client_error("NoSuchKey")), failed, missing={"ParameterNotFound"})
