"""The cost guard: find this deployment's provisioned throughputs whose time is up.

Every throughput the customize workflow creates carries two tags: `atelier:deployment`
(`<prefix>-<stage>`) and `atelier:expires-at` (ISO 8601 UTC). A sweep, every few minutes, lists
the account's throughputs and, for each one of this deployment past its expiry:

- no commitment term: starts the release workflow (delete, clear the SSM record, notify);
- a commitment term still running: Bedrock refuses to delete it before the term ends, so one
  notice per expiry value is sent instead (recorded in `atelier:expiry-notified`); once the term
  has ended it is released like any other.

A tag that is missing or cannot be read as a time counts as expired: a typo must not keep a
throughput billing forever. To keep a throughput longer, move its `atelier:expires-at` tag.

Reading the state from the throughputs themselves (instead of one schedule per throughput) means
a throughput is released even when the execution that created it died, was stopped or was
deleted with its stack, and a sweep that fails is simply repeated by the next one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Protocol

from shared.models.customization import (
    DEPLOYMENT_TAG,
    EXPIRES_AT_TAG,
    EXPIRY_NOTIFIED_TAG,
    ProvisionedThroughput,
)


class Action(Enum):
    IGNORE = "ignore"  # another deployment's (or nobody's) throughput
    KEEP = "keep"  # not expired yet, or its past-expiry notice was sent already
    RELEASE = "release"
    NOTIFY_COMMITTED = "notify_committed"


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    expires_at: str | None = None


class ThroughputCatalog(Protocol):
    def list(self) -> Iterable[ProvisionedThroughput]:
        """Every provisioned throughput of the account and region, without tags."""
        ...

    def tags(self, arn: str) -> dict[str, str]: ...

    def tag(self, arn: str, tags: Mapping[str, str]) -> None: ...


class ReleaseWorkflow(Protocol):
    def start(self, *, name: str, payload: Mapping[str, Any]) -> str:
        """Start the release workflow; returns the execution ARN."""
        ...


class Notifier(Protocol):
    def publish(self, *, subject: str, message: str) -> None: ...


def parse_expiry(value: str | None) -> datetime | None:
    """`2026-08-01T18:00:00Z` (any ISO 8601 time; without an offset it is read as UTC)."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def decide(throughput: ProvisionedThroughput, *, deployment: str, now: datetime) -> Decision:
    tags = throughput.tags
    if tags.get(DEPLOYMENT_TAG) != deployment:
        return Decision(Action.IGNORE, f"not tagged {DEPLOYMENT_TAG}={deployment}")
    raw = tags.get(EXPIRES_AT_TAG)
    expires = parse_expiry(raw)
    if expires is not None and now < expires:
        return Decision(Action.KEEP, f"expires at {raw}", raw)
    why = (
        f"expired at {raw}"
        if expires is not None
        else f"its {EXPIRES_AT_TAG} tag ({raw!r}) is not an ISO 8601 time, which counts as expired"
    )
    term_ends = throughput.commitment_expires
    if throughput.commitment and (term_ends is None or now < term_ends):
        if tags.get(EXPIRY_NOTIFIED_TAG) == (raw or ""):
            return Decision(Action.KEEP, f"{why}; past-expiry notice already sent", raw)
        until = term_ends.isoformat() if term_ends else "the end of its term"
        return Decision(
            Action.NOTIFY_COMMITTED,
            f"{why}, but its {throughput.commitment} commitment runs until {until} and Bedrock "
            "deletes a committed throughput only after its term",
            raw,
        )
    return Decision(Action.RELEASE, why, raw)


@dataclass
class SweepReport:
    checked: int = 0
    ours: int = 0
    kept: int = 0
    released: list[str] = field(default_factory=list)
    notified: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "ours": self.ours,
            "kept": self.kept,
            "released": list(self.released),
            "notified": list(self.notified),
            "errors": list(self.errors),
        }


class Sweeper:
    def __init__(
        self,
        *,
        catalog: ThroughputCatalog,
        releases: ReleaseWorkflow,
        notifier: Notifier,
        deployment: str,
    ) -> None:
        self.catalog = catalog
        self.releases = releases
        self.notifier = notifier
        self.deployment = deployment

    def sweep(self, now: datetime, *, scheduled: datetime | None = None) -> SweepReport:
        """Act on every throughput; one that fails does not stop the others (see `errors`).

        `scheduled` (the schedule's event time; default `now`) names the release executions, so
        a sweep retried for the same event starts each release once."""
        report = SweepReport()
        for listed in self.catalog.list():
            report.checked += 1
            try:
                self._handle(listed, now, scheduled or now, report)
            except Exception as error:  # every throughput gets its turn, whatever failed
                report.errors.append(f"{listed.arn}: {type(error).__name__}: {error}"[:500])
        return report

    def _handle(
        self,
        listed: ProvisionedThroughput,
        now: datetime,
        scheduled: datetime,
        report: SweepReport,
    ) -> None:
        throughput = replace(listed, tags=self.catalog.tags(listed.arn))
        decision = decide(throughput, deployment=self.deployment, now=now)
        if decision.action is Action.IGNORE:
            return
        report.ours += 1
        if decision.action is Action.KEEP:
            report.kept += 1
        elif decision.action is Action.RELEASE:
            self.releases.start(
                name=release_execution_name(throughput, scheduled),
                payload={
                    "provisionedModelArn": throughput.arn,
                    "reason": f"cost guard: {decision.reason}"[:1000],
                },
            )
            report.released.append(throughput.arn)
        else:
            self.notifier.publish(
                subject=f"[{self.deployment}] Titan throughput past its expiry, still billing"[
                    :100
                ],
                message=committed_notice(throughput, decision),
            )
            self.catalog.tag(throughput.arn, {EXPIRY_NOTIFIED_TAG: decision.expires_at or ""})
            report.notified.append(throughput.arn)


def release_execution_name(throughput: ProvisionedThroughput, scheduled: datetime) -> str:
    """One per throughput and scheduled sweep (at most 80 characters, no ':' or '/'): a retried
    sweep of the same event reuses it, and Step Functions refuses a second start
    (ExecutionAlreadyExists, which counts as started)."""
    moment = scheduled.astimezone(UTC) if scheduled.tzinfo else scheduled
    return f"expired-{throughput.resource_id[:40]}-{moment.strftime('%Y%m%dT%H%M%S')}"


def committed_notice(throughput: ProvisionedThroughput, decision: Decision) -> str:
    return "\n".join(
        [
            f"Provisioned throughput {throughput.name} ({throughput.arn}) {decision.reason}.",
            "",
            "It keeps billing every hour. When the term ends the next sweep releases it, unless "
            f"its {EXPIRES_AT_TAG} tag has been moved into the future by then:",
            f"  aws bedrock tag-resource --resource-arn {throughput.arn} \\",
            f"    --tags key={EXPIRES_AT_TAG},value=YYYY-MM-DDTHH:MM:SSZ",
            "",
            "This notice is sent once per expiry time.",
        ]
    )
