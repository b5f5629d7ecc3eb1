"""Builders shared by the diffusion tests: settings, images, endpoint answers, fakes, bodies."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from infra.config import load_stage_config
from infra.stacks.api_settings import diffusion_settings
from shared.models.diffusion import DiffusionSettings, EndpointSettings
from shared.models.errors import RequestError
from tests.support import cdk_json_context

RESULTS_BUCKET = "atelier-dev-results"
UPLOADS_BUCKET = "atelier-dev-uploads"
# An API Gateway request id (a UUID).
REQUEST_ID = "0f3c5a2e-8b1d-4c7e-9a60-5d2b7e9c1f44"
GENERATION_ENDPOINT = "atelier-dev-dreambooth"
STYLING_ENDPOINT = "atelier-dev-styling"


def settings_document(stage: str = "dev") -> dict[str, Any]:
    """Exactly what the Api stack puts into DIFFUSION_SETTINGS for `stage`."""
    return diffusion_settings(load_stage_config(cdk_json_context(), stage))


def settings(**overrides: Any) -> DiffusionSettings:
    return DiffusionSettings.model_validate({**settings_document(), **overrides})


def endpoint(route: str = "generation") -> EndpointSettings:
    chosen: EndpointSettings = getattr(settings(), route)
    return chosen


def photo_bytes(
    size: tuple[int, int] = (96, 64),
    colour: tuple[int, int, int] = (20, 40, 90),
    image_format: str = "JPEG",
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=image_format)
    return buffer.getvalue()


def mask_bytes(size: tuple[int, int] = (96, 64)) -> bytes:
    """A PNG mask in L mode: white (paint) in the lower half, black (keep) above."""
    mask = Image.new("L", size, 0)
    mask.paste(255, (0, size[1] // 2, size[0], size[1]))
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def endpoint_answer(count: int = 1, *, mask: bool = False, **extra: Any) -> bytes:
    """An endpoint answer with `count` distinct JPEGs (and a PNG mask)."""
    document: dict[str, Any] = {
        "generated_images": [
            b64(photo_bytes(colour=(index * 50 % 256, 90, 30))) for index in range(count)
        ]
    }
    if mask:
        document["mask"] = b64(mask_bytes())
    document.update(extra)
    return json.dumps(document).encode()


def generation_body(**fields: Any) -> str:
    return json.dumps({"prompt": "a photo of riobugger cat on a beach", **fields})


def styling_body(**fields: Any) -> str:
    document: dict[str, Any] = {
        "image": {"base64": b64(photo_bytes())},
        "maskPrompt": "the skirt",
        "prompt": "a long floral summer skirt",
    }
    document.update(fields)
    return json.dumps({name: value for name, value in document.items() if value is not None})


@dataclass
class FakeInputImages:
    objects: dict[str, bytes] = field(default_factory=dict)
    reads: list[str] = field(default_factory=list)

    def read(self, key: str, *, max_bytes: int, field: str) -> bytes:
        self.reads.append(key)
        if key not in self.objects:
            raise RequestError("input_missing", f"{field}: {key} does not exist")
        data = self.objects[key]
        if len(data) > max_bytes:
            raise RequestError("image_too_large", f"{field}: too large", status=413)
        return data


@dataclass
class FakeDiffusionModel:
    answers: list[bytes | Exception] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    timeouts: list[int] = field(default_factory=list)

    def invoke(self, endpoint: EndpointSettings, body: bytes, *, timeout_seconds: int) -> bytes:
        self.calls.append((endpoint.endpoint_name, json.loads(body)))
        self.timeouts.append(timeout_seconds)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


@dataclass
class InMemoryOutputStore:
    objects: dict[str, tuple[bytes, str]] = field(default_factory=dict)

    def put_image(self, key: str, data: bytes, *, content_type: str) -> None:
        self.objects[key] = (data, content_type)

    def presign_get(self, key: str, *, expires_in: int) -> str:
        return f"https://example.test/{key}?expires={expires_in}"
