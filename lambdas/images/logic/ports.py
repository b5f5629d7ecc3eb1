"""What image generation needs from the outside world; adapters implement these, tests fake them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class ModelArnSource(Protocol):
    """The provisioned model's ARN as last recorded (cached), or None when none is provisioned."""

    name: str

    def get(self) -> str | None: ...

    def invalidate(self) -> None: ...


class ImageModel(Protocol):
    def invoke(self, model_arn: str, body: Mapping[str, Any], *, timeout_seconds: int) -> bytes:
        """The raw answer; the call gives up after at most `timeout_seconds` of waiting."""
        ...


class ImageStore(Protocol):
    def put_png(self, key: str, data: bytes) -> None: ...

    def presign_get(self, key: str, *, expires_in: int) -> str: ...
