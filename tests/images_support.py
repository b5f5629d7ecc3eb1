"""Builders shared by the images tests: settings, Titan answers, PNGs, fakes, events."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from infra.config import load_stage_config
from infra.stacks.api_settings import images_settings
from shared.models.images import GenerateImagesRequest, ImagesSettings
from tests.support import cdk_json_context

# The ARN shape Bedrock gives a provisioned throughput (12 lowercase letters or digits).
MODEL_ARN = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abcd1234efgh"
NEW_MODEL_ARN = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/zyxw9876vuts"
PARAMETER = "/atelier/dev/titan/provisioned-model-arn"
RESULTS_BUCKET = "atelier-dev-results"
# An API Gateway request id (a UUID).
REQUEST_ID = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"


def settings_document(stage: str = "dev") -> dict[str, Any]:
    """Exactly what the Api stack puts into IMAGES_SETTINGS for `stage`."""
    return images_settings(load_stage_config(cdk_json_context(), stage))


def settings(**overrides: Any) -> ImagesSettings:
    return ImagesSettings.model_validate({**settings_document(), **overrides})


def request(**fields: Any) -> GenerateImagesRequest:
    return GenerateImagesRequest.model_validate(
        {"prompt": "Ron the dog on a white dog bed", "width": 1024, "height": 1024, **fields}
    )


def png_bytes(size: tuple[int, int] = (8, 8), colour: tuple[int, int, int] = (20, 40, 90)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def titan_answer(count: int = 1, **extra: Any) -> bytes:
    """A Titan text-to-image answer body with `count` distinct PNGs."""
    images = [
        base64.b64encode(png_bytes(colour=(index * 40 % 256, 80, 120))).decode()
        for index in range(count)
    ]
    return json.dumps({"images": images, **extra}).encode()


@dataclass
class FakeModelArn:
    value: str | None = MODEL_ARN
    name: str = PARAMETER
    reads: int = 0
    invalidations: int = 0

    def get(self) -> str | None:
        self.reads += 1
        return self.value

    def invalidate(self) -> None:
        self.invalidations += 1


@dataclass
class FakeImageModel:
    answers: list[bytes | Exception] = field(default_factory=list)
    calls: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list)

    timeouts: list[int] = field(default_factory=list)

    def invoke(self, model_arn: str, body: Mapping[str, Any], *, timeout_seconds: int) -> bytes:
        self.calls.append((model_arn, body))
        self.timeouts.append(timeout_seconds)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


@dataclass
class InMemoryImageStore:
    objects: dict[str, bytes] = field(default_factory=dict)

    def put_png(self, key: str, data: bytes) -> None:
        self.objects[key] = data

    def presign_get(self, key: str, *, expires_in: int) -> str:
        return f"https://example.test/{key}?expires={expires_in}"


def images_body(**fields: Any) -> str:
    return json.dumps(
        {"prompt": "Ron the dog on a white dog bed", "width": 1024, "height": 1024, **fields}
    )
