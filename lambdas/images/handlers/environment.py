"""The images function's configuration, read once per cold start from environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from shared.models.images import ImagesSettings


class DeploymentError(RuntimeError):
    """The function was deployed with a missing or malformed variable: a deployment bug."""


@dataclass(frozen=True)
class Environment:
    settings: ImagesSettings
    results_bucket: str
    # SSM parameter holding the provisioned model's ARN (absent: nothing is provisioned).
    model_arn_parameter: str

    @classmethod
    def load(cls, environ: Mapping[str, str] = os.environ) -> Environment:
        def required(name: str) -> str:
            value = environ.get(name, "").strip()
            if not value:
                raise DeploymentError(f"environment variable {name} is not set")
            return value

        try:
            settings = ImagesSettings.model_validate_json(required("IMAGES_SETTINGS"))
        except ValidationError as error:
            raise DeploymentError(f"IMAGES_SETTINGS is not valid: {error}") from None
        return cls(
            settings=settings,
            results_bucket=required("RESULTS_BUCKET"),
            model_arn_parameter=required("MODEL_ARN_PARAMETER"),
        )
