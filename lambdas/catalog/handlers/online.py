"""Step 5 of `describe-catalog` (catalogs too small for a batch job): one product online.

The product goes through the upload worker's own pipeline (the configured attribute source,
Converse, grounding with regeneration, results JSON, PutItem), built by the same wiring. A product
the pipeline refuses or fails on is written to `failures/online/<productId>.jsonl` and answered
`{"described": false}`, so one bad product does not fail the run; anything unexpected raises, and
Step Functions retries.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from catalog.handlers.environment import CatalogEnvironment
from catalog.logic import layout
from descriptions.handlers.environment import Environment
from descriptions.handlers.wiring import build_pipeline
from descriptions.logic.pipeline import DescriptionJob, DescriptionPipeline
from shared.adapters.aws import client
from shared.adapters.run_files import RunFiles
from shared.adapters.s3_lines import JsonLinesWriter
from shared.adapters.uploads import S3Uploads
from shared.models.catalog import CatalogSettings, FailureRecord, ProductRef, Stage
from shared.models.errors import DependencyError, RequestError
from shared.retry import Deadline
from shared.telemetry import logger, step_handler

STEP = "online"
# Left after the model calls to write the failure line and answer.
RESPONSE_MARGIN_SECONDS = 5.0


@dataclass
class OnlineStep:
    settings: CatalogSettings
    pipeline: DescriptionPipeline
    images: S3Uploads
    files: RunFiles

    def run(self, event: dict[str, Any], deadline: Deadline) -> dict[str, Any]:
        run_id = str(event["runId"])
        product = ProductRef.model_validate(event["product"])
        languages = [str(code) for code in event.get("languages") or []] or None
        try:
            image = self._read_image(product)
            stored = self.pipeline.describe(
                DescriptionJob(
                    product_id=product.product_id,
                    image=image,
                    image_key=product.image_key,
                    category=product.category,
                    languages=languages,
                ),
                deadline=deadline,
            )
        except (RequestError, DependencyError) as error:
            self._fail(run_id, product, f"{error.code}: {error.message}")
            logger.warning("product not described", product_id=product.product_id, code=error.code)
            return {"described": False}
        logger.info(
            "description stored",
            product_id=stored.product_id,
            result_key=stored.result_key,
            timings_ms=stored.timings_ms,
        )
        return {"described": True}

    def _read_image(self, product: ProductRef) -> bytes:
        try:
            bucket, key = layout.parse_s3_uri(product.image_key)
        except ValueError as error:
            raise RequestError("image_key_invalid", str(error)) from None
        if bucket not in self.settings.source_buckets:
            raise RequestError(
                "image_bucket_not_allowed",
                f"bucket {bucket!r} is not in catalog.source_buckets "
                f"({', '.join(self.settings.source_buckets)})",
            )
        return self.images.read(
            bucket=bucket,
            key=key,
            version_id=None,
            max_bytes=self.pipeline.settings.image.max_bytes,
        ).data

    def _fail(self, run_id: str, product: ProductRef, reason: str) -> None:
        failure = FailureRecord(
            product_id=product.product_id,
            image_key=product.image_key,
            category=product.category,
            stage=Stage.ONLINE,
            reason=reason,
        )
        with JsonLinesWriter(
            self.files.bucket,
            layout.failures_key(run_id, STEP, product.product_id),
            s3=self.files.s3,
        ) as writer:
            writer.write_raw(failure.model_dump_json())


def build_step(environment: CatalogEnvironment) -> OnlineStep:
    """The upload worker's pipeline wiring, pointed at the catalog's bucket and table."""
    settings = environment.catalog
    pipeline = build_pipeline(
        Environment(
            settings=environment.descriptions,
            table_name=settings.table_name,
            results_bucket=settings.results_bucket,
            uploads_bucket=None,
            dead_letter_queue_url=None,
            idempotency_ttl_seconds=0,
            worker_concurrency=1,
            attributes=environment.attributes,
        )
    )
    return OnlineStep(
        settings=settings,
        pipeline=pipeline,
        images=S3Uploads(s3=client("s3")),
        files=RunFiles(settings.results_bucket, s3=client("s3")),
    )


@cache
def step() -> OnlineStep:
    """Built on first use, so importing this module stays cheap and tests can swap it."""
    return build_step(CatalogEnvironment.load())


@step_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deadline = Deadline.from_lambda_context(context, margin_seconds=RESPONSE_MARGIN_SECONDS)
    return step().run(event, deadline)
