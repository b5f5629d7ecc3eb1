"""Bedrock stack: fine-tune Titan Image Generator G1, serve it through Provisioned Throughput, and
never leave a throughput billing past its time.

No CloudFormation resource exists for customization jobs, custom models or provisioned
throughput, so two Step Functions workflows (JSONata) make the API calls:

- `<prefix>-<stage>-titan-customize` (infra/workflows/titan_customize.py) fine-tunes the model
  and brings a provisioned throughput into service, tagged with its expiry.
- `<prefix>-<stage>-titan-release` (infra/workflows/titan_release.py) deletes a throughput of
  this deployment and clears the SSM parameter that names it.

This stack makes what they call and compose them: the notifications topic, the customization
role, the manifest check, the sweeper and the alarms.

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

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_stepfunctions as sfn

from infra.constructs.alarms import AlarmSpec, occurrence_alarms
from infra.constructs.buckets import list_prefix_statement, read_prefix_statements
from infra.constructs.model_lifecycle import ModelLifecycleGuard, stage_inventory
from infra.constructs.publishing import publish_names
from infra.constructs.python_function import PythonFunction
from infra.nag import acknowledge, exported_name
from infra.stacks.stage_stack import StageStack
from infra.workflows.titan_common import (
    EXPIRY_NOTIFIED_TAG,
    TITAN_DATASETS_PREFIX,
    TITAN_OUTPUT_PREFIX,
    bedrock_key_grant,
    deployment_name,
)
from infra.workflows.titan_customize import build_customize_workflow
from infra.workflows.titan_release import build_release_workflow

# The sweeper lists and tags a handful of throughputs: a minute is plenty, and it must end well
# before the next sweep (at least 5 minutes later).
SWEEP_TIMEOUT = Duration.seconds(60)
# The manifest check HEADs up to 10,000 images, 32 at a time.
MANIFEST_CHECK_TIMEOUT = Duration.minutes(5)

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


class BedrockStack(StageStack):
    def build(self) -> None:
        config = self.config
        self.parameter_name = config.titan_provisioned_model_parameter
        self.parameter_arn = (
            f"arn:{Aws.PARTITION}:ssm:{self.region}:{self.account}:parameter{self.parameter_name}"
        )
        bedrock_arn = f"arn:{Aws.PARTITION}:bedrock:{self.region}:{self.account}"
        self.job_arns = f"{bedrock_arn}:model-customization-job/*"
        self.custom_model_arns = f"{bedrock_arn}:custom-model/*"
        self.provisioned_model_arns = f"{bedrock_arn}:provisioned-model/*"

        self._notifications()
        self.release = build_release_workflow(self)
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
            self.customize = build_customize_workflow(self)
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
            publish_statements=self.publish_statements(),
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

    def publish_statements(self) -> list[iam.PolicyStatement]:
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
            *read_prefix_statements(datasets, TITAN_DATASETS_PREFIX),
            list_prefix_statement(models, TITAN_OUTPUT_PREFIX),
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
            bedrock_key_grant(data.key.key_arn, self.region),
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
            *read_prefix_statements(datasets, TITAN_DATASETS_PREFIX),
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
            *self.publish_statements(),
        ):
            function.role.add_to_principal_policy(statement)
        acknowledge(
            function.role.node.find_child("DefaultPolicy"),
            f"AwsSolutions-IAM5[Resource::{self.nag_arn('provisioned-model/*')}]",
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

    def nag_arn(self, resource: str) -> str:
        """A Bedrock ARN of this account and region as cdk-nag prints it in findings."""
        return f"arn:<AWS::Partition>:bedrock:<AWS::Region>:<AWS::AccountId>:{resource}"

    # --- alarms --------------------------------------------------------------------------------

    def _alarms(self) -> None:
        """Failures nobody is watching for: a sweep that could not release, a release that
        failed, a customization that ended badly (runs take hours). Each notifies the topic."""
        config = self.config
        action = cloudwatch_actions.SnsAction(self.topic)
        sweep_period = Duration.minutes(config.titan.sweep_interval_minutes)
        alarms: list[AlarmSpec] = [
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
        occurrence_alarms(self, config, alarms, action)

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
