"""What both Titan workflows share: the tags and names they give Bedrock resources, the keys
their inputs may have, and the JSONata expressions that check those inputs and build the
customization job's and the throughput's arguments. Each check is true or false, never undefined,
so a Choice can branch on `$not(...)` of it. `TitanWorkflow` is the base of both workflow classes:
their Fail states and their AWS SDK tasks on Bedrock and on the SSM record.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks

from infra.config import MAX_TITAN_MODEL_UNITS, TITAN_HYPERPARAMETER_NAMES, StageConfig, TitanConfig
from infra.constructs.workflows import observed_state_machine
from infra.image_models import ImageModelLimits
from infra.nag import acknowledge
from infra.workflows.states import (
    aws_call,
    fail_states,
    input_has_only,
    json_list,
    jsonata,
    literal,
    notify_task,
)

if TYPE_CHECKING:
    from infra.stacks.bedrock import BedrockStack

# The datasets the customization role reads and where job outputs go, in the Data stack's buckets.
TITAN_DATASETS_PREFIX = "titan/"
TITAN_OUTPUT_PREFIX = "titan/"
# Tags on every throughput the workflow creates (lambdas/shared/models/customization.py reads
# the same names; a test keeps them equal).
EXPIRES_AT_TAG = "atelier:expires-at"
DEPLOYMENT_TAG = "atelier:deployment"
EXPIRY_NOTIFIED_TAG = "atelier:expiry-notified"
STAGE_TAG = "atelier:stage"

CUSTOMIZE_INPUT_KEYS = (
    "manifest",
    "customModelName",
    "hyperparameters",
    "modelUnits",
    "commitment",
    "ttlHours",
)
RELEASE_INPUT_KEYS = ("provisionedModelArn", "reason")
MAX_REASON_CHARACTERS = 1_000

# `YYYY-MM-DDTHH:MM:SSZ`: the form `aws bedrock tag-resource` users type back to extend.
ISO_UTC_PICTURE = "[Y0001]-[M01]-[D01]T[H01]:[m01]:[s01]Z"


def deployment_name(config: StageConfig) -> str:
    """The `atelier:deployment` tag value: which deployment created (and may release) it."""
    return f"{config.name_prefix}-{config.stage}"


def resource_tags(config: StageConfig) -> dict[str, str]:
    """Tags on the job, the custom model and the throughput (cost allocation and ownership)."""
    return {**config.tags, STAGE_TAG: config.stage, DEPLOYMENT_TAG: deployment_name(config)}


def job_name_prefix(config: StageConfig) -> str:
    """`<prefix>-<stage>-titan` with single hyphens: custom model and throughput names take no
    doubled hyphens, and they reuse the job name."""
    return re.sub("-+", "-", config.resource_name("titan"))


# --- customize: input checks (each true or false, never undefined) ----------------------------

CUSTOMIZE_INPUT_IS_AN_OBJECT = input_has_only(CUSTOMIZE_INPUT_KEYS)
# A JSON Lines file in a folder below titan/ of the datasets bucket, in S3 URI characters
# Bedrock accepts.
MANIFEST_IS_VALID = r"""(
  $m := $states.input.manifest;
  $type($m) = 'string' and $length($m) <= 900
  and $contains($m, /^titan\/([A-Za-z0-9][A-Za-z0-9._-]*\/)+[A-Za-z0-9][A-Za-z0-9._-]*\.jsonl$/)
)"""
CUSTOM_MODEL_NAME_IS_VALID = r"""(
  $n := $states.input.customModelName;
  $not($exists($n)) or (
    $type($n) = 'string' and $length($n) <= 63 and $contains($n, /^([0-9a-zA-Z][_-]?)+$/)
  )
)"""


def _whole_number_between(name: str, low: int, high: int) -> str:
    return (
        f"($v := {name}; $not($exists($v)) or ($type($v) = 'number' and $v = $floor($v) "
        f"and $v >= {low} and $v <= {high}))"
    )


def hyperparameters_are_valid(limits: ImageModelLimits) -> str:
    """Within the base model's ranges (infra/image_models.py)."""
    low_rate, high_rate = limits.learning_rate
    return f"""(
      $h := $states.input.hyperparameters;
      $not($exists($h)) or (
        $type($h) = 'object'
        and $count($keys($h)[$not($ in {json_list(TITAN_HYPERPARAMETER_NAMES)})]) = 0
        and {_whole_number_between("$lookup($h, 'stepCount')", *limits.step_count)}
        and {_whole_number_between("$lookup($h, 'batchSize')", *limits.batch_size)}
        and ($r := $lookup($h, 'learningRate'); $not($exists($r)) or (
          $type($r) = 'number' and $r >= {low_rate:.10f} and $r <= {high_rate}
        ))
      )
    )"""


