"""A Bedrock foundation model's lifecycle as GetFoundationModel reports it (the lifecycle check's
adapter builds it; lifecycle/logic assesses it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Lifecycle:
    """GetFoundationModel's `modelLifecycle`, or `found=False` when the model does not exist."""

    model_id: str
    found: bool
    status: str | None = None  # ACTIVE | LEGACY
    legacy_time: datetime | None = None
    public_extended_access_time: datetime | None = None
    end_of_life_time: datetime | None = None
