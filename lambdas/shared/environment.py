"""The functions' configuration, read once per cold start from environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping


class DeploymentError(RuntimeError):
    """The function was deployed with a missing variable: a deployment bug."""


def required(name: str, environ: Mapping[str, str] | None = None) -> str:
    value = (os.environ if environ is None else environ).get(name, "").strip()
    if not value:
        raise DeploymentError(f"environment variable {name} is not set")
    return value
