"""Step 1 of `describe-catalog`: check the execution input and open the run.

Everything a user can get wrong is caught here, before any Distributed Map child starts:
unknown fields, languages, the attribute set, a source outside the allowed buckets, an empty
prefix, a missing manifest. Each raises `CatalogInputError` (the error name the state machine
catches) with a message naming the field and the fix. The normalized request is kept as
`request.json` beside the run's other files.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from catalog.handlers.environment import CatalogEnvironment
from catalog.logic.layout import request_key
from catalog.logic.sources import (
    SourceKind,
    StartRequest,
    empty_manifest_error,
    empty_source_error,
    parse_start_request,
    run_id_for,
    start_result,
)
from shared.adapters.catalog_sources import S3CatalogSource
from shared.adapters.run_files import RunFiles
from shared.telemetry import logger, step_handler


@dataclass
class Starter:
    environment: CatalogEnvironment
    sources: S3CatalogSource
    files: RunFiles

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        execution_name = _required_text(event, "executionName", "$states.context.Execution.Name")
        start_time = _required_text(event, "startTime", "$states.context.Execution.StartTime")
        request = parse_start_request(
            event.get("input"),
            source_buckets=self.environment.catalog.source_buckets,
            descriptions=self.environment.descriptions,
        )
        self._check_source(request)
        run_id = run_id_for(execution_name, start_time)
        result = start_result(run_id, request)
        self.files.put_json(
            request_key(run_id),
            {
                **result,
                "source": request.source.uri,
                "executionName": execution_name,
                "startTime": start_time,
            },
        )
        logger.info(
            "catalog run started",
            run_id=run_id,
            source=request.source.uri,
            kind=request.source.kind.value,
            languages=list(request.languages),
            attribute_set=request.attribute_set,
            force=request.force,
        )
        return result

    def _check_source(self, request: StartRequest) -> None:
        source = request.source
        if source.kind is SourceKind.PREFIX:
            if not self.sources.has_objects(source.bucket, source.path):
                raise empty_source_error(source)
            return
        head = self.sources.head(source.bucket, source.path)
        if head is None:
            raise empty_source_error(source)
        if head.size == 0:
            raise empty_manifest_error(source)


def _required_text(event: dict[str, Any], name: str, expression: str) -> str:
    value = event.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"the event has no {name}; the state machine must pass {expression}")
    return value


def build_starter(environment: CatalogEnvironment) -> Starter:
    return Starter(
        environment=environment,
        sources=S3CatalogSource(),
        files=RunFiles(environment.catalog.results_bucket),
    )


@cache
def starter() -> Starter:
    """Built on first use, so importing this module stays cheap and tests can swap it."""
    return build_starter(CatalogEnvironment.load())


@step_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return starter().handle(event)
