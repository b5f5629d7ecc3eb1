"""Where a Bedrock model stands in its lifecycle, and whether that needs someone's attention.

Bedrock reports a model as ACTIVE or LEGACY (GetFoundationModel's `modelLifecycle.status`) with
up to three times: `legacyTime`, `publicExtendedAccessTime` (the later part of the Legacy period,
at the provider's higher prices) and `endOfLifeTime` (after which every call fails). A model past
its end of life is no longer found at all. From those this module derives one phase per model:

    active -> legacy -> extended access -> end of life

and a state key that also says whether the end of life is within the warning window
(`lifecycle.warning_days`). The checker notifies once each time a model's state key changes to
one that needs attention; the state key is what it remembers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from shared.models.lifecycle import Lifecycle

SECONDS_PER_DAY = 86_400


class Phase(Enum):
    ACTIVE = "active"
    LEGACY = "legacy"
    EXTENDED_ACCESS = "extended_access"
    END_OF_LIFE = "end_of_life"
    # GetFoundationModel found no such model (past its end of life, or never offered here).
    NOT_FOUND = "not_found"


# The `LifecycleStage` metric's value per phase: higher is worse, so one alarm threshold fits all.
PHASE_LEVEL = {
    Phase.ACTIVE: 0,
    Phase.LEGACY: 1,
    Phase.EXTENDED_ACCESS: 2,
    Phase.END_OF_LIFE: 3,
    Phase.NOT_FOUND: 3,
}
PHASE_TEXT = {
    Phase.ACTIVE: "Active",
    Phase.LEGACY: "Legacy",
    Phase.EXTENDED_ACCESS: "Legacy, in public extended access (the provider's higher prices)",
    Phase.END_OF_LIFE: "end of life",
    Phase.NOT_FOUND: "not found (past its end of life, or not offered in this region)",
}


@dataclass(frozen=True)
class Assessment:
    lifecycle: Lifecycle
    phase: Phase
    days_to_end_of_life: float | None
    ends_soon: bool

    @property
    def needs_attention(self) -> bool:
        return self.phase is not Phase.ACTIVE or self.ends_soon

    @property
    def state_key(self) -> str:
        """What the checker remembers; a notice goes out when it changes (and needs attention)."""
        if self.ends_soon and self.phase not in (Phase.END_OF_LIFE, Phase.NOT_FOUND):
            return f"{self.phase.value}+ending_soon"
        return self.phase.value

    def describe(self) -> str:
        """One line: the phase and every date Bedrock gave."""
        lifecycle = self.lifecycle
        parts = [PHASE_TEXT[self.phase]]
        for label, moment in (
            ("Legacy since", lifecycle.legacy_time),
            ("public extended access from", lifecycle.public_extended_access_time),
            ("end of life", lifecycle.end_of_life_time),
        ):
            if moment is not None:
                parts.append(f"{label} {moment.date().isoformat()}")
        if self.days_to_end_of_life is not None and self.days_to_end_of_life > 0:
            parts.append(f"{self.days_to_end_of_life:.0f} days left")
        return "; ".join(parts)


def assess(lifecycle: Lifecycle, *, now: datetime, warning_days: int) -> Assessment:
    if not lifecycle.found:
        return Assessment(lifecycle, Phase.NOT_FOUND, None, ends_soon=True)
    end = lifecycle.end_of_life_time
    days = (end - now).total_seconds() / SECONDS_PER_DAY if end is not None else None
    if days is not None and days <= 0:
        phase = Phase.END_OF_LIFE
    elif lifecycle.status == "LEGACY" or _reached(lifecycle.legacy_time, now):
        extended = _reached(lifecycle.public_extended_access_time, now)
        phase = Phase.EXTENDED_ACCESS if extended else Phase.LEGACY
    else:
        phase = Phase.ACTIVE
    ends_soon = days is not None and days <= warning_days
    return Assessment(lifecycle, phase, days, ends_soon)


def _reached(moment: datetime | None, now: datetime) -> bool:
    return moment is not None and moment <= now
