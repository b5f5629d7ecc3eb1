"""`lifecycle`: the daily check of every Bedrock model the stage uses."""

from __future__ import annotations

from infra.config.rules import section, whole


@section
class LifecycleConfig:
    """The daily check of every Bedrock model the stage uses (the Bedrock stack's
    model-lifecycle function): it notifies when a model is Legacy or ends within `warning_days`."""

    # Bedrock keeps a model Legacy for at least 6 months before its end of life.
    warning_days: int = whole(1, 365, "days before a model's end of life the check warns")
