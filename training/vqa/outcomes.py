"""What `vqa.prepare` says about a run besides the dataset: why a product or one of its rows was
left out (`Reason`, `SkippedItem`, both in report.json), the steps its progress callback names,
and its error types (the command line exits 2 on `PrepareError`, 1 on `UploadError`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Reason(StrEnum):
    """Why a product (attribute None) or one of its rows (attribute set) was left out."""

    MALFORMED_LINE = "malformed_line"
    BAD_ID = "bad_id"
    DUPLICATE_ID = "duplicate_id"
    FILTERED_ARTICLE_TYPE = "filtered_article_type"
    MISSING_IMAGE = "missing_image"
    UNREADABLE_IMAGE = "unreadable_image"
    MISSING_ATTRIBUTES_JSON = "missing_attributes_json"
    BAD_ATTRIBUTES_JSON = "bad_attributes_json"
    MISSING_VALUE = "missing_value"
    EMPTY_VALUE = "empty_value"
    BAD_VALUE = "bad_value"
    # The value's bytes in styles.csv are not UTF-8: decoding them would mean guessing the
    # encoding, and a wrong guess ("Bleu Fonc\ufffd") would become a training answer.
    NOT_UTF8 = "not_utf8"
    NO_ANSWERS = "no_answers"


# (step, done, total) as the build goes: "reading" styles.csv lines (total None until the end,
# which also lists images/), "checking" products (every image is opened and decoded: most of the
# time on a large catalog), then "writing" products (rows and image copies).
ProgressCallback = Callable[[str, int, int | None], None]


READING, CHECKING, WRITING = "reading", "checking", "writing"


def no_progress(step: str, done: int, total: int | None) -> None:
    del step, done, total


class PrepareError(Exception):
    """Wrong input layout or options: the CLI prints the message and exits 2."""


class UploadError(Exception):
    """The dataset was written locally but could not be uploaded: the CLI exits 1."""


@dataclass(frozen=True)
class SkippedItem:
    """A product (attribute None) or one question row of it that did not make it into the data."""

    line: int | None
    id: str | None
    reason: Reason
    message: str
    attribute: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "id": self.id,
            "attribute": self.attribute,
            "reason": str(self.reason),
            "message": self.message,
        }
