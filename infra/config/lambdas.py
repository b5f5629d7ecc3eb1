"""`lambdas`: knobs shared by every Lambda function of the app."""

from __future__ import annotations

from infra.config.constants import (
    LAMBDA_ARCHITECTURES,
    LAMBDA_PYTHON_RUNTIMES,
    LOG_LEVELS,
    LambdaArchitecture,
    LogLevel,
)
from infra.config.rules import choice, section, whole


@section
class LambdaConfig:
    """Knobs shared by every Lambda function of the app."""

    runtime: str = choice(
        LAMBDA_PYTHON_RUNTIMES, "Lambda Python runtime (the public Powertools v3 layer's)"
    )
    architecture: LambdaArchitecture = choice(
        LAMBDA_ARCHITECTURES, "instruction set; the layer and bundled wheels follow it"
    )
    powertools_layer_version: int = whole(
        1, 10_000, "version of the public Powertools v3 layer (36: Powertools 3.31.1)"
    )
    log_level: LogLevel = choice(LOG_LEVELS, "application log level")
