"""The description pipeline's front doors: a REST API, and S3 uploads → EventBridge → SQS → worker;
`POST /images` on the customized Titan model's provisioned throughput; and `POST /generations` and
`POST /styling` on the Stable Diffusion SageMaker endpoints.

Compute only: every byte of customer data lives in the Data stack, so this stack can be destroyed
and redeployed freely. Grants land in this stack's role policies (never in the Data stack's key or
bucket policies), so the Data stack never depends on this one.
"""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.checkov_skips import skip_check
from infra.config import ConfigError, StageConfig
from infra.constructs.bedrock_models import invoke_model_statements, nag_model_arns
from infra.constructs.dashboard import StageDashboard
from infra.constructs.encrypted_queue_target import add_encrypted_queue_target
from infra.constructs.log_groups import create_log_group
from infra.constructs.publishing import publish_names
from infra.constructs.python_function import (
    AWS_SDK_PIP_ARGS,
    AWS_SDK_REQUIREMENTS,
    PythonFunction,
)
from infra.constructs.sagemaker_endpoint import SageMakerEndpoint, grant_invoke_endpoint
from infra.models import DREAMBOOTH, STYLING, VQA, Model
from infra.nag import acknowledge, exported_name
from infra.stacks.data import UPLOADS_PREFIX, DataStack

# Lambda allows 4 KB for all environment variables together; leave room for the others.
MAX_SETTINGS_BYTES = 3_500
# Where both functions write result JSON in the results bucket.
RESULTS_PREFIX = "descriptions/"
# Where the images function stores generated PNGs (lambdas/images/logic/keys.py says the same).
IMAGES_PREFIX = "images/"
# Seconds the images function keeps after its last Titan call to store PNGs and answer
# (lambdas/images/handlers/api.py keeps the same margin).
IMAGES_RESPONSE_MARGIN_SECONDS = 3
# Where the diffusion function writes its outputs in the results bucket, and the only prefixes of
# the uploads bucket it may read inputs from (lambdas/diffusion/logic/keys.py says the same).
DIFFUSION_OUTPUT_PREFIXES = ("generations/", "styling/")
DIFFUSION_INPUT_PREFIXES = ("styling/", UPLOADS_PREFIX)
# Seconds the diffusion function keeps after its last endpoint call to store images and answer
# (lambdas/diffusion/handlers/api.py keeps the same margin).
DIFFUSION_RESPONSE_MARGIN_SECONDS = 3
# Room in API Gateway's check of an inline image for a `data:image/...;base64,` prefix.
DATA_URL_PREFIX_CHARACTERS = 64
# The API function checks the same pattern (lambdas/shared/models/descriptions.py).
PRODUCT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
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

# API Gateway-generated errors (by response type) → our error codes; every other 4xx/5xx falls to
# the two defaults.
GATEWAY_ERROR_CODES = {
    "BAD_REQUEST_BODY": "invalid_request",
    "BAD_REQUEST_PARAMETERS": "invalid_request",
    "ACCESS_DENIED": "access_denied",
    # Also what an unknown route answers: REST APIs report it as a missing token, not a 404.
    "MISSING_AUTHENTICATION_TOKEN": "unauthenticated",
    "EXPIRED_TOKEN": "unauthenticated",
    "INVALID_SIGNATURE": "unauthenticated",
    "UNAUTHORIZED": "unauthenticated",
    "THROTTLED": "throttled",
    "QUOTA_EXCEEDED": "quota_exceeded",
    "REQUEST_TOO_LARGE": "request_too_large",
    "INTEGRATION_TIMEOUT": "timeout",
    "DEFAULT_4XX": "bad_request",
    "DEFAULT_5XX": "internal_error",
}
# Request validation failures: a fixed message that names the rules.
VALIDATION_RESPONSE_TYPES = ("BAD_REQUEST_BODY", "BAD_REQUEST_PARAMETERS")


