"""Step 4b of `describe-catalog`: one group's Batch Transform output → Bedrock batch input.

For every part of the group (in manifest order) the transform index and output are zipped; each
product with attributes becomes a Bedrock input record (rotated into files by the per-file record
and byte quotas) plus a ledger line, every other product a failure at stage `attributes`. A group
left with fewer records than a Bedrock job accepts is not sent: its products are written as
failures at stage `description`, and a re-run with the failures report takes the online path.

Everything streams: input lines go to spool files on local disk, uploaded when complete.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from itertools import chain
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from catalog.handlers.environment import CatalogEnvironment
from catalog.handlers.job_input import GroupInput, JobRecord, transform_batch_ids
from catalog.logic import layout
from catalog.logic.attribute_batch import attributes_from_outputs
from catalog.logic.bedrock_records import (
    BedrockRecord,
    FileRotation,
    bedrock_record,
    build_bedrock_lines,
    parse_output_lines,
)
from catalog.logic.ledger import Ledger
from catalog.logic.results import BedrockJob, ResultCounts
from catalog.logic.transform_output import TransformJob, TransformStats
from shared.adapters.aws import client
from shared.adapters.run_files import RunFiles
from shared.adapters.s3_lines import JsonLinesWriter
from shared.models.attributes import AttributeSourceSettings
from shared.models.catalog import CatalogSettings, FailureRecord, LedgerRecord, Stage
from shared.models.descriptions import PipelineSettings
from shared.telemetry import logger, step_handler

STEP = "bedrock-input"
# S3 user metadata on ledger.jsonl: the results step names the attribute model after it (the
# Batch Transform job, or the vision source and its model).
TRANSFORM_JOB_METADATA = "transform-job"
ATTRIBUTE_SOURCE_METADATA = "attribute-source"
ATTRIBUTE_MODEL_METADATA = "attribute-model"
# Bedrock names each output file after its input file, plus `.out`.
OUTPUT_SUFFIX = ".jsonl.out"


@dataclass
class BedrockInputStep:
    settings: CatalogSettings
    descriptions: PipelineSettings
    files: RunFiles
    # Where the attributes come from: Batch Transform's output (endpoint) or the attributes
    # job's (vision-llm).
    attributes: AttributeSourceSettings = field(default_factory=AttributeSourceSettings)

    def run(self, event: dict[str, Any]) -> dict[str, Any]:
        run_id = str(event["runId"])
        group = str(event["group"]["group"])
        languages = [str(code) for code in event["languages"]]
        vision = self._vision_model()
        job = TransformJob(
            name=str(event.get("transformJob") or "unknown"), error=event.get("transformError")
        )
        # The results step records which source and model read the attributes.
        metadata = (
            {ATTRIBUTE_SOURCE_METADATA: "vision-llm", ATTRIBUTE_MODEL_METADATA: vision}
            if vision
            else {TRANSFORM_JOB_METADATA: job.name}
        )
        counts = ResultCounts()
        limits = self.settings.bedrock
        job_input = GroupInput(
            self.files,
            limits=limits,
            input_key=functools.partial(layout.bedrock_input_key, run_id, group),
            input_prefix=layout.bedrock_input_prefix(run_id, group),
            failures_key=layout.failures_key(run_id, STEP, group),
            ledger=lambda: JsonLinesWriter(
                self.files.bucket,
                layout.ledger_key(run_id, group),
                s3=self.files.s3,
                metadata=metadata,
            ),
        )
        rotation = job_input.rotation
        stats = TransformStats()
        items = (
            self._from_attributes_job(run_id, group, languages, rotation, event, vision, counts)
            if vision
            else self._from_transform(run_id, group, languages, rotation, job, stats)
        )
        written = job_input.write(
            (item if isinstance(item, FailureRecord) else _job_record(item) for item in items),
            below_minimum=functools.partial(_below_minimum, minimum=limits.min_records_per_job),
            # The results step reads the group's ledger: an empty one, nothing to describe.
            ledger_below_minimum="empty",
        )
        logger.info(
            "bedrock input written",
            run_id=run_id,
            group=group,
            records=written.records,
            files=written.files,
            bytes=written.bytes,
            failed=written.failed,
            extra_output_lines=stats.extra_output_lines,
            transform_job=None if vision else job.name,
            transform_failed=None if vision else job.error is not None,
            attribute_model=vision,
            attribute_answers=counts.answers if vision else None,
            attribute_unanswered=counts.unanswered if vision else None,
        )
        if stats.extra_output_lines:
            logger.warning(
                "Batch Transform output has more lines than the transform index",
                extra_output_lines=stats.extra_output_lines,
            )
        return {"group": group, "records": written.records, "failed": written.failed}

    def _vision_model(self) -> str | None:
        """The vision model's id when the stage reads attributes with it, else None."""
        source = self.attributes
        if source.kind != "vision-llm":
            return None
        if source.model_id is None:
            raise ValueError("ATTRIBUTE_SOURCE is vision-llm but ATTRIBUTE_MODEL_ID is not set")
        return source.model_id

    def _from_transform(
        self,
        run_id: str,
        group: str,
        languages: list[str],
        rotation: FileRotation,
        job: TransformJob,
        stats: TransformStats,
    ) -> Iterator[BedrockRecord | FailureRecord]:
        """Each part's transform index zipped with Batch Transform's output (endpoint source)."""
        for batch_id in transform_batch_ids(self.files, run_id, group):
            index_lines = self.files.lines(layout.transform_index_key(run_id, batch_id))
            output_lines = self.files.lines_if_exists(
                layout.transform_output_key(run_id, group, batch_id)
            )
            yield from build_bedrock_lines(
                index_lines,
                output_lines,
                settings=self.descriptions,
                languages=languages,
                job=job,
                part=f"{batch_id}.jsonl",
                first_sequence=rotation.records,
                stats=stats,
            )

    def _from_attributes_job(
        self,
        run_id: str,
        group: str,
        languages: list[str],
        rotation: FileRotation,
        event: Mapping[str, Any],
        model_id: str,
        counts: ResultCounts,
    ) -> Iterator[BedrockRecord | FailureRecord]:
        """The attributes job's answers matched to the attribute ledger (vision source). The
        record id of each description record is taken when it is placed, so ids count up."""
        # Read as the records are written: a malformed event fails inside the writing, which
        # then removes whatever an earlier attempt left.
        job = _job(event)
        lines = self.files.lines_if_exists(layout.attribute_ledger_key(run_id, group))
        if lines is None:
            # The attribute step sent no job (too few products) and reported every product.
            return
        mode = self.attributes.structured_output or self.descriptions.structured_output
        with Ledger() as ledger:
            ledger.load(lines)
            keys = sorted(
                key
                for key in self.files.list_keys(layout.attribute_output_prefix(run_id, group))
                if key.endswith(OUTPUT_SUFFIX)
            )
            outcomes = chain.from_iterable(parse_output_lines(self.files.lines(k)) for k in keys)
            for item in attributes_from_outputs(
                outcomes,
                ledger,
                settings=self.descriptions,
                model_id=model_id,
                structured_output=mode,
                job=job,
                counts=counts,
            ):
                if isinstance(item, FailureRecord):
                    yield item
                    continue
                yield bedrock_record(
                    rotation.records, item, settings=self.descriptions, languages=languages
                )
        if counts.malformed_lines or counts.unknown_records or counts.repeated_records:
            logger.warning(
                "attributes job output lines that answer no attribute ledger record",
                malformed_lines=counts.malformed_lines,
                unknown_records=counts.unknown_records,
                repeated_records=counts.repeated_records,
                examples=counts.samples,
            )