def model_units_are_valid(max_units: int) -> str:
    return _whole_number_between("$states.input.modelUnits", 1, max_units)


def commitment_is_valid(allowed: Sequence[str]) -> str:
    """null stands for "none"; only the terms of titan.allowed_commitments pass."""
    return f"""(
      $c := $states.input.commitment;
      $not($exists($c)) or (
        ($c = null or $type($c) = 'string') and ($c = null ? 'none' : $c) in {json_list(allowed)}
      )
    )"""


def commitments_text(allowed: Sequence[str]) -> str:
    return ", ".join('null or "none"' if c == "none" else json.dumps(c) for c in allowed)


def ttl_is_valid(max_hours: int) -> str:
    return _whole_number_between("$states.input.ttlHours", 1, max_hours)


def job_name_expression(prefix: str) -> str:
    """`<prefix>-<yyyymmddhhmmss>-<8 hex>`: unique per execution, at most 63 characters
    (prefix at most 39: 20 name prefix + 12 stage + `-titan` and a hyphen)."""
    return (
        f"'{prefix}-' & $now('[Y0001][M01][D01][H01][m01][s01]') & '-' & $substring($uuid(), 0, 8)"
    )


def default_or_input(name: str, default: Any) -> str:
    return f"$exists($states.input.{name}) ? $states.input.{name} : {json.dumps(default)}"


def commitment_expression(default: str) -> str:
    """An explicit input (null or "none" included) wins over the config; "none" becomes null."""
    return f"""(
      $c := {default_or_input("commitment", default)};
      $c in ['OneMonth', 'SixMonths'] ? $c : null
    )"""


def learning_rate_text(value: float) -> str:
    """1e-05 → "0.00001": the decimal form Bedrock documents."""
    return f"{value:.12f}".rstrip("0").rstrip(".")


def hyperparameters_expression(config: StageConfig) -> str:
    """Config defaults (stepCount from the manifest's size when the config leaves it null), then
    the input's overrides, every value as a string."""
    defaults = config.titan.hyperparameters
    fixed = {
        "batchSize": str(defaults.batch_size),
        "learningRate": learning_rate_text(defaults.learning_rate),
    }
    steps = (
        literal(str(defaults.step_count))
        if defaults.step_count is not None
        else "$string($manifestReport.recommendedStepCount)"
    )
    return f"""$merge([
      {json.dumps(fixed)},
      {{ 'stepCount': {steps} }},
      (
        $h := $request.hyperparameters;
        $exists($h) and $count($keys($h)) > 0
          ? $merge($each($h, function($v, $k) {{ {{ $k: $string($v) }} }}))
          : {{}}
      )
    ])"""


def provisioning_arguments(config: StageConfig) -> str:
    """CreateProvisionedModelThroughput's arguments; CommitmentDuration only with a commitment
    (Bedrock takes its absence as "no commitment")."""
    static_tags = ", ".join(
        json.dumps({"Key": key, "Value": value}) for key, value in resource_tags(config).items()
    )
    return f"""$merge([
      {{
        'ModelId': $customModelArn,
        'ModelUnits': $modelUnits,
        'ProvisionedModelName': $jobName,
        'ClientRequestToken': $throughputToken,
        'Tags': [{{ 'Key': '{EXPIRES_AT_TAG}', 'Value': $expiresAt }}, {static_tags}]
      }},
      $commitment ? {{ 'CommitmentDuration': $commitment }} : {{}}
    ])"""


