"""What `dreambooth.prepare` reports: the rules an image or the dataset can break (their names are
what report.json says), a finding's severity (errors stop the build, warnings do not), a finding
(rule, severity, message, the file it is about, whether --fix repairs it), and the builder's
error types (the command line exits 2 on `PrepareError`, 1 on `UploadError`). The limits
themselves are in `dreambooth.prepare`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

Role = Literal["instance", "class"]


class Rule(StrEnum):
    """What a finding is about; the value is what report.json says."""

    UNREADABLE_IMAGE = "unreadable_image"
    UNSUPPORTED_FORMAT = "unsupported_format"
    EXTENSION_MISMATCH = "extension_mismatch"
    COLOR_MODE = "color_mode"
    TOO_SMALL = "too_small"
    ASPECT_RATIO = "aspect_ratio"
    EXIF_ORIENTATION = "exif_orientation"
    DUPLICATE_IMAGE = "duplicate_image"
    IGNORED_FILE = "ignored_file"
    IMAGE_COUNT = "image_count"
    DATASET_INFO = "dataset_info"
    INSTANCE_PROMPT = "instance_prompt"
    CLASS_PROMPT = "class_prompt"
    IDENTIFIER = "identifier"
    UNKNOWN_KEY = "unknown_key"
    CLASS_IMAGES_UNUSED = "class_images_unused"
    DESTINATION = "destination"


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


class PrepareError(Exception):
    """Wrong layout or options, or a dataset that cannot be written: the CLI exits 2."""


class UploadError(Exception):
    """The dataset is valid but could not be uploaded: the CLI exits 1."""


@dataclass(frozen=True)
class Finding:
    rule: Rule
    severity: Severity
    message: str
    # Where in the dataset: "dog_01.jpg", "class_data_dir/c_01.png", "dataset_info.json"; None
    # for the dataset as a whole.
    file: str | None = None
    # Whether --fix repairs it.
    fixable: bool = False

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "rule": str(self.rule),
            "severity": str(self.severity),
            "message": self.message,
            "fixable": self.fixable,
        }

    def line(self) -> str:
        where = f"{self.file}: " if self.file else ""
        return f"{where}{self.message} [{self.rule}]"


def error_finding(
    rule: Rule, message: str, file: str | None = None, *, fixable: bool = False
) -> Finding:
    return Finding(rule, Severity.ERROR, message, file, fixable)


def warning_finding(
    rule: Rule, message: str, file: str | None = None, *, fixable: bool = False
) -> Finding:
    return Finding(rule, Severity.WARNING, message, file, fixable)
