"""The `hosting` section of each model Atelier serves on a SageMaker real-time endpoint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from pydantic import ValidationInfo, model_validator

from infra.config.constants import (
    ECR_IMAGE_URI_PATTERN,
    ENDPOINT_NAME_PATTERN,
    ML_INSTANCE_TYPE_PATTERN,
    S3_MODEL_URI,
)
from infra.config.rules import (
    HERE,
    flag,
    is_loading,
    matching,
    refuse_section,
    section,
    whole,
)

INSTANCE_TYPE_TEXT = "a SageMaker instance type such as 'ml.g5.2xlarge'"
IMAGE_URI_TEXT = (
    "an ECR image URI such as '763104351884.dkr.ecr.us-east-1.amazonaws.com/<repository>:<tag>' "
    "or null"
)


@section
class EndpointHostingConfig:
    """A real-time endpoint serving one model archive. Every hosted model's `hosting` section has
    these keys and checks; `config_texts` give each its own example archive."""

    config_texts: ClassVar[Mapping[str, str]] = {"archive_prefix": "<model>/training/"}

    # s3://.../model.tar.gz; None: no endpoint is created (and none bills).
    model_data_url: str | None = matching(
        S3_MODEL_URI,
        "an S3 URI of a model archive such as "
        "'s3://<bucket>/{archive_prefix}<job>/output/model.tar.gz' or null",
        "model archive to serve; `null`: no endpoint is created (and none bills)",
        default=None,
    )
    image_uri: str | None = matching(
        ECR_IMAGE_URI_PATTERN,
        IMAGE_URI_TEXT,
        "inference image; `null`: the Hugging Face PyTorch inference DLC of the region",
        allowed="an ECR image URI with a tag, or null",
        default=None,
    )
    instance_type: str = matching(
        ML_INSTANCE_TYPE_PATTERN, INSTANCE_TYPE_TEXT, "endpoint instance type"
    )
    # An autoscaled variant's instance type cannot change until its scalable target is removed.
    autoscaling: bool = flag(
        "target-tracking autoscaling between `min_instances` and `max_instances`; `false`: "
        "no scalable target (the endpoint runs `min_instances`). Set it `false` for the "
        "deployment that changes `instance_type`"
    )
    # A real-time endpoint variant always runs at least one instance.
    min_instances: int = whole(1, 100, "instances always running")
    max_instances: int = whole(1, 100, "most instances autoscaling adds (at least `min_instances`)")
    target_invocations_per_instance: int = whole(
        1, 100_000, "autoscaling target: invocations per instance per minute"
    )
    scale_in_cooldown_seconds: int = whole(0, 3600, "wait after scaling in before scaling in again")
    scale_out_cooldown_seconds: int = whole(
        0, 3600, "wait after scaling out before scaling out again"
    )
    # SageMaker accepts 60-3600 s for both the model download and the start-up health check.
    startup_timeout_seconds: int = whole(
        60, 3600, "model download and container start-up limit, each"
    )
    # InvokeEndpoint gives a container at most 60 s.
    latency_alarm_p90_ms: int = whole(
        1, 60_000, "p90 model latency (ms) that raises the latency alarm"
    )
    error_alarm_5xx_threshold: int = whole(
        1, 1_000_000, "5xx responses within 5 minutes that raise the error alarm"
    )

    @model_validator(mode="after")
    def _instances_in_order(self, info: ValidationInfo) -> EndpointHostingConfig:
        if is_loading(info) and self.min_instances > self.max_instances:
            raise refuse_section(
                f"{HERE}min_instances = {self.min_instances} is larger than "
                f"{HERE}max_instances = {self.max_instances}"
            )
        return self


@section
class VqaHostingConfig(EndpointHostingConfig):
    """The attribute model's endpoint; it alone may name an endpoint deployed elsewhere."""

    config_texts: ClassVar[Mapping[str, str]] = {"archive_prefix": "vqa/training/"}

    # None: the Hosting stack's `<prefix>-<stage>-vqa`.
    endpoint_name: str | None = matching(
        ENDPOINT_NAME_PATTERN,
        "a SageMaker endpoint name or null",
        "SageMaker endpoint the description pipeline asks for attributes; `null`: the "
        "Hosting stack's `<prefix>-<stage>-vqa`",
        default=None,
    )


@section
class DreamBoothHostingConfig(EndpointHostingConfig):
    """The DreamBooth text-to-image endpoint."""

    config_texts: ClassVar[Mapping[str, str]] = {"archive_prefix": "dreambooth/training/"}


@section
class StylingHostingConfig(EndpointHostingConfig):
    """The styling endpoint (CLIPSeg and Stable Diffusion inpainting)."""

    config_texts: ClassVar[Mapping[str, str]] = {"archive_prefix": "inpainting/training/"}
