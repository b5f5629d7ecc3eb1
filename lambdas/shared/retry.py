"""Bounded retries with exponential backoff and full jitter, inside a time budget.

A Lambda function has a hard timeout; a retry that cannot finish before it only turns a clear
503 into a timeout. So every wait is checked against the deadline first, and the last failure is
raised as soon as another attempt would not fit.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from shared.models.errors import DependencyError

T = TypeVar("T")


class Deadline:
    """A point in monotonic time after which no new work should start."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._expires_at = clock() + seconds

    @classmethod
    def from_lambda_context(cls, context: object, *, margin_seconds: float) -> Deadline:
        """The function's remaining time minus a margin to store results and answer."""
        remaining_ms = getattr(context, "get_remaining_time_in_millis", lambda: 30_000)()
        return cls(max(0.0, remaining_ms / 1000 - margin_seconds))

    def remaining(self) -> float:
        return max(0.0, self._expires_at - self._clock())


def full_jitter_delay(
    attempt: int, *, base_delay: float, max_delay: float, rng: Callable[[], float]
) -> float:
    """The wait after failed attempt `attempt` (from 1): random, up to an exponentially growing
    cap, so many callers that failed together do not retry together."""
    return float(rng() * min(max_delay, base_delay * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    base_delay: float = 0.2
    max_delay: float = 3.0
    # Do not start an attempt with less time left than this: it would be cut off anyway.
    min_attempt_seconds: float = 1.0


def call_with_retries(
    call: Callable[[], T],
    *,
    deadline: Deadline,
    policy: RetryPolicy = RetryPolicy(),
    sleep: Callable[[float], None] = time.sleep,
    rng: Callable[[], float] = random.random,
) -> T:
    """Run `call`, retrying retryable DependencyErrors while attempts and time remain."""
    attempt = 1
    while True:
        try:
            return call()
        except DependencyError as error:
            if not error.retryable or attempt >= policy.attempts:
                raise
            delay = full_jitter_delay(
                attempt, base_delay=policy.base_delay, max_delay=policy.max_delay, rng=rng
            )
            if deadline.remaining() < delay + policy.min_attempt_seconds:
                raise
            sleep(delay)
            attempt += 1
