"""What `titan.prepare` finds and works on: the rules a record or the dataset can break (their
names are what report.json says), which of them --fix repairs, a finding, a record (an image
and its caption), and its error types (the command line exits 2 on `PrepareError`, 1 on
`UploadError`). The limits themselves are in `titan.prepare`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any


class Rule(StrEnum):
    """A rule a record (or the whole dataset) can break; the value is what report.json says."""

    UNREADABLE_IMAGE = "unreadable_image"
    UNSUPPORTED_FORMAT = "unsupported_format"
    EXTENSION_MISMATCH = "extension_mismatch"
    FILE_TOO_LARGE = "file_too_large"
    TOO_SMALL = "too_small"
    TOO_LARGE = "too_large"
    TOO_MANY_PIXELS = "too_many_pixels"
    ASPECT_RATIO = "aspect_ratio"
    COLOR_MODE = "color_mode"
    MISSING_CAPTION = "missing_caption"
    MISSING_IMAGE = "missing_image"
    CAPTION_TOO_SHORT = "caption_too_short"
    CAPTION_TOO_LONG = "caption_too_long"
    DUPLICATE_FILENAME = "duplicate_filename"
    TOO_FEW_RECORDS = "too_few_records"
    TOO_MANY_RECORDS = "too_many_records"


# What --fix repairs. Too small (upscaling blurs the subject), extreme aspect ratios (cropping
# could cut it out) and caption problems need a person.
FIXABLE_RULES = frozenset(
    {
        Rule.UNSUPPORTED_FORMAT,
        Rule.EXTENSION_MISMATCH,
        Rule.FILE_TOO_LARGE,
        Rule.TOO_LARGE,
        Rule.TOO_MANY_PIXELS,
        Rule.COLOR_MODE,
    }
)


RULE_ORDER = {rule: index for index, rule in enumerate(Rule)}


class PrepareError(Exception):
    """Wrong layout or options, or a dataset that cannot be written: the CLI exits 2."""


class UploadError(Exception):
    """The dataset was written locally but could not be uploaded: the CLI exits 1."""


@dataclass(frozen=True)
class Finding:
    rule: Rule
    message: str

    @property
    def fixable(self) -> bool:
        return self.rule in FIXABLE_RULES

    def to_dict(self) -> dict[str, Any]:
        return {"rule": str(self.rule), "message": self.message, "fixable": self.fixable}


@dataclass(frozen=True)
class Record:
    """One image and its caption, or a caption whose image is missing (path None)."""

    # The file name the manifest uses (`<prefix>images/<name>`); a fixed copy may be renamed.
    name: str
    path: Path | None
    caption: str | None
    # Where the caption came from ("captions.csv line 4", "ron_01.txt"), for the report.
    caption_source: str | None = None
    # The user's file when `path` is a fixed copy; otherwise the same as `path`.
    original: Path | None = None
    fixes: tuple[str, ...] = ()
    # Problems found while pairing images with captions (duplicates, missing caption).
    issues: tuple[Finding, ...] = ()

    def __post_init__(self) -> None:
        if self.original is None and self.path is not None:
            object.__setattr__(self, "original", self.path)
