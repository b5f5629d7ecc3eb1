"""cfn-lint over every synthesized template: zero errors, zero warnings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cfnlint.api import lint
from cfnlint.config import ManualArgs

from tests.support import SynthesizedApp

pytestmark = pytest.mark.infra

# Where retailers are most likely to deploy; Bedrock and SageMaker GPU capacity exist in both.
REGIONS = ["us-east-1", "eu-west-1"]


def _lint(template: dict[str, object]) -> list[str]:
    matches = lint(json.dumps(template), config=ManualArgs(regions=REGIONS))
    return [f"{match.rule.id} {match.message} ({match.path_string})" for match in matches]


def test_every_template_of_every_stage_is_clean(
    synthesized_apps: dict[str, SynthesizedApp], variant_app: SynthesizedApp
) -> None:
    # The variant adds what the shipped config leaves off: the endpoint, spot training.
    apps = [*synthesized_apps.values(), variant_app]
    linted = 0
    for app in apps:
        for template_file in sorted(Path(app.assembly_dir).glob("*.template.json")):
            findings = _lint(json.loads(template_file.read_text()))
            assert findings == [], f"{app.stage}/{template_file.name}: {findings}"
            linted += 1
    assert linted == sum(len(app.templates) for app in apps)


def test_the_linter_does_report_a_broken_template() -> None:
    # A check that cannot fail proves nothing: an invalid property must be reported.
    broken = {
        "Resources": {"Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"Versioning": "on"}}}
    }
    findings = _lint(broken)
    assert any(finding.startswith("E3002") for finding in findings), findings
