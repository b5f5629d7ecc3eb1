"""What both DynamoDB batch adapters (BatchGetItem, BatchWriteItem) share: DynamoDB may leave part
of a batch unprocessed under load, and AWS's advice is to ask again for exactly that part after an
exponentially growing, fully jittered wait, a bounded number of times."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters.aws import as_dependency_error, client
from shared.retry import full_jitter_delay


class BatchResends:
    """The table, its client, and the bounded resends of what a batch call left unprocessed."""

    def __init__(
        self,
        table_name: str,
        *,
        dynamodb: Any | None = None,
        max_attempts: int = 8,
        base_delay: float = 0.05,
        max_delay: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.table_name = table_name
        self._client = dynamodb or client("dynamodb")
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep
        self._rng = rng

    def _wait_before_next(self, attempt: int) -> None:
        """After attempt `attempt` left work unprocessed: wait, unless it was the last one."""
        if attempt < self.max_attempts:
            self._sleep(
                full_jitter_delay(
                    attempt, base_delay=self.base_delay, max_delay=self.max_delay, rng=self._rng
                )
            )

    def _error(self, error: ClientError | BotoCoreError) -> Exception:
        return as_dependency_error(
            error, code_prefix="table", what=f"DynamoDB table {self.table_name}"
        )
