"""What the synchronous image services (`POST /images`, `POST /generations`, `POST /styling`)
share: the retry policies, clock, sleep and seed source a test swaps, and the one way they retry a
call within the request's deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.retry import Deadline, RetryPolicy, call_with_retries


@dataclass(kw_only=True)
class ModelService:
    """Each service gives its own model retry policy (how long one model attempt needs) and its
    model's seed range; S3 and SSM calls share one data policy."""

    model_retry_policy: RetryPolicy
    seed: Callable[[], int]
    data_retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    def _retrying(self, call: Callable[[], Any], deadline: Deadline, policy: RetryPolicy) -> Any:
        return call_with_retries(call, deadline=deadline, policy=policy, sleep=self.sleep)


def elapsed_ms(since: float) -> int:
    """Milliseconds since `since` (a `time.perf_counter()` reading)."""
    return round((time.perf_counter() - since) * 1000)
