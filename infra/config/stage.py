"""`StageConfig`: everything that differs between deployments of Atelier, one section each."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, ValidationInfo, model_validator

from infra.config.api import ApiConfig
from infra.config.attributes import AttributeSource
from infra.config.catalog import CatalogConfig
from infra.config.constants import (
    ACCOUNT_PATTERN,
    CATALOG_NAME_SUFFIX_LENGTH,
    LOG_RETENTION_DAYS,
    MAX_SAGEMAKER_NAME_LENGTH,
    NAME_PREFIX_PATTERN,
    REGION_PATTERN,
    REMOVAL_POLICIES,
    TAG_KEY_PATTERN,
    TRANSFORM_PAYLOAD_MB_BYTES,
    TRANSFORM_REQUEST_OVERHEAD_BYTES,
    RemovalPolicy,
)
from infra.config.data import DataConfig
from infra.config.descriptions import DescriptionsConfig
from infra.config.diffusion import DiffusionConfig
from infra.config.dreambooth import DreamBoothConfig
from infra.config.errors import ConfigError
from infra.config.images import ImagesConfig
from infra.config.lambdas import LambdaConfig
from infra.config.lifecycle import LifecycleConfig
from infra.config.lora import LoraConfig
from infra.config.network import NetworkConfig
from infra.config.rules import (
    choice,
    is_loading,
    key_name,
    matching,
    parsed,
    refuse,
    refuse_section,
    section,
    show,
)
from infra.config.styling import StylingConfig
from infra.config.titan import TitanConfig
from infra.config.vqa import VqaConfig

_TAGS_TEXT = "expected an object of tag names to string values"


def _tags(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise refuse(f"= {show(value)} is not valid; {_TAGS_TEXT}")
    for name, tag_value in value.items():
        if (
            not isinstance(name, str)
            or not TAG_KEY_PATTERN.fullmatch(name)
            or name.lower().startswith("aws:")
        ):
            raise refuse(
                "is not a valid tag name; expected 1-128 characters, not starting with 'aws:'",
                f".{key_name(name)}",
            )
        if not isinstance(tag_value, str) or len(tag_value) > 256:
            raise refuse(
                f"= {show(tag_value)} is not valid; expected a string of at most 256 characters",
                f".{key_name(name)}",
            )
    return dict(value)


@section
class StageConfig:
    """Everything that differs between deployments of Atelier."""

    # The stage's name (`-c stage=...`), given by the loader, not a key of cdk.json.
    stage: str
    name_prefix: str = matching(
        NAME_PREFIX_PATTERN,
        "3-20 lowercase letters, digits or hyphens, starting with a letter",
        "prefix of stack names, aliases and SSM paths",
    )
    account: str | None = matching(
        ACCOUNT_PATTERN,
        "a 12-digit AWS account id or null",
        "AWS account to pin; both `account` and `region` null: environment-agnostic templates",
        default=None,
    )
    # Commercial partition only: the public Powertools layer lives in another account elsewhere.
    region: str | None = matching(
        REGION_PATTERN,
        "an AWS region such as 'eu-west-1' or null",
        "AWS region to pin (commercial regions only), set together with `account`",
        default=None,
    )
    removal_policy: RemovalPolicy = choice(
        REMOVAL_POLICIES, "what happens to data resources when their stack is deleted"
    )
    log_retention_days: int = choice(
        LOG_RETENTION_DAYS, "CloudWatch Logs retention (one of CloudWatch's periods)"
    )
    data: DataConfig
    lambdas: LambdaConfig
    descriptions: DescriptionsConfig
    api: ApiConfig
    vqa: VqaConfig
    titan: TitanConfig
    images: ImagesConfig
    dreambooth: DreamBoothConfig
    styling: StylingConfig
    lora: LoraConfig
    diffusion: DiffusionConfig
    catalog: CatalogConfig
    lifecycle: LifecycleConfig
    # Optional: a stage without the section has private networking off.
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    tags: Mapping[str, str] = parsed(
        _TAGS_TEXT,
        _tags,
        "tags on every resource of the stage (merged with the defaults' tags)",
        "names of 1-128 characters not starting with `aws:`, values of at most 256",
        default_factory=dict,
    )

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> StageConfig:
        # Attributes kept for one release under their old names (see DreamBoothConfig).
        object.__setattr__(self.dreambooth, "_styling_training", self.styling.training)
        object.__setattr__(self.descriptions, "_vqa_endpoint_name", self.vqa.hosting.endpoint_name)
        if not is_loading(info):
            return self
        limit = self.catalog.transform.max_payload_mb * TRANSFORM_PAYLOAD_MB_BYTES
        largest = (self.descriptions.image.max_bytes + 2) // 3 * 4
        largest += TRANSFORM_REQUEST_OVERHEAD_BYTES
        if largest > limit:
            raise refuse_section(
                f"catalog.transform.max_payload_mb = {self.catalog.transform.max_payload_mb} "
                "cannot carry the largest image descriptions.image.max_bytes allows "
                f"({self.descriptions.image.max_bytes} bytes are {largest} bytes of request as "
                "base64): raise max_payload_mb or lower descriptions.image.max_bytes"
            )
        try:
            # Raises if no name fits (it always does for the allowed prefix and stage lengths).
            _ = self.catalog_job_name_prefix
        except ConfigError as error:
            raise refuse_section(str(error)) from None
        if (self.account is None) != (self.region is None):
            raise refuse_section(
                "account and region must be set together (both null means an "
                "environment-agnostic synthesis)"
            )
        return self

    @property
    def is_production_like(self) -> bool:
        """Retained data means users' data is at stake: also protect tables from deletion."""
        return self.removal_policy == "retain"

    def resource_name(self, suffix: str) -> str:
        """A readable physical name fragment, unique per prefix and stage."""
        return f"{self.name_prefix}-{self.stage}-{suffix}"

    @property
    def attribute_source(self) -> AttributeSource:
        """`descriptions.attributes.source` with `auto` resolved: the endpoint once the stage
        hosts the VQA model or names an endpoint of its own, the vision model before."""
        source = self.descriptions.attributes.source
        if source != "auto":
            return source
        hosting = self.vqa.hosting
        return "endpoint" if hosting.model_data_url or hosting.endpoint_name else "vision-llm"

    @property
    def ssm_prefix(self) -> str:
        """Root of the SSM parameters that publish this stage's resource names."""
        return f"/{self.name_prefix}/{self.stage}"

    @property
    def catalog_job_name_prefix(self) -> str:
        """What every catalog run's SageMaker model, transform jobs and Bedrock jobs are named
        with: `<prefix>-<stage>-catalog`, shorter where the longest name would not fit in 63
        characters (see CATALOG_NAME_SUFFIX_LENGTH)."""
        for suffix in ("-catalog", "-cat", ""):
            candidate = f"{self.name_prefix}-{self.stage}{suffix}"
            if len(candidate) + CATALOG_NAME_SUFFIX_LENGTH <= MAX_SAGEMAKER_NAME_LENGTH:
                return candidate
        raise ConfigError(
            f"name_prefix {self.name_prefix!r} and stage {self.stage!r} are too long for catalog "
            f"job names ({MAX_SAGEMAKER_NAME_LENGTH} characters)"
        )

    @property
    def titan_provisioned_model_parameter(self) -> str:
        """SSM parameter holding the ARN of the customized Titan model's provisioned throughput:
        written by the Bedrock stack's workflow, deleted on release, read by `POST /images`."""
        return f"{self.ssm_prefix}/titan/provisioned-model-arn"