def _or_empty(expression: str) -> str:
    """An Assign must not evaluate to undefined (an absent field): '' stands for it."""
    return f"($v := {expression}; $exists($v) ? $v : '')"


# --- release: input checks ---------------------------------------------------------------------

RELEASE_INPUT_IS_AN_OBJECT = input_has_only(RELEASE_INPUT_KEYS)
PROVISIONED_MODEL_ARN_IS_VALID = r"""(
  $a := $states.input.provisionedModelArn;
  $not($exists($a)) or (
    $type($a) = 'string'
    and $contains($a, /^arn:aws[a-z-]*:bedrock:[a-z0-9-]+:[0-9]{12}:provisioned-model\/[a-z0-9]+$/)
  )
)"""
REASON_IS_VALID = f"""(
  $r := $states.input.reason;
  $not($exists($r)) or ($type($r) = 'string' and $length($r) <= {MAX_REASON_CHARACTERS})
)"""


def release_input_checks(fail: Callable[..., sfn.Fail]) -> list[tuple[str, sfn.Fail]]:
    """The release workflow's input checks in order, each with the Fail state that names the fix
    (the `fail` of `states.fail_states`)."""
    return [
        (
            RELEASE_INPUT_IS_AN_OBJECT,
            fail(
                "InvalidInput",
                "the input must be a JSON object with 'provisionedModelArn' and 'reason' "
                "(both optional) and no other keys",
            ),
        ),
        (
            PROVISIONED_MODEL_ARN_IS_VALID,
            fail(
                "InvalidProvisionedModelArn",
                jsonata(
                    "'provisionedModelArn must be a provisioned throughput ARN such as "
                    "arn:aws:bedrock:<region>:<account>:provisioned-model/<id>; got ' & "
                    "$string($states.input.provisionedModelArn)"
                ),
            ),
        ),
        (
            REASON_IS_VALID,
            fail(
                "InvalidReason",
                f"reason must be a string of at most {MAX_REASON_CHARACTERS} characters",
            ),
        ),
    ]


def titan_notify(
    stack: BedrockStack,
    construct_id: str,
    subject: tuple[str, str],
    message: str,
    outputs: Mapping[str, Any],
) -> tasks.SnsPublish:
    """A Titan workflow's `Notify` state on the Bedrock stack's topic. `subject` is (text, a
    JSONata expression): `[<deployment>] <text><value>`, cut to SNS's 100 characters."""
    text, value = subject
    return notify_task(
        stack,
        construct_id,
        topic=stack.topic,
        subject=jsonata(
            f"$substring('[{deployment_name(stack.config)}] {text}' & {value}, 0, 100)"
        ),
        message=message,
        outputs=outputs,
    )


# What each workflow's role and state machine are for: (role description, state machine comment).
PURPOSES = {
    "Customize": (
        "customizes Titan Image Generator and provisions its throughput",
        "Customizes Titan Image Generator, provisions its throughput and records it",
    ),
    "Release": (
        "releases Titan provisioned throughputs",
        "Releases a Titan provisioned throughput and clears its SSM record",
    ),
}


