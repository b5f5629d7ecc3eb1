"""The diffusion service with fakes: order of checks, retries, deadlines and what is stored."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from diffusion.logic.service import MIN_MODEL_ATTEMPT_SECONDS, DiffusionService, random_seed
from shared.models.diffusion import (
    MAX_SEED,
    EndpointNotDeployedError,
    GenerationRequest,
    StylingRequest,
)
from shared.models.errors import DependencyError, RequestError
from shared.retry import Deadline
from tests.diffusion_support import (
    GENERATION_ENDPOINT,
    REQUEST_ID,
    STYLING_ENDPOINT,
    FakeDiffusionModel,
    FakeInputImages,
    InMemoryOutputStore,
    b64,
    endpoint,
    endpoint_answer,
    mask_bytes,
    photo_bytes,
    settings,
)

NOW = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
DAY = "2026/11/22"


class Harness:
    def __init__(self, *answers: bytes | Exception, uploads: dict[str, bytes] | None = None):
        self.uploads = FakeInputImages(dict(uploads or {}))
        self.model = FakeDiffusionModel(list(answers))
        self.store = InMemoryOutputStore()
        self.sleeps: list[float] = []
        self.service = DiffusionService(
            settings=settings(),
            uploads=self.uploads,
            model=self.model,
            store=self.store,
            sleep=self.sleeps.append,
            now=lambda: NOW,
            seed=lambda: 4242,
        )

    def generate(self, *, seconds: float = 26, **fields: Any) -> Any:
        request = GenerationRequest.model_validate({"prompt": "riobugger cat", **fields})
        return self.service.generate(request, request_id=REQUEST_ID, deadline=Deadline(seconds))

    def style(self, **fields: Any) -> Any:
        document = {
            "image": {"key": "styling/photo.jpg"},
            "maskPrompt": "the skirt",
            "prompt": "a floral skirt",
            **fields,
        }
        request = StylingRequest.model_validate(
            {name: value for name, value in document.items() if value is not None}
        )
        return self.service.style(request, request_id=REQUEST_ID, deadline=Deadline(26))


def test_generated_images_are_stored_as_jpeg_and_handed_out() -> None:
    harness = Harness(endpoint_answer(3))

    outcome = harness.generate(numImages=3)

    answer = outcome.answer
    assert (answer.request_id, answer.seed) == (REQUEST_ID, 4242)
    keys = [f"generations/{DAY}/{REQUEST_ID}/{n}.jpg" for n in (1, 2, 3)]
    assert [image.key for image in answer.images] == keys
    assert sorted(harness.store.objects) == keys
    assert {content_type for _, content_type in harness.store.objects.values()} == {"image/jpeg"}
    assert all(image.url.endswith("?expires=900") for image in answer.images)
    assert {image.expires_at for image in answer.images} == {"2026-11-22T10:15:00Z"}
    ((name, body),) = harness.model.calls
    assert name == GENERATION_ENDPOINT
    assert (body["seed"], body["num_images_per_prompt"]) == (4242, 3)
    assert (outcome.route, outcome.size) == ("generations", "512x512")
    assert set(outcome.timings_ms) == {"model", "store", "total"}


def test_the_endpoint_call_may_take_what_is_left_of_the_deadline() -> None:
    harness = Harness(endpoint_answer(1))
    harness.generate(seconds=21.7)
    assert harness.model.timeouts == [21]


def test_too_little_time_left_is_a_503_without_a_call() -> None:
    harness = Harness()
    with pytest.raises(DependencyError) as caught:
        harness.generate(seconds=MIN_MODEL_ATTEMPT_SECONDS - 0.5)
    assert (caught.value.status, caught.value.code) == (503, "model_unavailable")
    assert harness.model.calls == []


def test_an_invalid_request_costs_no_read_and_no_call() -> None:
    harness = Harness(uploads={"styling/photo.jpg": photo_bytes()})
    with pytest.raises(RequestError):
        harness.generate(width=1004)
    with pytest.raises(RequestError):
        harness.style(steps=51)
    assert harness.uploads.reads == []
    assert harness.model.calls == []


def test_throttling_is_retried_with_backoff_then_answered() -> None:
    throttled = DependencyError("model_unavailable", "throttled", retryable=True)
    harness = Harness(throttled, throttled, endpoint_answer(1))

    outcome = harness.generate()

    assert len(outcome.answer.images) == 1
    assert len(harness.sleeps) == 2
    assert len(harness.model.calls) == 3


def test_throttling_that_persists_is_a_503_after_three_attempts() -> None:
    throttled = DependencyError("model_unavailable", "throttled", retryable=True)
    harness = Harness(throttled, throttled, throttled)
    with pytest.raises(DependencyError) as caught:
        harness.generate()
    assert caught.value.status == 503
    assert len(harness.model.calls) == 3
    assert harness.store.objects == {}


def test_a_missing_endpoint_is_not_retried_and_nothing_is_stored() -> None:
    harness = Harness(EndpointNotDeployedError(endpoint("generation")))
    with pytest.raises(EndpointNotDeployedError) as caught:
        harness.generate()
    assert caught.value.status == 409
    assert "dreambooth.hosting.model_data_url" in caught.value.message
    assert "/atelier/dev/dreambooth/model-data-url" in caught.value.message
    assert harness.sleeps == []
    assert harness.store.objects == {}


def test_styling_stores_the_photos_and_the_mask() -> None:
    harness = Harness(endpoint_answer(2, mask=True), uploads={"styling/photo.jpg": photo_bytes()})

    outcome = harness.style(numImages=2, imageLength=768)

    answer = outcome.answer
    folder = f"styling/{DAY}/{REQUEST_ID}/"
    assert [image.key for image in answer.images] == [f"{folder}1.jpg", f"{folder}2.jpg"]
    assert answer.mask is not None
    assert answer.mask.key == f"{folder}mask.png"
    assert harness.store.objects[f"{folder}mask.png"][1] == "image/png"
    ((name, body),) = harness.model.calls
    assert name == STYLING_ENDPOINT
    assert body["image"] == b64(photo_bytes())
    assert (body["mask_prompt"], body["image_length"]) == ("the skirt", 768)
    assert (outcome.size, dict(outcome.inputs)) == ("96x64", {"image": "key"})
    assert set(outcome.timings_ms) == {"inputs", "model", "store", "total"}


def test_a_callers_mask_is_sent_and_no_mask_is_returned() -> None:
    # (two images: POST /styling's default)
    harness = Harness(endpoint_answer(2), uploads={"styling/photo.jpg": photo_bytes()})

    outcome = harness.style(maskPrompt=None, mask={"base64": b64(mask_bytes())})

    assert outcome.answer.mask is None
    ((_, body),) = harness.model.calls
    assert body["mask_img"] == b64(mask_bytes())
    assert "mask_prompt" not in body
    assert dict(outcome.inputs) == {"image": "key", "mask": "base64"}
    assert body["num_images_per_prompt"] == 2
    assert len(harness.store.objects) == 2


def test_a_missing_upload_is_a_400_naming_the_key_before_any_call() -> None:
    harness = Harness()
    with pytest.raises(RequestError) as caught:
        harness.style()
    assert caught.value.code == "input_missing"
    assert "styling/photo.jpg" in caught.value.message
    assert harness.model.calls == []


def test_a_mask_of_other_proportions_costs_no_call() -> None:
    harness = Harness(uploads={"styling/photo.jpg": photo_bytes((96, 64))})
    with pytest.raises(RequestError) as caught:
        harness.style(maskPrompt=None, mask={"base64": b64(mask_bytes((64, 64)))})
    assert caught.value.code == "mask_size_mismatch"
    assert harness.model.calls == []


@pytest.mark.parametrize(
    "mask_size",
    [(96, 64), (192, 128), (64, 96)],
    ids=["same size", "same proportions", "drawn on the photo as displayed (EXIF-turned)"],
)
def test_a_mask_that_may_cover_the_photo_goes_to_the_endpoint(mask_size: tuple[int, int]) -> None:
    # Given a 96x64 stored photo; the endpoint turns photo and mask upright and resizes the mask
    harness = Harness(endpoint_answer(2), uploads={"styling/photo.jpg": photo_bytes((96, 64))})
    # When the mask has the photo's proportions, either way round
    harness.style(maskPrompt=None, mask={"base64": b64(mask_bytes(mask_size))})
    # Then the endpoint is asked, with the mask as sent
    ((_, body),) = harness.model.calls
    assert body["mask_img"] == b64(mask_bytes(mask_size))


def test_a_store_failure_hands_out_no_url() -> None:
    class BrokenStore(InMemoryOutputStore):
        def put_image(self, key: str, data: bytes, *, content_type: str) -> None:
            raise DependencyError("results_bucket_failed", "AccessDenied", retryable=False)

        def presign_get(self, key: str, *, expires_in: int) -> str:
            raise AssertionError("no URL may be handed out for an image that was not stored")

    harness = Harness(endpoint_answer(1))
    harness.service.store = BrokenStore()
    with pytest.raises(DependencyError, match="AccessDenied"):
        harness.generate()


def test_random_seeds_stay_in_range() -> None:
    assert all(0 <= random_seed() <= MAX_SEED for _ in range(100))
