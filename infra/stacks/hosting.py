"""SageMaker endpoints, each created only when its model artifact is configured.

- the VQA attribute model (`vqa.hosting`, endpoint `config.attribute_endpoint_name`);
- the DreamBooth text-to-image pipeline (`dreambooth.hosting`, `config.generation_endpoint_name`);
- virtual styling, CLIPSeg and the inpainting pipeline in one archive (`styling.hosting`,
  `config.styling_endpoint_name`).

GPU endpoints bill by the instance-hour from creation to deletion, so every one lives in this
stack and is deleted with it (no retain). The stack always exists, even with nothing to host: after
a `model_data_url` is set back to null, the next deploy updates this stack and CloudFormation
deletes that endpoint, which a stack left out of the app would never do. No other stack depends on
this one (the Api stack grants by endpoint name), so it can be destroyed alone.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, Stack
from constructs import Construct

from infra.config import EndpointHostingConfig, StageConfig
from infra.constructs.hf_images import huggingface_image
from infra.constructs.publishing import publish_names
from infra.constructs.sagemaker_endpoint import SageMakerEndpoint
from infra.stacks.data import DataStack

# The Hugging Face inference toolkit's settings for every endpoint here. One worker per GPU: a
# second copy of a 4-billion-parameter BLIP-2 or of a Stable Diffusion pipeline would not leave
# the GPU room to answer, and both copies would take turns on the one GPU anyway. The endpoints
# run network isolated, so the Hub must never be asked for anything: each archive carries its
# model (every pipeline component, and CLIPSeg for styling) and its code.
INFERENCE_ENVIRONMENT = {
    "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
    "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
    "HF_HUB_OFFLINE": "1",
}

# Endpoints by their key in the published names, in publishing order.
ENDPOINTS = ("vqa", "dreambooth", "styling")
# SSM parameter names under `/<name_prefix>/<stage>/hosting/`: every endpoint's name always (its
# callers are configured with it), its archive and model role when it is hosted.
PUBLISHED_NAMES = tuple(f"{endpoint}-endpoint-name" for endpoint in ENDPOINTS)
HOSTED_NAMES = ("model-data-url", "model-role-arn")


def published_names(hosted: tuple[str, ...]) -> tuple[str, ...]:
    """The names the stack publishes when the endpoints in `hosted` are created."""
    return (
        *PUBLISHED_NAMES,
        *(
            f"{endpoint}-{name}"
            for endpoint in ENDPOINTS
            if endpoint in hosted
            for name in HOSTED_NAMES
        ),
    )


PUBLISHED_NAMES_WHEN_HOSTED = published_names(ENDPOINTS)


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
        self._config = config
        self._data = data
        # The endpoint the description pipeline asks for attributes, when this stack hosts it.
        self.vqa_endpoint = self._endpoint(
            "VqaEndpoint",
            hosting=config.vqa.hosting,
            config_key="vqa.hosting",
            endpoint_name=config.attribute_endpoint_name,
            environment=INFERENCE_ENVIRONMENT,
            what="VQA attribute model",
            alarm_label="VQA endpoint",
        )
        # POST /generations: the DreamBooth-tuned text-to-image pipeline.
        self.generation_endpoint = self._endpoint(
            "DreamboothEndpoint",
            hosting=config.dreambooth.hosting,
            config_key="dreambooth.hosting",
            endpoint_name=config.generation_endpoint_name,
            environment=INFERENCE_ENVIRONMENT,
            what="DreamBooth text-to-image model",
            alarm_label="DreamBooth text-to-image endpoint",
        )
        # POST /styling: CLIPSeg masks, Stable Diffusion inpainting fills.
        self.styling_endpoint = self._endpoint(
            "StylingEndpoint",
            hosting=config.styling.hosting,
            config_key="styling.hosting",
            endpoint_name=config.styling_endpoint_name,
            environment=INFERENCE_ENVIRONMENT,
            what="CLIPSeg + inpainting styling model",
            alarm_label="styling endpoint",
        )

        endpoints = {
            "vqa": (config.attribute_endpoint_name, config.vqa.hosting, self.vqa_endpoint),
            "dreambooth": (
                config.generation_endpoint_name,
                config.dreambooth.hosting,
                self.generation_endpoint,
            ),
            "styling": (
                config.styling_endpoint_name,
                config.styling.hosting,
                self.styling_endpoint,
            ),
        }
        values = {f"{key}-endpoint-name": name for key, (name, _, _) in endpoints.items()}
        for key, (_, hosting, endpoint) in endpoints.items():
            if endpoint is not None and hosting.model_data_url is not None:
                values[f"{key}-model-data-url"] = hosting.model_data_url
                values[f"{key}-model-role-arn"] = endpoint.role.role_arn
        hosted = tuple(key for key, (_, _, endpoint) in endpoints.items() if endpoint is not None)
        publish_names(
            self, config=config, section="hosting", names=published_names(hosted), values=values
        )

    def _endpoint(
        self,
        construct_id: str,
        *,
        hosting: EndpointHostingConfig,
        config_key: str,
        endpoint_name: str,
        environment: dict[str, str],
        what: str,
        alarm_label: str,
    ) -> SageMakerEndpoint | None:
        """The endpoint of one `hosting` section, with autoscaling and alarms; None without a
        model archive."""
        if hosting.model_data_url is None:
            return None
        config, data = self._config, self._data
        endpoint = SageMakerEndpoint(
            self,
            construct_id,
            endpoint_name=endpoint_name,
            image=huggingface_image(
                self,
                kind="inference",
                override=hosting.image_uri,
                config_key=f"{config_key}.image_uri",
            ),
            model_data_url=hosting.model_data_url,
            # Training writes the archive into the models bucket under the data key.
            model_data_key=data.key,
            instance_type=hosting.instance_type,
            initial_instance_count=hosting.min_instances,
            volume_kms_key=data.key,
            environment=environment,
            startup_timeout=Duration.seconds(hosting.startup_timeout_seconds),
            description=f"Atelier {config.stage}: serves the {what} {hosting.model_data_url}",
        )
        if hosting.autoscaling:
            # Off while the instance type changes: UpdateEndpoint refuses a new instance
            # type for a variant that has a scalable target registered.
            endpoint.add_autoscaling(
                min_capacity=hosting.min_instances,
                max_capacity=hosting.max_instances,
                invocations_per_instance_per_minute=hosting.target_invocations_per_instance,
                scale_in_cooldown=Duration.seconds(hosting.scale_in_cooldown_seconds),
                scale_out_cooldown=Duration.seconds(hosting.scale_out_cooldown_seconds),
            )
        endpoint.add_alarms(
            latency_p90=Duration.millis(hosting.latency_alarm_p90_ms),
            errors_5xx_threshold=hosting.error_alarm_5xx_threshold,
            description_prefix=f"Atelier {config.stage} {alarm_label} {endpoint_name}",
        )
        return endpoint