def gateway_error_template(code: str, *, validation: bool = False) -> str:
    """Our `{"error": {"code", "message"}}` body for an API Gateway-generated error.

    Gateway response templates are plain substitution, not VTL. `messageString` arrives quoted
    and escaped as a JSON string, so it goes in bare. `validationErrorString` is documented
    neither as quoted nor as escaped (it contains quotes, e.g. `(["image"])`), so a validation
    failure gets a fixed message naming the rules instead of risking a body that is not JSON.
    """
    message = (
        json.dumps(
            "the request does not match the API's request model: POST /descriptions needs a JSON "
            "object with string fields productId (1-128 letters, digits, '.', '_' or '-') and "
            "image (base64); POST /images needs a JSON object with a string prompt and integers "
            "width and height; POST /generations needs a JSON object with a string prompt; POST "
            "/styling needs a JSON object with a string prompt and an image object holding "
            "base64 or key, and an inline (base64) image or mask may not exceed the stage's "
            "limit: upload larger ones to the uploads bucket under styling/ and pass their key; "
            "see the OpenAPI documents"
        )
        if validation
        else "$context.error.messageString"
    )
    return f'{{"error":{{"code":{json.dumps(code)},"message":{message}}}}}'


def descriptions_settings(config: StageConfig) -> dict[str, Any]:
    """The pipeline settings both functions read from `DESCRIPTIONS_SETTINGS`."""
    d = config.descriptions
    return {
        "endpointName": VQA.endpoint_name(config),
        "modelId": d.model_id,
        "structuredOutput": d.structured_output,
        "maxTokensPerLanguage": d.max_tokens_per_language,
        "temperature": d.temperature,
        "languages": list(d.languages),
        "defaultLanguages": list(d.default_languages),
        "maxLanguagesPerRequest": d.max_languages_per_request,
        "questions": dict(d.questions),
        "categories": {name: list(attributes) for name, attributes in d.categories.items()},
        "image": {
            "maxBytes": d.image.max_bytes,
            "maxPixels": d.image.max_pixels,
            "maxSide": d.image.max_side,
            "minSide": d.image.min_side,
        },
        "groundingRetries": d.grounding_retries,
    }


def images_settings(config: StageConfig) -> dict[str, Any]:
    """What the images function reads from `IMAGES_SETTINGS`."""
    i = config.images
    return {
        "maxPromptCharacters": i.max_prompt_characters,
        "maxImagesPerRequest": i.max_images_per_request,
        "sizes": [f"{width}x{height}" for width, height in i.sizes],
        "modelArnCacheSeconds": i.model_arn_cache_seconds,
        "presignedUrlSeconds": i.presigned_url_seconds,
        "modelReadTimeoutSeconds": i.api_timeout_seconds - IMAGES_RESPONSE_MARGIN_SECONDS,
    }


def base64_length(size: int) -> int:
    """Characters of standard, padded base64 for `size` bytes."""
    return (size + 2) // 3 * 4


def diffusion_model_settings(config: StageConfig, model: Model, *, label: str) -> dict[str, str]:
    """Which endpoint serves one diffusion route, and what to tell a caller when it is absent."""
    return {
        "endpointName": model.endpoint_name(config),
        "configKey": f"{model.config_key}.model_data_url",
        "modelDataParameter": model.model_data_parameter(config),
        "label": label,
    }


