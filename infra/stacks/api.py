"""The description pipeline's front doors: a REST API, and S3 uploads → EventBridge → SQS → worker;
`POST /images` on the customized Titan model's provisioned throughput; and `POST /generations` and
`POST /styling` on the Stable Diffusion SageMaker endpoints.

Compute only: every byte of customer data lives in the Data stack, so this stack can be destroyed
and redeployed freely. Grants land in this stack's role policies (never in the Data stack's key or
bucket policies), so the Data stack never depends on this one.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.attribute_source import (
    attribute_source_environment,
    bedrock_model_ids,
    grant_attribute_source,
)
from infra.constructs.bedrock_models import invoke_model_statements, nag_model_arns
from infra.constructs.dashboard import StageDashboard
from infra.constructs.encrypted_queue_target import add_encrypted_queue_target
from infra.constructs.publishing import publish_names
from infra.constructs.python_function import (
    AWS_SDK_PIP_ARGS,
    AWS_SDK_REQUIREMENTS,
    PythonFunction,
)
from infra.constructs.sagemaker_endpoint import SageMakerEndpoint, grant_invoke_endpoint
from infra.models import DREAMBOOTH, STYLING
from infra.nag import acknowledge, exported_name
from infra.stacks.api_rest import ApiFunctions, rest_api
from infra.stacks.api_settings import (
    descriptions_settings_json,
    diffusion_settings,
    images_settings,
    settings_json,
)
from infra.stacks.data import UPLOADS_PREFIX, DataStack
from infra.stacks.stage_stack import StageStack

# Where both functions write result JSON in the results bucket.
RESULTS_PREFIX = "descriptions/"
# Where the images function stores generated PNGs (lambdas/images/logic/keys.py says the same).
IMAGES_PREFIX = "images/"
# Where the diffusion function writes its outputs in the results bucket, and the only prefixes of
# the uploads bucket it may read inputs from (lambdas/diffusion/logic/keys.py says the same).
DIFFUSION_OUTPUT_PREFIXES = ("generations/", "styling/")
DIFFUSION_INPUT_PREFIXES = ("styling/", UPLOADS_PREFIX)
# SQS keeps a message at most 14 days: a failed upload can be redriven for that long.
QUEUE_RETENTION = Duration.days(14)
# Lambda's guidance: a visibility timeout of six times the function timeout, so retries of a
# throttled batch do not make messages visible again while they are still being worked on.
VISIBILITY_TIMEOUT_FACTOR = 6
# EventBridge → SQS fails only on a throttled or misconfigured queue: retry for a while, then park
# the event in the dead-letter queue rather than drop it.
EVENT_DELIVERY_RETRIES = 10
EVENT_MAX_AGE = Duration.hours(6)

# SSM parameter names under `/<name_prefix>/<stage>/api/`.
PUBLISHED_NAMES = (
    "api-url",
    "api-id",
    "uploads-queue-url",
    "dead-letter-queue-url",
    "uploads-prefix",
)


class ApiStack(StageStack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        attribute_endpoint: SageMakerEndpoint | None = None,
        **kwargs: Any,
    ) -> None:
        """`attribute_endpoint`: the Hosting stack's endpoint when it hosts one; None when the
        endpoint named in the config is external (or not deployed yet). `config` and `data` as
        for every `StageStack`."""
        # Set before the base constructor, which calls build().
        self.attribute_endpoint = attribute_endpoint
        super().__init__(scope, construct_id, **kwargs)

    def build(self) -> None:
        config, data, attribute_endpoint = self.config, self.data, self.attribute_endpoint
        d = config.descriptions
        shared_environment = {
            "TABLE_NAME": data.table.table_name,
            "RESULTS_BUCKET": data.results_bucket.bucket_name,
            "DESCRIPTIONS_SETTINGS": descriptions_settings_json(config),
            **attribute_source_environment(config),
        }

        # Both queues are encrypted with the stage's data key, like everything else the stage
        # stores: messages carry bucket, object key and failure reason (customer file names).
        # EventBridge may use the key for this stage's queues only (the Data stack's key policy,
        # infra/constructs/encrypted_queue_target.py); the queue policies name the rule.
        self.dead_letter_queue = sqs.Queue(
            self,
            "UploadsDeadLetterQueue",
            retention_period=QUEUE_RETENTION,
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=data.key,
            enforce_ssl=True,
        )
        self.uploads_queue = sqs.Queue(
            self,
            "UploadsQueue",
            visibility_timeout=Duration.seconds(
                VISIBILITY_TIMEOUT_FACTOR * d.worker_timeout_seconds
            ),
            retention_period=QUEUE_RETENTION,
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=data.key,
            enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=d.max_receive_count
            ),
        )
        self.dead_letter_alarm = cloudwatch.Alarm(
            self,
            "DeadLetterAlarm",
            alarm_description=f"Atelier {config.stage}: uploads that could not be described are "
            "waiting in the dead-letter queue",
            metric=self.dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(5), statistic=cloudwatch.Stats.MAXIMUM
            ),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

        self.api_function = PythonFunction(
            self,
            "ApiFunction",
            config=config,
            handler="descriptions.handlers.api.handler",
            # Converse's outputConfig needs a newer botocore than Lambda's runtime has.
            requirements=AWS_SDK_REQUIREMENTS,
            extra_pip_args=AWS_SDK_PIP_ARGS,
            description="Describes a product photo on request and returns stored descriptions",
            service_name="descriptions",
            environment=shared_environment,
            memory_size=512,
            timeout=Duration.seconds(d.api_timeout_seconds),
        )
        self.uploads_function = PythonFunction(
            self,
            "UploadsFunction",
            config=config,
            handler="descriptions.handlers.uploads.handler",
            # Converse's outputConfig needs a newer botocore than Lambda's runtime has.
            requirements=AWS_SDK_REQUIREMENTS,
            extra_pip_args=AWS_SDK_PIP_ARGS,
            description="Describes product photos uploaded under the incoming/ prefix",
            service_name="descriptions",
            environment={
                **shared_environment,
                "UPLOADS_BUCKET": data.uploads_bucket.bucket_name,
                "DEAD_LETTER_QUEUE_URL": self.dead_letter_queue.queue_url,
                "IDEMPOTENCY_TTL_SECONDS": str(d.idempotency_ttl_hours * 3600),
                "WORKER_CONCURRENCY": str(d.worker_batch_size),
            },
            memory_size=512,
            timeout=Duration.seconds(d.worker_timeout_seconds),
        )
        self.images_function = PythonFunction(
            self,
            "ImagesFunction",
            config=config,
            handler="images.handlers.api.handler",
            description="Generates images with the customized Titan model's provisioned throughput",
            service_name="images",
            environment={
                "RESULTS_BUCKET": data.results_bucket.bucket_name,
                "MODEL_ARN_PARAMETER": config.titan_provisioned_model_parameter,
                "IMAGES_SETTINGS": settings_json(images_settings(config)),
            },
            memory_size=512,
            timeout=Duration.seconds(config.images.api_timeout_seconds),
        )
        self.diffusion_function = PythonFunction(
            self,
            "DiffusionFunction",
            config=config,
            handler="diffusion.handlers.api.handler",
            description="Generates images (DreamBooth) and restyles photos on the Stable "
            "Diffusion SageMaker endpoints",
            service_name="diffusion",
            environment={
                "UPLOADS_BUCKET": data.uploads_bucket.bucket_name,
                "RESULTS_BUCKET": data.results_bucket.bucket_name,
                "DIFFUSION_SETTINGS": settings_json(diffusion_settings(config)),
            },
            # The event, the endpoint's request and its answer may each be ~6 MB of JSON and
            # base64, decoded and re-encoded: memory, and the CPU that comes with it.
            memory_size=1024,
            timeout=Duration.seconds(config.diffusion.api_timeout_seconds),
        )
        self._grant(config, data, attribute_endpoint)
        self._grant_images(config, data)
        self._grant_diffusion(config, data)
        self._connect_uploads(config, data)
        self.api = rest_api(
            self,
            config,
            ApiFunctions(
                descriptions=self.api_function.function,
                images=self.images_function.function,
                diffusion=self.diffusion_function.function,
            ),
        )
        # The stage's operations dashboard: this stack holds the API, queues and functions; the
        # rest of the stage is named in it, not referenced (no export, no stack dependency).
        self.dashboard = StageDashboard(
            self,
            "Dashboard",
            config=config,
            api=self.api,
            queue=self.uploads_queue,
            dead_letter_queue=self.dead_letter_queue,
            functions={
                "Descriptions API function": self.api_function.function,
                "Uploads function": self.uploads_function.function,
                "Images function": self.images_function.function,
                "Diffusion function": self.diffusion_function.function,
            },
        )

        publish_names(
            self,
            config=config,
            section="api",
            names=PUBLISHED_NAMES,
            values={
                "api-url": self.api.url,
                "api-id": self.api.rest_api_id,
                "uploads-queue-url": self.uploads_queue.queue_url,
                "dead-letter-queue-url": self.dead_letter_queue.queue_url,
                "uploads-prefix": UPLOADS_PREFIX,
            },
        )

    def _grant(
        self, config: StageConfig, data: DataStack, endpoint: SageMakerEndpoint | None
    ) -> None:
        """Exactly the resources each function touches, written into its own role policy."""
        results_objects = data.results_bucket.arn_for_objects(f"{RESULTS_PREFIX}*")
        table_actions = {
            self.api_function: ["dynamodb:GetItem", "dynamodb:PutItem"],
            # Powertools idempotency records: get, put (conditional), update, and delete on failure.
            self.uploads_function: [
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:DeleteItem",
            ],
        }
        for function, actions in table_actions.items():
            grant_attribute_source(self, function.role, config, endpoint=endpoint)
            statements = [
                # Through a profile: the profile, and its model only via that profile.
                *invoke_model_statements(self, config.descriptions.model_id),
                iam.PolicyStatement(actions=actions, resources=[data.table.table_arn]),
                iam.PolicyStatement(actions=["s3:PutObject"], resources=[results_objects]),
                # The data key encrypts the table and the buckets; only those services may use
                # it on the functions' behalf (DynamoDB also describes the key for the caller).
                iam.PolicyStatement(
                    actions=[
                        "kms:Decrypt",
                        "kms:DescribeKey",
                        "kms:Encrypt",
                        "kms:GenerateDataKey",
                    ],
                    resources=[data.key.key_arn],
                    conditions={
                        "StringEquals": {
                            "kms:ViaService": [
                                f"s3.{self.region}.amazonaws.com",
                                f"dynamodb.{self.region}.amazonaws.com",
                            ]
                        }
                    },
                ),
            ]
            for statement in statements:
                function.role.add_to_principal_policy(statement)

        uploads = self.uploads_function.role
        uploads.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:GetObjectVersion"],
                resources=[data.uploads_bucket.arn_for_objects(f"{UPLOADS_PREFIX}*")],
            )
        )
        # Permanent failures (not an image, too large) go straight to the DLQ with their reason
        # instead of being retried max_receive_count times.
        uploads.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["sqs:SendMessage"], resources=[self.dead_letter_queue.queue_arn]
            )
        )
        # The queues are encrypted with the data key: SQS uses it on the worker's behalf to
        # encrypt what it parks (and to decrypt what it receives).
        uploads.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[data.key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"sqs.{self.region}.amazonaws.com"}},
            )
        )

        # cdk-nag names an imported ARN by its export: acknowledge exactly those prefixes.
        results_export = exported_name(data, data.results_bucket.bucket_arn)
        uploads_export = exported_name(data, data.uploads_bucket.bucket_arn)
        for function in (self.api_function, self.uploads_function):
            policy = function.role.node.find_child("DefaultPolicy")
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::{results_export}/{RESULTS_PREFIX}*]",
                "Writes only result objects under the descriptions/ prefix of the results "
                "bucket; object keys are per product, so the prefix is the narrowest scope.",
            )
            wide_models = [
                arn
                for model_id in bedrock_model_ids(config)
                for arn in nag_model_arns(model_id)
                if "*" in arn
            ]
            for arn in wide_models:
                acknowledge(
                    policy,
                    f"AwsSolutions-IAM5[Resource::{arn}]",
                    "A cross-region inference profile routes each request to the foundation "
                    "model in any region of its geography; IAM checks that model ARN in the "
                    "region that serves the call. The statement allows it only through this "
                    "stage's profile (condition bedrock:InferenceProfileArn).",
                )
        acknowledge(
            self.uploads_function.role.node.find_child("DefaultPolicy"),
            f"AwsSolutions-IAM5[Resource::{uploads_export}/{UPLOADS_PREFIX}*]",
            "Reads only uploaded photos under the incoming/ prefix, the prefix the event rule "
            "delivers; any object there may be a new upload.",
        )

    def _grant_images(self, config: StageConfig, data: DataStack) -> None:
        """The images function's own role: its parameter, any provisioned model of this account
        and region, its object prefix, and the data key through S3 only."""
        parameter = self.format_arn(
            service="ssm",
            resource="parameter",
            resource_name=config.titan_provisioned_model_parameter.lstrip("/"),
        )
        # The ARN is only known at run time (each provisioning makes a new one). Invoking a
        # provisioned custom model is authorized on the provisioned model alone, not on the
        # custom model behind it.
        provisioned_models = self.format_arn(
            service="bedrock", resource="provisioned-model", resource_name="*"
        )
        images_objects = data.results_bucket.arn_for_objects(f"{IMAGES_PREFIX}*")
        role = self.images_function.role
        for statement in (
            iam.PolicyStatement(actions=["ssm:GetParameter"], resources=[parameter]),
            iam.PolicyStatement(actions=["bedrock:InvokeModel"], resources=[provisioned_models]),
            # GetObject too: the presigned URLs it hands out are signed with its credentials.
            iam.PolicyStatement(
                actions=["s3:PutObject", "s3:GetObject"], resources=[images_objects]
            ),
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[data.key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"s3.{self.region}.amazonaws.com"}},
            ),
            # The Bedrock workflow encrypts the custom model with the data key; Bedrock decrypts
            # it on the caller's behalf when the provisioned model is invoked.
            iam.PolicyStatement(
                actions=["kms:Decrypt"],
                resources=[data.key.key_arn],
                conditions={
                    "StringEquals": {"kms:ViaService": f"bedrock.{self.region}.amazonaws.com"}
                },
            ),
        ):
            role.add_to_principal_policy(statement)

        policy = role.node.find_child("DefaultPolicy")
        results_export = exported_name(data, data.results_bucket.bucket_arn)
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::{results_export}/{IMAGES_PREFIX}*]",
            "Writes and reads back (through the presigned URLs it signs) only generated images "
            "under the images/ prefix of the results bucket; keys are per request.",
        )
        acknowledge(
            policy,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:bedrock:<AWS::Region>:"
            "<AWS::AccountId>:provisioned-model/*]",
            "The provisioned throughput's ARN is created by the Bedrock workflow at run time and "
            "read from SSM per request; only provisioned models of this account and region, and "
            "only InvokeModel.",
        )

    def _grant_diffusion(self, config: StageConfig, data: DataStack) -> None:
        """The diffusion function's own role: exactly its two endpoints (by name, so the Hosting
        stack may come and go), its input and output prefixes, and the data key through S3."""
        role = self.diffusion_function.role
        for model in (DREAMBOOTH, STYLING):
            grant_invoke_endpoint(role, stack=self, endpoint_name=model.endpoint_name(config))
        inputs = [data.uploads_bucket.arn_for_objects(f"{p}*") for p in DIFFUSION_INPUT_PREFIXES]
        outputs = [data.results_bucket.arn_for_objects(f"{p}*") for p in DIFFUSION_OUTPUT_PREFIXES]
        for statement in (
            # No s3:ListBucket: a missing input then reads as AccessDenied, which the function
            # reports as a missing key (lambdas/shared/adapters/diffusion_images.py).
            iam.PolicyStatement(actions=["s3:GetObject"], resources=inputs),
            # GetObject too: the presigned URLs it hands out are signed with its credentials.
            iam.PolicyStatement(actions=["s3:PutObject", "s3:GetObject"], resources=outputs),
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[data.key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"s3.{self.region}.amazonaws.com"}},
            ),
        ):
            role.add_to_principal_policy(statement)

        policy = role.node.find_child("DefaultPolicy")
        uploads_export = exported_name(data, data.uploads_bucket.bucket_arn)
        results_export = exported_name(data, data.results_bucket.bucket_arn)
        for prefix in DIFFUSION_INPUT_PREFIXES:
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::{uploads_export}/{prefix}*]",
                f"Reads only styling inputs the caller names by key under the {prefix} prefix of "
                "the uploads bucket; keys are chosen by callers, so the prefix is the narrowest "
                "scope.",
            )
        for prefix in DIFFUSION_OUTPUT_PREFIXES:
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::{results_export}/{prefix}*]",
                f"Writes and reads back (through the presigned URLs it signs) only its outputs "
                f"under the {prefix} prefix of the results bucket; keys are per request.",
            )

    def _connect_uploads(self, config: StageConfig, data: DataStack) -> None:
        d = config.descriptions
        self.uploads_rule = events.Rule(
            self,
            "UploadsRule",
            description=f"Atelier {config.stage}: photos created under {UPLOADS_PREFIX}",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [data.uploads_bucket.bucket_name]},
                    "object": {"key": [{"prefix": UPLOADS_PREFIX}]},
                },
            ),
        )
        # Only this rule may send to either queue (aws:SourceArn in both queue policies), and the
        # data key's policy lets EventBridge use the key for this stage's queues only.
        add_encrypted_queue_target(
            self.uploads_rule,
            self.uploads_queue,
            dead_letter_queue=self.dead_letter_queue,
            retry_attempts=EVENT_DELIVERY_RETRIES,
            max_event_age=EVENT_MAX_AGE,
        )
        self.uploads_function.function.add_event_source(
            event_sources.SqsEventSource(
                self.uploads_queue,
                batch_size=d.worker_batch_size,
                max_batching_window=Duration.seconds(d.worker_max_batching_window_seconds),
                max_concurrency=d.worker_max_concurrency,
                report_batch_item_failures=True,
            )
        )
