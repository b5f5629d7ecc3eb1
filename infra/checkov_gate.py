"""checkov over the synthesized templates: `python -m infra.checkov_gate cdk.out`.

Every failed check fails the gate, and so does a skip without a real reason (checkov itself
accepts a skip with no comment) or a template checkov could not parse. A check is skipped only
per resource, with its reason in code (infra/checkov_skips.py). checkov runs from its own venv
(.checkov-venv, `make install-checkov`): its pinned dependencies clash with the main venv's.
The JSON report is kept beside the templates (`checkov.json`) for `infra.summary`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
CHECKOV = REPO_ROOT / ".checkov-venv" / "bin" / "checkov"
REPORT_FILE = "checkov.json"
# As for cdk-nag acknowledgments (infra/nag.py, which this module does not import: that would
# start the CDK's Node runtime): a reason says why the check does not apply, not that it was seen.
MIN_REASON_LENGTH = 40
# What checkov records for a skip whose metadata has no comment.
NO_COMMENT = "No comment provided"
# Six templates take about 5 s; this only stops a hung run.
TIMEOUT_SECONDS = 600


class CheckovError(RuntimeError):
    """checkov could not run or its output could not be read."""


@dataclass(frozen=True)
class Finding:
    check_id: str
    check_name: str
    resource: str  # e.g. AWS::SQS::Queue.UploadsQueue02370CE5
    template: str  # file name
    reason: str | None = None  # the skip's comment

    def describe(self) -> str:
        return f"{self.check_id} on {self.resource} in {self.template}: {self.check_name}"


@dataclass(frozen=True)
class CheckovReport:
    passed: int
    failed: tuple[Finding, ...]
    skipped: tuple[Finding, ...]
    parsing_errors: tuple[str, ...]

    @property
    def skipped_without_reason(self) -> tuple[Finding, ...]:
        return tuple(skip for skip in self.skipped if not has_reason(skip.reason))

    @property
    def skipped_with_reason(self) -> tuple[Finding, ...]:
        return tuple(skip for skip in self.skipped if has_reason(skip.reason))

    @property
    def failed_without_reason(self) -> int:
        return len(self.failed) + len(self.skipped_without_reason)

    @property
    def ok(self) -> bool:
        return self.failed_without_reason == 0 and not self.parsing_errors

    def figure(self) -> str:
        return (
            f"checkov: {self.passed} passed, {self.failed_without_reason} failed without a "
            f"reason, {len(self.skipped_with_reason)} skipped with a reason"
        )


def has_reason(comment: str | None) -> bool:
    return (
        comment is not None
        and comment.strip() != NO_COMMENT
        and len(comment.strip()) >= MIN_REASON_LENGTH
    )


def run_checkov(templates: Sequence[Path], *, checkov: Path = CHECKOV) -> Any:
    """checkov's JSON report on `templates` (CloudFormation checks only, nothing downloaded)."""
    if not templates:
        raise CheckovError("no template to check")
    if not checkov.is_file():
        raise CheckovError(f"checkov is not installed at {checkov}: run `make install-checkov`")
    command = [str(checkov), "--framework", "cloudformation", "--skip-download", "--compact"]
    command += ["--output", "json"]
    for template in templates:
        command += ["--file", str(template)]
    # No update check against PyPI: the gate must give the same answer offline.
    env = {**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"}
    try:
        result = subprocess.run(  # noqa: S603 - the pinned checkov and our own template paths
            command, capture_output=True, text=True, env=env, timeout=TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise CheckovError(f"checkov ran longer than {TIMEOUT_SECONDS} s") from error
    # 0: everything passed, 1: some check failed; anything else is checkov's own failure.
    if result.returncode not in (0, 1):
        raise CheckovError(f"checkov exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError as error:
        raise CheckovError(f"checkov printed no JSON report: {result.stdout[:500]!r}") from error


def _finding(check: dict[str, Any]) -> Finding:
    return Finding(
        check_id=str(check["check_id"]),
        check_name=str(check.get("check_name", "")),
        resource=str(check.get("resource", "?")),
        template=Path(str(check.get("file_path", "?"))).name,
        reason=(check.get("check_result") or {}).get("suppress_comment"),
    )


def parse_report(raw: Any) -> CheckovReport:
    """The figures of a checkov JSON report (one framework: a dict; several: a list)."""
    reports = raw if isinstance(raw, list) else [raw]
    passed, failed, skipped, parsing_errors = 0, [], [], []
    for report in reports:
        if not isinstance(report, dict):
            raise CheckovError(f"unexpected checkov report: {report!r:.200}")
        results = report.get("results")
        if results is None:
            # A scan that found nothing to check is a summary alone.
            passed += int(report.get("passed", 0))
            failed_count = int(report.get("failed", 0))
            if failed_count:
                raise CheckovError(f"{failed_count} failed checks without details")
            continue
        passed += len(results.get("passed_checks", []))
        failed += [_finding(check) for check in results.get("failed_checks", [])]
        skipped += [_finding(check) for check in results.get("skipped_checks", [])]
        parsing_errors += [str(path) for path in results.get("parsing_errors", [])]
    return CheckovReport(passed, tuple(failed), tuple(skipped), tuple(parsing_errors))


def check_templates(
    templates: Sequence[Path], *, checkov: Path = CHECKOV, report_path: Path | None = None
) -> CheckovReport:
    raw = run_checkov(templates, checkov=checkov)
    if report_path is not None:
        report_path.write_text(json.dumps(raw, indent=1))
    return parse_report(raw)


def load_report(assembly_dir: Path) -> CheckovReport | None:
    """The report `make synth` left in the assembly, if checkov ran on it."""
    path = assembly_dir / REPORT_FILE
    return parse_report(json.loads(path.read_text())) if path.is_file() else None


def explain_failures(report: CheckovReport) -> list[str]:
    lines = [f"  FAILED {finding.describe()}" for finding in report.failed]
    lines += [
        f"  SKIPPED WITHOUT A REASON {finding.describe()} (comment: {finding.reason!r})"
        for finding in report.skipped_without_reason
    ]
    lines += [f"  NOT PARSED {path}" for path in report.parsing_errors]
    if lines:
        lines.append(
            "Fix each, or skip it on that resource with infra.checkov_skips.skip_check(resource, "
            "check_id, reason) and a reason a reviewer can check."
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("assembly_dir", nargs="?", default="cdk.out", type=Path)
    parser.add_argument("--checkov", type=Path, default=CHECKOV, help="the checkov executable")
    args = parser.parse_args(argv)
    templates = sorted(args.assembly_dir.glob("*.template.json"))
    try:
        report = check_templates(
            templates, checkov=args.checkov, report_path=args.assembly_dir / REPORT_FILE
        )
    except CheckovError as error:
        print(f"checkov: error: {error}", file=sys.stderr)
        return 2
    for line in explain_failures(report):
        print(line, file=sys.stderr)
    print(f"{report.figure()} in {len(templates)} template(s)")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
