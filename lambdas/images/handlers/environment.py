"""The images function's configuration, read once per cold start from environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from shared.environment import json_settings, required
from shared.models.images import ImagesSettings


@dataclass(frozen=True)
class Environment:
    settings: ImagesSettings
    results_bucket: str
    # SSM parameter holding the provisioned model's ARN (absent: nothing is provisioned).
    model_arn_parameter: str

    @classmethod
    def load(cls, environ: Mapping[str, str] = os.environ) -> Environment:
        settings = json_settings("IMAGES_SETTINGS", ImagesSettings, environ)
        return cls(
            settings=settings,
            results_bucket=required("RESULTS_BUCKET", environ),
            model_arn_parameter=required("MODEL_ARN_PARAMETER", environ),
        )
