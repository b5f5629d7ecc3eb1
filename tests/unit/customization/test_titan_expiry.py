"""The cost guard's decisions, and a sweep against fakes (no AWS)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from customization.logic.expiry import (
    Action,
    Sweeper,
    decide,
    parse_expiry,
    release_execution_name,
)
from shared.models.customization import (
    DEPLOYMENT_TAG,
    EXPIRES_AT_TAG,
    EXPIRY_NOTIFIED_TAG,
    ProvisionedThroughput,
)

NOW = datetime(2026, 8, 1, 12, 0, tzinfo=UTC)
ARN = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abcdefghijkl"


def throughput(
    tags: Mapping[str, str] | None = None, *, commitment: str | None = None, **kwargs: Any
) -> ProvisionedThroughput:
    return ProvisionedThroughput(
        arn=kwargs.pop("arn", ARN),
        name="atelier-dev-titan-20260801-0a1b2c3d",
        status="InService",
        model_arn="arn:aws:bedrock:us-east-1:123456789012:custom-model/x",
        commitment=commitment,
        tags=dict(tags or {}),
        **kwargs,
    )


def ours(expires: str | None, **extra: str) -> dict[str, str]:
    tags = {DEPLOYMENT_TAG: "atelier-dev", **extra}
    if expires is not None:
        tags[EXPIRES_AT_TAG] = expires
    return tags


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-08-01T18:00:00Z", datetime(2026, 8, 1, 18, tzinfo=UTC)),
        ("2026-08-01T18:00:00.123Z", datetime(2026, 8, 1, 18, 0, 0, 123000, tzinfo=UTC)),
        ("2026-08-01T20:00:00+02:00", datetime(2026, 8, 1, 18, tzinfo=UTC)),
        ("2026-08-01T18:00:00", datetime(2026, 8, 1, 18, tzinfo=UTC)),
        ("tomorrow", None),
        ("", None),
        (None, None),
    ],
)
def test_expiry_times_are_iso_8601_read_as_utc(
    value: str | None, expected: datetime | None
) -> None:
    assert parse_expiry(value) == expected


def test_another_deployments_throughput_is_ignored() -> None:
    decision = decide(
        throughput({DEPLOYMENT_TAG: "atelier-prod", EXPIRES_AT_TAG: "2020-01-01T00:00:00Z"}),
        deployment="atelier-dev",
        now=NOW,
    )
    assert decision.action is Action.IGNORE
    assert decide(throughput({}), deployment="atelier-dev", now=NOW).action is Action.IGNORE


def test_a_throughput_before_its_expiry_is_kept() -> None:
    decision = decide(throughput(ours("2026-08-01T12:00:01Z")), deployment="atelier-dev", now=NOW)
    assert decision.action is Action.KEEP


@pytest.mark.parametrize("expires", ["2026-08-01T12:00:00Z", "2026-07-01T00:00:00Z"])
def test_an_expired_throughput_is_released(expires: str) -> None:
    decision = decide(throughput(ours(expires)), deployment="atelier-dev", now=NOW)
    assert decision.action is Action.RELEASE
    assert decision.reason == f"expired at {expires}"


@pytest.mark.parametrize("expires", [None, "next week", ""])
def test_a_missing_or_unreadable_expiry_counts_as_expired(expires: str | None) -> None:
    decision = decide(throughput(ours(expires)), deployment="atelier-dev", now=NOW)
    assert decision.action is Action.RELEASE
    assert "is not an ISO 8601 time, which counts as expired" in decision.reason


def test_a_committed_throughput_in_its_term_is_notified_once_per_expiry() -> None:
    term = NOW + timedelta(days=20)
    committed = throughput(
        ours("2026-08-01T00:00:00Z"), commitment="OneMonth", commitment_expires=term
    )
    decision = decide(committed, deployment="atelier-dev", now=NOW)
    assert decision.action is Action.NOTIFY_COMMITTED
    assert "OneMonth commitment runs until 2026-08-21" in decision.reason
    notified = throughput(
        ours("2026-08-01T00:00:00Z", **{EXPIRY_NOTIFIED_TAG: "2026-08-01T00:00:00Z"}),
        commitment="OneMonth",
        commitment_expires=term,
    )
    assert decide(notified, deployment="atelier-dev", now=NOW).action is Action.KEEP


def test_a_committed_throughput_past_its_term_is_released() -> None:
    done = throughput(
        ours("2026-07-01T00:00:00Z"),
        commitment="OneMonth",
        commitment_expires=NOW - timedelta(minutes=1),
    )
    assert decide(done, deployment="atelier-dev", now=NOW).action is Action.RELEASE


def test_release_execution_names_are_valid_and_unique_per_sweep() -> None:
    name = release_execution_name(throughput(), NOW)
    assert name == "expired-abcdefghijkl-20260801T120000"
    assert len(name) <= 80
    assert not {":", "/"} & set(name)
    # The same scheduled time (in any offset) gives the same name: a retried sweep reuses it.
    later_offset = NOW.astimezone(timezone(timedelta(hours=2)))
    assert release_execution_name(throughput(), later_offset) == name


class FakeCatalog:
    def __init__(self, throughputs: Iterable[ProvisionedThroughput], fail_tags_for: str = ""):
        self.throughputs = list(throughputs)
        self.tagged: list[tuple[str, dict[str, str]]] = []
        self.fail_tags_for = fail_tags_for

    def list(self) -> Iterable[ProvisionedThroughput]:
        return [
            ProvisionedThroughput(
                arn=t.arn, name=t.name, status=t.status, model_arn=t.model_arn,
                commitment=t.commitment, commitment_expires=t.commitment_expires,
            )
            for t in self.throughputs
        ]  # fmt: skip

    def tags(self, arn: str) -> dict[str, str]:
        if arn == self.fail_tags_for:
            raise RuntimeError("throttled")
        return dict(next(t.tags for t in self.throughputs if t.arn == arn))

    def tag(self, arn: str, tags: Mapping[str, str]) -> None:
        self.tagged.append((arn, dict(tags)))


class FakeReleases:
    def __init__(self) -> None:
        self.started: list[tuple[str, Mapping[str, Any]]] = []

    def start(self, *, name: str, payload: Mapping[str, Any]) -> str:
        self.started.append((name, payload))
        return f"arn:aws:states:us-east-1:123456789012:execution:release:{name}"


class FakeNotifier:
    def __init__(self) -> None:
        self.published: list[tuple[str, str]] = []

    def publish(self, *, subject: str, message: str) -> None:
        self.published.append((subject, message))


def test_a_sweep_releases_expired_notifies_committed_and_keeps_going_after_a_failure() -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/"
    catalog = FakeCatalog(
        [
            throughput(ours("2026-08-01T11:00:00Z"), arn=arn + "expired00001"),
            throughput(ours("2026-08-01T13:00:00Z"), arn=arn + "fresh0000001"),
            throughput({DEPLOYMENT_TAG: "someone-else"}, arn=arn + "foreign00001"),
            throughput(ours("2026-08-01T11:00:00Z"), arn=arn + "broken000001"),
            throughput(
                ours("2026-08-01T11:00:00Z"),
                arn=arn + "committed001",
                commitment="SixMonths",
                commitment_expires=NOW + timedelta(days=90),
            ),
        ],
        fail_tags_for=arn + "broken000001",
    )
    releases, notifier = FakeReleases(), FakeNotifier()
    sweeper = Sweeper(
        catalog=catalog, releases=releases, notifier=notifier, deployment="atelier-dev"
    )
    report = sweeper.sweep(NOW + timedelta(minutes=2), scheduled=NOW)
    assert report.released == [arn + "expired00001"]
    assert report.notified == [arn + "committed001"]
    assert (report.checked, report.ours, report.kept) == (5, 3, 1)
    assert report.errors == [f"{arn}broken000001: RuntimeError: throttled"]
    ((name, payload),) = releases.started
    assert payload == {
        "provisionedModelArn": arn + "expired00001",
        "reason": "cost guard: expired at 2026-08-01T11:00:00Z",
    }
    # Named after the scheduled sweep, not the moment it ran.
    assert name == "expired-expired00001-20260801T120000"
    ((subject, message),) = notifier.published
    assert subject == "[atelier-dev] Titan throughput past its expiry, still billing"
    assert "aws bedrock tag-resource --resource-arn " + arn + "committed001" in message
    assert catalog.tagged == [(arn + "committed001", {EXPIRY_NOTIFIED_TAG: "2026-08-01T11:00:00Z"})]
