"""Names the Catalog stack's grants are written with: ARNs built from the config and the run's
object patterns, each with the name cdk-nag gives it in a finding id."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Aws, Stack
from aws_cdk import aws_s3 as s3
from constructs import IConstruct

from infra.config import StageConfig
from infra.constructs.bedrock_models import invoke_model_arns, nag_model_arns
from infra.constructs.catalog_group_states import CATALOG_PREFIX
from infra.nag import acknowledge, exported_name
from infra.stacks.data import DataStack

# Object patterns of a run (lambdas/catalog/logic/layout.py), below the results bucket.
RUN_OBJECTS = f"{CATALOG_PREFIX}*"
TRANSFORM_INPUT_OBJECTS = f"{CATALOG_PREFIX}*/transform-input/*"
TRANSFORM_MANIFEST_OBJECTS = f"{CATALOG_PREFIX}*/groups/*/transform-manifest.json"
TRANSFORM_OUTPUT_OBJECTS = f"{CATALOG_PREFIX}*/groups/*/transform-output/*"
BEDROCK_INPUT_OBJECTS = f"{CATALOG_PREFIX}*/groups/*/bedrock-input/*"
BEDROCK_OUTPUT_OBJECTS = f"{CATALOG_PREFIX}*/groups/*/bedrock-output/*"
# The vision attribute source's Bedrock job per group.
ATTRIBUTE_INPUT_OBJECTS = f"{CATALOG_PREFIX}*/groups/*/attribute-input/*"
ATTRIBUTE_OUTPUT_OBJECTS = f"{CATALOG_PREFIX}*/groups/*/attribute-output/*"
MAP_RESULT_OBJECTS = f"{CATALOG_PREFIX}*/map-results/*"
REQUEST_OBJECTS = f"{CATALOG_PREFIX}*/request.json"
ONLINE_FAILURE_OBJECTS = f"{CATALOG_PREFIX}*/failures/*"

# An object ARN and cdk-nag's name for it.
ObjectArns = tuple[str, str]


class CatalogScope:
    """What the Catalog stack's parts are built with: the stack (every construct goes straight
    into it, so construct paths and logical ids do not depend on how the code is split), the
    stage's config, the Data stack, and the ARNs and names the grants are written with."""

    def __init__(self, stack: Stack, *, config: StageConfig, data: DataStack) -> None:
        self.stack = stack
        self.config = config
        self.data = data
        # A run may read images and manifests from uploads, datasets, and results (the failures
        # report of an earlier run is a manifest).
        self.source_buckets: list[s3.IBucket] = [
            data.uploads_bucket,
            data.datasets_bucket,
            data.results_bucket,
        ]

    def arn(self, service: str, resource: str) -> str:
        stack = self.stack
        return f"arn:{Aws.PARTITION}:{service}:{stack.region}:{stack.account}:{resource}"

    @staticmethod
    def nag_arn(service: str, resource: str) -> str:
        """The same ARN as cdk-nag names it in a finding id."""
        return f"arn:<AWS::Partition>:{service}:<AWS::Region>:<AWS::AccountId>:{resource}"

    def objects(self, bucket: s3.IBucket, pattern: str) -> ObjectArns:
        """(ARN, cdk-nag's name for it) of objects matching `pattern` in a Data stack bucket."""
        return (
            bucket.arn_for_objects(pattern),
            f"{exported_name(self.data, bucket.bucket_arn)}/{pattern}",
        )

    def batch_model_ids(self) -> list[str]:
        """The models the run's Bedrock batch jobs name: the text model, and the vision model
        when it reads the attributes and is another model."""
        config = self.config
        models = [config.descriptions.model_id]
        vision = config.descriptions.attributes.model_id
        if config.attribute_source == "vision-llm" and vision not in models:
            models.append(vision)
        return models

    def model_arns(self) -> list[str]:
        """The batch models' ARNs in this stack's region, account and partition (no
        condition), each listed once."""
        arns = (
            invoke_model_arns(
                model_id,
                region=self.stack.region,
                account=self.stack.account,
                partition=Aws.PARTITION,
            )
            for model_id in self.batch_model_ids()
        )
        return list(dict.fromkeys(arn for group in arns for arn in group))

    def profile_model_arns(self) -> list[str]:
        """The ARNs a batch job's service role needs: those of each batch model named through
        an inference profile (the profile and its foundation models); none for a bare model."""
        found: dict[str, None] = {}
        for model_id in self.batch_model_ids():
            arns = invoke_model_arns(
                model_id,
                region=self.stack.region,
                account=self.stack.account,
                partition=Aws.PARTITION,
            )
            if len(arns) > 1:
                found.update(dict.fromkeys(arns))
        return list(found)

    def acknowledge_model_regions(
        self,
        policy: IConstruct,
        who: str,
        why: str,
        *,
        model_ids: Sequence[str] | None = None,
    ) -> None:
        """A cross-region inference profile as model id: its foundation model in every region.
        `model_ids`: the models `policy` grants (default: the text model)."""
        models = [self.config.descriptions.model_id] if model_ids is None else model_ids
        wide = dict.fromkeys(a for m in models for a in nag_model_arns(m) if "*" in a)
        for arn in wide:
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::{arn}]",
                f"{who}: a cross-region inference profile routes each request to the foundation "
                "model in any region of its geography; IAM checks that model ARN in the region "
                f"that serves the call. {why}",
            )
