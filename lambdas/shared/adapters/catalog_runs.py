"""Many small reads and writes of a catalog run's files at once.

The plan step reads one summary per Distributed Map child (thousands for a large catalog) and
writes one manifest per group; one at a time that is minutes of round trips. These are I/O-bound
calls on a thread-safe client, so a thread pool of `io_concurrency` runs them side by side.
The single operations are `RunFiles`'.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters.aws import as_dependency_error
from shared.adapters.run_files import RunFiles
from shared.models.errors import DependencyError

T = TypeVar("T")
R = TypeVar("R")


def map_concurrently(
    function: Callable[[T], R], items: Sequence[T], *, io_concurrency: int
) -> list[R]:
    """`function` over `items` on up to `io_concurrency` threads; results in item order, and
    the first exception raised."""
    if len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=max(1, min(io_concurrency, len(items)))) as pool:
        return list(pool.map(function, items))


class RunReader:
    def __init__(self, files: RunFiles, *, io_concurrency: int) -> None:
        self.files = files
        self.io_concurrency = io_concurrency

    @property
    def bucket(self) -> str:
        return self.files.bucket

    def list_keys(self, prefix: str) -> list[str]:
        return sorted(self.files.list_keys(prefix))

    def read_json_many(self, keys: Sequence[str]) -> list[Any]:
        """The documents at `keys`, in the same order; a missing one is an error (it was just
        listed, or a step that should have written it did not)."""
        return map_concurrently(self._json, keys, io_concurrency=self.io_concurrency)

    def read_lines_many(self, keys: Sequence[str]) -> list[list[Any]]:
        """The parsed JSON lines of each file at `keys`, in the same order."""
        return map_concurrently(self._lines, keys, io_concurrency=self.io_concurrency)

    def put_json_many(self, documents: Mapping[str, Any]) -> None:
        """Writes each JSON document (an object or, like a SageMaker manifest, an array)."""
        map_concurrently(
            lambda key: self._put(key, documents[key]),
            list(documents),
            io_concurrency=self.io_concurrency,
        )

    def _put(self, key: str, document: Any) -> None:
        try:
            self.files.s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode(),
                ContentType="application/json",
            )
        except (ClientError, BotoCoreError) as error:
            raise as_dependency_error(
                error, code_prefix="results_bucket", what=f"s3://{self.bucket}/{key}"
            ) from error

    def _json(self, key: str) -> Any:
        document = self.files.get_json(key)
        if document is None:
            raise DependencyError(
                "results_bucket_missing",
                f"s3://{self.bucket}/{key} is gone; it was listed a moment ago",
                retryable=True,
            )
        return document

    def _lines(self, key: str) -> list[Any]:
        return [json.loads(line) for line in self.files.lines(key)]
