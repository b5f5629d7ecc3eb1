"""What the pipeline needs from the outside world; adapters implement these, tests fake them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from descriptions.logic.images import ImageInfo
from descriptions.logic.requests import Question
from shared.models.attributes import AttributeAnswers, AttributesSource
from shared.models.descriptions import StoredDescription, TextModelReply


class AttributeSource(Protocol):
    """Where the attributes come from: the fine-tuned endpoint or a vision model on Bedrock
    (`shared.models.attributes`). Every caller gets one from the wiring and nothing else changes."""

    @property
    def source(self) -> AttributesSource:
        """What the stored description records as `attributesSource`."""
        ...

    def check_image(self, info: ImageInfo) -> None:
        """Raise RequestError when this source cannot take the image (its own limits, checked
        after the configured ones and before any model call)."""
        ...

    def answer(self, image: bytes, questions: Sequence[Question]) -> AttributeAnswers:
        """Answer every question about the image in one call."""
        ...


class TextModel(Protocol):
    def converse(self, request: Mapping[str, Any]) -> TextModelReply: ...


class ResultsArchive(Protocol):
    def put_json(self, key: str, document: Mapping[str, Any]) -> None: ...


class DescriptionTable(Protocol):
    def put(self, description: StoredDescription) -> None: ...

    def get(self, product_id: str) -> StoredDescription | None: ...
