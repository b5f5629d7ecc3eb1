"""Step 3 of `describe-catalog`: count what the map built and decide the path.

Reads every batch summary (`batches/*.json`, written last by each child, so a summary means its
parts are complete) and routes the run:
- `none`: nothing to describe (all skipped or failed);
- `online`: too few products for a batch job; the products themselves go back to the state
  machine (few enough to fit in its payload) for the online path;
- `batch`: the parts are packed into balanced groups, each with a SageMaker manifest listing its
  part files; the state machine runs one Batch Transform (or, with the vision attribute source,
  one Bedrock job for the attributes) and one Bedrock job per group.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from catalog.handlers.environment import CatalogEnvironment
from catalog.logic.groups import (
    BatchPart,
    Route,
    choose_route,
    group_state,
    pack_groups,
    transform_manifest,
)
from catalog.logic.layout import (
    batch_summary_key,
    transform_index_key,
    transform_manifest_key,
)
from shared.adapters.catalog_runs import RunReader
from shared.adapters.run_files import RunFiles
from shared.models.catalog import IndexRecord, ProductRef
from shared.telemetry import logger, step_handler

# A vision record is its image's base64 (what a transform line mostly is) plus the request
# around it: the category's questions twice (text and schema), the prompt and the wrapper.
# Generous, so a group planned within the job's bytes stays within them once rewritten.
VISION_RECORD_OVERHEAD_BYTES = 8 * 1024


@dataclass(frozen=True)
class BatchSummary:
    batch_id: str
    records: int
    skipped: int
    failed: int
    bytes: int = 0


@dataclass
class Planner:
    environment: CatalogEnvironment
    files: RunReader

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        run_id = event.get("runId")
        if not isinstance(run_id, str) or not run_id:
            raise ValueError("the event has no runId; the state machine must pass start's result")
        summaries = self._summaries(run_id)
        records = sum(summary.records for summary in summaries)
        catalog = self.environment.catalog
        route = choose_route(
            records,
            online_threshold=catalog.online_threshold,
            min_records_per_job=catalog.bedrock.min_records_per_job,
        )
        result: dict[str, Any] = {
            "route": route.value,
            "records": records,
            "skipped": sum(summary.skipped for summary in summaries),
            "failed": sum(summary.failed for summary in summaries),
        }
        parts = [BatchPart(s.batch_id, s.records, s.bytes) for s in summaries if s.records > 0]
        if route is Route.ONLINE:
            result["products"] = self._products(run_id, parts)
        elif route is Route.BATCH:
            result["groups"] = self._groups(run_id, parts)
        logger.info(
            "catalog run planned",
            run_id=run_id,
            batches=len(summaries),
            groups=len(result.get("groups", [])),
            **{name: result[name] for name in ("route", "records", "skipped", "failed")},
        )
        return result

    def _summaries(self, run_id: str) -> list[BatchSummary]:
        prefix = batch_summary_key(run_id, "").removesuffix(".json")
        keys = [key for key in self.files.list_keys(prefix) if key.endswith(".json")]
        summaries = []
        for key, document in zip(keys, self.files.read_json_many(keys), strict=True):
            batch_id = key[len(prefix) : -len(".json")]
            if document.get("batchId") != batch_id:
                raise ValueError(f"{key} names batch {document.get('batchId')!r}, not {batch_id}")
            summaries.append(
                BatchSummary(
                    batch_id=batch_id,
                    records=int(document["records"]),
                    skipped=int(document["skipped"]),
                    failed=int(document["failed"]),
                    bytes=int(document.get("bytes", 0)),
                )
            )
        return summaries

    def _products(self, run_id: str, parts: list[BatchPart]) -> list[dict[str, Any]]:
        ordered = sorted(parts, key=lambda part: part.batch_id)
        keys = [transform_index_key(run_id, part.batch_id) for part in ordered]
        products: list[dict[str, Any]] = []
        for part, lines in zip(ordered, self.files.read_lines_many(keys), strict=True):
            if len(lines) != part.records:
                raise ValueError(
                    f"transform-index of batch {part.batch_id} holds {len(lines)} lines; its "
                    f"summary says {part.records}"
                )
            for line in lines:
                record = IndexRecord.model_validate(line)
                ref = ProductRef(
                    product_id=record.product_id,
                    image_key=record.image_key,
                    category=record.category,
                )
                products.append(ref.model_dump(mode="json"))
        return products

    def _groups(self, run_id: str, parts: list[BatchPart]) -> list[dict[str, Any]]:
        catalog = self.environment.catalog
        vision = self.environment.attributes.kind == "vision-llm"
        groups = pack_groups(
            parts,
            max_records_per_group=catalog.max_records_per_group,
            # With the vision source a group's images are one Bedrock job's input.
            max_bytes_per_group=catalog.bedrock.max_job_bytes if vision else None,
            record_overhead_bytes=VISION_RECORD_OVERHEAD_BYTES if vision else 0,
        )
        bucket = self.files.bucket
        self.files.put_json_many(
            {
                transform_manifest_key(run_id, group.name): transform_manifest(
                    bucket, run_id, group
                )
                for group in groups
            }
        )
        return [group_state(bucket, run_id, group) for group in groups]


def build_planner(environment: CatalogEnvironment) -> Planner:
    return Planner(
        environment=environment,
        files=RunReader(
            RunFiles(environment.catalog.results_bucket),
            io_concurrency=environment.catalog.io_concurrency,
        ),
    )


@cache
def planner() -> Planner:
    """Built on first use, so importing this module stays cheap and tests can swap it."""
    return build_planner(CatalogEnvironment.load())


@step_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return planner().handle(event)
