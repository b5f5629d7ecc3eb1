"""SageMaker endpoints, each created only when its model artifact is configured.

GPU endpoints bill by the instance-hour from creation to deletion, so every one lives in this
stack and is deleted with it (no retain). The stack always exists, even with nothing to host: after
`vqa.hosting.model_data_url` is set back to null, the next deploy updates this stack and
CloudFormation deletes the endpoint, which a stack left out of the app would never do. No other
stack depends on this one (the Api stack grants by endpoint name), so it can be destroyed alone.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, Stack
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.hf_images import huggingface_image
from infra.constructs.publishing import publish_names
from infra.constructs.sagemaker_endpoint import SageMakerEndpoint
from infra.stacks.data import DataStack

# The Hugging Face inference toolkit's settings for the VQA model. One worker: a second copy of a
# 4-billion-parameter model would not leave the GPU room to answer. The endpoint runs network
# isolated, so the Hub must never be asked for anything: the archive carries the model and code.
VQA_INFERENCE_ENVIRONMENT = {
    "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
    "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
    "HF_HUB_OFFLINE": "1",
}

# SSM parameter names under `/<name_prefix>/<stage>/hosting/`.
PUBLISHED_NAMES = ("vqa-endpoint-name",)
PUBLISHED_NAMES_WHEN_HOSTED = (*PUBLISHED_NAMES, "vqa-model-data-url", "vqa-model-role-arn")


class HostingStack(Stack):
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
        hosting = config.vqa.hosting
        # The endpoint the description pipeline asks for attributes, when this stack hosts it.
        self.vqa_endpoint: SageMakerEndpoint | None = None
        values = {"vqa-endpoint-name": config.attribute_endpoint_name}
        if hosting.model_data_url is not None:
            self.vqa_endpoint = SageMakerEndpoint(
                self,
                "VqaEndpoint",
                endpoint_name=config.attribute_endpoint_name,
                image=huggingface_image(
                    self,
                    kind="inference",
                    override=hosting.image_uri,
                    config_key="vqa.hosting.image_uri",
                ),
                model_data_url=hosting.model_data_url,
                # Training writes the archive into the models bucket under the data key.
                model_data_key=data.key,
                instance_type=hosting.instance_type,
                initial_instance_count=hosting.min_instances,
                volume_kms_key=data.key,
                environment=VQA_INFERENCE_ENVIRONMENT,
                startup_timeout=Duration.seconds(hosting.startup_timeout_seconds),
                description=f"Atelier {config.stage}: serves the VQA attribute model "
                f"{hosting.model_data_url}",
            )
            if hosting.autoscaling:
                # Off while the instance type changes: UpdateEndpoint refuses a new instance
                # type for a variant that has a scalable target registered.
                self.vqa_endpoint.add_autoscaling(
                    min_capacity=hosting.min_instances,
                    max_capacity=hosting.max_instances,
                    invocations_per_instance_per_minute=hosting.target_invocations_per_instance,
                    scale_in_cooldown=Duration.seconds(hosting.scale_in_cooldown_seconds),
                    scale_out_cooldown=Duration.seconds(hosting.scale_out_cooldown_seconds),
                )
            self.vqa_endpoint.add_alarms(
                latency_p90=Duration.millis(hosting.latency_alarm_p90_ms),
                errors_5xx_threshold=hosting.error_alarm_5xx_threshold,
                description_prefix=f"Atelier {config.stage} VQA endpoint "
                f"{config.attribute_endpoint_name}",
            )
            values["vqa-model-data-url"] = hosting.model_data_url
            values["vqa-model-role-arn"] = self.vqa_endpoint.role.role_arn

        publish_names(
            self,
            config=config,
            section="hosting",
            names=PUBLISHED_NAMES_WHEN_HOSTED if self.vqa_endpoint else PUBLISHED_NAMES,
            values=values,
        )
