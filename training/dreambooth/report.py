"""The report of a `dreambooth.prepare` run: each image's findings and fixes, the dataset's own
findings, its verdict (valid when nothing is an error), report.json, and the few lines a person
reads at a terminal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from common.image_checks import ImageInfo
from dreambooth.findings import Finding, PrepareError, Role, Severity
from dreambooth.layout import CLASS_DATA_DIR, DATASET_INFO

SUMMARY_LIMIT = 50


@dataclass(frozen=True)
class ImageResult:
    role: Role
    # Its name in the dataset (a fixed copy may be renamed).
    name: str
    # The user's file.
    source: Path
    # The file that is (or would be) in the dataset: the source or its fixed copy.
    path: Path
    info: ImageInfo | None
    findings: tuple[Finding, ...]
    fixes: tuple[str, ...] = ()

    @property
    def file(self) -> str:
        """Its place in the dataset: the key under the dataset's folder or prefix."""
        return self.name if self.role == "instance" else f"{CLASS_DATA_DIR}/{self.name}"

    @property
    def ok(self) -> bool:
        return not any(finding.is_error for finding in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "role": self.role,
            "source": str(self.source),
            "ok": self.ok,
            "rules": list(dict.fromkeys(str(finding.rule) for finding in self.findings)),
            "fixes": list(self.fixes),
            "image": self.info.to_dict() if self.info else None,
        }


@dataclass
class Report:
    mode: Literal["check", "build"]
    # The folder checked (check) or the instance-image folder (build).
    source: Path
    images: list[ImageResult]
    findings: list[Finding]
    # The prompts as read (check) or as written (build); None when there is no usable object.
    dataset_info: dict[str, Any] | None
    prior_preservation: bool
    resolution: int
    fixed: bool = False
    # Where the dataset is: the folder checked, or OUT/dataset once built (None if not built).
    dataset_dir: Path | None = None
    class_source: Path | None = None
    # The limits it was checked against (`dreambooth.prepare.limits`), for report.json.
    limits: dict[str, Any] = field(default_factory=dict)

    @property
    def all_findings(self) -> list[Finding]:
        return [*self.findings, *(finding for image in self.images for finding in image.findings)]

    @property
    def errors(self) -> list[Finding]:
        return [finding for finding in self.all_findings if finding.is_error]

    @property
    def warnings(self) -> list[Finding]:
        return [finding for finding in self.all_findings if not finding.is_error]

    @property
    def valid(self) -> bool:
        return not self.errors

    @property
    def instance_images(self) -> list[ImageResult]:
        return [image for image in self.images if image.role == "instance"]

    @property
    def class_images(self) -> list[ImageResult]:
        return [image for image in self.images if image.role == "class"]

    def rules(self, severity: Severity | None = None) -> dict[str, list[str]]:
        """File (or "" for the dataset) -> the rules it breaks, for tests and quick reading."""
        found: dict[str, list[str]] = {}
        for finding in self.all_findings:
            if severity is None or finding.severity is severity:
                rules = found.setdefault(finding.file or "", [])
                if str(finding.rule) not in rules:
                    rules.append(str(finding.rule))
        return found

    def dataset_files(self) -> list[tuple[Path, str]]:
        """(local file, key under the dataset prefix): the images, then dataset_info.json."""
        if not self.valid or self.dataset_dir is None:
            raise PrepareError("the dataset has errors: fix them first (see report.json)")
        files = [(image.path, image.file) for image in self.images]
        if self.mode == "build":
            files = [(self.dataset_dir / key, key) for _, key in files]
        return [*files, (self.dataset_dir / DATASET_INFO, DATASET_INFO)]

    def to_dict(self) -> dict[str, Any]:
        by_rule = Counter(str(finding.rule) for finding in self.all_findings)
        return {
            "valid": self.valid,
            "mode": self.mode,
            "source": str(self.source),
            "class_source": str(self.class_source) if self.class_source else None,
            "dataset_dir": str(self.dataset_dir) if self.dataset_dir else None,
            "prior_preservation": self.prior_preservation,
            "resolution": self.resolution,
            "fix": self.fixed,
            "dataset_info": self.dataset_info,
            "counts": {
                "instance_images": len(self.instance_images),
                "class_images": len(self.class_images),
                "errors": len(self.errors),
                "warnings": len(self.warnings),
                "fixed": sum(1 for image in self.images if image.fixes),
                "by_rule": dict(sorted(by_rule.items())),
            },
            "errors": [finding.to_dict() for finding in self.errors],
            "warnings": [finding.to_dict() for finding in self.warnings],
            "limits": self.limits,
            "images": [image.to_dict() for image in self.images],
        }

    def summary(self, limit: int = SUMMARY_LIMIT) -> str:
        """A few lines for a person at a terminal; report.json has every detail."""
        verdict = "valid" if self.valid else f"NOT valid: {len(self.errors)} errors to fix"
        lines = [
            f"Checked {len(self.instance_images)} instance images and {len(self.class_images)} "
            f"class images from {self.source}: {verdict}, {len(self.warnings)} warnings."
        ]
        fixed = [image for image in self.images if image.fixes]
        if fixed:
            lines.append(f"Fixed {len(fixed)} images (copies; the originals are unchanged).")
        lines.extend(_listed("Error", self.errors, limit))
        fixable = [finding for finding in self.errors if finding.fixable]
        if fixable and not self.fixed:
            lines.append(f"{len(fixable)} of the errors can be repaired with --fix.")
        lines.extend(_listed("Warning", self.warnings, limit))
        if self.prior_preservation and self.valid:
            lines.append(
                f"Prior preservation: {len(self.class_images)} class images; the job generates "
                "the rest of num_class_images from class_prompt."
            )
        return "\n".join(lines)


def _listed(label: str, findings: Sequence[Finding], limit: int) -> list[str]:
    lines = [f"{label}: {finding.line()}" for finding in findings[:limit]]
    if len(findings) > limit:
        lines.append(f"... and {len(findings) - limit} more (see report.json)")
    return lines
