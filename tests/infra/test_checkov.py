"""checkov over every synthesized template: no failed check without a written reason.

The gate (infra/checkov_gate.py) runs checkov from `.checkov-venv` (`make install-checkov`; make
test and make synth build it). The broken fixtures show it failing: a check that cannot fail
proves nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.checkov_gate import CHECKOV, check_templates, explain_failures, main
from tests.support import SynthesizedApp

pytestmark = pytest.mark.skipif(
    not CHECKOV.is_file(),
    reason=f"{CHECKOV} is missing: `make install-checkov` builds it (make test does)",
)

REASON = "A reason long enough to tell a reviewer why this check does not apply here."


def _template(tmp_path: Path, name: str, resources: dict[str, object]) -> Path:
    path = tmp_path / f"{name}.template.json"
    path.write_text(json.dumps({"Resources": resources}))
    return path


def _queue(**metadata: object) -> dict[str, object]:
    queue: dict[str, object] = {"Type": "AWS::SQS::Queue", "Properties": {}}
    if metadata:
        queue["Metadata"] = metadata
    return queue


@pytest.mark.infra
def test_every_template_of_every_stage_passes(
    synthesized_apps: dict[str, SynthesizedApp], variant_app: SynthesizedApp
) -> None:
    # The variant adds what the shipped config leaves off: endpoints, spot training.
    apps = [*synthesized_apps.values(), variant_app]
    templates = [
        template
        for app in apps
        for template in sorted(Path(app.assembly_dir).glob("*.template.json"))
    ]
    assert len(templates) == sum(len(app.templates) for app in apps)
    # One checkov run for all of them: its start-up dominates its run time.
    report = check_templates(templates)
    assert report.failed_without_reason == 0, "\n".join(explain_failures(report))
    assert report.parsing_errors == ()
    assert report.passed > 0
    # Every skip the apps carry is one checkov applied, each with its reason.
    assert report.skipped == report.skipped_with_reason


def test_an_unencrypted_queue_and_log_group_fail_the_gate(tmp_path: Path) -> None:
    log_group = {"Type": "AWS::Logs::LogGroup", "Properties": {"RetentionInDays": 30}}
    template = _template(tmp_path, "broken", {"Queue": _queue(), "Logs": log_group})
    report = check_templates([template])
    assert not report.ok
    assert sorted((finding.check_id, finding.resource) for finding in report.failed) == [
        ("CKV_AWS_158", "AWS::Logs::LogGroup.Logs"),
        ("CKV_AWS_27", "AWS::SQS::Queue.Queue"),
    ]
    assert report.figure().endswith("2 failed without a reason, 0 skipped with a reason")


def test_a_skip_needs_a_reason(tmp_path: Path) -> None:
    without = _queue(checkov={"skip": [{"id": "CKV_AWS_27"}]})
    too_short = _queue(checkov={"skip": [{"id": "CKV_AWS_27", "comment": "fine"}]})
    reasoned = _queue(checkov={"skip": [{"id": "CKV_AWS_27", "comment": REASON}]})
    template = _template(
        tmp_path, "skips", {"Without": without, "TooShort": too_short, "Reasoned": reasoned}
    )
    report = check_templates([template])
    assert report.failed == ()
    assert {finding.resource for finding in report.skipped_without_reason} == {
        "AWS::SQS::Queue.Without",
        "AWS::SQS::Queue.TooShort",
    }
    assert [finding.reason for finding in report.skipped_with_reason] == [REASON]
    assert report.failed_without_reason == 2
    assert not report.ok


def test_the_command_exits_1_on_a_failed_check_and_keeps_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _template(tmp_path, "broken", {"Queue": _queue()})
    assert main([str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "FAILED CKV_AWS_27 on AWS::SQS::Queue.Queue in broken.template.json" in captured.err
    assert "checkov: 0 passed, 1 failed without a reason" in captured.out
    assert (tmp_path / "checkov.json").is_file()


def test_the_command_exits_0_when_every_finding_has_a_reason(tmp_path: Path) -> None:
    reasoned = _queue(checkov={"skip": [{"id": "CKV_AWS_27", "comment": REASON}]})
    _template(tmp_path, "fine", {"Queue": reasoned})
    assert main([str(tmp_path)]) == 0


def test_an_assembly_without_templates_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path)]) == 2
    assert "no template to check" in capsys.readouterr().err
