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
from dataclasses import dataclass
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from catalog.handlers.bedrock_input import RotatedFiles
from catalog.handlers.environment import CatalogEnvironment
from catalog.logic import layout
from catalog.logic.attribute_batch import AttributeInput, attribute_inputs
from catalog.logic.bedrock_records import FileRotation
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
        rotation = FileRotation(limits)
        output = RotatedFiles(
            self.files, functools.partial(layout.attribute_input_key, run_id, group)
        )
        held: list[LedgerRecord] = []
        failures = JsonLinesWriter(
            self.files.bucket, layout.failures_key(run_id, STEP, group), s3=self.files.s3
        )
        ledger = JsonLinesWriter(
            self.files.bucket, layout.attribute_ledger_key(run_id, group), s3=self.files.s3
        )
        # A retried invocation must not leave an earlier attempt's extra files for the job.
        self.files.delete_prefix(layout.attribute_input_prefix(run_id, group))
        try:
            for batch_id in self._batch_ids(run_id, group):
                for item in attribute_inputs(
                    self.files.lines(layout.transform_input_key(run_id, batch_id)),
                    settings=self.descriptions,
                    languages=languages,
                    structured_output=mode,
                    limits=limits,
                    part=f"{batch_id}.jsonl",
                    first_sequence=rotation.records,
                ):
                    if isinstance(item, FailureRecord):
                        failures.write_raw(item.model_dump_json())
                        continue
                    self._add(item, rotation, output, ledger, held)
            records = rotation.records
            if records < limits.min_records_per_job:
                output.discard()
                ledger.discard()
                # Nor an earlier attempt's ledger: the next step must find no products to read.
                self.files.delete_keys([layout.attribute_ledger_key(run_id, group)])
                for record in held:
                    failures.write_raw(_below_minimum(record, records, limits.min_records_per_job))
                records = 0
            else:
                output.upload_all()
                ledger.close()
        except BaseException:
            output.discard()
            ledger.discard()
            failures.discard()
            # Files already uploaded (rotated out) must not be mistaken for a complete input.
            self.files.delete_prefix(layout.attribute_input_prefix(run_id, group))
            raise
        failed = failures.lines
        if failed:
            failures.close()
        else:
            failures.discard()
        logger.info(
            "attribute input written",
            run_id=run_id,
            group=group,
            records=records,
            files=rotation.files if records else 0,
            bytes=rotation.bytes if records else 0,
            failed=failed,
            model=source.model_id,
            structured_output=mode,
        )
        bucket = self.files.bucket
        return {
            "group": group,
            "records": records,
            "failed": failed,
            "inputUri": layout.s3_uri(bucket, layout.attribute_input_prefix(run_id, group)),
            "outputUri": layout.s3_uri(bucket, layout.attribute_output_prefix(run_id, group)),
        }

    def _add(
        self,
        item: AttributeInput,
        rotation: FileRotation,
        output: RotatedFiles,
        ledger: JsonLinesWriter,
        held: list[LedgerRecord],
    ) -> None:
        index = rotation.place(item.record.size)
        output.writer(index).write_raw(item.record.line)
        ledger.write_raw(item.ledger_line)
        # Kept only until the job minimum is reached: these become failures if it never is.
        if rotation.records < self.settings.bedrock.min_records_per_job:
            held.append(LedgerRecord.model_validate_json(item.ledger_line))
        else:
            held.clear()
            # The job will run: each completed file (up to 1 GB of images) is uploaded now,
            # so local disk holds one file at a time.
            output.upload_finished()

    def _batch_ids(self, run_id: str, group: str) -> list[str]:
        """The group's parts from its manifest: `[{"prefix": ...}, "<id>.jsonl", ...]`."""
        manifest = self.files.get_json(layout.transform_manifest_key(run_id, group))
        if not isinstance(manifest, list) or not manifest:
            raise ValueError(f"group {group} of run {run_id} has no transform manifest")
        return [str(name).removesuffix(".jsonl") for name in manifest[1:]]


def _below_minimum(record: LedgerRecord, records: int, minimum: int) -> str:
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
