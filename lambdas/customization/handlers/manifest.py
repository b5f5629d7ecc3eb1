"""Step Functions task: check a Titan training manifest before the customization job starts.

Event `{"manifest": "titan/<name>/manifest.jsonl"}` (a key of the datasets bucket); answer the
report of `customization.logic.manifest` (`valid`, `problems`, counts, `recommendedStepCount`).
A manifest with problems is an answer, not an error: the workflow fails with the problems listed.
Only a dependency failure (S3 throttling, a missing permission) raises, and the workflow retries.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from customization.logic.manifest import ManifestChecker, ManifestReport
from shared.adapters.datasets import S3Datasets
from shared.environment import required
from shared.telemetry import get_tracer, logger

tracer = get_tracer()


@cache
def checker() -> ManifestChecker:
    """Built on first use, so importing this module stays cheap and tests can swap it."""
    bucket = required("DATASETS_BUCKET")
    return ManifestChecker(store=S3Datasets(bucket), bucket=bucket)


def check(event: Any, manifest_checker: ManifestChecker) -> dict[str, Any]:
    key = event.get("manifest") if isinstance(event, dict) else None
    if not isinstance(key, str) or not key:
        report = ManifestReport(manifest_uri="")
        report.problems.append('the event must be {"manifest": "titan/<name>/<file>.jsonl"}')
        return report.as_dict()
    report = manifest_checker.check(key)
    logger.info(
        "manifest checked",
        manifest=report.manifest_uri,
        records=report.records,
        images=report.images,
        problems=len(report.problems),
    )
    return report.as_dict()


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return check(event, checker())
