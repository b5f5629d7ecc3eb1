"""The one way we skip a checkov check: on one resource, with the reason in code.

checkov reads `Metadata.checkov.skip: [{id, comment}]` from each CloudFormation resource, so a
skip written here travels in the synthesized template beside the resource it is about, and
`make synth` (infra/checkov_gate.py) counts a skip without a real reason as a failure. This is
the checkov counterpart of `infra.nag.acknowledge`: use the narrowest resource, say why the
check does not apply there, and fix what is worth fixing instead of skipping it.
"""

from __future__ import annotations

import re
from typing import Any

from aws_cdk import CfnResource
from aws_cdk import aws_lambda as lambda_
from constructs import IConstruct

from infra.checkov_gate import MIN_REASON_LENGTH

METADATA_KEY = "checkov"
# checkov's AWS check ids: CKV_AWS_<n> (resource checks) and CKV2_AWS_<n> (graph checks).
CHECK_ID = re.compile(r"^CKV2?_AWS_\d+$")

# The checks every Atelier Lambda function skips, and why; PythonFunction applies them.
FUNCTION_SKIPS: dict[str, str] = {
    "CKV_AWS_116": (
        "A function dead-letter queue only receives failed asynchronous invocations. API Gateway "
        "and Step Functions invoke these functions synchronously and handle each error, the "
        "uploads worker is fed by an SQS event source whose queue has its own redrive "
        "dead-letter queue, and a scheduled function is run again by its next schedule."
    ),
    "CKV_AWS_117": (
        "The functions reach only AWS service APIs (S3, DynamoDB, SageMaker, Bedrock, Step "
        "Functions, SSM) over TLS with IAM and no private network resource; a stage that wants "
        "them in its own subnets sets the network section (docs/networking.md), and this check "
        "then applies."
    ),
    "CKV_AWS_173": (
        "The environment holds resource names and settings only, never a secret; Lambda encrypts "
        "it at rest with its AWS managed key, and a customer key would add a KMS call to every "
        "cold start for no protection gained."
    ),
}
# Skipped only where the function sets no reserved concurrency.
UNRESERVED_CONCURRENCY_SKIP = (
    "CKV_AWS_115",
    "Concurrency is bounded where load enters: API Gateway stage throttling for the API "
    "functions, the SQS event source's maximum concurrency for the uploads worker, Map "
    "concurrency and single executions for workflow tasks; reserving concurrency per function "
    "would take it from the account's shared pool.",
)


def _cfn_resource(scope: IConstruct) -> CfnResource:
    if isinstance(scope, CfnResource):
        return scope
    child = scope.node.default_child
    if not isinstance(child, CfnResource):
        raise TypeError(f"{scope.node.path} has no CloudFormation resource to skip a check on")
    return child


def skipped_checks(resource: CfnResource) -> list[dict[str, str]]:
    """The `{id, comment}` skips already on `resource` (a copy)."""
    metadata: Any = resource.get_metadata(METADATA_KEY) or {}
    return [dict(skip) for skip in metadata.get("skip", [])]


def skip_check(scope: IConstruct, check_id: str, reason: str) -> None:
    """Skip checkov's `check_id` on the CloudFormation resource of `scope`, with `reason`."""
    if not CHECK_ID.match(check_id):
        raise ValueError(f"not a checkov AWS check id: {check_id!r}")
    if len(reason.strip()) < MIN_REASON_LENGTH:
        raise ValueError(f"skip of {check_id} needs a real reason, got {reason!r}")
    resource = _cfn_resource(scope)
    skips = skipped_checks(resource)
    if any(skip["id"] == check_id for skip in skips):
        raise ValueError(f"{check_id} is already skipped on {resource.node.path}")
    skips.append({"id": check_id, "comment": reason.strip()})
    resource.add_metadata(METADATA_KEY, {"skip": skips})


# Not skipped for a function that runs in the stage's VPC (the `network` section): it passes.
IN_VPC_CHECK = "CKV_AWS_117"


def skip_function_checks(
    function: lambda_.Function, *, reserved_concurrency: bool, in_vpc: bool = False
) -> None:
    """The Lambda checks that do not apply to an Atelier function (FUNCTION_SKIPS)."""
    for check_id, reason in FUNCTION_SKIPS.items():
        if in_vpc and check_id == IN_VPC_CHECK:
            continue
        skip_check(function, check_id, reason)
    if not reserved_concurrency:
        skip_check(function, *UNRESERVED_CONCURRENCY_SKIP)
