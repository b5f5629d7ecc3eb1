"""Bounded retries inside a time budget."""

from __future__ import annotations

import pytest

from shared.models.errors import DependencyError
from shared.retry import Deadline, RetryPolicy, call_with_retries


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _flaky(failures: list[DependencyError]) -> object:
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "ok"

    call.calls = calls  # type: ignore[attr-defined]
    return call


def _throttled() -> DependencyError:
    return DependencyError("text_model_unavailable", "throttled", retryable=True)


def test_retryable_failures_are_retried_until_success() -> None:
    clock = _Clock()
    call = _flaky([_throttled(), _throttled()])

    result = call_with_retries(
        call,
        deadline=Deadline(30, clock=clock),
        sleep=clock.sleep,
        rng=lambda: 1.0,  # type: ignore[arg-type]
    )

    assert result == "ok"
    assert len(call.calls) == 3  # type: ignore[attr-defined]
    assert clock.now == pytest.approx(0.2 + 0.4)  # exponential backoff, full jitter at its top


def test_attempts_are_bounded() -> None:
    clock = _Clock()
    call = _flaky([_throttled() for _ in range(10)])

    with pytest.raises(DependencyError):
        call_with_retries(
            call,  # type: ignore[arg-type]
            deadline=Deadline(300, clock=clock),
            policy=RetryPolicy(attempts=3),
            sleep=clock.sleep,
        )
    assert len(call.calls) == 3  # type: ignore[attr-defined]


def test_no_retry_is_started_that_the_deadline_would_cut_off() -> None:
    clock = _Clock()
    call = _flaky([_throttled() for _ in range(10)])

    with pytest.raises(DependencyError):
        call_with_retries(call, deadline=Deadline(0.5, clock=clock), sleep=clock.sleep)  # type: ignore[arg-type]
    assert len(call.calls) == 1  # type: ignore[attr-defined]


def test_permanent_failures_are_not_retried() -> None:
    clock = _Clock()
    call = _flaky([DependencyError("attribute_model_failed", "ModelError", retryable=False)])

    with pytest.raises(DependencyError, match="ModelError"):
        call_with_retries(call, deadline=Deadline(30, clock=clock), sleep=clock.sleep)  # type: ignore[arg-type]
    assert len(call.calls) == 1  # type: ignore[attr-defined]
