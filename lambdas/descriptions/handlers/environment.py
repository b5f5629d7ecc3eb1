"""The functions' configuration, read once per cold start from environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from shared.environment import json_settings, required
from shared.models.descriptions import PipelineSettings


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
        )
