"""Step 2 of `describe-catalog`: one Distributed Map child turns its batch of items into a
Batch Transform input part.

For each item: check the names (screen_batch), skip products already described in every
requested language (unless forced), read the image, check it like the online path does and
against the Batch Transform payload limit, and append the request line and its index record.
Every product that cannot go on becomes a failure record; nothing is dropped silently.

The batch id is a hash of the items, so a retried child writes over its own files. The summary
(`batches/<batchId>.json`) is written last: it is what the plan step trusts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from catalog.handlers.environment import CatalogEnvironment
from catalog.logic.layout import (
    batch_summary_key,
    failures_key,
    parse_s3_uri,
    transform_index_key,
    transform_input_key,
)
from catalog.logic.sources import (
    BatchOptions,
    PendingProduct,
    already_described,
    batch_id_for,
    input_failure,
    parse_batch_options,
    screen_batch,
)
from catalog.logic.transform_records import (
    TransformRecord,
    base64_size,
    build_transform_record,
    payload_problem,
    request_bytes,
)
from descriptions.logic.images import ImageLimits, InvalidImageError, inspect_image
from shared.adapters.catalog_sources import S3CatalogSource, StoredLanguages
from shared.adapters.run_files import RunFiles
from shared.adapters.s3_lines import JsonLinesWriter
from shared.models.catalog import FailureRecord
from shared.models.errors import DependencyError, RequestError
from shared.telemetry import logger, step_handler

FAILURES_STEP = "input"


@dataclass
class BatchBuilder:
    environment: CatalogEnvironment
    sources: S3CatalogSource
    stored: StoredLanguages
    files: RunFiles

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        items = event.get("Items")
        if not isinstance(items, list):
            raise ValueError("the event has no Items list; the Distributed Map must batch items")
        options = parse_batch_options(event.get("BatchInput"))
        batch_id = batch_id_for(items)
        screened = screen_batch(
            items,
            options,
            source_buckets=self.environment.catalog.source_buckets,
            descriptions=self.environment.descriptions,
        )
        failures = list(screened.failures)
        pending, skipped = self._not_yet_described(screened.products, options)
        records, part_bytes = self._write_parts(options.run_id, batch_id, pending, failures)
        self._write_failures(options.run_id, batch_id, failures)
        summary = {
            "batchId": batch_id,
            "records": records,
            "skipped": skipped,
            "failed": len(failures),
            # What the plan sizes groups by when their images go to a Bedrock job.
            "bytes": part_bytes,
        }
        self.files.put_json(batch_summary_key(options.run_id, batch_id), summary)
        logger.info(
            "batch built",
            run_id=options.run_id,
            batch_id=batch_id,
            items=len(items),
            records=records,
            skipped=skipped,
            failed=len(failures),
        )
        return summary

    def _not_yet_described(
        self, products: Sequence[PendingProduct], options: BatchOptions
    ) -> tuple[list[PendingProduct], int]:
        if options.force or not products:
            return list(products), 0
        stored = self.stored.languages(
            [product.ref.product_id for product in products], options.languages
        )
        pending = [
            product
            for product in products
            if not already_described(stored, product.ref.product_id, options.languages)
        ]
        return pending, len(products) - len(pending)

    def _write_parts(
        self,
        run_id: str,
        batch_id: str,
        products: Sequence[PendingProduct],
        failures: list[FailureRecord],
    ) -> tuple[int, int]:
        """Writes the request and index parts; returns how many records and bytes the request
        part holds. With none, no part is left behind (also none from an earlier attempt)."""
        bucket = self.files.bucket
        input_key = transform_input_key(run_id, batch_id)
        index_key = transform_index_key(run_id, batch_id)
        requests = JsonLinesWriter(bucket, input_key, s3=self.files.s3)
        index = JsonLinesWriter(bucket, index_key, s3=self.files.s3)
        try:
            for outcome in self._prepared(products):
                if isinstance(outcome, FailureRecord):
                    failures.append(outcome)
                    continue
                requests.write_raw(outcome.line)
                index.write(outcome.index.model_dump(mode="json"))
        except BaseException:
            requests.discard()
            index.discard()
            raise
        if requests.lines == 0:
            requests.discard()
            index.discard()
            self.files.delete_keys([input_key, index_key])
            return 0, 0
        requests.close()
        index.close()
        return requests.lines, requests.bytes

    def _write_failures(self, run_id: str, batch_id: str, failures: list[FailureRecord]) -> None:
        key = failures_key(run_id, FAILURES_STEP, batch_id)
        if not failures:
            # An earlier attempt of this batch may have found failures that are gone now.
            self.files.delete_keys([key])
            return
        with JsonLinesWriter(self.files.bucket, key, s3=self.files.s3) as writer:
            for failure in failures:
                writer.write(failure.model_dump(mode="json"))

    def _prepared(
        self, products: Sequence[PendingProduct]
    ) -> Iterator[TransformRecord | FailureRecord]:
        """Each product's request or failure, in product order. At most a window of images is
        in memory at once: a batch may hold hundreds of photos of several MB each."""
        workers = max(1, min(self.environment.catalog.io_concurrency, len(products)))
        window: deque[Future[TransformRecord | FailureRecord]] = deque()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for product in products:
                window.append(pool.submit(self._prepare, product))
                if len(window) >= 2 * workers:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()

    def _prepare(self, product: PendingProduct) -> TransformRecord | FailureRecord:
        limits = self.environment.descriptions.image
        ref = product.ref
        bucket, key = parse_s3_uri(ref.image_key)
        try:
            image = self.sources.read_image(bucket, key, max_bytes=limits.max_bytes)
        except RequestError as error:
            return input_failure(ref, error.message)
        except DependencyError as error:
            if error.retryable:
                raise
            return input_failure(ref, f"the image could not be read: {error.message}")
        try:
            inspect_image(
                image,
                ImageLimits(limits.max_bytes, limits.max_pixels, limits.max_side, limits.min_side),
            )
        except InvalidImageError as error:
            return input_failure(ref, f"{error.message} ({error.problem.value})")
        limit = self.environment.catalog.transform_max_payload_bytes
        problem = payload_problem(base64_size(len(image)) + 1, image_bytes=len(image), limit=limit)
        if problem:
            return input_failure(ref, problem)
        record = build_transform_record(
            product_id=ref.product_id,
            image_key=ref.image_key,
            category=product.category,
            questions=product.questions,
            image=image,
        )
        problem = payload_problem(request_bytes(record), image_bytes=len(image), limit=limit)
        if problem:
            return input_failure(ref, problem)
        return record


def build_batch_builder(environment: CatalogEnvironment) -> BatchBuilder:
    return BatchBuilder(
        environment=environment,
        sources=S3CatalogSource(),
        stored=StoredLanguages(environment.catalog.table_name),
        files=RunFiles(environment.catalog.results_bucket),
    )


@cache
def batch_builder() -> BatchBuilder:
    """Built on first use, so importing this module stays cheap and tests can swap it."""
    return build_batch_builder(CatalogEnvironment.load())


@step_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return batch_builder().handle(event)
