"""The checkout's model registry, as the commands read it: which models exist, which workflow
trains each, which endpoint serves it (`infra/models.py` declares them once for the app and the
command line)."""

from __future__ import annotations

from enum import StrEnum
from typing import cast

from atelier_cli.checkout import use_model_registry

use_model_registry()

from infra.models import (  # noqa: E402  (the registry is importable only after the line above)
    MODEL_DATA_URL,
    Model,
    hosted_models,
    model,
    trained_models,
    training_commands,
)


def choices(name: str, values: tuple[str, ...]) -> type[StrEnum]:
    """A typer choice of registry names (typer lists and checks an Enum's values). Its members
    are `str`s, so commands use them as the names they are."""
    return cast(type[StrEnum], StrEnum(name, {value: value for value in values}))


__all__ = [
    "MODEL_DATA_URL",
    "Model",
    "choices",
    "hosted_models",
    "model",
    "trained_models",
    "training_commands",
]
