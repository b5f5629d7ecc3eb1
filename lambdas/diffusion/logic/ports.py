"""What generation and styling need from the outside world; adapters implement these, tests fake
them."""

from __future__ import annotations

from typing import Protocol

from shared.models.diffusion import EndpointSettings


class InputImages(Protocol):
    def read(self, key: str, *, max_bytes: int, field: str) -> bytes:
        """The object's bytes; RequestError (naming `field` and the key) when it does not exist
        or is larger than `max_bytes`."""
        ...


class DiffusionModel(Protocol):
    def invoke(self, endpoint: EndpointSettings, body: bytes, *, timeout_seconds: int) -> bytes:
        """The raw answer to a JSON `body` (already encoded, so its size was checked against
        InvokeEndpoint's limit); the call gives up after at most `timeout_seconds` of waiting."""
        ...


class OutputStore(Protocol):
    def put_image(self, key: str, data: bytes, *, content_type: str) -> None: ...

    def presign_get(self, key: str, *, expires_in: int) -> str: ...
