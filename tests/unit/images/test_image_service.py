"""The image service with fakes: order of checks, the model ARN's life, retries, storage."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from images.logic.service import Generation, ImageService, random_seed
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
    throttled = DependencyError("image_model_unavailable", "throttled", retryable=True)
    harness = Harness(throttled, titan_answer(1))
    with pytest.raises(DependencyError) as caught:
        harness.service.generate(request(), request_id=REQUEST_ID, deadline=Deadline(4))
    assert caught.value.status == 503
    assert len(harness.model.calls) == 1


def test_random_seeds_stay_within_titans_range() -> None:
    seeds = {random_seed() for _ in range(200)}
    assert all(0 <= seed <= TITAN_MAX_SEED for seed in seeds)
    assert len(seeds) > 190
