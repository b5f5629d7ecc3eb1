"""The image service with fakes: order of checks, the model ARN's life, retries, storage."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from images.logic.service import (
    MIN_MODEL_ATTEMPT_SECONDS,
    Generation,
    ImageService,
    random_seed,
)
from shared.models.errors import ConflictError, DependencyError, RequestError
from shared.models.images import TITAN_MAX_SEED, ProvisionedModelUnavailableError
from shared.retry import Deadline
from tests.images_support import (
    MODEL_ARN,
    PARAMETER,
    REQUEST_ID,
    FakeImageModel,
    FakeModelArn,
    InMemoryImageStore,
    request,
    settings,
    titan_answer,
)

NOW = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)


class Harness:
    def __init__(self, *answers: bytes | Exception, arn: str | None = MODEL_ARN) -> None:
        self.arn = FakeModelArn(arn)
        self.model = FakeImageModel(list(answers))
        self.store = InMemoryImageStore()
        self.sleeps: list[float] = []
        self.service = ImageService(
            settings=settings(),
            model_arn=self.arn,
            image_model=self.model,
            store=self.store,
            sleep=self.sleeps.append,
            now=lambda: NOW,
            seed=lambda: 4242,
        )

    def generate(self, **fields: object) -> Generation:
        return self.service.generate(
            request(**fields), request_id=REQUEST_ID, deadline=Deadline(29)
        )


def test_images_are_generated_stored_and_handed_out() -> None:
    harness = Harness(titan_answer(2))

    generation = harness.generate(numberOfImages=2)

    answer = generation.answer
    assert answer.request_id == REQUEST_ID
    assert answer.seed == 4242
    keys = [f"images/2026/11/22/{REQUEST_ID}/{n}.png" for n in (1, 2)]
    assert [image.key for image in answer.images] == keys
    assert sorted(harness.store.objects) == keys
    assert all(image.url.endswith("?expires=900") for image in answer.images)
    assert {image.expires_at for image in answer.images} == {"2026-11-22T10:15:00Z"}
    ((arn, body),) = harness.model.calls
    assert arn == MODEL_ARN
    assert body["imageGenerationConfig"]["seed"] == 4242
    assert set(generation.timings_ms) == {"model", "store", "total"}


def test_an_invalid_request_costs_no_parameter_read_and_no_model_call() -> None:
    harness = Harness()
    with pytest.raises(RequestError):
        harness.generate(width=1000, height=1000)
    assert harness.arn.reads == 0
    assert harness.model.calls == []


def test_no_parameter_is_a_409_before_any_model_call() -> None:
    harness = Harness(arn=None)
    with pytest.raises(ConflictError) as caught:
        harness.generate()
    assert (caught.value.status, caught.value.code) == (409, "no_customized_model")
    assert PARAMETER in caught.value.message
    assert harness.model.calls == []


@pytest.mark.parametrize(
    "value",
    [
        "arn:aws:bedrock:us-east-1:123456789012:custom-model/amazon.titan-image-generator-v1:0/x",
        "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-image-generator-v1",
        "not an arn",
        "",
    ],
)
def test_a_parameter_that_is_not_a_provisioned_model_arn_is_a_502(value: str) -> None:
    harness = Harness(arn=value)
    with pytest.raises(DependencyError) as caught:
        harness.generate()
    assert (caught.value.status, caught.value.code) == (502, "model_parameter_invalid")
    assert harness.model.calls == []


def test_a_stale_arn_is_a_409_and_forgotten() -> None:
    stale = ProvisionedModelUnavailableError(MODEL_ARN, "ResourceNotFoundException: gone")
    harness = Harness(stale)
    with pytest.raises(ProvisionedModelUnavailableError) as caught:
        harness.generate()
    assert caught.value.status == 409
    assert harness.arn.invalidations == 1
    assert harness.sleeps == []  # not retried
    assert harness.store.objects == {}


def test_throttling_is_retried_within_the_deadline() -> None:
    throttled = DependencyError("image_model_unavailable", "throttled", retryable=True)
    harness = Harness(throttled, throttled, titan_answer(1))

    generation = harness.generate()

    assert len(generation.answer.images) == 1
    assert len(harness.sleeps) == 2
    assert len(harness.model.calls) == 3


def test_no_attempt_starts_without_time_to_finish() -> None:
    harness = Harness(titan_answer(1))
    with pytest.raises(DependencyError) as caught:
        harness.service.generate(request(), request_id=REQUEST_ID, deadline=Deadline(4))
    assert (caught.value.status, caught.value.retryable) == (503, True)
    assert harness.model.calls == []


class FakeClock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class TimingOutModel:
    """Titan that answers nothing: every call waits its whole timeout, then fails retryably."""

    clock: FakeClock
    attempts: list[tuple[float, int]] = field(default_factory=list)

    def invoke(self, model_arn: str, body: Mapping[str, Any], *, timeout_seconds: int) -> bytes:
        self.attempts.append((self.clock.now, timeout_seconds))
        self.clock.advance(timeout_seconds)
        raise DependencyError("image_model_unavailable", "did not answer in time", retryable=True)


@pytest.mark.parametrize(("budget", "first_wait"), [(26.0, 14.0), (26.0, 0.0), (15.0, 3.0)])
def test_no_titan_call_may_outlive_the_deadline(budget: float, first_wait: float) -> None:
    clock = FakeClock()
    model = TimingOutModel(clock)
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.advance(seconds)

    service = ImageService(
        settings=settings(),
        model_arn=FakeModelArn(MODEL_ARN),
        image_model=model,
        store=InMemoryImageStore(),
        sleep=sleep,
        now=lambda: NOW,
        seed=lambda: 4242,
    )
    deadline = Deadline(budget, clock=clock)
    expires_at = clock.now + budget
    # The first attempt fails fast (throttled) after `first_wait` seconds of the budget.
    first = DependencyError("image_model_unavailable", "throttled", retryable=True)
    original = model.invoke

    def invoke(model_arn: str, body: Mapping[str, Any], *, timeout_seconds: int) -> bytes:
        if not model.attempts:
            model.attempts.append((clock.now, timeout_seconds))
            clock.advance(first_wait)
            raise first
        return original(model_arn, body, timeout_seconds=timeout_seconds)

    model.invoke = invoke  # type: ignore[method-assign]

    with pytest.raises(DependencyError) as caught:
        service.generate(request(), request_id=REQUEST_ID, deadline=deadline)

    assert model.attempts
    for started, timeout in model.attempts:
        # Started with time for a realistic generation, and given up by the deadline.
        assert expires_at - started >= MIN_MODEL_ATTEMPT_SECONDS
        assert started + timeout <= expires_at
    assert clock.now <= expires_at
    error = caught.value
    assert (error.status, error.retryable) == (503, True)
    assert error.body()["error"]["retryAfterSeconds"] == error.retry_after_seconds > 0


def test_the_adapter_cuts_the_read_timeout_to_the_time_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shared.adapters import bedrock_runtime

    made: list[int] = []

    def slow_model_client(service: str, *, read_timeout: int) -> object:
        made.append(read_timeout)
        raise RuntimeError("stop here")

    monkeypatch.setattr(bedrock_runtime, "slow_model_client", slow_model_client)
    model = bedrock_runtime.BedrockImageModel(read_timeout=26)
    for timeout in (40, 26, 11, 0):
        with pytest.raises(RuntimeError):
            model.invoke(MODEL_ARN, {}, timeout_seconds=timeout)
    assert made == [26, 26, 11, 1]


def test_random_seeds_stay_within_titans_range() -> None:
    seeds = {random_seed() for _ in range(200)}
    assert all(0 <= seed <= TITAN_MAX_SEED for seed in seeds)
    assert len(seeds) > 190
