"""The model lifecycle guard: a daily check of every Bedrock model the stage is configured to use.

A function (lambdas/lifecycle/) runs once a day on an EventBridge schedule, reads each model's
lifecycle from Bedrock (GetFoundationModel; an inference profile through GetInferenceProfile
first), publishes a metric per model, and notifies the topic once per state change when a model
is Legacy or ends within `lifecycle.warning_days`. What it remembers lives in one SSM parameter
the function writes (`/<prefix>/<stage>/lifecycle/model-states`). An alarm on
`ModelsNeedingAttention` fires (to the same topic) while any model needs attention; another on the
function's errors.

The models come from the configuration (`configured_bedrock_models`), never from code. The same
list, with the stage's endpoints and training base models, is published for `atelier doctor`
(`stage_inventory`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aws_cdk import Aws, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.alarms import AlarmSpec, occurrence_alarms
from infra.constructs.bedrock_models import foundation_model_id, inference_profile_id
from infra.constructs.python_function import (
    AWS_SDK_PIP_ARGS,
    AWS_SDK_REQUIREMENTS,
    POWERTOOLS_METRICS_NAMESPACE,
    PythonFunction,
)
from infra.models import hosted_models, trained_models

SERVICE_NAME = "model-lifecycle"
# lambdas/lifecycle/handlers/check.py publishes it (a test keeps the names equal).
ATTENTION_METRIC = "ModelsNeedingAttention"
# A handful of GetFoundationModel calls: well within a minute.
CHECK_TIMEOUT = Duration.seconds(60)
# Once a day, early UTC, so a change is in the inbox at the start of the working day.
SCHEDULE = events.Schedule.cron(minute="0", hour="6")
WARNING_DAYS_KEY = "lifecycle.warning_days"


@dataclass(frozen=True)
class ConfiguredBedrockModel:
    config_key: str
    model_id: str
    used_for: str

    def as_dict(self) -> dict[str, str]:
        return {"configKey": self.config_key, "modelId": self.model_id, "usedFor": self.used_for}


def configured_bedrock_models(config: StageConfig) -> list[ConfiguredBedrockModel]:
    """Every Bedrock model setting of the stage that names a model, with the key that sets it
    (a null `titan.base_model_id` is not checked, and its function gets no grant for it)."""
    models = [
        ConfiguredBedrockModel(
            "descriptions.model_id",
            config.descriptions.model_id,
            "product descriptions (POST /descriptions, uploads and catalog runs)",
        ),
    ]
    attributes = config.descriptions.attributes
    if config.attribute_source == "vision-llm":
        models.append(
            ConfiguredBedrockModel(
                "descriptions.attributes.model_id",
                attributes.model_id,
                "attributes read from product photos (descriptions.attributes.source vision-llm)",
            )
        )
    if config.titan.base_model_id is not None:
        models.append(
            ConfiguredBedrockModel(
                "titan.base_model_id",
                config.titan.base_model_id,
                f"image customization (base model of {config.resource_name('titan-customize')})",
            )
        )
    return models


def stage_inventory(config: StageConfig) -> dict[str, Any]:
    """What `atelier doctor` checks, as published in SSM: the Bedrock models, the endpoints, and
    the base models of the training workflows, each with the cdk.json key that sets it."""
    return {
        "warningDays": config.lifecycle.warning_days,
        "bedrockModels": [model.as_dict() for model in configured_bedrock_models(config)],
        "endpoints": [
            {"name": model.endpoint_name(config), "configKey": model.config_key}
            for model in hosted_models()
        ],
        "trainingBaseModels": [
            # modelId null: not configured (no image model can be fine-tuned today); doctor
            # reports it as information, not as a failure.
            {
                "source": "bedrock",
                "modelId": config.titan.base_model_id,
                "configKey": "titan.base_model_id",
                "usedFor": "atelier customize titan",
            },
            *(
                {
                    "source": "huggingface",
                    "modelId": model.training_section(config).base_model,
                    # A Hub commit where the configuration pins one.
                    "revision": getattr(
                        model.training_section(config), "base_model_revision", None
                    ),
                    "configKey": f"{model.key}.training.base_model",
                    "usedFor": f"atelier train {model.training.command}",
                }
                for model in trained_models()
                if model.training is not None
            ),
            # A second model a workflow stages beside its base (CLIPSeg for styling).
            *(
                {
                    "source": "huggingface",
                    "modelId": section.clipseg_model,
                    "revision": section.clipseg_model_revision,
                    "configKey": f"{model.key}.training.clipseg_model",
                    "usedFor": f"atelier train {model.training.command}",
                }
                for model in trained_models()
                if model.training is not None
                and (section := model.training_section(config)) is not None
                and getattr(section, "clipseg_model", None)
            ),
        ],
    }


class ModelLifecycleGuard(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        topic: sns.ITopic,
        publish_statements: Sequence[iam.PolicyStatement],
        deployment: str,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        models = configured_bedrock_models(config)
        # Written by the function itself (created on its first run), like the values workflows
        # record: only the stacks' published names are CloudFormation parameters.
        self.state_parameter = f"{config.ssm_prefix}/lifecycle/model-states"
        state_arn = (
            f"arn:{Aws.PARTITION}:ssm:{stack.region}:{stack.account}:"
            f"parameter{self.state_parameter}"
        )
        self.function = PythonFunction(
            self,
            "CheckFunction",
            config=config,
            handler="lifecycle.handlers.check.handler",
            # The lifecycle dates (legacyTime, publicExtendedAccessTime, endOfLifeTime) are recent
            # fields of GetFoundationModel: a runtime botocore that predates them drops them
            # silently, and an end of life within the warning window would go unnoticed. Same
            # pinned SDK as the Converse callers (one bundled asset).
            requirements=AWS_SDK_REQUIREMENTS,
            extra_pip_args=AWS_SDK_PIP_ARGS,
            description="Daily: the lifecycle of every configured Bedrock model; notifies when "
            "one is Legacy or near its end of life",
            service_name=SERVICE_NAME,
            environment={
                "CONFIGURED_MODELS": json.dumps([model.as_dict() for model in models]),
                "DEPLOYMENT": deployment,
                "STATE_PARAMETER": self.state_parameter,
                "TOPIC_ARN": topic.topic_arn,
                "WARNING_DAYS": str(config.lifecycle.warning_days),
            },
            timeout=CHECK_TIMEOUT,
        )
        # A failed check is retried by tomorrow's; no Lambda retries of a whole check.
        self.function.function.configure_async_invoke(retry_attempts=0)
        profiles: list[str] = []
        foundation_models: list[str] = []
        for model in models:
            profile = inference_profile_id(model.model_id)
            foundation = foundation_model_id(model.model_id)
            if profile is not None:
                profiles.append(
                    f"arn:{Aws.PARTITION}:bedrock:{stack.region}:{stack.account}:"
                    f"inference-profile/{profile}"
                )
            foundation_models.append(
                f"arn:{Aws.PARTITION}:bedrock:{stack.region}::foundation-model/{foundation}"
            )
        statements = [
            iam.PolicyStatement(
                actions=["bedrock:GetFoundationModel"], resources=sorted(set(foundation_models))
            ),
            iam.PolicyStatement(
                actions=["ssm:GetParameter", "ssm:PutParameter"],
                resources=[state_arn],
            ),
            *publish_statements,
        ]
        if profiles:
            statements.append(
                iam.PolicyStatement(
                    actions=["bedrock:GetInferenceProfile"], resources=sorted(set(profiles))
                )
            )
        for statement in statements:
            self.function.role.add_to_principal_policy(statement)
        events.Rule(
            self,
            "Schedule",
            rule_name=config.resource_name("model-lifecycle-check"),
            description="Daily lifecycle check of the stage's Bedrock models",
            schedule=SCHEDULE,
            targets=[
                targets.LambdaFunction(
                    self.function.function, retry_attempts=2, max_event_age=Duration.hours(6)
                )
            ],
        )
        self._alarms(config, topic, deployment)

    def _alarms(self, config: StageConfig, topic: sns.ITopic, deployment: str) -> None:
        action = cloudwatch_actions.SnsAction(topic)
        day = Duration.days(1)
        attention = cloudwatch.Metric(
            namespace=POWERTOOLS_METRICS_NAMESPACE,
            metric_name=ATTENTION_METRIC,
            dimensions_map={"service": SERVICE_NAME, "deployment": deployment},
            statistic="Maximum",
            period=day,
        )
        alarms: list[AlarmSpec] = [
            (
                "AttentionAlarm",
                "model-lifecycle-attention",
                attention,
                "A Bedrock model the stage uses is Legacy, near its end of life or gone: the "
                "notice names the model and the cdk.json key to change (atelier doctor shows "
                "them all).",
            ),
            (
                "ErrorsAlarm",
                "model-lifecycle-errors",
                self.function.function.metric_errors(period=day, statistic="Sum"),
                "The daily model lifecycle check failed: see its log group.",
            ),
        ]
        occurrence_alarms(self, config, alarms, action)