def diffusion_settings(config: StageConfig) -> dict[str, Any]:
    """What the diffusion function reads from `DIFFUSION_SETTINGS`."""
    d = config.diffusion
    return {
        # The function's names for its two models (POST /generations and POST /styling).
        "generation": diffusion_model_settings(
            config, DREAMBOOTH, label="DreamBooth text-to-image"
        ),
        "styling": diffusion_model_settings(config, STYLING, label="styling"),
        "maxPromptCharacters": d.max_prompt_characters,
        "maxImagesPerRequest": d.max_images_per_request,
        "minSide": d.min_side,
        "maxSide": d.max_side,
        "maxPixels": d.max_pixels,
        "defaultSize": d.default_size,
        "defaultSteps": d.default_steps,
        "maxSteps": d.max_steps,
        "defaultGuidanceScale": d.default_guidance_scale,
        "maxGuidanceScale": d.max_guidance_scale,
        "imageLengths": list(d.image_lengths),
        "defaultImageLength": d.default_image_length,
        "image": {
            "maxBytes": d.image.max_bytes,
            "maxPixels": d.image.max_pixels,
            "maxSide": d.image.max_side,
            "minSide": d.image.min_side,
        },
        "maxInlineImageBytes": d.max_inline_image_bytes,
        "presignedUrlSeconds": d.presigned_url_seconds,
        "modelReadTimeoutSeconds": d.api_timeout_seconds - DIFFUSION_RESPONSE_MARGIN_SECONDS,
    }


def descriptions_settings_json(config: StageConfig) -> str:
    text = json.dumps(descriptions_settings(config), separators=(",", ":"), sort_keys=True)
    size = len(text.encode("utf-8"))
    if size > MAX_SETTINGS_BYTES:
        raise ConfigError(
            f"descriptions.questions and descriptions.categories are too large for a Lambda "
            f"environment: the settings take {size} bytes of JSON, at most {MAX_SETTINGS_BYTES} "
            "fit; shorten the questions or ask fewer"
        )
    return text


class ApiStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        data: DataStack,
        attribute_endpoint: SageMakerEndpoint | None = None,
        **kwargs: Any,
    ) -> None:
        """`attribute_endpoint`: the Hosting stack's endpoint when it hosts one; None when the
        endpoint named in the config is external (or not deployed yet)."""
        super().__init__(scope, construct_id, **kwargs)
        d = config.descriptions
        shared_environment = {
            "TABLE_NAME": data.table.table_name,
            "RESULTS_BUCKET": data.results_bucket.bucket_name,
            "DESCRIPTIONS_SETTINGS": descriptions_settings_json(config),
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
                "IMAGES_SETTINGS": json.dumps(
                    images_settings(config), separators=(",", ":"), sort_keys=True
                ),
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
                "DIFFUSION_SETTINGS": json.dumps(
                    diffusion_settings(config), separators=(",", ":"), sort_keys=True
                ),
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
        self.api = self._rest_api(config)
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
            # One statement either way, on the ARN built from the endpoint's name (no export):
            # the hosted endpoint grants it itself, an external one is granted by name.
            if endpoint is not None:
                endpoint.grant_invoke(function.role)
            else:
                grant_invoke_endpoint(
                    function.role, stack=self, endpoint_name=VQA.endpoint_name(config)
                )
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
            wide_models = [a for a in nag_model_arns(config.descriptions.model_id) if "*" in a]
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

    def _rest_api(self, config: StageConfig) -> apigateway.RestApi:
        if config.api.auth == "cognito":
            assert config.api.cognito_user_pool_arn is not None  # checked by the config
            authorizer = apigateway.CognitoUserPoolsAuthorizer(
                self,
                "Authorizer",
                cognito_user_pools=[
                    cognito.UserPool.from_user_pool_arn(
                        self, "UserPool", config.api.cognito_user_pool_arn
                    )
                ],
            )
            method_options = apigateway.MethodOptions(
                authorization_type=apigateway.AuthorizationType.COGNITO, authorizer=authorizer
            )
        else:
            method_options = apigateway.MethodOptions(
                authorization_type=apigateway.AuthorizationType.IAM
            )
        cors = (
            apigateway.CorsOptions(
                allow_origins=list(config.api.cors_allowed_origins),
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=apigateway.Cors.DEFAULT_HEADERS,
            )
            if config.api.cors_allowed_origins
            else None
        )
        access_logs = create_log_group(self, "AccessLogs", config=config)
        api = apigateway.RestApi(
            self,
            "Api",
            rest_api_name=config.resource_name("api"),
            description=f"Atelier {config.stage}: product descriptions from photos, personalized "
            "images",
            endpoint_types=[apigateway.EndpointType.REGIONAL],
            disable_execute_api_endpoint=False,
            # Execution logging needs the account-wide API Gateway CloudWatch role, which one
            # app must not take over from every other API in the account.
            cloud_watch_role=False,
            default_method_options=method_options,
            default_cors_preflight_options=cors,
            deploy_options=apigateway.StageOptions(
                stage_name="v1",
                throttling_rate_limit=config.api.throttle_rate_limit,
                throttling_burst_limit=config.api.throttle_burst_limit,
                # Image generation is bound by a few provisioned model units, and diffusion by a
                # few GPU instances.
                method_options={
                    "/images/POST": apigateway.MethodDeploymentOptions(
                        throttling_rate_limit=config.images.throttle_rate_limit,
                        throttling_burst_limit=config.images.throttle_burst_limit,
                    ),
                    **{
                        f"/{route}/POST": apigateway.MethodDeploymentOptions(
                            throttling_rate_limit=config.diffusion.throttle_rate_limit,
                            throttling_burst_limit=config.diffusion.throttle_burst_limit,
                        )
                        for route in ("generations", "styling")
                    },
                },
                tracing_enabled=True,
                access_log_destination=apigateway.LogGroupLogDestination(access_logs),
                access_log_format=apigateway.AccessLogFormat.json_with_standard_fields(
                    caller=True,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
            ),
        )
        for response_type, code in GATEWAY_ERROR_CODES.items():
            api.add_gateway_response(
                f"{response_type}Response",
                type=apigateway.ResponseType.of(response_type),
                templates={
                    "application/json": gateway_error_template(
                        code, validation=response_type in VALIDATION_RESPONSE_TYPES
                    )
                },
            )

        # One validator for both methods: POST has a body model, GET a required path parameter.
        validator = api.add_request_validator(
            "RequestValidator", validate_request_body=True, validate_request_parameters=True
        )
        request_model = api.add_model(
            "DescribeRequest",
            content_type="application/json",
            description="The fields API Gateway checks before invoking the function",
            schema=apigateway.JsonSchema(
                schema=apigateway.JsonSchemaVersion.DRAFT4,
                title="DescribeRequest",
                type=apigateway.JsonSchemaType.OBJECT,
                required=["productId", "image"],
                properties={
                    "productId": apigateway.JsonSchema(
                        type=apigateway.JsonSchemaType.STRING, pattern=PRODUCT_ID_PATTERN
                    ),
                    "image": apigateway.JsonSchema(type=apigateway.JsonSchemaType.STRING),
                },
            ),
        )
        integration = apigateway.LambdaIntegration(
            self.api_function.function, proxy=True, allow_test_invoke=False
        )
        descriptions = api.root.add_resource("descriptions")
        post = descriptions.add_method(
            "POST",
            integration,
            request_validator=validator,
            request_models={"application/json": request_model},
        )
        get = descriptions.add_resource("{productId}").add_method(
            "GET",
            integration,
            request_validator=validator,
            request_parameters={"method.request.path.productId": True},
        )
        images_model = api.add_model(
            "GenerateImagesRequest",
            content_type="application/json",
            description="The fields API Gateway checks before invoking the images function",
            schema=apigateway.JsonSchema(
                schema=apigateway.JsonSchemaVersion.DRAFT4,
                title="GenerateImagesRequest",
                type=apigateway.JsonSchemaType.OBJECT,
                required=["prompt", "width", "height"],
                properties={
                    "prompt": apigateway.JsonSchema(type=apigateway.JsonSchemaType.STRING),
                    "width": apigateway.JsonSchema(type=apigateway.JsonSchemaType.INTEGER),
                    "height": apigateway.JsonSchema(type=apigateway.JsonSchemaType.INTEGER),
                },
            ),
        )
        images = api.root.add_resource("images").add_method(
            "POST",
            apigateway.LambdaIntegration(
                self.images_function.function, proxy=True, allow_test_invoke=False
            ),
            request_validator=validator,
            request_models={"application/json": images_model},
        )
        generations, styling = self._diffusion_routes(api, config, validator)

        stage = api.deployment_stage
        acknowledge(
            stage,
            "AwsSolutions-APIG3",
            "No WAF web ACL by default: every request must be IAM-signed (or carry a Cognito "
            "token) and the stage is throttled; a web ACL costs per month and is left to the "
            "account owner to associate.",
        )
        acknowledge(
            stage,
            "AwsSolutions-APIG6",
            "Execution logging needs the account-wide API Gateway CloudWatch role, a singleton "
            "this app must not take over; JSON access logs, X-Ray traces and the function's "
            "own logs cover each request.",
        )
        skip_check(
            stage,
            "CKV_AWS_120",
            "No response cache: every POST must reach its function (each describes or generates "
            "anew), and GET answers are per product and change when a description is stored; a "
            "cache would serve stale results and bills per hour.",
        )
        if config.api.auth == "iam":
            for method in (post, get, images, generations, styling):
                acknowledge(
                    method,
                    "AwsSolutions-COG4",
                    "IAM SigV4 is the designed default for server-to-server callers; a Cognito "
                    "user pool authorizer is used when api.auth is 'cognito'.",
                )
        return api

    def _diffusion_routes(
        self, api: apigateway.RestApi, config: StageConfig, validator: apigateway.RequestValidator
    ) -> tuple[apigateway.Method, apigateway.Method]:
        """POST /generations and POST /styling, both proxied to the diffusion function.

        API Gateway checks little (the function names each bad field), but it does refuse an
        inline image longer than the stage allows: a body over Lambda's 6 MB event limit would
        otherwise never reach the function that explains what to do instead.
        """
        string = apigateway.JsonSchema(type=apigateway.JsonSchemaType.STRING)
        inline = base64_length(config.diffusion.max_inline_image_bytes)
        image = apigateway.JsonSchema(
            type=apigateway.JsonSchemaType.OBJECT,
            properties={
                "base64": apigateway.JsonSchema(
                    type=apigateway.JsonSchemaType.STRING,
                    max_length=inline + DATA_URL_PREFIX_CHARACTERS,
                ),
                "key": string,
            },
        )
        models = {
            "generations": api.add_model(
                "GenerationRequest",
                content_type="application/json",
                description="The fields API Gateway checks before invoking the diffusion function",
                schema=apigateway.JsonSchema(
                    schema=apigateway.JsonSchemaVersion.DRAFT4,
                    title="GenerationRequest",
                    type=apigateway.JsonSchemaType.OBJECT,
                    required=["prompt"],
                    properties={"prompt": string},
                ),
            ),
            "styling": api.add_model(
                "StylingRequest",
                content_type="application/json",
                description="The fields API Gateway checks before invoking the diffusion function",
                schema=apigateway.JsonSchema(
                    schema=apigateway.JsonSchemaVersion.DRAFT4,
                    title="StylingRequest",
                    type=apigateway.JsonSchemaType.OBJECT,
                    required=["image", "prompt"],
                    properties={"image": image, "mask": image, "prompt": string},
                ),
            ),
        }
        integration = apigateway.LambdaIntegration(
            self.diffusion_function.function, proxy=True, allow_test_invoke=False
        )
        generations, styling = (
            api.root.add_resource(route).add_method(
                "POST",
                integration,
                request_validator=validator,
                request_models={"application/json": models[route]},
            )
            for route in ("generations", "styling")
        )
        return generations, styling