def _job_record(item: BedrockRecord) -> JobRecord:
    return JobRecord(
        line=item.input_line, size=len(item.input_line) + 1, ledger_line=item.ledger_line
    )


def _job(event: Mapping[str, Any]) -> BedrockJob:
    """The attributes job as the state machine saw it end (all None: no job ran)."""
    raw = event.get("attributesJob") or {}
    return BedrockJob(arn=raw.get("arn"), status=raw.get("status"), message=raw.get("message"))


def _below_minimum(record: LedgerRecord, records: int, *, minimum: int) -> str:
    return FailureRecord(
        product_id=record.product_id,
        image_key=record.image_key,
        category=record.category,
        stage=Stage.DESCRIPTION,
        reason=f"the group had {records} products for Bedrock, fewer than a batch inference "
        f"job accepts ({minimum}); re-run with the failures report as manifest: a catalog that "
        "small takes the online path",
    ).model_dump_json()


@cache
def step() -> BedrockInputStep:
    """Built on first use, so importing this module stays cheap and tests can swap it."""
    environment = CatalogEnvironment.load()
    return BedrockInputStep(
        settings=environment.catalog,
        descriptions=environment.descriptions,
        attributes=environment.attributes,
        files=RunFiles(environment.catalog.results_bucket, s3=client("s3")),
    )


@step_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return step().run(event)
