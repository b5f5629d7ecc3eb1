"""cdk-nag AwsSolutions on the whole app, and the one way we acknowledge a finding.

cdk-nag 3 is a policy-validation plugin: any finding not acknowledged makes synthesis raise
`ValidationFailed`, so `make synth` and the tests cannot pass with an unexplained finding.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Stack, Stage, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

# A reason must tell a reviewer why the finding is safe here, not just that it was looked at.
MIN_REASON_LENGTH = 40


def attach_nag(app: Stage) -> None:
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge `rule_id` on `scope` and everything below it, with the reason in code.

    Use the narrowest scope that has the finding and, for IAM4/IAM5, the finding-specific id
    (e.g. `AwsSolutions-IAM5[Resource::*]`) so a new wildcard elsewhere still fails synth.
    """
    if not rule_id.startswith("AwsSolutions-"):
        raise ValueError(f"not an AwsSolutions rule id: {rule_id!r}")
    if len(reason.strip()) < MIN_REASON_LENGTH:
        raise ValueError(f"acknowledgment of {rule_id} needs a real reason, got {reason!r}")
    # cdk-nag 3 reports findings as `<pack>::<rule>` (e.g. `AwsSolutions::AwsSolutions-S1`).
    Validations.of(scope).acknowledge(Acknowledgment(id=f"AwsSolutions::{rule_id}", reason=reason))


def exported_name(exporting_stack: Stack, value: str) -> str:
    """The export a cross-stack reference to `value` imports, as cdk-nag names it in findings.

    `export_value` creates the very output the automatic reference would (same id and name), so
    acknowledging this name matches the synthesized policy exactly.
    """
    imported = exporting_stack.resolve(exporting_stack.export_value(value))
    return str(imported["Fn::ImportValue"])
