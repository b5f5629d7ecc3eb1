"""Request → provisioned model ARN → Titan → PNGs in S3 → presigned URLs.

Checks that cost nothing come first; the ARN is read from SSM (cached) only for a valid request,
and Titan is called only with a usable ARN. Images are stored before any URL is handed out.
"""

from __future__ import annotations

import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from functools import partial
from typing import Any

from images.logic.keys import image_key
from images.logic.ports import ImageModel, ImageStore, ModelArnSource
from images.logic.requests import ImageJob, resolve_job
from images.logic.titan import parse_images, text_to_image_body
from shared.model_service import ModelService, elapsed_ms
from shared.models.errors import DependencyError
from shared.models.images import (
    TITAN_MAX_SEED,
    GeneratedImage,
    GeneratedImages,
    GenerateImagesRequest,
    ImagesSettings,
    NoCustomizedModelError,
    ProvisionedModelUnavailableError,
)
from shared.retry import Deadline, RetryPolicy

# The only ARNs `POST /images` may invoke (the function's role allows nothing else either).
PROVISIONED_MODEL_ARN = re.compile(
    r"^arn:aws(-[a-z]+)*:bedrock:[a-z0-9-]{1,20}:\d{12}:provisioned-model/[a-z0-9]{12}$"
)
# Titan Image Generator on provisioned throughput takes about 5-10 s for one standard image and
# longer for premium quality or several images: an attempt started with less time left than this
# would almost surely be cut off, so the answer is a 503 with Retry-After instead.
MIN_MODEL_ATTEMPT_SECONDS = 10.0
MODEL_RETRY_POLICY = RetryPolicy(
    attempts=4, base_delay=0.5, max_delay=3.0, min_attempt_seconds=MIN_MODEL_ATTEMPT_SECONDS
)


def random_seed() -> int:
    return secrets.randbelow(TITAN_MAX_SEED + 1)


@dataclass(frozen=True)
class Generation:
    """The answer, and what the handler records about it."""

    answer: GeneratedImages
    job: ImageJob
    model_arn: str
    timings_ms: dict[str, int]


@dataclass(kw_only=True)
class ImageService(ModelService):
    settings: ImagesSettings
    model_arn: ModelArnSource
    image_model: ImageModel
    store: ImageStore
    model_retry_policy: RetryPolicy = field(default_factory=lambda: MODEL_RETRY_POLICY)
    seed: Callable[[], int] = random_seed

    def generate(
        self, request: GenerateImagesRequest, *, request_id: str, deadline: Deadline
    ) -> Generation:
        started = time.perf_counter()
        job = resolve_job(request, self.settings, random_seed=self.seed)
        model_arn = self._provisioned_model_arn(deadline)

        stage = time.perf_counter()
        body = text_to_image_body(job)
        try:
            payload = self._retrying(
                partial(self._invoke_model, model_arn, body, deadline),
                deadline,
                self.model_retry_policy,
            )
        except ProvisionedModelUnavailableError:
            # The workflow may already have recorded a new ARN: read it again next time.
            self.model_arn.invalidate()
            raise
        images = parse_images(payload, expected=job.number_of_images)
        timings = {"model": elapsed_ms(stage)}

        stage = time.perf_counter()
        created = self.now()
        keys = [image_key(request_id, number, created) for number in range(1, len(images) + 1)]
        for key, data in zip(keys, images, strict=True):
            self._retrying(partial(self.store.put_png, key, data), deadline, self.data_retry_policy)
        seconds = self.settings.presigned_url_seconds
        expires_at = (created + timedelta(seconds=seconds)).astimezone(UTC)
        answer = GeneratedImages(
            request_id=request_id,
            images=[
                GeneratedImage(
                    key=key,
                    url=self.store.presign_get(key, expires_in=seconds),
                    expires_at=expires_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
                )
                for key in keys
            ],
            seed=job.seed,
        )
        timings["store"] = elapsed_ms(stage)
        timings["total"] = elapsed_ms(started)
        return Generation(answer=answer, job=job, model_arn=model_arn, timings_ms=timings)

    def _invoke_model(self, model_arn: str, body: dict[str, Any], deadline: Deadline) -> bytes:
        """One Titan call whose read timeout ends by the deadline (the deadline already keeps
        the margin to store the images and answer), so the function answers before it times out."""
        seconds = math.floor(deadline.remaining())
        if seconds < self.model_retry_policy.min_attempt_seconds:
            raise DependencyError(
                "image_model_unavailable",
                f"too little time left ({seconds} s) to generate images; retry the request",
                retryable=True,
            )
        return self.image_model.invoke(model_arn, body, timeout_seconds=seconds)

    def _provisioned_model_arn(self, deadline: Deadline) -> str:
        value = self._retrying(self.model_arn.get, deadline, self.data_retry_policy)
        if value is None:
            raise NoCustomizedModelError(self.model_arn.name)
        arn = str(value).strip()
        if not PROVISIONED_MODEL_ARN.fullmatch(arn):
            raise DependencyError(
                "model_parameter_invalid",
                f"SSM parameter {self.model_arn.name} does not hold a provisioned model ARN "
                "(arn:aws:bedrock:<region>:<account>:provisioned-model/<id>)",
                retryable=False,
            )
        return arn
