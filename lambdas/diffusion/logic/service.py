"""Request → inputs → SageMaker endpoint → JPEGs (and mask) in S3 → presigned URLs.

Checks that cost nothing come first (fields, stage limits, inline sizes and image headers), then
the uploads are read, the endpoint payload is sized, and only then is the GPU called. Images are
stored before any URL is handed out; the answer never carries image bytes, so it stays far below
Lambda's 6 MB response limit whatever the images' size.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from functools import partial

from diffusion.logic.contracts import (
    Answer,
    encode_body,
    generation_body,
    parse_answer,
    styling_body,
)
from diffusion.logic.inputs import CheckedImage, check_mask_matches, read_input
from diffusion.logic.keys import (
    GENERATIONS_PREFIX,
    STYLING_PREFIX,
    image_key,
    mask_key,
    output_folder,
)
from diffusion.logic.ports import DiffusionModel, InputImages, OutputStore
from diffusion.logic.requests import Sampling, resolve_generation, resolve_styling
from shared.model_service import ModelService, elapsed_ms
from shared.models.diffusion import (
    MAX_SEED,
    DiffusionSettings,
    EndpointSettings,
    GenerationAnswer,
    GenerationRequest,
    StoredImage,
    StylingAnswer,
    StylingRequest,
)
from shared.models.errors import DependencyError
from shared.retry import Deadline, RetryPolicy

# A 512x512 image at 25 steps takes a few seconds on one GPU (the reference styling workflow
# reports ~15 s for three 768 px images): an attempt started with less time left would almost
# surely be cut off, so the answer is a 503 with Retry-After instead.
MIN_MODEL_ATTEMPT_SECONDS = 5.0
MODEL_RETRY_POLICY = RetryPolicy(
    attempts=3, base_delay=0.5, max_delay=2.0, min_attempt_seconds=MIN_MODEL_ATTEMPT_SECONDS
)
JPEG = "image/jpeg"
PNG = "image/png"


def random_seed() -> int:
    return secrets.randbelow(MAX_SEED + 1)


@dataclass(frozen=True)
class Outcome:
    """The answer, and what the handler records about it (never prompts or image bytes)."""

    answer: GenerationAnswer | StylingAnswer
    route: str
    sampling: Sampling
    endpoint_name: str
    # Generations: the asked size; styling: the photo's size, and where each input came from.
    size: str
    inputs: Mapping[str, str]
    timings_ms: dict[str, int]


@dataclass(kw_only=True)
class DiffusionService(ModelService):
    settings: DiffusionSettings
    uploads: InputImages
    model: DiffusionModel
    store: OutputStore
    model_retry_policy: RetryPolicy = field(default_factory=lambda: MODEL_RETRY_POLICY)
    seed: Callable[[], int] = random_seed

    def generate(
        self, request: GenerationRequest, *, request_id: str, deadline: Deadline
    ) -> Outcome:
        started = time.perf_counter()
        job = resolve_generation(request, self.settings, random_seed=self.seed)
        endpoint = self.settings.generation
        body = encode_body(generation_body(job), what=endpoint.label)

        stage = time.perf_counter()
        answer = self._call(endpoint, body, job.sampling, deadline, expect_mask=False)
        timings = {"model": elapsed_ms(stage)}

        stage = time.perf_counter()
        folder = output_folder(GENERATIONS_PREFIX, request_id, self.now())
        images, _ = self._store(folder, answer, deadline)
        timings["store"] = elapsed_ms(stage)
        timings["total"] = elapsed_ms(started)
        return Outcome(
            answer=GenerationAnswer(request_id=request_id, images=images, seed=job.sampling.seed),
            route="generations",
            sampling=job.sampling,
            endpoint_name=endpoint.endpoint_name,
            size=f"{job.width}x{job.height}",
            inputs={},
            timings_ms=timings,
        )

    def style(self, request: StylingRequest, *, request_id: str, deadline: Deadline) -> Outcome:
        started = time.perf_counter()
        job = resolve_styling(request, self.settings, random_seed=self.seed)
        endpoint = self.settings.styling

        stage = time.perf_counter()
        image = self._input("image", request, deadline)
        mask = self._input("mask", request, deadline) if request.mask is not None else None
        if mask is not None:
            check_mask_matches(image, mask)
        body = encode_body(
            styling_body(job, image.data, mask.data if mask is not None else None),
            what=endpoint.label,
        )
        timings = {"inputs": elapsed_ms(stage)}

        stage = time.perf_counter()
        answer = self._call(
            endpoint, body, job.sampling, deadline, expect_mask=job.mask_prompt is not None
        )
        timings["model"] = elapsed_ms(stage)

        stage = time.perf_counter()
        folder = output_folder(STYLING_PREFIX, request_id, self.now())
        images, stored_mask = self._store(folder, answer, deadline)
        timings["store"] = elapsed_ms(stage)
        timings["total"] = elapsed_ms(started)
        inputs = {"image": image.source}
        if mask is not None:
            inputs["mask"] = mask.source
        return Outcome(
            answer=StylingAnswer(
                request_id=request_id, images=images, mask=stored_mask, seed=job.sampling.seed
            ),
            route="styling",
            sampling=job.sampling,
            endpoint_name=endpoint.endpoint_name,
            size=f"{image.info.width}x{image.info.height}",
            inputs=inputs,
            timings_ms=timings,
        )

    # -- steps -------------------------------------------------------------------------------

    def _input(self, name: str, request: StylingRequest, deadline: Deadline) -> CheckedImage:
        source = request.image if name == "image" else request.mask
        assert source is not None
        checked: CheckedImage = self._retrying(
            partial(read_input, name, source, self.settings, self.uploads),
            deadline,
            self.data_retry_policy,
        )
        return checked

    def _call(
        self,
        endpoint: EndpointSettings,
        body: bytes,
        sampling: Sampling,
        deadline: Deadline,
        *,
        expect_mask: bool,
    ) -> Answer:
        payload = self._retrying(
            partial(self._invoke, endpoint, body, deadline), deadline, self.model_retry_policy
        )
        return parse_answer(payload, endpoint, sampling, expect_mask=expect_mask)

    def _invoke(self, endpoint: EndpointSettings, body: bytes, deadline: Deadline) -> bytes:
        """One endpoint call whose read timeout ends by the deadline (which already keeps the
        margin to store the images and answer), so the function answers before it times out."""
        seconds = math.floor(deadline.remaining())
        if seconds < self.model_retry_policy.min_attempt_seconds:
            raise DependencyError(
                "model_unavailable",
                f"too little time left ({seconds} s) to call the {endpoint.label} endpoint; "
                "retry the request",
                retryable=True,
            )
        return self.model.invoke(endpoint, body, timeout_seconds=seconds)

    def _store(
        self, folder: str, answer: Answer, deadline: Deadline
    ) -> tuple[list[StoredImage], StoredImage | None]:
        created = self.now()
        files = [(image_key(folder, n), data, JPEG) for n, data in enumerate(answer.images, 1)]
        if answer.mask is not None:
            files.append((mask_key(folder), answer.mask, PNG))
        for key, data, content_type in files:
            self._retrying(
                partial(self.store.put_image, key, data, content_type=content_type),
                deadline,
                self.data_retry_policy,
            )
        seconds = self.settings.presigned_url_seconds
        expires_at = (
            (created + timedelta(seconds=seconds))
            .astimezone(UTC)
            .isoformat(timespec="seconds")
            .replace("+00:00", "Z")
        )
        stored = [
            StoredImage(
                key=key, url=self.store.presign_get(key, expires_in=seconds), expires_at=expires_at
            )
            for key, _, _ in files
        ]
        if answer.mask is not None:
            return stored[:-1], stored[-1]
        return stored, None
