"""Step 6 of `describe-catalog`: the failures report, the run's summary, and clean-up.

Every step writes the products it lost under `failures/<step>/`; they are streamed into one
`failures.jsonl` whose lines start with product_id, image_key and category, so the report is
itself a JSONL manifest for a re-run. The summary counts what the run did. The transform input
parts, and with the vision source each group's attributes job input and output, hold copies of
the customers' images and are deleted once the run no longer needs them.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from catalog.handlers.environment import CatalogEnvironment
from catalog.logic import layout
from shared.adapters import run_files
from shared.adapters.aws import client
from shared.adapters.run_files import RunFiles
from shared.adapters.s3_lines import JsonLinesWriter
from shared.models.catalog import CatalogSettings, FailureRecord, Stage
from shared.telemetry import logger, step_handler

RESULT_NAME = "/result.json"


@dataclass
class FinalizeStep:
    settings: CatalogSettings
    files: RunFiles

    def run(self, event: dict[str, Any]) -> dict[str, Any]:
        run_id = str(event["runId"])
        route = str(event["route"])
        plan = event.get("plan") or {}
        by_stage = self._write_report(run_id)
        failed = sum(by_stage.values())
        summary = {
            "runId": run_id,
            "route": route,
            "records": int(plan.get("records", 0)),
            "skipped": int(plan.get("skipped", 0)),
            "described": self._described(run_id, route, plan, by_stage),
            "failed": failed,
            "failuresByStage": dict(sorted(by_stage.items())),
            "failuresReport": (
                layout.s3_uri(self.files.bucket, layout.report_key(run_id)) if failed else None
            ),
        }
        self.files.put_json(layout.summary_key(run_id), summary)
        deleted = self.files.delete_prefix(layout.transform_input_prefix(run_id))
        # The vision source's attributes jobs: their input, and Bedrock's output (which echoes
        # each record's input), hold the photos again.
        photos = [
            key
            for key in self.files.list_keys(layout.groups_prefix(run_id))
            if layout.holds_photos(key)
        ]
        deleted_attribute_files = sum(
            self.files.delete_keys(photos[start : start + run_files.MAX_KEYS_PER_DELETE])
            for start in range(0, len(photos), run_files.MAX_KEYS_PER_DELETE)
        )
        logger.info(
            "run finished",
            deleted_transform_parts=deleted,
            deleted_attribute_files=deleted_attribute_files,
            summary=summary,
        )
        return summary

    def _write_report(self, run_id: str) -> Counter[str]:
        by_stage: Counter[str] = Counter()
        keys = sorted(
            key
            for key in self.files.list_keys(layout.failures_prefix(run_id))
            if key.endswith(".jsonl")
        )
        report = JsonLinesWriter(self.files.bucket, layout.report_key(run_id), s3=self.files.s3)
        try:
            for key in keys:
                for line in self.files.lines(key):
                    failure = FailureRecord.model_validate_json(line)
                    by_stage[failure.stage.value] += 1
                    report.write_raw(failure.model_dump_json())
        except BaseException:
            report.discard()
            raise
        if report.lines:
            report.close()
        else:
            # No failures, no report; a stale one from an earlier attempt goes too.
            report.discard()
            self.files.delete_keys([layout.report_key(run_id)])
        return by_stage

    def _described(
        self, run_id: str, route: str, plan: dict[str, Any], by_stage: Counter[str]
    ) -> int:
        if route == "batch":
            prefix = f"{layout.run_prefix(run_id)}groups/"
            keys = [
                key
                for key in self.files.list_keys(prefix)
                if key.endswith(RESULT_NAME) and key[len(prefix) :].count("/") == 1
            ]
            workers = max(1, min(self.settings.io_concurrency, len(keys)))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                results = list(pool.map(self.files.get_json, keys))
            return sum(int((result or {}).get("described", 0)) for result in results)
        if route == "online":
            # Every online product is either described or written to failures/online/.
            return max(0, int(plan.get("records", 0)) - by_stage[Stage.ONLINE.value])
        return 0


@cache
def step() -> FinalizeStep:
    """Built on first use, so importing this module stays cheap and tests can swap it."""
    environment = CatalogEnvironment.load()
    return FinalizeStep(
        settings=environment.catalog,
        files=RunFiles(environment.catalog.results_bucket, s3=client("s3")),
    )


@step_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return step().run(event)
