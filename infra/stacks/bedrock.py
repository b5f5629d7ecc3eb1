"""Bedrock stack: fine-tune Titan Image Generator G1, serve it through Provisioned Throughput, and
never leave a throughput billing past its time.

No CloudFormation resource exists for customization jobs, custom models or provisioned
throughput, so two Step Functions workflows (JSONata) make the API calls:

- `<prefix>-<stage>-titan-customize` checks its input and the training manifest (a Lambda
  function reads it and HEADs every image), runs a customization job to its end (polling), creates
  a provisioned throughput tagged with its expiry, records its ARN in the SSM parameter
  `/<prefix>/<stage>/titan/provisioned-model-arn` (which `POST /images` reads) and notifies the
  topic. A throughput it cannot bring into service or record is handed to the release workflow.

      {"manifest": "titan/<name>/manifest.jsonl", "customModelName"?: "...",
       "hyperparameters"?: {"stepCount", "batchSize", "learningRate"}, "modelUnits"?: 1,
       "commitment"?: null | "OneMonth" | "SixMonths", "ttlHours"?: 4}

- `<prefix>-<stage>-titan-release` deletes a throughput of this deployment (by default the
  recorded one), clears the SSM parameter if it still names that throughput, and notifies.

      {"provisionedModelArn"?: "arn:aws:bedrock:...:provisioned-model/...", "reason"?: "..."}

The cost guard is a sweep, not a timer per throughput: every `titan.sweep_interval_minutes` an
EventBridge schedule runs a function that lists the account's throughputs, reads their tags, and
starts the release workflow for each one of this deployment whose `atelier:expires-at` has
passed (see lambdas/customization/logic/expiry.py). State lives on the throughputs themselves, so
a throughput is released even when the execution that created it failed, was stopped or never
recorded it, and a failed sweep is retried by the next one. Extending = moving the tag.

With `titan.base_model_id: null` (the shipped default: no Bedrock image model can be fine-tuned
today, docs/image-customization.md) the customize workflow, its manifest check and the
customization role are not built, as an endpoint is not built without its model. The release
workflow, the sweeper and the topic stay: a throughput made while a model was configured must
still be released, and the daily model lifecycle check notifies through the topic.

Compute only: the manifest, images and job outputs stay in the Data stack's buckets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from aws_cdk import Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.config import (
    MAX_TITAN_MODEL_UNITS,
    TITAN_HYPERPARAMETER_NAMES,
    StageConfig,
)
from infra.constructs.model_lifecycle import ModelLifecycleGuard, stage_inventory
from infra.constructs.publishing import publish_names
from infra.constructs.python_function import PythonFunction
from infra.constructs.workflows import observed_state_machine
from infra.image_models import ImageModelLimits
from infra.nag import acknowledge, exported_name
from infra.stacks.data import DataStack

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
# The release workflow waits out Bedrock's ConflictException (a throughput still being created or
# updated) for up to about 50 minutes.
RELEASE_TIMEOUT = Duration.hours(2)
# The sweeper lists and tags a handful of throughputs: a minute is plenty, and it must end well
# before the next sweep (at least 5 minutes later).
SWEEP_TIMEOUT = Duration.seconds(60)
# The manifest check HEADs up to 10,000 images, 32 at a time.
MANIFEST_CHECK_TIMEOUT = Duration.minutes(5)

BEDROCK_TRANSIENT_ERRORS = ["Bedrock.ThrottlingException", "Bedrock.InternalServerException"]
SSM_TRANSIENT_ERRORS = [
    "Ssm.ThrottlingException",
    "Ssm.TooManyUpdatesException",
    "Ssm.InternalServerErrorException",
]
# `YYYY-MM-DDTHH:MM:SSZ`: the form `aws bedrock tag-resource` users type back to extend.
ISO_UTC_PICTURE = "[Y0001]-[M01]-[D01]T[H01]:[m01]:[s01]Z"

# SSM parameter names under `/<name_prefix>/<stage>/bedrock/`: these always, and the customize
# workflow's when titan.base_model_id names a model (the CLI reads their absence together with the
# inventory's null base model as "not configured").
PUBLISHED_NAMES = (
    "titan-release-state-machine-arn",
    "titan-notifications-topic-arn",
    "titan-provisioned-model-parameter",
    # JSON: the stage's Bedrock models, endpoints and training base models (`atelier doctor`).
    "model-inventory",
)
CUSTOMIZE_NAMES = ("titan-customize-state-machine-arn", "titan-customization-role-arn")
PUBLISHED_NAMES_WHEN_CUSTOMIZABLE = (*PUBLISHED_NAMES, *CUSTOMIZE_NAMES)


def jsonata(expression: str, *, compact: bool = True) -> str:
    """`{% expression %}`; compact folds the source's indentation (never use it on expressions
    whose string literals hold runs of spaces, such as the notification messages)."""
    text = " ".join(expression.split()) if compact else expression
    return "{% " + text + " %}"


def literal(text: str) -> str:
    """A JSONata string literal (JSON's escapes are JSONata's), for concatenations with `&`."""
    return json.dumps(text)


def _list(values: Iterable[str]) -> str:
    return json.dumps(list(values))


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

CUSTOMIZE_INPUT_IS_AN_OBJECT = f"""(
  $type($states.input) = 'object'
  and $count($keys($states.input)[$not($ in {_list(CUSTOMIZE_INPUT_KEYS)})]) = 0
)"""
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
        and $count($keys($h)[$not($ in {_list(TITAN_HYPERPARAMETER_NAMES)})]) = 0
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
        ($c = null or $type($c) = 'string') and ($c = null ? 'none' : $c) in {_list(allowed)}
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

RELEASE_INPUT_IS_AN_OBJECT = f"""(
  $type($states.input) = 'object'
  and $count($keys($states.input)[$not($ in {_list(RELEASE_INPUT_KEYS)})]) = 0
)"""
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


class BedrockStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        data: DataStack,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        self.data = data
        self.parameter_name = config.titan_provisioned_model_parameter
        self.parameter_arn = (
            f"arn:{Aws.PARTITION}:ssm:{self.region}:{self.account}:parameter{self.parameter_name}"
        )
        bedrock_arn = f"arn:{Aws.PARTITION}:bedrock:{self.region}:{self.account}"
        self.job_arns = f"{bedrock_arn}:model-customization-job/*"
        self.custom_model_arns = f"{bedrock_arn}:custom-model/*"
        self.provisioned_model_arns = f"{bedrock_arn}:provisioned-model/*"

        self._notifications()
        self.release = self._release_workflow()
        self.sweeper = self._sweeper()
        # Built only when a base model is configured (none can be fine-tuned today).
        self.customize: sfn.StateMachine | None = None
        customize_names: dict[str, str] = {}
        if config.titan.base_model_id is not None:
            self.foundation_model_arn = (
                f"arn:{Aws.PARTITION}:bedrock:{self.region}::foundation-model/"
                f"{config.titan.base_model_id}"
            )
            self.customization_role = self._customization_role()
            self.manifest_function = self._manifest_function()
            self.customize = self._customize_workflow()
            customize_names = {
                "titan-customize-state-machine-arn": self.customize.state_machine_arn,
                "titan-customization-role-arn": self.customization_role.role_arn,
            }
        self._alarms()
        self.lifecycle = ModelLifecycleGuard(
            self,
            "ModelLifecycle",
            config=config,
            topic=self.topic,
            publish_statements=self._publish_statements(),
            deployment=deployment_name(config),
        )

        publish_names(
            self,
            config=config,
            section="bedrock",
            names=PUBLISHED_NAMES_WHEN_CUSTOMIZABLE if customize_names else PUBLISHED_NAMES,
            values={
                "titan-release-state-machine-arn": self.release.state_machine_arn,
                "titan-notifications-topic-arn": self.topic.topic_arn,
                "titan-provisioned-model-parameter": self.parameter_name,
                "model-inventory": json.dumps(stage_inventory(config), separators=(",", ":")),
                **customize_names,
            },
        )

    # --- notifications ------------------------------------------------------------------------

    def _notifications(self) -> None:
        config = self.config
        # A key of the stack's own: CloudWatch alarms can publish to an encrypted topic only if
        # the key policy lets CloudWatch use the key, and the Data stack's key must not depend on
        # compute stacks. It protects notices in transit only, so it goes with the stack.
        self.notifications_key = kms.Key(
            self,
            "NotificationsKey",
            description=f"Atelier {config.stage}: encrypts the Titan notifications topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
            pending_window=Duration.days(7),
        )
        self.notifications_key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
            )
        )
        self.topic = sns.Topic(
            self,
            "Notifications",
            topic_name=config.resource_name("titan-notifications"),
            display_name=f"Atelier {config.stage} Titan",
            master_key=self.notifications_key,
            enforce_ssl=True,
        )
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarms",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": self.account},
                    "ArnLike": {
                        "aws:SourceArn": [
                            f"arn:{Aws.PARTITION}:cloudwatch:{self.region}:{self.account}:alarm:"
                            f"{config.resource_name(alarms)}*"
                            for alarms in ("titan-", "model-lifecycle-")
                        ]
                    },
                },
            )
        )
        if config.titan.notification_email:
            self.topic.add_subscription(
                subscriptions.EmailSubscription(config.titan.notification_email)
            )

    def _publish_statements(self) -> list[iam.PolicyStatement]:
        """sns:Publish on the topic, and its key (through SNS only) to encrypt the message."""
        return [
            iam.PolicyStatement(actions=["sns:Publish"], resources=[self.topic.topic_arn]),
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[self.notifications_key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"sns.{self.region}.amazonaws.com"}},
            ),
        ]

    # --- the role Bedrock assumes to run customization jobs -------------------------------------

    def _customization_role(self) -> iam.Role:
        config, data = self.config, self.data
        datasets, models = data.datasets_bucket, data.models_bucket
        role = iam.Role(
            self,
            "TitanCustomizationRole",
            assumed_by=iam.ServicePrincipal(
                "bedrock.amazonaws.com",
                conditions={
                    "StringEquals": {"aws:SourceAccount": self.account},
                    "ArnLike": {"aws:SourceArn": self.job_arns},
                },
            ),
            description=f"Atelier {config.stage}: Bedrock customization jobs of Titan Image "
            "Generator (reads titan/ datasets, writes titan/ outputs)",
        )
        for statement in (
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[datasets.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{TITAN_DATASETS_PREFIX}*"]}},
            ),
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[datasets.arn_for_objects(f"{TITAN_DATASETS_PREFIX}*")],
            ),
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[models.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{TITAN_OUTPUT_PREFIX}*"]}},
            ),
            # Validation outputs and metrics under titan/<job>/ of the models bucket.
            iam.PolicyStatement(
                actions=["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
                resources=[models.arn_for_objects(f"{TITAN_OUTPUT_PREFIX}*")],
            ),
            # Objects are under the data key (through S3); the custom model is too (through
            # Bedrock, which also creates grants for the jobs' own use of the key).
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"],
                resources=[data.key.key_arn],
                conditions={
                    "StringEquals": {
                        "kms:ViaService": [
                            f"s3.{self.region}.amazonaws.com",
                            f"bedrock.{self.region}.amazonaws.com",
                        ]
                    }
                },
            ),
            iam.PolicyStatement(
                actions=["kms:CreateGrant"],
                resources=[data.key.key_arn],
                conditions={
                    "StringEquals": {"kms:ViaService": f"bedrock.{self.region}.amazonaws.com"},
                    "Bool": {"kms:GrantIsForAWSResource": "true"},
                },
            ),
        ):
            role.add_to_principal_policy(statement)
        policy = role.node.find_child("DefaultPolicy")
        for resource, reason in (
            (
                f"{exported_name(data, datasets.bucket_arn)}/{TITAN_DATASETS_PREFIX}*",
                "Reads the Titan datasets prefix of the datasets bucket: which manifest a job "
                "trains on is the workflow's input, so the role covers every dataset under titan/.",
            ),
            (
                f"{exported_name(data, models.bucket_arn)}/{TITAN_OUTPUT_PREFIX}*",
                "Writes job outputs under titan/<job name>/ of the models bucket; job names are "
                "made per run.",
            ),
        ):
            acknowledge(policy, f"AwsSolutions-IAM5[Resource::{resource}]", reason)
        return role

    # --- functions -----------------------------------------------------------------------------

    def _manifest_function(self) -> PythonFunction:
        config, data = self.config, self.data
        datasets = data.datasets_bucket
        function = PythonFunction(
            self,
            "ManifestCheckFunction",
            config=config,
            handler="customization.handlers.manifest.handler",
            description="Checks a Titan training manifest and its images before a customization "
            "job is paid for",
            service_name="titan-customization",
            environment={"DATASETS_BUCKET": datasets.bucket_name},
            memory_size=512,
            timeout=MANIFEST_CHECK_TIMEOUT,
        )
        for statement in (
            # Listing lets a missing image answer 404 rather than 403.
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[datasets.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{TITAN_DATASETS_PREFIX}*"]}},
            ),
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[datasets.arn_for_objects(f"{TITAN_DATASETS_PREFIX}*")],
            ),
            iam.PolicyStatement(
                actions=["kms:Decrypt"],
                resources=[data.key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"s3.{self.region}.amazonaws.com"}},
            ),
        ):
            function.role.add_to_principal_policy(statement)
        acknowledge(
            function.role.node.find_child("DefaultPolicy"),
            "AwsSolutions-IAM5[Resource::"
            f"{exported_name(data, datasets.bucket_arn)}/{TITAN_DATASETS_PREFIX}*]",
            "Reads the manifest named by the workflow's input and HEADs its images, all under "
            "titan/ of the datasets bucket.",
        )
        return function

    def _sweeper(self) -> PythonFunction:
        config = self.config
        function = PythonFunction(
            self,
            "ThroughputSweeperFunction",
            config=config,
            handler="customization.handlers.sweep.handler",
            description="Cost guard: starts the release of this deployment's provisioned "
            "throughputs past their atelier:expires-at tag",
            service_name="titan-customization",
            environment={
                "DEPLOYMENT": deployment_name(config),
                "RELEASE_STATE_MACHINE_ARN": self.release.state_machine_arn,
                "TOPIC_ARN": self.topic.topic_arn,
            },
            timeout=SWEEP_TIMEOUT,
        )
        # No retries of a failed sweep by Lambda (two by default, each a whole sweep): the next
        # scheduled sweep retries, and release executions are named per scheduled event anyway.
        function.function.configure_async_invoke(retry_attempts=0)
        for statement in (
            iam.PolicyStatement(
                actions=["bedrock:ListTagsForResource"], resources=[self.provisioned_model_arns]
            ),
            # It only marks past-expiry notices: it must never move atelier:expires-at.
            iam.PolicyStatement(
                actions=["bedrock:TagResource"],
                resources=[self.provisioned_model_arns],
                conditions={"ForAllValues:StringEquals": {"aws:TagKeys": [EXPIRY_NOTIFIED_TAG]}},
            ),
            iam.PolicyStatement(
                actions=["states:StartExecution"], resources=[self.release.state_machine_arn]
            ),
            *self._publish_statements(),
        ):
            function.role.add_to_principal_policy(statement)
        acknowledge(
            function.role.node.find_child("DefaultPolicy"),
            f"AwsSolutions-IAM5[Resource::{self._nag_arn('provisioned-model/*')}]",
            "Reads the tags of every provisioned throughput of the account and region to find "
            "this deployment's (their ids are made by Bedrock), and marks a past-expiry notice "
            "on them.",
        )
        listing = iam.Policy(
            self,
            "ThroughputSweeperListPolicy",
            roles=[function.role],
            statements=[
                iam.PolicyStatement(
                    actions=["bedrock:ListProvisionedModelThroughputs"], resources=["*"]
                )
            ],
        )
        acknowledge(
            listing,
            "AwsSolutions-IAM5[Resource::*]",
            "bedrock:ListProvisionedModelThroughputs supports no resource-level permissions; "
            "this policy holds that one action only.",
        )
        events.Rule(
            self,
            "ThroughputSweepSchedule",
            rule_name=config.resource_name("titan-throughput-sweep"),
            description="Releases provisioned throughputs past their atelier:expires-at tag",
            schedule=events.Schedule.rate(Duration.minutes(config.titan.sweep_interval_minutes)),
            targets=[
                targets.LambdaFunction(
                    function.function,
                    retry_attempts=2,
                    # A late sweep is replaced by the next one.
                    max_event_age=Duration.minutes(config.titan.sweep_interval_minutes),
                )
            ],
        )
        return function

    def _nag_arn(self, resource: str) -> str:
        """A Bedrock ARN of this account and region as cdk-nag prints it in findings."""
        return f"arn:<AWS::Partition>:bedrock:<AWS::Region>:<AWS::AccountId>:{resource}"

    # --- the release workflow ------------------------------------------------------------------

    def _release_workflow(self) -> sfn.StateMachine:
        config = self.config
        deployment = deployment_name(config)

        def fail(construct_id: str, cause: str, error: str | None = None) -> sfn.Fail:
            return sfn.Fail.jsonata(
                self,
                f"Release{construct_id}",
                state_name=construct_id,
                error=error or construct_id,
                cause=cause,
            )

        validate = (
            sfn.Choice.jsonata(self, "ReleaseValidateInput", state_name="Validate input")
            .when(
                sfn.Condition.jsonata(jsonata(f"$not({RELEASE_INPUT_IS_AN_OBJECT})")),
                fail(
                    "InvalidInput",
                    "the input must be a JSON object with 'provisionedModelArn' and 'reason' "
                    "(both optional) and no other keys",
                ),
            )
            .when(
                sfn.Condition.jsonata(jsonata(f"$not({PROVISIONED_MODEL_ARN_IS_VALID})")),
                fail(
                    "InvalidProvisionedModelArn",
                    jsonata(
                        "'provisionedModelArn must be a provisioned throughput ARN such as "
                        "arn:aws:bedrock:<region>:<account>:provisioned-model/<id>; got ' & "
                        "$string($states.input.provisionedModelArn)"
                    ),
                ),
            )
            .when(
                sfn.Condition.jsonata(jsonata(f"$not({REASON_IS_VALID})")),
                fail(
                    "InvalidReason",
                    f"reason must be a string of at most {MAX_REASON_CHARACTERS} characters",
                ),
            )
        )
        prepare = sfn.Pass.jsonata(
            self,
            "ReleasePrepare",
            state_name="Prepare release",
            assign={
                "request": jsonata("$states.input"),
                "reason": jsonata(
                    "$exists($states.input.reason) ? $states.input.reason : 'asked for'"
                ),
                "outcome": "released",
                "parameterCleared": False,
                # Read by the failure paths before a throughput is known.
                "arn": "",
                "recorded": "",
            },
        )
        use_named = sfn.Pass.jsonata(
            self,
            "ReleaseUseNamed",
            state_name="Use the named throughput",
            assign={"arn": jsonata("$request.provisionedModelArn")},
        )
        read_recorded_arn = tasks.CallAwsService.jsonata(
            self,
            "ReleaseReadRecordedArn",
            state_name="Read the recorded throughput",
            service="ssm",
            action="getParameter",
            iam_resources=[self.parameter_arn],
            parameters={"Name": self.parameter_name},
            assign={"arn": jsonata("$states.result.Parameter.Value")},
        )
        read_recorded_arn.add_retry(errors=SSM_TRANSIENT_ERRORS, **_retry())
        nothing_to_release = sfn.Succeed.jsonata(
            self,
            "ReleaseNothing",
            state_name="Nothing to release",
            outputs={
                "released": False,
                "message": f"no provisionedModelArn given and none recorded in "
                f"{self.parameter_name}",
            },
        )
        read_recorded_arn.add_catch(nothing_to_release, errors=["Ssm.ParameterNotFoundException"])
        release_failed = fail(
            "ReleaseFailed",
            jsonata(
                "'could not release ' & $arn & ': ' & $states.input.Error & ': ' & "
                "$states.input.Cause & ' (a throughput with a commitment term can only be "
                "deleted after its term ends)'"
            ),
            error=jsonata("$states.input.Error"),
        )
        read_recorded_arn.add_catch(release_failed, errors=["States.ALL"])

        check_owner = tasks.CallAwsService.jsonata(
            self,
            "ReleaseCheckOwner",
            state_name="Check the owner",
            service="bedrock",
            action="listTagsForResource",
            iam_resources=[self.provisioned_model_arns],
            parameters={"ResourceARN": jsonata("$arn")},
            assign={
                "owner": jsonata(_or_empty(f"$states.result.Tags[Key = '{DEPLOYMENT_TAG}'].Value"))
            },
        )
        check_owner.add_retry(errors=BEDROCK_TRANSIENT_ERRORS, **_retry())
        already_released = sfn.Pass.jsonata(
            self,
            "ReleaseAlreadyGone",
            state_name="Already released",
            assign={"outcome": "already released"},
        )
        check_owner.add_catch(already_released, errors=["Bedrock.ResourceNotFoundException"])
        check_owner.add_catch(release_failed, errors=["States.ALL"])

        delete = tasks.CallAwsService.jsonata(
            self,
            "ReleaseDelete",
            state_name="Delete the throughput",
            service="bedrock",
            action="deleteProvisionedModelThroughput",
            iam_resources=[self.provisioned_model_arns],
            parameters={"ProvisionedModelId": jsonata("$arn")},
        )
        delete.add_retry(errors=BEDROCK_TRANSIENT_ERRORS, **_retry())
        # A throughput still being created or updated answers ConflictException: wait it out.
        delete.add_retry(
            errors=["Bedrock.ConflictException"],
            interval=Duration.seconds(60),
            max_attempts=8,
            backoff_rate=1.5,
            max_delay=Duration.minutes(10),
        )
        delete.add_catch(already_released, errors=["Bedrock.ResourceNotFoundException"])
        delete.add_catch(release_failed, errors=["States.ALL"])

        owned = (
            sfn.Choice.jsonata(self, "ReleaseOwned", state_name="This deployment's?")
            .when(sfn.Condition.jsonata(jsonata(f"$owner = '{deployment}'")), delete)
            .otherwise(
                fail(
                    "NotThisDeployment",
                    jsonata(
                        f"$arn & ' is not tagged {DEPLOYMENT_TAG}={deployment}; this workflow "
                        f"releases only throughputs that {config.resource_name('titan-customize')}"
                        " created (delete others with aws bedrock "
                        "delete-provisioned-model-throughput)'"
                    ),
                )
            )
        )

        read_record = tasks.CallAwsService.jsonata(
            self,
            "ReleaseReadRecord",
            state_name="Read the record",
            service="ssm",
            action="getParameter",
            iam_resources=[self.parameter_arn],
            parameters={"Name": self.parameter_name},
            assign={"recorded": jsonata("$states.result.Parameter.Value")},
        )
        read_record.add_retry(errors=SSM_TRANSIENT_ERRORS, **_retry())
        clear_record = tasks.CallAwsService.jsonata(
            self,
            "ReleaseClearRecord",
            state_name="Clear the record",
            service="ssm",
            action="deleteParameter",
            iam_resources=[self.parameter_arn],
            parameters={"Name": self.parameter_name},
            assign={"parameterCleared": True},
        )
        clear_record.add_retry(errors=SSM_TRANSIENT_ERRORS, **_retry())
        message = " & ".join(
            [
                literal("Provisioned throughput "),
                "$arn",
                literal(" of Atelier " + deployment + ": "),
                "$outcome",
                literal(".\nWhy: "),
                "$reason",
                literal(".\n"),
                "($parameterCleared ? "
                + literal(
                    f"{self.parameter_name} named it and was deleted: POST /images answers "
                    "'no model' until the next customization records a throughput."
                )
                + " : "
                + literal(f"{self.parameter_name} names another throughput (or none); unchanged.")
                + ")",
            ]
        )
        notify = tasks.SnsPublish.jsonata(
            self,
            "ReleaseNotify",
            state_name="Notify",
            topic=self.topic,
            subject=jsonata(f"$substring('[{deployment}] Titan throughput ' & $outcome, 0, 100)"),
            message=sfn.TaskInput.from_text(jsonata(message, compact=False)),
            outputs={
                "provisionedModelArn": jsonata("$arn"),
                "outcome": jsonata("$outcome"),
                "parameterCleared": jsonata("$parameterCleared"),
            },
        )
        notify.add_retry(errors=["States.TaskFailed"], **_retry(max_attempts=3))
        notify.add_catch(
            fail(
                "NotificationFailed",
                jsonata(
                    "$arn & ': ' & $outcome & ', but the notification failed: ' & "
                    "$states.input.Error & ': ' & $states.input.Cause"
                ),
                error=jsonata("$states.input.Error"),
            ),
            errors=["States.ALL"],
        )
        read_record.add_catch(
            notify, errors=["Ssm.ParameterNotFoundException"], assign={"recorded": ""}
        )
        read_record.add_catch(release_failed, errors=["States.ALL"])
        clear_record.add_catch(notify, errors=["Ssm.ParameterNotFoundException"])
        clear_record.add_catch(release_failed, errors=["States.ALL"])

        still_recorded = (
            sfn.Choice.jsonata(self, "ReleaseStillRecorded", state_name="Still recorded?")
            .when(sfn.Condition.jsonata(jsonata("$recorded = $arn")), clear_record.next(notify))
            .otherwise(notify)
        )
        read_record.next(still_recorded)
        already_released.next(read_record)
        delete.next(read_record)
        check_owner.next(owned)
        named = (
            sfn.Choice.jsonata(self, "ReleaseNamed", state_name="Throughput named?")
            .when(
                sfn.Condition.jsonata(jsonata("$exists($request.provisionedModelArn)")),
                use_named.next(check_owner),
            )
            .otherwise(read_recorded_arn.next(check_owner))
        )
        definition = validate.otherwise(prepare.next(named))

        role = iam.Role(
            self,
            "TitanReleaseRole",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description=f"Atelier {config.stage}: releases Titan provisioned throughputs",
        )
        tasks_policy = iam.Policy(
            self,
            "TitanReleasePolicy",
            roles=[role],
            statements=[
                iam.PolicyStatement(
                    actions=["ssm:DeleteParameter", "ssm:GetParameter"],
                    resources=[self.parameter_arn],
                ),
                # No aws:ResourceTag condition on the delete: whether Bedrock evaluates it for
                # DeleteProvisionedModelThroughput is not verified, and a wrong guess would make
                # every release (the cost guard) fail. The workflow checks the
                # atelier:deployment tag itself ("Check the owner") before deleting.
                iam.PolicyStatement(
                    actions=[
                        "bedrock:DeleteProvisionedModelThroughput",
                        "bedrock:ListTagsForResource",
                    ],
                    resources=[self.provisioned_model_arns],
                ),
                *self._publish_statements(),
            ],
        )
        acknowledge(
            tasks_policy,
            f"AwsSolutions-IAM5[Resource::{self._nag_arn('provisioned-model/*')}]",
            "Bedrock names provisioned throughputs by an id it makes; the workflow deletes only "
            f"those tagged {DEPLOYMENT_TAG}={deployment}, which it checks before deleting.",
        )
        return observed_state_machine(
            self,
            "TitanRelease",
            config=config,
            name=config.resource_name("titan-release"),
            comment="Releases a Titan provisioned throughput and clears its SSM record",
            definition=definition,
            role=role,
            policies=[tasks_policy],
            timeout=RELEASE_TIMEOUT,
        )

    # --- the customize workflow ----------------------------------------------------------------

    def _customize_workflow(self) -> sfn.StateMachine:
        config, data = self.config, self.data
        titan = config.titan
        limits = titan.limits
        deployment = deployment_name(config)
        prefix = job_name_prefix(config)
        datasets = data.datasets_bucket.bucket_name
        models = data.models_bucket.bucket_name

        def fail(construct_id: str, cause: str, error: str | None = None) -> sfn.Fail:
            return sfn.Fail.jsonata(
                self,
                f"Customize{construct_id}",
                state_name=construct_id,
                error=error or construct_id,
                cause=cause,
            )

        validate = (
            sfn.Choice.jsonata(self, "CustomizeValidateInput", state_name="Validate input")
            .when(
                sfn.Condition.jsonata(jsonata(f"$not({CUSTOMIZE_INPUT_IS_AN_OBJECT})")),
                fail(
                    "InvalidInput",
                    "the input must be a JSON object with 'manifest' (required) and "
                    "'customModelName', 'hyperparameters', 'modelUnits', 'commitment', 'ttlHours' "
                    "(optional), and no other keys",
                ),
            )
            .when(
                sfn.Condition.jsonata(jsonata(f"$not({MANIFEST_IS_VALID})")),
                fail(
                    "InvalidManifest",
                    jsonata(
                        "'manifest must be the key of a .jsonl file in a folder under titan/ of "
                        'the datasets bucket, such as "titan/dogs/manifest.jsonl"; got \' & '
                        "$string($states.input.manifest)"
                    ),
                ),
            )
            .when(
                sfn.Condition.jsonata(jsonata(f"$not({CUSTOM_MODEL_NAME_IS_VALID})")),
                fail(
                    "InvalidCustomModelName",
                    "customModelName must be 1-63 letters, digits, '-' and '_', starting with a "
                    "letter or digit, never two of '-' and '_' in a row, and unique in the "
                    "account and region",
                ),
            )
            .when(
                sfn.Condition.jsonata(jsonata(f"$not({hyperparameters_are_valid(limits)})")),
                fail(
                    "InvalidHyperparameters",
                    "hyperparameters must be an object of numbers among stepCount (whole, "
                    f"{limits.step_count[0]}-{limits.step_count[1]}), batchSize (whole, "
                    f"{limits.batch_size[0]}-{limits.batch_size[1]}) and learningRate "
                    f"({learning_rate_text(limits.learning_rate[0])}-"
                    f"{limits.learning_rate[1]:g}): {limits.name}'s ranges",
                ),
            )
            .when(
                sfn.Condition.jsonata(
                    jsonata(f"$not({model_units_are_valid(titan.max_model_units)})")
                ),
                fail(
                    "InvalidModelUnits",
                    f"modelUnits must be a whole number from 1 to {titan.max_model_units} "
                    "(titan.max_model_units; raise it in cdk.json to allow more, up to "
                    f"{MAX_TITAN_MODEL_UNITS})",
                ),
            )
            .when(
                sfn.Condition.jsonata(
                    jsonata(f"$not({commitment_is_valid(titan.allowed_commitments)})")
                ),
                fail(
                    "InvalidCommitment",
                    f"commitment must be {commitments_text(titan.allowed_commitments)} "
                    '(titan.allowed_commitments; add "OneMonth" or "SixMonths" there to '
                    "allow a term, which Bedrock bills in full and the cost guard cannot end "
                    "early)",
                ),
            )
            .when(
                sfn.Condition.jsonata(
                    jsonata(f"$not({ttl_is_valid(titan.max_throughput_ttl_hours)})")
                ),
                fail(
                    "InvalidTtlHours",
                    "ttlHours must be a whole number of hours from 1 to "
                    f"{titan.max_throughput_ttl_hours} (titan.max_throughput_ttl_hours)",
                ),
            )
        )
        prepare = sfn.Pass.jsonata(
            self,
            "CustomizePrepare",
            state_name="Prepare run",
            assign={
                "request": jsonata("$states.input"),
                "jobName": jsonata(job_name_expression(prefix)),
                "jobToken": jsonata("$uuid()"),
                "modelUnits": jsonata(default_or_input("modelUnits", titan.model_units)),
                "commitment": jsonata(commitment_expression(titan.commitment)),
                "ttlHours": jsonata(default_or_input("ttlHours", titan.throughput_ttl_hours)),
                # Read by the failure paths before they are known.
                "jobArn": "",
                "customModelName": "",
                "customModelArn": "",
                "provisionedModelArn": "",
                "expiresAt": "",
            },
        )

        check_manifest = tasks.LambdaInvoke.jsonata(
            self,
            "CustomizeCheckManifest",
            state_name="Check manifest",
            lambda_function=self.manifest_function.function,
            payload=sfn.TaskInput.from_object({"manifest": jsonata("$request.manifest")}),
            assign={"manifestReport": jsonata("$states.result.Payload")},
        )
        # The function raises DependencyError only when S3 itself failed.
        check_manifest.add_retry(errors=["DependencyError"], **_retry(max_attempts=3))
        check_manifest.add_catch(
            fail(
                "ManifestCheckFailed",
                jsonata(
                    "'could not check manifest ' & $request.manifest & ': ' & "
                    "$states.input.Error & ': ' & $states.input.Cause"
                ),
                error=jsonata("$states.input.Error"),
            ),
            errors=["States.ALL"],
        )
        manifest_rejected = fail(
            "ManifestRejected",
            jsonata(
                "$manifestReport.manifestUri & ' has ' & $string($manifestReport.problemCount) & "
                "' problem(s)' & ($manifestReport.problemCount > $count($manifestReport.problems)"
                " ? ' (the first ' & $string($count($manifestReport.problems)) & ' shown)' : '') "
                "& ': ' & $join($manifestReport.problems, '; ')"
            ),
        )
        prepare_job = sfn.Pass.jsonata(
            self,
            "CustomizePrepareJob",
            state_name="Prepare customization job",
            assign={
                "customModelName": jsonata(
                    "$exists($request.customModelName) ? $request.customModelName : $jobName"
                ),
                "hyperParameters": jsonata(hyperparameters_expression(config)),
            },
        )
        manifest_usable = (
            sfn.Choice.jsonata(self, "CustomizeManifestUsable", state_name="Manifest usable?")
            .when(sfn.Condition.jsonata(jsonata("$manifestReport.valid = true")), prepare_job)
            .otherwise(manifest_rejected)
        )

        tags = [{"Key": key, "Value": value} for key, value in resource_tags(config).items()]
        start_job = tasks.CallAwsService.jsonata(
            self,
            "CustomizeStartJob",
            state_name="Start customization job",
            service="bedrock",
            action="createModelCustomizationJob",
            iam_resources=[self.foundation_model_arn, self.custom_model_arns, self.job_arns],
            parameters={
                "JobName": jsonata("$jobName"),
                "CustomModelName": jsonata("$customModelName"),
                "RoleArn": self.customization_role.role_arn,
                # Makes a retried call (throttling) create the job once.
                "ClientRequestToken": jsonata("$jobToken"),
                "BaseModelIdentifier": titan.base_model_id,
                "CustomizationType": "FINE_TUNING",
                "CustomModelKmsKeyId": data.key.key_arn,
                "TrainingDataConfig": {"S3Uri": jsonata(f"'s3://{datasets}/' & $request.manifest")},
                "OutputDataConfig": {
                    "S3Uri": jsonata(f"'s3://{models}/{TITAN_OUTPUT_PREFIX}' & $jobName & '/'")
                },
                "HyperParameters": jsonata("$hyperParameters"),
                "JobTags": tags,
                "CustomModelTags": tags,
            },
            assign={
                "jobArn": jsonata("$states.result.JobArn"),
                "jobStartedMillis": jsonata("$millis()"),
            },
        )
        start_job.add_retry(errors=BEDROCK_TRANSIENT_ERRORS, **_retry())
        start_job.add_catch(
            fail(
                "JobNotStarted",
                jsonata(
                    "'could not start customization job ' & $jobName & ': ' & "
                    "$states.input.Error & ': ' & $states.input.Cause"
                ),
                error=jsonata("$states.input.Error"),
            ),
            errors=["States.ALL"],
        )

        wait_for_job = sfn.Wait.jsonata(
            self,
            "CustomizeWaitForJob",
            state_name="Wait for job",
            time=sfn.WaitTime.duration(Duration.seconds(titan.job_poll_seconds)),
        )
        get_job = tasks.CallAwsService.jsonata(
            self,
            "CustomizeGetJob",
            state_name="Get job status",
            service="bedrock",
            action="getModelCustomizationJob",
            iam_resources=[self.job_arns],
            # The name identifies the job as well as its ARN does.
            parameters={"JobIdentifier": jsonata("$jobName")},
            assign={
                "jobStatus": jsonata("$states.result.Status"),
                "jobFailure": jsonata(_or_empty("$states.result.FailureMessage")),
                "customModelArn": jsonata(_or_empty("$states.result.OutputModelArn")),
            },
        )
        get_job.add_retry(errors=BEDROCK_TRANSIENT_ERRORS, **_retry())
        job_failed = fail(
            "JobFailed",
            jsonata(
                "'customization job ' & $jobName & ' ended ' & $jobStatus & ': ' & "
                "($jobFailure != '' ? $jobFailure : 'Bedrock gave no failure message')"
            ),
        )
        max_job_ms = titan.max_job_runtime_hours * 3_600_000
        # Why a job is stopped ($stop.error names the run's error): it ran too long, or its
        # status could not be read, so it may still be running (and billing).
        timed_out = (
            "{ 'error': 'JobTimedOut', 'cause': 'customization job ' & $jobName & ' ran longer "
            f"than titan.max_job_runtime_hours ({titan.max_job_runtime_hours} h) and' }}"
        )
        status_unknown = (
            "{ 'error': 'JobStatusUnknown', 'cause': 'could not read the status of customization "
            "job ' & $jobName & ' (' & $jobArn & '): ' & $states.errorOutput.Error & ': ' & "
            "$states.errorOutput.Cause & '; as it may still be running, it' }"
        )
        stop_job = tasks.CallAwsService.jsonata(
            self,
            "CustomizeStopJob",
            state_name="Stop job",
            service="bedrock",
            action="stopModelCustomizationJob",
            iam_resources=[self.job_arns],
            parameters={"JobIdentifier": jsonata("$jobName")},
        )
        stop_job.add_retry(errors=BEDROCK_TRANSIENT_ERRORS, **_retry())
        stop_job.add_catch(
            fail(
                "JobStopFailed",
                jsonata(
                    "$stop.cause & ' could not be stopped: ' & $states.input.Error & ': ' & "
                    "$states.input.Cause & '; stop it with aws bedrock "
                    "stop-model-customization-job --job-identifier ' & $jobName"
                ),
            ),
            errors=["States.ALL"],
        )
        stop_job.next(
            fail(
                "JobStopped", jsonata("$stop.cause & ' was stopped'"), error=jsonata("$stop.error")
            )
        )
        get_job.add_catch(stop_job, errors=["States.ALL"], assign={"stop": jsonata(status_unknown)})

        prepare_throughput = sfn.Pass.jsonata(
            self,
            "CustomizePrepareThroughput",
            state_name="Prepare throughput",
            assign={
                # Creation may take up to titan.max_throughput_wait_hours: until the throughput is
                # in service (when "Set expiry" moves the tag to now + ttlHours) its tag allows
                # for that wait, so the sweeper never releases one still being created, while an
                # orphan (a run that died meanwhile) is still released.
                "expiresAt": jsonata(
                    "$fromMillis($millis() + ($ttlHours + "
                    f"{titan.max_throughput_wait_hours}) * 3600000, '{ISO_UTC_PICTURE}')"
                ),
                "throughputToken": jsonata("$uuid()"),
            },
        )
        job_finished = (
            sfn.Choice.jsonata(self, "CustomizeJobFinished", state_name="Job finished?")
            .when(sfn.Condition.jsonata(jsonata("$jobStatus = 'Completed'")), prepare_throughput)
            .when(sfn.Condition.jsonata(jsonata("$jobStatus in ['Failed', 'Stopped']")), job_failed)
            .when(
                sfn.Condition.jsonata(
                    jsonata(
                        "$jobStatus = 'InProgress' and "
                        f"$millis() - $jobStartedMillis > {max_job_ms}"
                    )
                ),
                stop_job,
                assign={"stop": jsonata(timed_out)},
            )
            .otherwise(wait_for_job)
        )

        # The Arguments are one expression, so CommitmentDuration can be left out: CallAwsService
        # takes only an object of fields.
        provision = sfn.CustomState(
            self,
            # A custom state takes its construct id as its name.
            "Provision throughput",
            state_json={
                "Type": "Task",
                "Comment": "Creates the provisioned throughput, tagged with its expiry",
                "Resource": f"arn:{Aws.PARTITION}:states:::aws-sdk:bedrock:"
                "createProvisionedModelThroughput",
                "Arguments": jsonata(provisioning_arguments(config)),
                "Assign": {
                    "provisionedModelArn": jsonata("$states.result.ProvisionedModelArn"),
                    "provisioningStartedMillis": jsonata("$millis()"),
                },
            },
        )
        provision.add_retry(errors=BEDROCK_TRANSIENT_ERRORS, **_retry())
        provision.add_catch(
            fail(
                "ThroughputNotCreated",
                jsonata(
                    "'could not create a provisioned throughput for custom model ' & "
                    "$customModelArn & ' (' & $customModelName & '): ' & $states.input.Error & "
                    "': ' & $states.input.Cause & ' (ServiceQuotaExceededException: ask for a "
                    "Provisioned Throughput quota for the model in Service Quotas); the custom "
                    "model is kept'"
                ),
                error=jsonata("$states.input.Error"),
            ),
            errors=["States.ALL"],
        )

        release_name = self.release.state_machine_name
        release = tasks.StepFunctionsStartExecution.jsonata(
            self,
            "CustomizeRelease",
            state_name="Release throughput",
            state_machine=self.release,
            input=sfn.TaskInput.from_object(
                {
                    "provisionedModelArn": jsonata("$provisionedModelArn"),
                    "reason": jsonata(f"$substring($failure.cause, 0, {MAX_REASON_CHARACTERS})"),
                }
            ),
            assign={
                "releaseNote": jsonata(
                    "'It was handed to the release workflow (execution ' & "
                    "$states.result.ExecutionArn & ').'"
                )
            },
        )
        provisioning_failed = fail(
            "ProvisioningFailed",
            jsonata("$failure.cause & ' Throughput ' & $provisionedModelArn & ': ' & $releaseNote"),
            error=jsonata("$failure.error"),
        )
        release.add_catch(
            provisioning_failed,
            errors=["States.ALL"],
            assign={
                "releaseNote": jsonata(
                    f"'starting {release_name} failed (' & $states.errorOutput.Error & '); the "
                    "cost guard releases it after ' & $expiresAt & '.'"
                )
            },
        )
        release.next(provisioning_failed)

        def failure(error: str, cause: str) -> dict[str, str]:
            return {"failure": jsonata(f"{{ 'error': {literal(error)}, 'cause': {cause} }}")}

        caught = {
            "failure": jsonata(
                "{ 'error': $states.errorOutput.Error, 'cause': 'provisioned throughput for ' & "
                "$jobName & ' failed: ' & $states.errorOutput.Error & ': ' & "
                "$states.errorOutput.Cause }"
            )
        }
        wait_for_throughput = sfn.Wait.jsonata(
            self,
            "CustomizeWaitForThroughput",
            state_name="Wait for throughput",
            time=sfn.WaitTime.duration(Duration.seconds(titan.throughput_poll_seconds)),
        )
        get_throughput = tasks.CallAwsService.jsonata(
            self,
            "CustomizeGetThroughput",
            state_name="Get throughput status",
            service="bedrock",
            action="getProvisionedModelThroughput",
            iam_resources=[self.provisioned_model_arns],
            parameters={"ProvisionedModelId": jsonata("$provisionedModelArn")},
            assign={
                "throughputStatus": jsonata("$states.result.Status"),
                "throughputFailure": jsonata(_or_empty("$states.result.FailureMessage")),
            },
        )
        get_throughput.add_retry(errors=BEDROCK_TRANSIENT_ERRORS, **_retry())
        get_throughput.add_catch(release, errors=["States.ALL"], assign=caught)
        throughput_failed = sfn.Pass.jsonata(
            self,
            "CustomizeThroughputFailed",
            state_name="Throughput failed",
            assign=failure(
                "ThroughputFailed",
                "'provisioned throughput for ' & $jobName & ' failed: ' & "
                "($throughputFailure != '' ? $throughputFailure : 'Bedrock gave no failure "
                "message')",
            ),
        )
        max_wait_ms = titan.max_throughput_wait_hours * 3_600_000
        throughput_too_slow = sfn.Pass.jsonata(
            self,
            "CustomizeThroughputTooSlow",
            state_name="Throughput too slow",
            assign=failure(
                "ThroughputTimedOut",
                "'provisioned throughput for ' & $jobName & ' was not in service after "
                f"titan.max_throughput_wait_hours ({titan.max_throughput_wait_hours} h)'",
            ),
        )
        throughput_failed.next(release)
        throughput_too_slow.next(release)

        record = tasks.CallAwsService.jsonata(
            self,
            "CustomizeRecord",
            state_name="Record throughput",
            service="ssm",
            action="putParameter",
            iam_resources=[self.parameter_arn],
            parameters={
                "Name": self.parameter_name,
                "Value": jsonata("$provisionedModelArn"),
                "Type": "String",
                "Overwrite": True,
                "Description": jsonata(
                    "'Titan provisioned throughput of customization ' & $jobName & ', expires ' "
                    "& $expiresAt"
                ),
            },
        )
        record.add_retry(errors=SSM_TRANSIENT_ERRORS, **_retry())
        record.add_catch(release, errors=["States.ALL"], assign=caught)

        release_command = (
            "aws stepfunctions start-execution --state-machine-arn "
            f"{self.release.state_machine_arn}"
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
                    f")\nRecorded in SSM parameter {self.parameter_name}: POST /images uses it "
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
                    "\"}'\n\nKeep it longer (a UTC time):\n  aws bedrock tag-resource "
                    "--resource-arn "
                ),
                "$provisionedModelArn",
                literal(f" --tags key={EXPIRES_AT_TAG},value=YYYY-MM-DDTHH:MM:SSZ\n"),
            ]
        )
        notify = tasks.SnsPublish.jsonata(
            self,
            "CustomizeNotify",
            state_name="Notify",
            topic=self.topic,
            subject=jsonata(f"$substring('[{deployment}] Titan model ready: ' & $jobName, 0, 100)"),
            message=sfn.TaskInput.from_text(jsonata(message, compact=False)),
            outputs={
                "jobName": jsonata("$jobName"),
                "customModelName": jsonata("$customModelName"),
                "customModelArn": jsonata("$customModelArn"),
                "provisionedModelArn": jsonata("$provisionedModelArn"),
                "expiresAt": jsonata("$expiresAt"),
                "provisionedModelParameter": self.parameter_name,
                "hyperParameters": jsonata("$hyperParameters"),
                "records": jsonata("$manifestReport.records"),
            },
        )
        notify.add_retry(errors=["States.TaskFailed"], **_retry(max_attempts=3))
        notify.add_catch(
            fail(
                "NotificationFailed",
                jsonata(
                    "'throughput ' & $provisionedModelArn & ' is in service and recorded (expires "
                    "' & $expiresAt & '), but the notification failed: ' & $states.input.Error & "
                    "': ' & $states.input.Cause"
                ),
                error=jsonata("$states.input.Error"),
            ),
            errors=["States.ALL"],
        )

        # In service: the throughput's time starts now. Should tagging fail (after its retries)
        # the creation tag stands, later by titan.max_throughput_wait_hours, and is reported.
        set_expiry = tasks.CallAwsService.jsonata(
            self,
            "CustomizeSetExpiry",
            state_name="Set expiry",
            service="bedrock",
            action="tagResource",
            iam_resources=[self.provisioned_model_arns],
            parameters={
                "ResourceARN": jsonata("$provisionedModelArn"),
                "Tags": [{"Key": EXPIRES_AT_TAG, "Value": jsonata("$inServiceExpiresAt")}],
            },
            assign={"expiresAt": jsonata("$inServiceExpiresAt")},
        )
        set_expiry.add_retry(errors=BEDROCK_TRANSIENT_ERRORS, **_retry())
        set_expiry.add_catch(record, errors=["States.ALL"])
        set_expiry.next(record).next(notify)
        throughput_ready = (
            sfn.Choice.jsonata(self, "CustomizeThroughputReady", state_name="Throughput ready?")
            .when(
                sfn.Condition.jsonata(jsonata("$throughputStatus = 'InService'")),
                set_expiry,
                assign={
                    "inServiceExpiresAt": jsonata(
                        f"$fromMillis($millis() + $ttlHours * 3600000, '{ISO_UTC_PICTURE}')"
                    )
                },
            )
            .when(sfn.Condition.jsonata(jsonata("$throughputStatus = 'Failed'")), throughput_failed)
            .when(
                sfn.Condition.jsonata(
                    jsonata(f"$millis() - $provisioningStartedMillis > {max_wait_ms}")
                ),
                throughput_too_slow,
            )
            .otherwise(wait_for_throughput)
        )
        wait_for_throughput.next(get_throughput).next(throughput_ready)
        wait_for_job.next(get_job).next(job_finished)
        prepare_throughput.next(provision).next(wait_for_throughput)
        prepare_job.next(start_job).next(wait_for_job)
        check_manifest.next(manifest_usable)
        check_base_model = self._base_model_gate(fail, check_manifest)
        definition = validate.otherwise(prepare.next(check_base_model))

        role = iam.Role(
            self,
            "TitanCustomizeRole",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description=f"Atelier {config.stage}: customizes Titan Image Generator and provisions "
            "its throughput",
        )
        tasks_policy = iam.Policy(
            self,
            "TitanCustomizePolicy",
            roles=[role],
            statements=[
                iam.PolicyStatement(
                    actions=["lambda:InvokeFunction"],
                    resources=[self.manifest_function.function.function_arn],
                ),
                iam.PolicyStatement(
                    actions=["bedrock:GetFoundationModel"], resources=[self.foundation_model_arn]
                ),
                iam.PolicyStatement(
                    actions=["bedrock:CreateModelCustomizationJob"],
                    resources=[self.foundation_model_arn, self.custom_model_arns, self.job_arns],
                ),
                iam.PolicyStatement(
                    actions=[
                        "bedrock:GetModelCustomizationJob",
                        "bedrock:StopModelCustomizationJob",
                    ],
                    resources=[self.job_arns],
                ),
                # The service authorization reference lists custom-model and foundation-model
                # (the custom model's base) as resources of this action.
                iam.PolicyStatement(
                    actions=["bedrock:CreateProvisionedModelThroughput"],
                    resources=[
                        self.foundation_model_arn,
                        self.custom_model_arns,
                        self.provisioned_model_arns,
                    ],
                ),
                iam.PolicyStatement(
                    actions=["bedrock:GetProvisionedModelThroughput"],
                    resources=[self.provisioned_model_arns],
                ),
                # Tags given at creation (job, custom model, throughput) need TagResource too.
                iam.PolicyStatement(
                    actions=["bedrock:TagResource"],
                    resources=[self.custom_model_arns, self.job_arns, self.provisioned_model_arns],
                ),
                iam.PolicyStatement(
                    actions=["iam:PassRole"],
                    resources=[self.customization_role.role_arn],
                    conditions={"StringEquals": {"iam:PassedToService": "bedrock.amazonaws.com"}},
                ),
                # The custom model is encrypted with the data key: creating it, and serving it
                # from a throughput, use the key through Bedrock.
                iam.PolicyStatement(
                    actions=["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"],
                    resources=[data.key.key_arn],
                    conditions={
                        "StringEquals": {"kms:ViaService": f"bedrock.{self.region}.amazonaws.com"}
                    },
                ),
                # Grants only for Bedrock's own use of the key.
                iam.PolicyStatement(
                    actions=["kms:CreateGrant"],
                    resources=[data.key.key_arn],
                    conditions={
                        "StringEquals": {"kms:ViaService": f"bedrock.{self.region}.amazonaws.com"},
                        "Bool": {"kms:GrantIsForAWSResource": "true"},
                    },
                ),
                iam.PolicyStatement(actions=["ssm:PutParameter"], resources=[self.parameter_arn]),
                iam.PolicyStatement(
                    actions=["states:StartExecution"],
                    resources=[self.release.state_machine_arn],
                ),
                *self._publish_statements(),
            ],
        )
        for resource, reason in (
            (
                "custom-model/*",
                "Custom models are named by Bedrock (base model and a generated id) when a job "
                "completes; the workflow creates them and provisions throughput for them.",
            ),
            (
                "model-customization-job/*",
                "Job ARNs carry an id Bedrock makes per job; the workflow creates, polls and "
                "stops only the jobs it starts (names unique per run).",
            ),
            (
                "provisioned-model/*",
                "Provisioned throughputs are named by an id Bedrock makes at creation; the "
                "workflow creates, tags and polls only the one it creates.",
            ),
        ):
            acknowledge(
                tasks_policy, f"AwsSolutions-IAM5[Resource::{self._nag_arn(resource)}]", reason
            )
        hours = titan.max_job_runtime_hours + titan.max_throughput_wait_hours + 2
        return observed_state_machine(
            self,
            "TitanCustomize",
            config=config,
            name=config.resource_name("titan-customize"),
            comment="Customizes Titan Image Generator, provisions its throughput and records it",
            definition=definition,
            role=role,
            policies=[tasks_policy],
            timeout=Duration.hours(hours),
        )

    def _base_model_gate(
        self, fail: Callable[..., sfn.Fail], then: sfn.IChainable
    ) -> sfn.IChainable:
        """Before anything is paid for: the base model's lifecycle, from Bedrock itself. A Legacy
        model takes no new customization job or provisioned throughput, and one past its end of
        life is not found: either way the run stops here with what to change."""
        titan = self.config.titan
        named = f"{titan.base_model_id} ({titan.limits.name})"
        fix = (
            "Set titan.base_model_id in cdk.json to an Active Bedrock image model that supports "
            "fine-tuning (docs/image-customization.md lists them; `atelier doctor` shows each "
            "model's state), then deploy again. Nothing was started or billed."
        )
        read = tasks.CallAwsService.jsonata(
            self,
            "CustomizeCheckBaseModel",
            state_name="Check base model lifecycle",
            service="bedrock",
            action="getFoundationModel",
            iam_resources=[self.foundation_model_arn],
            parameters={"ModelIdentifier": titan.base_model_id},
            assign={
                "baseModelLifecycle": jsonata(
                    "($l := $states.result.ModelDetails.ModelLifecycle; $exists($l) ? $l : {})"
                )
            },
        )
        read.add_retry(errors=BEDROCK_TRANSIENT_ERRORS, **_retry())
        read.add_catch(
            fail(
                "BaseModelEndOfLife",
                f"{named} is not offered by Bedrock in this region: it is past its end of life "
                f"(or was never offered here). {fix}",
            ),
            errors=["Bedrock.ResourceNotFoundException", "Bedrock.ValidationException"],
        )
        read.add_catch(
            fail(
                "BaseModelCheckFailed",
                jsonata(
                    f"'could not read the lifecycle of {named}: ' & $states.input.Error & ': ' & "
                    "$states.input.Cause"
                ),
                error=jsonata("$states.input.Error"),
            ),
            errors=["States.ALL"],
        )
        legacy = fail(
            "BaseModelLegacy",
            jsonata(
                f"{literal(named + ' is Legacy on Bedrock')} & "
                "($exists($baseModelLifecycle.EndOfLifeTime) ? ' (end of life ' & "
                "$string($baseModelLifecycle.EndOfLifeTime) & ')' : '') & "
                f"{literal(': Bedrock takes no new customization job or provisioned throughput ')}"
                f" & {literal('on a Legacy model. ' + fix)}"
            ),
        )
        usable = (
            sfn.Choice.jsonata(self, "CustomizeBaseModelUsable", state_name="Base model usable?")
            .when(sfn.Condition.jsonata(jsonata("$baseModelLifecycle.Status = 'LEGACY'")), legacy)
            .otherwise(then)
        )
        return read.next(usable)

    # --- alarms --------------------------------------------------------------------------------

    def _alarms(self) -> None:
        """Failures nobody is watching for: a sweep that could not release, a release that
        failed, a customization that ended badly (runs take hours). Each notifies the topic."""
        config = self.config
        action = cloudwatch_actions.SnsAction(self.topic)
        sweep_period = Duration.minutes(config.titan.sweep_interval_minutes)
        alarms = [
            (
                "SweeperErrorsAlarm",
                "titan-sweeper-errors",
                self.sweeper.function.metric_errors(period=sweep_period, statistic="Sum"),
                "The throughput sweeper failed: expired throughputs may still be billing. See "
                "its log group.",
            ),
            (
                "ReleaseFailedAlarm",
                "titan-release-failed",
                self._ended_badly(self.release),
                "A release of a Titan provisioned throughput failed, timed out or was stopped: "
                "it may still be billing.",
            ),
        ]
        if self.customize is not None:
            alarms.append(
                (
                    "CustomizeFailedAlarm",
                    "titan-customize-failed",
                    self._ended_badly(self.customize),
                    "A Titan customization run failed, timed out or was stopped; its execution "
                    "names the cause (a throughput it created is released by the cost guard).",
                )
            )
        for construct_id, name, metric, description in alarms:
            alarm = cloudwatch.Alarm(
                self,
                construct_id,
                alarm_name=config.resource_name(name),
                alarm_description=description,
                metric=metric,
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            alarm.add_alarm_action(action)

    @staticmethod
    def _ended_badly(state_machine: sfn.StateMachine) -> cloudwatch.IMetric:
        """Executions that failed, timed out or were aborted (each its own metric), summed."""
        period = Duration.minutes(5)
        return cloudwatch.MathExpression(
            expression="failed + timedOut + aborted",
            using_metrics={
                "failed": state_machine.metric_failed(period=period, statistic="Sum"),
                "timedOut": state_machine.metric_timed_out(period=period, statistic="Sum"),
                "aborted": state_machine.metric_aborted(period=period, statistic="Sum"),
            },
            label="Executions failed, timed out or aborted",
            period=period,
        )


def _retry(*, max_attempts: int = 6, interval: Duration | None = None) -> Mapping[str, Any]:
    """Exponential backoff with full jitter: throttled callers must not retry in step."""
    return {
        "interval": interval or Duration.seconds(5),
        "max_attempts": max_attempts,
        "backoff_rate": 2,
        "max_delay": Duration.minutes(2),
        "jitter_strategy": sfn.JitterType.FULL,
    }
