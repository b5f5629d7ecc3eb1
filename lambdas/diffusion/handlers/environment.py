"""The diffusion function's configuration, read once per cold start from environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from shared.environment import json_settings, required
from shared.models.diffusion import DiffusionSettings


@dataclass(frozen=True)
class Environment:
    settings: DiffusionSettings
    # Styling inputs are read from here (by key) ...
    uploads_bucket: str
    # ... and every output is written here.
    results_bucket: str

    @classmethod
    def load(cls, environ: Mapping[str, str] = os.environ) -> Environment:
        return cls(
            settings=json_settings("DIFFUSION_SETTINGS", DiffusionSettings, environ),
            uploads_bucket=required("UPLOADS_BUCKET", environ),
            results_bucket=required("RESULTS_BUCKET", environ),
        )