def titan_state_machine(
    stack: BedrockStack,
    kind: str,
    definition: sfn.IChainable,
    statements: Sequence[iam.PolicyStatement],
    acknowledged: Sequence[tuple[str, str]],
    timeout: Duration,
) -> sfn.StateMachine:
    """The state machine `<prefix>-<stage>-titan-<kind>` (construct `Titan<Kind>`), its role and
    its one policy of `statements`; `acknowledged` holds (Bedrock resource pattern, reason) for
    each wildcard ARN cdk-nag reports in that policy."""
    config = stack.config
    role_description, comment = PURPOSES[kind]
    role = iam.Role(
        stack,
        f"Titan{kind}Role",
        assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
        description=f"Atelier {config.stage}: {role_description}",
    )
    policy = iam.Policy(stack, f"Titan{kind}Policy", roles=[role], statements=list(statements))
    for resource, reason in acknowledged:
        acknowledge(policy, f"AwsSolutions-IAM5[Resource::{stack.nag_arn(resource)}]", reason)
    return observed_state_machine(
        stack,
        f"Titan{kind}",
        config=config,
        name=config.resource_name(f"titan-{kind.lower()}"),
        comment=comment,
        definition=definition,
        role=role,
        policies=[policy],
        timeout=timeout,
    )


def bedrock_key_grant(key_arn: str, region: str) -> iam.PolicyStatement:
    """kms:CreateGrant on the data key, only for Bedrock's own use of it (the customization job
    and the custom model encrypt with it)."""
    return iam.PolicyStatement(
        actions=["kms:CreateGrant"],
        resources=[key_arn],
        conditions={
            "StringEquals": {"kms:ViaService": f"bedrock.{region}.amazonaws.com"},
            "Bool": {"kms:GrantIsForAWSResource": "true"},
        },
    )


def ready_message(deployment: str, *, release_state_machine_arn: str, parameter_name: str) -> str:
    """The customize workflow's notice (a JSONata template, kept as written): what was made, what
    it costs, and the commands that release it now or keep it longer."""
    release_command = (
        "aws stepfunctions start-execution --state-machine-arn "
        f"{release_state_machine_arn}"
        ' --input \'{"provisionedModelArn": "'
    )
    message = " & ".join(
        [
            literal("Titan Image Generator customization "),
            "$jobName",
            literal(f" of Atelier {deployment} is ready.\n\nCustom model: "),
            "$customModelName",
            literal(" ("),
            "$customModelArn",
            literal(")\nProvisioned throughput: "),
            "$provisionedModelArn",
            literal(" ("),
            "$string($modelUnits)",
            literal(" model unit(s), "),
            "($commitment ? $commitment & ' commitment term' : 'no commitment term')",
            literal(
                f")\nRecorded in SSM parameter {parameter_name}: POST /images uses it "
                "now.\n\nIt bills every hour while it exists. The cost guard releases it "
                "after "
            ),
            "$expiresAt",
            literal(
                f" (its {EXPIRES_AT_TAG} tag; with a commitment term Bedrock deletes it only "
                "after the term, and you are notified instead).\n\nRelease it now:\n  "
                + release_command
            ),
            "$provisionedModelArn",
            literal(
                "\"}'\n\nKeep it longer (a UTC time):\n  aws bedrock tag-resource --resource-arn "
            ),
            "$provisionedModelArn",
            literal(f" --tags key={EXPIRES_AT_TAG},value=YYYY-MM-DDTHH:MM:SSZ\n"),
        ]
    )
    return message


