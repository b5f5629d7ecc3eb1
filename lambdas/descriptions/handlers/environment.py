"""The functions' configuration, read once per cold start from environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import ValidationError

from shared.environment import DeploymentError, json_settings, required
from shared.models.attributes import ATTRIBUTE_SOURCE_KINDS, AttributeSourceSettings
from shared.models.descriptions import PipelineSettings

# The attribute source's variables (see AttributeSourceSettings).
ATTRIBUTE_SOURCE = "ATTRIBUTE_SOURCE"
ATTRIBUTE_MODEL_ID = "ATTRIBUTE_MODEL_ID"
ATTRIBUTE_STRUCTURED_OUTPUT = "ATTRIBUTE_STRUCTURED_OUTPUT"


def attribute_source_settings(environ: Mapping[str, str]) -> AttributeSourceSettings:
    """The attribute source from `ATTRIBUTE_SOURCE`, `ATTRIBUTE_MODEL_ID` and
    `ATTRIBUTE_STRUCTURED_OUTPUT`; a bad combination is a DeploymentError naming the variable."""
    kind = environ.get(ATTRIBUTE_SOURCE, "").strip() or "endpoint"
    if kind not in ATTRIBUTE_SOURCE_KINDS:
        raise DeploymentError(
            f"{ATTRIBUTE_SOURCE} is {kind!r}; it must be one of {', '.join(ATTRIBUTE_SOURCE_KINDS)}"
        )
    model_id = environ.get(ATTRIBUTE_MODEL_ID, "").strip() or None
    if kind == "vision-llm":
        model_id = required(ATTRIBUTE_MODEL_ID, environ)
    try:
        return AttributeSourceSettings.model_validate(
            {
                "kind": kind,
                "model_id": model_id,
                "structured_output": environ.get(ATTRIBUTE_STRUCTURED_OUTPUT, "").strip() or None,
            }
        )
    except ValidationError as error:
        raise DeploymentError(f"{ATTRIBUTE_STRUCTURED_OUTPUT} is not valid: {error}") from None


@dataclass(frozen=True)
class Environment:
    settings: PipelineSettings
    table_name: str
    results_bucket: str
    # Upload worker only
    uploads_bucket: str | None
    dead_letter_queue_url: str | None
    idempotency_ttl_seconds: int
    worker_concurrency: int
    # Which attribute source the pipeline asks (the endpoint unless the variables say otherwise).
    attributes: AttributeSourceSettings = field(default_factory=AttributeSourceSettings)

    @classmethod
    def load(cls, environ: Mapping[str, str] = os.environ) -> Environment:
        settings = json_settings("DESCRIPTIONS_SETTINGS", PipelineSettings, environ)
        return cls(
            settings=settings,
            table_name=required("TABLE_NAME", environ),
            results_bucket=required("RESULTS_BUCKET", environ),
            uploads_bucket=environ.get("UPLOADS_BUCKET") or None,
            dead_letter_queue_url=environ.get("DEAD_LETTER_QUEUE_URL") or None,
            idempotency_ttl_seconds=int(environ.get("IDEMPOTENCY_TTL_SECONDS", "604800")),
            worker_concurrency=int(environ.get("WORKER_CONCURRENCY", "10")),
            attributes=attribute_source_settings(environ),
        )
