"""Reading a function's configuration from environment variables, once per cold start.

A missing or malformed variable is a deployment bug, not a client's fault: it raises
`DeploymentError`, which the handlers let fail the invocation loudly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel, ValidationError

Settings = TypeVar("Settings", bound=BaseModel)


class DeploymentError(RuntimeError):
    """The function was deployed with a missing or malformed variable: a deployment bug."""


def required(name: str, environ: Mapping[str, str] | None = None) -> str:
    value = (os.environ if environ is None else environ).get(name, "").strip()
    if not value:
        raise DeploymentError(f"environment variable {name} is not set")
    return value


def json_settings(
    name: str, model: type[Settings], environ: Mapping[str, str] | None = None
) -> Settings:
    """The pydantic `model` serialized as JSON in the variable `name` (the stack writes it)."""
    try:
        return model.model_validate_json(required(name, environ))
    except ValidationError as error:
        raise DeploymentError(f"{name} is not valid: {error}") from None
