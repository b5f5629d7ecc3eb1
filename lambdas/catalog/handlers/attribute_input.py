"""Step 4a of `describe-catalog` with the vision attribute source: one group's transform input
parts → the input of a Bedrock batch job that reads the attributes from the photos.

For every part of the group (in manifest order) each line becomes a vision record (rotated into
files by the per-file record and byte quotas, as the description records are) plus an attribute
ledger line; a product the vision model cannot take (Bedrock's image limits, a record larger than
an input file) becomes a failure at stage `attributes`. A group left with fewer records than a
Bedrock job accepts is not sent: its products are failures, and a re-run with the failures
report takes the online path. Returns the job's input and output URIs for the workflow.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from catalog.handlers.environment import CatalogEnvironment
from catalog.handlers.job_input import GroupInput, JobRecord, transform_batch_ids
from catalog.logic import layout
from catalog.logic.attribute_batch import AttributeInput, attribute_inputs
from shared.adapters.aws import client
from shared.adapters.run_files import RunFiles
from shared.adapters.s3_lines import JsonLinesWriter
from shared.models.attributes import AttributeSourceSettings
from shared.models.catalog import CatalogSettings, FailureRecord, LedgerRecord, Stage
from shared.models.descriptions import PipelineSettings
from shared.telemetry import logger, step_handler

STEP = "attribute-input"


class NotVisionSourceError(ValueError):
    """The function runs only where the stage reads attributes with the vision model."""


@dataclass
class AttributeInputStep:
    settings: CatalogSettings
    descriptions: PipelineSettings
    attributes: AttributeSourceSettings
    files: RunFiles

    def run(self, event: dict[str, Any]) -> dict[str, Any]:
        source = self.attributes
        if source.kind != "vision-llm" or source.model_id is None:
            raise NotVisionSourceError(
                f"ATTRIBUTE_SOURCE is {source.kind!r}: the attributes batch job is for the "
                "vision-llm source (with ATTRIBUTE_MODEL_ID)"
            )
        mode = source.structured_output or self.descriptions.structured_output
        run_id = str(event["runId"])
        group = str(event["group"]["group"])
        languages = [str(code) for code in event["languages"]]
        limits = self.settings.bedrock
        job_input = GroupInput(
            self.files,
            limits=limits,
            input_key=functools.partial(layout.attribute_input_key, run_id, group),
            input_prefix=layout.attribute_input_prefix(run_id, group),
            failures_key=layout.failures_key(run_id, STEP, group),
            ledger=lambda: JsonLinesWriter(
                self.files.bucket, layout.attribute_ledger_key(run_id, group), s3=self.files.s3
            ),
        )
        rotation = job_input.rotation

        def items() -> Iterator[JobRecord | FailureRecord]:
            for batch_id in transform_batch_ids(self.files, run_id, group):
                for item in attribute_inputs(
                    self.files.lines(layout.transform_input_key(run_id, batch_id)),
                    settings=self.descriptions,
                    languages=languages,
                    structured_output=mode,
                    limits=limits,
                    part=f"{batch_id}.jsonl",
                    first_sequence=rotation.records,
                ):
                    yield item if isinstance(item, FailureRecord) else _job_record(item)

        written = job_input.write(
            items(),
            below_minimum=functools.partial(_below_minimum, minimum=limits.min_records_per_job),
            # The next step must find no products to read.
            ledger_below_minimum="deleted",
        )
        logger.info(
            "attribute input written",
            run_id=run_id,
            group=group,
            records=written.records,
            files=written.files,
            bytes=written.bytes,
            failed=written.failed,
            model=source.model_id,
            structured_output=mode,
        )
        bucket = self.files.bucket
        return {
            "group": group,
            "records": written.records,
            "failed": written.failed,
            "inputUri": layout.s3_uri(bucket, layout.attribute_input_prefix(run_id, group)),
            "outputUri": layout.s3_uri(bucket, layout.attribute_output_prefix(run_id, group)),
        }


def _job_record(item: AttributeInput) -> JobRecord:
    return JobRecord(line=item.record.line, size=item.record.size, ledger_line=item.ledger_line)


def _below_minimum(record: LedgerRecord, records: int, *, minimum: int) -> str:
    return FailureRecord(
        product_id=record.product_id,
        image_key=record.image_key,
        category=record.category,
        stage=Stage.ATTRIBUTES,
        reason=f"the group had {records} products for the vision attribute model, fewer than "
        f"a Bedrock batch inference job accepts ({minimum}); re-run with the failures report "
        "as manifest: a catalog that small takes the online path",
    ).model_dump_json()


@cache
def step() -> AttributeInputStep:
    """Built on first use, so importing this module stays cheap and tests can swap it."""
    environment = CatalogEnvironment.load()
    return AttributeInputStep(
        settings=environment.catalog,
        descriptions=environment.descriptions,
        attributes=environment.attributes,
        files=RunFiles(environment.catalog.results_bucket, s3=client("s3")),
    )


@step_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return step().run(event)
