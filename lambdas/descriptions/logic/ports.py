"""What the pipeline needs from the outside world; adapters implement these, tests fake them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from descriptions.logic.requests import Question
from shared.models.descriptions import StoredDescription, TextModelReply


class AttributeModel(Protocol):
    def extract(self, image: bytes, questions: Sequence[Question]) -> dict[str, str]:
        """Answer every question about the image in one call."""
        ...


class TextModel(Protocol):
    def converse(self, request: Mapping[str, Any]) -> TextModelReply: ...


class ResultsArchive(Protocol):
    def put_json(self, key: str, document: Mapping[str, Any]) -> None: ...


class DescriptionTable(Protocol):
    def put(self, description: StoredDescription) -> None: ...

    def get(self, product_id: str) -> StoredDescription | None: ...
