"""SageMaker endpoints: one per hosted model of the registry (`infra/models.py`), each created
only when its `<model>.hosting.model_data_url` is configured:

- `vqa`: the VQA attribute model;
- `dreambooth`: the DreamBooth text-to-image pipeline;
- `styling`: virtual styling, CLIPSeg and the inpainting pipeline in one archive.

GPU endpoints bill by the instance-hour from creation to deletion, so every one lives in this
stack and is deleted with it (no retain). The stack always exists, even with nothing to host: after
a `model_data_url` is set back to null, the next deploy updates this stack and CloudFormation
deletes that endpoint, which a stack left out of the app would never do. No other stack depends on
this one (the Api stack grants by endpoint name), so it can be destroyed alone.
"""

from __future__ import annotations

from aws_cdk import Duration

from infra.constructs.hf_images import huggingface_image
from infra.constructs.publishing import publish_names
from infra.constructs.sagemaker_endpoint import SageMakerEndpoint
from infra.models import VQA, Model, hosted_models
from infra.stacks.stage_stack import StageStack

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

# SSM parameter names under `/<name_prefix>/<stage>/hosting/`: every endpoint's name always (its
# callers are configured with it), its archive and model role when it is hosted.
ENDPOINT_NAME = "endpoint-name"
HOSTED_NAMES = ("model-data-url", "model-role-arn")


def published_names(hosted: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The names the stack publishes when the models keyed in `hosted` are served."""
    keys = [model.key for model in hosted_models()]
    return (
        *(f"{key}-{ENDPOINT_NAME}" for key in keys),
        *(f"{key}-{name}" for key in keys if key in hosted for name in HOSTED_NAMES),
    )


PUBLISHED_NAMES = published_names()
PUBLISHED_NAMES_WHEN_HOSTED = published_names(tuple(model.key for model in hosted_models()))


class HostingStack(StageStack):
    def build(self) -> None:
        config = self.config
        # The endpoint of each hosted model, by key; None where no archive is configured.
        self.endpoints: dict[str, SageMakerEndpoint | None] = {
            model.key: self._endpoint(model) for model in hosted_models()
        }
        values = {
            f"{model.key}-{ENDPOINT_NAME}": model.endpoint_name(config) for model in hosted_models()
        }
        for model in hosted_models():
            endpoint = self.endpoints[model.key]
            if endpoint is not None:
                values[f"{model.key}-model-data-url"] = str(model.hosting(config).model_data_url)
                values[f"{model.key}-model-role-arn"] = endpoint.role.role_arn
        hosted = tuple(key for key, endpoint in self.endpoints.items() if endpoint is not None)
        publish_names(
            self, config=config, section="hosting", names=published_names(hosted), values=values
        )

    @property
    def vqa_endpoint(self) -> SageMakerEndpoint | None:
        """The endpoint the description pipeline asks for attributes, when this stack hosts it."""
        return self.endpoints.get(VQA.key)

    def _endpoint(self, model: Model) -> SageMakerEndpoint | None:
        """The model's endpoint, with autoscaling and alarms; None without a model archive."""
        config, data = self.config, self.data
        hosting = model.hosting(config)
        if hosting.model_data_url is None:
            return None
        endpoint_name = model.endpoint_name(config)
        endpoint = SageMakerEndpoint(
            self,
            f"{model.construct_id}Endpoint",
            endpoint_name=endpoint_name,
            image=huggingface_image(
                self,
                kind="inference",
                override=hosting.image_uri,
                config_key=f"{model.config_key}.image_uri",
            ),
            model_data_url=hosting.model_data_url,
            # Training writes the archive into the models bucket under the data key.
            model_data_key=data.key,
            instance_type=hosting.instance_type,
            initial_instance_count=hosting.min_instances,
            volume_kms_key=data.key,
            environment=INFERENCE_ENVIRONMENT,
            startup_timeout=Duration.seconds(hosting.startup_timeout_seconds),
            description=(
                f"Atelier {config.stage}: serves the {model.title} {hosting.model_data_url}"
            ),
            config=config,
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
            description_prefix=f"Atelier {config.stage} {model.label} {endpoint_name}",
        )
        return endpoint
