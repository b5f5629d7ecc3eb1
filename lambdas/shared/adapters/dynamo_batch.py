"""Writing many descriptions to the products table with BatchWriteItem.

BatchWriteItem takes at most 25 puts per call and may return some of them as `UnprocessedItems`
(throttling, partition limits) while succeeding on the rest; AWS's advice is to resend exactly
those after an exponentially growing, jittered wait. Attempts are bounded: whatever is still
unprocessed after the last one is returned, so the caller reports those products instead of
looping for the rest of the function's life. Items have the same layout as the online path's
`PutItem` (`storage.description_item`), so readers cannot tell which path wrote a row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters.aws import is_transient
from shared.adapters.dynamo_resends import BatchResends
from shared.adapters.storage import description_item
from shared.models.descriptions import StoredDescription

MAX_ITEMS_PER_CALL = 25


class DynamoBatchWriter(BatchResends):
    def __init__(self, table_name: str, *, concurrency: int = 1, **resends: Any) -> None:
        """`concurrency`: chunks written at once; `resends` as for `BatchResends`."""
        super().__init__(table_name, **resends)
        self.concurrency = concurrency

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
            self._wait_before_next(attempt)
        return [request["PutRequest"]["Item"]["productId"]["S"] for request in pending]


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
