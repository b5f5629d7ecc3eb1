"""The SSM parameter reader: a short-lived cache of the value, or of its absence."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from shared.adapters.parameters import CachedParameter
from shared.models.errors import DependencyError

NAME = "/atelier/dev/titan/provisioned-model-arn"


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code}!"}}, "GetParameter")


@dataclass
class FakeSsm:
    values: list[str | Exception]
    calls: list[str] = field(default_factory=list)

    def get_parameter(self, *, Name: str) -> dict[str, Any]:  # noqa: N803 - boto3's name
        self.calls.append(Name)
        value = self.values.pop(0) if len(self.values) > 1 else self.values[0]
        if isinstance(value, Exception):
            raise value
        return {"Parameter": {"Name": Name, "Type": "String", "Value": value}}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _parameter(ssm: FakeSsm, clock: Clock, ttl: float = 60) -> CachedParameter:
    return CachedParameter(NAME, ttl_seconds=ttl, ssm=ssm, clock=clock)


def test_a_value_is_read_once_per_ttl() -> None:
    ssm, clock = FakeSsm(["arn-1", "arn-2"]), Clock()
    parameter = _parameter(ssm, clock)

    assert parameter.get() == "arn-1"
    clock.now += 59.9
    assert parameter.get() == "arn-1"
    assert len(ssm.calls) == 1
    clock.now += 0.1
    assert parameter.get() == "arn-2"
    assert ssm.calls == [NAME, NAME]


def test_a_missing_parameter_is_none_and_remembered_too() -> None:
    ssm, clock = FakeSsm([_client_error("ParameterNotFound"), "arn-1"]), Clock()
    parameter = _parameter(ssm, clock)

    assert parameter.get() is None
    assert parameter.get() is None
    assert len(ssm.calls) == 1
    clock.now += 60
    assert parameter.get() == "arn-1"


def test_invalidate_forces_the_next_read() -> None:
    ssm, clock = FakeSsm(["arn-1", "arn-2"]), Clock()
    parameter = _parameter(ssm, clock)
    assert parameter.get() == "arn-1"

    parameter.invalidate()

    assert parameter.get() == "arn-2"
    assert len(ssm.calls) == 2


def test_a_zero_ttl_reads_every_time() -> None:
    ssm, clock = FakeSsm(["arn-1"]), Clock()
    parameter = _parameter(ssm, clock, ttl=0)
    parameter.get()
    parameter.get()
    assert len(ssm.calls) == 2


@pytest.mark.parametrize(
    ("error", "code", "status"),
    [
        (_client_error("ThrottlingException"), "parameter_store_unavailable", 503),
        (_client_error("AccessDeniedException"), "parameter_store_failed", 502),
        (EndpointConnectionError(endpoint_url="https://ssm"), "parameter_store_unavailable", 503),
    ],
)
def test_failures_are_dependency_errors_and_not_cached(
    error: Exception, code: str, status: int
) -> None:
    ssm, clock = FakeSsm([error, "arn-1"]), Clock()
    parameter = _parameter(ssm, clock)

    with pytest.raises(DependencyError) as caught:
        parameter.get()

    assert (caught.value.code, caught.value.status) == (code, status)
    assert NAME in caught.value.message
    assert parameter.get() == "arn-1"
