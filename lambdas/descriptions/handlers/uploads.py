"""SQS batch handler: S3 uploads under `incoming/` → descriptions.

Records of one batch are processed concurrently (the model calls are I/O-bound), and the answer
lists only the records to retry (partial batch response). Every upload ends in one of three ways:
- described and stored (a repeated event for the same bucket/key/version is answered from the
  idempotency record, with no second model call). Once the description is stored the record
  is a success, even if the idempotency record cannot be completed afterwards;
- parked in the dead-letter queue at once, with the reason in message attributes, when retrying
  cannot help (not an image, too large, no product id, a model that fails on this image). The
  message body stays the original event, so after fixing the cause a DLQ redrive retries it;
- returned as a batch item failure when a dependency is throttled, unavailable or cut off (as
  botocore's retry rules classify it, see shared/adapters/aws.py): SQS delivers it
  again after the visibility timeout, and moves it to the dead-letter queue after the configured
  receive count.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from descriptions.handlers.environment import Environment
from descriptions.handlers.telemetry import (
    logger,
    metrics,
    record_described,
    record_failure,
    tracer,
)
from descriptions.handlers.wiring import build_pipeline
from descriptions.logic.pipeline import DescriptionJob, DescriptionPipeline
from descriptions.logic.uploads import (
    UploadRef,
    options_from_metadata,
    parse_upload_event,
    product_id_for,
)
from shared import metric_names
from shared.adapters.aws import client
from shared.adapters.uploads import DeadLetters, S3Uploads
from shared.environment import DeploymentError
from shared.models.errors import AtelierError, DependencyError, RequestError
from shared.retry import Deadline, call_with_retries

# Left after the last record's model calls to write results and answer SQS.
RESPONSE_MARGIN_SECONDS = 5.0
PATH = "uploads"


@dataclass(frozen=True)
class Outcome:
    message_id: str
    status: str  # described | duplicate | ignored | parked | retry
    cause: str | None = None
    # For a new description: what the pipeline reported, for metrics on the handler's thread.
    result: dict[str, Any] | None = None


@dataclass
class Worker:
    environment: Environment
    pipeline: DescriptionPipeline
    uploads: S3Uploads
    dead_letters: DeadLetters
    idempotency: IdempotencyConfig
    persistence: DynamoDBPersistenceLayer
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        # Powertools' decorator takes its store at definition time; bind it to this worker's.
        self._describe_once = idempotent_function(
            data_keyword_argument="upload",
            persistence_store=self.persistence,
            config=self.idempotency,
        )(self._describe_upload)

    def process(self, record: dict[str, Any], deadline: Deadline) -> Outcome:
        message_id = str(record.get("messageId", ""))
        body = str(record.get("body", ""))
        try:
            upload = parse_upload_event(body)
            if upload is None:
                return Outcome(message_id, "ignored")
            self._check_source(upload)
            attempt = uuid.uuid4().hex
            result = self._describe_or_recall(upload.idempotency_data(), attempt, deadline)
            if result.get("attempt") != attempt:
                return Outcome(message_id, "duplicate")
            return Outcome(message_id, "described", result=result)
        except IdempotencyAlreadyInProgressError:
            # Another invocation holds this upload; let SQS bring it back later.
            return Outcome(message_id, "retry", "in_progress")
        except DependencyError as error:
            if error.retryable:
                logger.warning("will retry", message_id=message_id, code=error.code)
                return Outcome(message_id, "retry", error.code)
            return self._park(message_id, body, error)
        except RequestError as error:
            return self._park(message_id, body, error)
        except Exception:
            logger.exception(
                "unexpected failure; the record will be retried", message_id=message_id
            )
            return Outcome(message_id, "retry", "unexpected")

    def _check_source(self, upload: UploadRef) -> None:
        if self.environment.uploads_bucket and upload.bucket != self.environment.uploads_bucket:
            raise RequestError(
                "upload_wrong_bucket",
                f"the event names bucket {upload.bucket!r}; this worker reads "
                f"{self.environment.uploads_bucket!r}",
            )
        limit = self.pipeline.settings.image.max_bytes
        if upload.size is not None and upload.size > limit:
            raise RequestError(
                "image_too_large",
                f"the upload is {upload.size:,} bytes; the limit is {limit:,} bytes",
                status=413,
            )

    def _describe_or_recall(
        self, upload: dict[str, str], attempt: str, deadline: Deadline
    ) -> dict[str, Any]:
        """This attempt's result, or an earlier attempt's from the idempotency record.

        A description that was stored is a success even when the idempotency record cannot be
        completed afterwards: reporting the record as failed would describe it again (a second
        model call) or park a described upload in the dead-letter queue.
        """
        stored: list[dict[str, Any]] = []
        try:
            result: dict[str, Any] = self._describe_once(
                upload=upload, attempt=attempt, deadline=deadline, stored=stored
            )
        except Exception:
            if not stored:
                raise
            result = stored[0]
            self._complete_record(upload, result, deadline)
        return result

    def _complete_record(
        self, upload: dict[str, str], result: dict[str, Any], deadline: Deadline
    ) -> None:
        """Try again to mark the idempotency record completed, so a repeated event for this
        upload is answered from it. If that fails too, the record stays "in progress" until
        its expiry; only a repeated event after that would describe the upload once more."""

        def save() -> None:
            try:
                self.persistence.save_success(data=upload, result=result)
            except Exception as error:
                raise DependencyError(
                    "idempotency_record_failed", str(error)[:500], retryable=True
                ) from error

        try:
            call_with_retries(save, deadline=deadline, sleep=self.sleep)
        except DependencyError as error:
            logger.error(
                "described and stored, but the idempotency record could not be completed",
                key=upload["key"],
                version=upload["version"],
                reason=error.message,
            )
        else:
            logger.warning(
                "described and stored; the idempotency record was completed on a second try",
                key=upload["key"],
            )

    def _describe_upload(
        self,
        upload: dict[str, str],
        attempt: str,
        deadline: Deadline,
        stored: list[dict[str, Any]],
    ) -> dict[str, Any]:
        version = upload["version"] if upload["version"] != "null" else None
        uploaded = self.uploads.read(
            bucket=upload["bucket"],
            key=upload["key"],
            version_id=version,
            max_bytes=self.pipeline.settings.image.max_bytes,
        )
        category, languages = options_from_metadata(uploaded.metadata)
        job = DescriptionJob(
            product_id=product_id_for(upload["key"], uploaded.metadata),
            image=uploaded.data,
            image_key=upload["key"],
            category=category,
            languages=languages,
        )
        description = self.pipeline.describe(job, deadline=deadline)
        # Stored as the idempotency record's result, so keep it small.
        result = {
            "attempt": attempt,
            "productId": description.product_id,
            "resultKey": description.result_key,
            "timingsMs": description.timings_ms,
            "usage": description.usage,
        }
        # From here on the upload is described, whatever happens to the idempotency record.
        stored.append(result)
        return result

    def _park(self, message_id: str, body: str, error: AtelierError) -> Outcome:
        try:
            self.dead_letters.park(original_body=body, code=error.code, message=error.message)
        except DependencyError as park_error:
            logger.error("could not park the record; it will be retried", code=park_error.code)
            return Outcome(message_id, "retry", park_error.code)
        logger.warning(
            "parked in the dead-letter queue",
            message_id=message_id,
            code=error.code,
            reason=error.message,
        )
        return Outcome(message_id, "parked", error.code)

    def handle(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        self.idempotency.register_lambda_context(context)
        records = list(event.get("Records", []))
        deadline = Deadline.from_lambda_context(context, margin_seconds=RESPONSE_MARGIN_SECONDS)
        workers = max(1, min(len(records), self.environment.worker_concurrency))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            outcomes = list(pool.map(lambda record: self.process(record, deadline), records))
        # Metrics are emitted here, on one thread: Powertools' metric buffer is not thread-safe.
        for outcome in outcomes:
            if outcome.result is not None:
                record_described(
                    product_id=outcome.result["productId"],
                    result_key=outcome.result["resultKey"],
                    timings_ms=outcome.result["timingsMs"],
                    usage=outcome.result["usage"],
                    path=PATH,
                )
            metrics.add_metric(
                name=metric_names.upload_outcome(outcome.status), unit=MetricUnit.Count, value=1
            )
            if outcome.cause is not None:
                record_failure(outcome.cause, path=PATH)
        return {
            "batchItemFailures": [
                {"itemIdentifier": outcome.message_id}
                for outcome in outcomes
                if outcome.status == "retry"
            ]
        }


def build_worker(environment: Environment) -> Worker:
    if environment.dead_letter_queue_url is None:
        raise DeploymentError("environment variable DEAD_LETTER_QUEUE_URL is not set")
    persistence = DynamoDBPersistenceLayer(
        table_name=environment.table_name,
        key_attr="pk",
        sort_key_attr="sk",
        expiry_attr="expiresAt",
        static_pk_value="IDEMPOTENCY#descriptions-uploads",
        boto3_client=client("dynamodb"),
    )
    return Worker(
        environment=environment,
        pipeline=build_pipeline(environment),
        uploads=S3Uploads(),
        dead_letters=DeadLetters(environment.dead_letter_queue_url),
        idempotency=IdempotencyConfig(
            expires_after_seconds=environment.idempotency_ttl_seconds,
            raise_on_no_idempotency_key=True,
        ),
        persistence=persistence,
    )


@cache
def worker() -> Worker:
    """Built on first use, so importing this module stays cheap and tests can swap it."""
    return build_worker(Environment.load())


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return worker().handle(event, context)
