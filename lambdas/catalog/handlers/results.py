"""Step 4d of `describe-catalog`: one group's Bedrock batch output → descriptions and failures.

The group's ledger goes into an SQLite file in /tmp; every `*.jsonl.out` file of the job is then
streamed line by line, each answer validated and grounding-checked like the online path's, and
the descriptions stored in chunks: results JSON through a thread pool, then DynamoDB
BatchWriteItem with retries of unprocessed items. Writes `groups/<g>/result.json`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from itertools import chain
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from catalog.handlers.bedrock_input import (
    ATTRIBUTE_MODEL_METADATA,
    ATTRIBUTE_SOURCE_METADATA,
    TRANSFORM_JOB_METADATA,
)
from catalog.handlers.environment import CatalogEnvironment
from catalog.logic import layout
from catalog.logic.bedrock_records import OutputOutcome, parse_output_lines
from catalog.logic.ledger import Ledger
from catalog.logic.results import (
    BatchTable,
    BedrockJob,
    ResultCounts,
    ResultsArchive,
    describe_outputs,
    store_descriptions,
)
from shared.adapters.aws import client
from shared.adapters.dynamo_batch import DynamoBatchWriter
from shared.adapters.run_files import RunFiles
from shared.adapters.s3_lines import JsonLinesWriter
from shared.adapters.storage import S3ResultsArchive
from shared.models.attributes import AttributesSource
from shared.models.catalog import CatalogSettings, FailureRecord
from shared.models.descriptions import PipelineSettings, StoredDescription
from shared.telemetry import logger, step_handler

STEP = "results"
OUTPUT_SUFFIX = ".jsonl.out"
# Descriptions stored per round (S3 in parallel, then DynamoDB): bounds memory, keeps calls busy.
STORE_CHUNK = 500


@dataclass
class ResultsStep:
    settings: CatalogSettings
    descriptions: PipelineSettings
    files: RunFiles
    archive: ResultsArchive
    table: BatchTable
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    ledger_directory: str | None = None

    def run(self, event: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        run_id = str(event["runId"])
        group = str(event["group"]["group"])
        raw_job = event.get("job") or {}
        job = BedrockJob(
            arn=raw_job.get("arn"), status=raw_job.get("status"), message=raw_job.get("message")
        )
        ledger_key = layout.ledger_key(run_id, group)
        metadata = self.files.metadata(ledger_key)
        if metadata is None:
            raise ValueError(f"group {group} of run {run_id} has no ledger at {ledger_key}")
        source = attributes_source(metadata, endpoint_name=self.descriptions.endpoint_name)
        counts = ResultCounts()
        described = 0
        failures = JsonLinesWriter(
            self.files.bucket, layout.failures_key(run_id, STEP, group), s3=self.files.s3
        )
        with Ledger(self.ledger_directory) as ledger:
            ledger.load(self.files.lines(ledger_key))
            output_files = self._output_keys(run_id, group)
            try:
                pending: list[StoredDescription] = []
                for item in describe_outputs(
                    self._outcomes(output_files),
                    ledger,
                    settings=self.descriptions,
                    attributes_source=source,
                    job=job,
                    now=self.now,
                    counts=counts,
                ):
                    if isinstance(item, FailureRecord):
                        failures.write_raw(item.model_dump_json())
                        continue
                    pending.append(item)
                    if len(pending) >= STORE_CHUNK:
                        described += self._store(pending, failures)
                        pending = []
                described += self._store(pending, failures)
            except BaseException:
                failures.discard()
                raise
            records = ledger.size
        failed = failures.lines
        if failed:
            failures.close()
        else:
            failures.discard()
        result = {"described": described, "failed": failed}
        self.files.put_json(layout.group_result_key(run_id, group), result)
        logger.info(
            "group results stored",
            run_id=run_id,
            group=group,
            records=records,
            output_files=len(output_files),
            job_status=job.status,
            answers=counts.answers,
            error_records=counts.error_records,
            unanswered=counts.unanswered,
            seconds=round(time.perf_counter() - started, 3),
            described=described,
            failed=failed,
        )
        if counts.malformed_lines or counts.unknown_records or counts.repeated_records:
            logger.warning(
                "Bedrock output lines that answer no ledger record",
                malformed_lines=counts.malformed_lines,
                unknown_records=counts.unknown_records,
                repeated_records=counts.repeated_records,
                examples=counts.samples,
            )
        return result

    def _output_keys(self, run_id: str, group: str) -> list[str]:
        prefix = layout.bedrock_output_prefix(run_id, group)
        return sorted(key for key in self.files.list_keys(prefix) if key.endswith(OUTPUT_SUFFIX))

    def _outcomes(self, keys: list[str]) -> Iterator[OutputOutcome]:
        return chain.from_iterable(parse_output_lines(self.files.lines(key)) for key in keys)

    def _store(self, pending: list[StoredDescription], failures: JsonLinesWriter) -> int:
        if not pending:
            return 0
        lost = store_descriptions(
            pending,
            archive=self.archive,
            table=self.table,
            concurrency=self.settings.io_concurrency,
        )
        for failure in lost:
            failures.write_raw(failure.model_dump_json())
        return len(pending) - len(lost)


def attributes_source(metadata: dict[str, str], *, endpoint_name: str) -> AttributesSource:
    """Which source read the group's attributes, from its ledger's metadata: the vision model,
    or the Batch Transform job (ledgers written before the vision source name only that)."""
    if metadata.get(ATTRIBUTE_SOURCE_METADATA) == "vision-llm":
        model = metadata.get(ATTRIBUTE_MODEL_METADATA)
        if not model:
            raise ValueError("the ledger says vision-llm but names no attribute model")
        return AttributesSource(kind="vision-llm", model=model)
    return AttributesSource(
        kind="endpoint", model=metadata.get(TRANSFORM_JOB_METADATA) or endpoint_name
    )


@cache
def step() -> ResultsStep:
    """Built on first use, so importing this module stays cheap and tests can swap it."""
    environment = CatalogEnvironment.load()
    settings = environment.catalog
    return ResultsStep(
        settings=settings,
        descriptions=environment.descriptions,
        files=RunFiles(settings.results_bucket, s3=client("s3")),
        archive=S3ResultsArchive(settings.results_bucket, s3=client("s3")),
        table=DynamoBatchWriter(
            settings.table_name, dynamodb=client("dynamodb"), concurrency=settings.io_concurrency
        ),
    )


@step_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return step().run(event)
