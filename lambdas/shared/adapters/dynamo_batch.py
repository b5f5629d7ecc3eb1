"""Writing many descriptions to the products table with BatchWriteItem.

BatchWriteItem takes at most 25 puts per call and may return some of them as `UnprocessedItems`
(throttling, partition limits) while succeeding on the rest; AWS's advice is to resend exactly
those after an exponentially growing, jittered wait. Attempts are bounded: whatever is still
unprocessed after the last one is returned, so the caller reports those products instead of
looping for the rest of the function's life. Items have the same layout as the online path's
`PutItem` (`storage.description_item`), so readers cannot tell which path wrote a row.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters.aws import as_dependency_error, client, is_transient
from shared.adapters.storage import description_item
from shared.models.descriptions import StoredDescription
from shared.retry import full_jitter_delay

MAX_ITEMS_PER_CALL = 25


class DynamoBatchWriter:
    def __init__(
        self,
        table_name: str,
        *,
        dynamodb: Any | None = None,
        max_attempts: int = 8,
        base_delay: float = 0.05,
        max_delay: float = 2.0,
        concurrency: int = 1,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.table_name = table_name
        self._client = dynamodb or client("dynamodb")
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.concurrency = concurrency
        self._sleep = sleep
        self._rng = rng

    def write(self, descriptions: Sequence[StoredDescription]) -> list[str]:
        """Put every description; returns the product ids still unprocessed after the last
        attempt. Raises DependencyError when the table refuses outright (missing, no access)."""
        chunks = list(_chunks(descriptions))
        workers = max(1, min(self.concurrency, len(chunks)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(self._write_chunk, chunks))
        return [product_id for unprocessed in results for product_id in unprocessed]

    def _write_chunk(self, chunk: list[StoredDescription]) -> list[str]:
        pending: list[dict[str, Any]] = [
            {"PutRequest": {"Item": description_item(description)}} for description in chunk
        ]
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self._client.batch_write_item(RequestItems={self.table_name: pending})
            except (ClientError, BotoCoreError) as error:
                if not is_transient(error):
                    raise self._error(error) from error
                # Every item of the call was throttled, or the call was cut off: resend them
                # all (putting an item twice stores it once).
            else:
                pending = list(response.get("UnprocessedItems", {}).get(self.table_name, []))
                if not pending:
                    return []
            if attempt < self.max_attempts:
                self._sleep(self._delay(attempt))
        return [request["PutRequest"]["Item"]["productId"]["S"] for request in pending]

    def _delay(self, attempt: int) -> float:
        return full_jitter_delay(
            attempt, base_delay=self.base_delay, max_delay=self.max_delay, rng=self._rng
        )

    def _error(self, error: ClientError | BotoCoreError) -> Exception:
        return as_dependency_error(
            error, code_prefix="table", what=f"DynamoDB table {self.table_name}"
        )


def _chunks(descriptions: Iterable[StoredDescription]) -> Iterator[list[StoredDescription]]:
    """Runs of at most 25; a product repeated within a run starts a new one, because
    BatchWriteItem refuses a call that puts the same key twice."""
    chunk: list[StoredDescription] = []
    seen: set[str] = set()
    for description in descriptions:
        if len(chunk) == MAX_ITEMS_PER_CALL or description.product_id in seen:
            yield chunk
            chunk, seen = [], set()
        chunk.append(description)
        seen.add(description.product_id)
    if chunk:
        yield chunk