def customize_input_checks(
    titan: TitanConfig, fail: Callable[..., sfn.Fail]
) -> list[tuple[str, sfn.Fail]]:
    """The customize workflow's input checks in order, each with the Fail state that names the
    fix (the `fail` of `states.fail_states`)."""
    limits = titan.limits
    return [
        (
            CUSTOMIZE_INPUT_IS_AN_OBJECT,
            fail(
                "InvalidInput",
                "the input must be a JSON object with 'manifest' (required) and "
                "'customModelName', 'hyperparameters', 'modelUnits', 'commitment', "
                "'ttlHours' (optional), and no other keys",
            ),
        ),
        (
            MANIFEST_IS_VALID,
            fail(
                "InvalidManifest",
                jsonata(
                    "'manifest must be the key of a .jsonl file in a folder under "
                    'titan/ of the datasets bucket, such as "titan/dogs/manifest.jsonl"; '
                    "got ' & "
                    "$string($states.input.manifest)"
                ),
            ),
        ),
        (
            CUSTOM_MODEL_NAME_IS_VALID,
            fail(
                "InvalidCustomModelName",
                "customModelName must be 1-63 letters, digits, '-' and '_', starting "
                "with a letter or digit, never two of '-' and '_' in a row, and unique "
                "in the account and region",
            ),
        ),
        (
            hyperparameters_are_valid(limits),
            fail(
                "InvalidHyperparameters",
                "hyperparameters must be an object of numbers among stepCount (whole, "
                f"{limits.step_count[0]}-{limits.step_count[1]}), batchSize (whole, "
                f"{limits.batch_size[0]}-{limits.batch_size[1]}) and learningRate "
                f"({learning_rate_text(limits.learning_rate[0])}-"
                f"{limits.learning_rate[1]:g}): {limits.name}'s ranges",
            ),
        ),
        (
            model_units_are_valid(titan.max_model_units),
            fail(
                "InvalidModelUnits",
                f"modelUnits must be a whole number from 1 to {titan.max_model_units} "
                "(titan.max_model_units; raise it in cdk.json to allow more, up to "
                f"{MAX_TITAN_MODEL_UNITS})",
            ),
        ),
        (
            commitment_is_valid(titan.allowed_commitments),
            fail(
                "InvalidCommitment",
                f"commitment must be {commitments_text(titan.allowed_commitments)} "
                '(titan.allowed_commitments; add "OneMonth" or "SixMonths" there to '
                "allow a term, which Bedrock bills in full and the cost guard cannot end "
                "early)",
            ),
        ),
        (
            ttl_is_valid(titan.max_throughput_ttl_hours),
            fail(
                "InvalidTtlHours",
                "ttlHours must be a whole number of hours from 1 to "
                f"{titan.max_throughput_ttl_hours} (titan.max_throughput_ttl_hours)",
            ),
        ),
    ]


class TitanWorkflow:
    """What both Titan workflows build their states with, in the Bedrock stack's scope (ids
    unchanged, see `titan_release`): the stack, its config, the deployment's name, the Fail
    states and the AWS SDK tasks, each under the construct id `<kind><name>`."""

    kind: ClassVar[str]

    def __init__(self, stack: BedrockStack) -> None:
        self.stack = stack
        self.config = stack.config
        self.deployment = deployment_name(stack.config)
        self.fail = fail_states(stack, self.kind)

    def _call(
        self,
        name: str,
        state_name: str,
        action: str,
        resources: str | Sequence[str],
        parameters: Mapping[str, Any],
        *,
        assign: Mapping[str, Any] | None = None,
    ) -> tasks.CallAwsService:
        """`action` is `<service>:<API action>`, granted on `resources` (ARNs or patterns)."""
        service, api_action = action.split(":")
        return aws_call(
            self.stack,
            self.kind + name,
            state_name=state_name,
            service=service,
            action=api_action,
            iam_resources=[resources] if isinstance(resources, str) else resources,
            parameters=parameters,
            assign=assign,
        )

    def _throughput_call(
        self,
        name: str,
        state_name: str,
        action: str,
        parameters: Mapping[str, Any],
        *,
        assign: Mapping[str, Any] | None = None,
    ) -> tasks.CallAwsService:
        """A Bedrock `action` on a provisioned throughput (granted on every throughput: Bedrock
        names them by an id it makes)."""
        arns = self.stack.provisioned_model_arns
        return self._call(name, state_name, f"bedrock:{action}", arns, parameters, assign=assign)

    def _parameter_call(
        self,
        name: str,
        state_name: str,
        action: str,
        *,
        fields: Mapping[str, Any] | None = None,
        assign: Mapping[str, Any] | None = None,
    ) -> tasks.CallAwsService:
        """An SSM `action` on the parameter that records the throughput `POST /images` uses."""
        stack = self.stack
        parameters = {"Name": stack.parameter_name, **(fields or {})}
        return self._call(
            name, state_name, f"ssm:{action}", stack.parameter_arn, parameters, assign=assign
        )
