"""Catalog stack: describe a whole catalog with AWS's batch engines (`describe-catalog`).

    aws stepfunctions start-execution \\
      --state-machine-arn "$(aws ssm get-parameter --name \\
        /<prefix>/<stage>/catalog/describe-catalog-state-machine-arn \\
        --query Parameter.Value --output text)" \\
      --input '{"source": "s3://<uploads bucket>/catalog/2026-08/", "languages": ["en", "de"]}'

`source` is an S3 prefix of images (ending in `/`) or a CSV/JSONL manifest of product_id,
image_key and category; the failures report of a run (`catalog/<runId>/failures.jsonl` in the
results bucket) is such a manifest, so a re-run retries exactly the products that failed. See
`infra/constructs/catalog_workflow.py` for the states and `lambdas/catalog/` for the functions.

Compute only, like the Api stack: images, manifests, run files, descriptions and the products
table live in the Data stack. The stack depends on nothing else: with the endpoint attribute
source the VQA model is found at run time through the SSM parameter the VQA training workflow
writes and the online path's endpoint is granted by name; with the vision source Bedrock reads
the photos (no VQA model, transform role or image). So the Hosting, Training and Api stacks come
and go on their own.
Every grant is written into this stack's roles by name or ARN built from the config.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.catalog_group_states import (
    CatalogFunctions,
    CatalogResources,
    TransformResources,
)
from infra.constructs.catalog_workflow import CatalogWorkflow
from infra.constructs.hf_images import huggingface_image
from infra.constructs.publishing import publish_names
from infra.constructs.workflows import observed_state_machine
from infra.models import VQA
from infra.stacks.catalog_functions import (
    FunctionSpec,
    catalog_functions,
    catalog_settings,
    function_specs,
    source_bucket_names,
    transform_part_spool_mb,
)
from infra.stacks.catalog_names import CatalogScope
from infra.stacks.catalog_roles import (
    WorkflowGrantees,
    bedrock_role,
    transform_role,
    workflow_policies,
)
from infra.stacks.data import DataStack
from infra.stacks.hosting import INFERENCE_ENVIRONMENT

__all__ = [
    "PUBLISHED_NAMES",
    "CatalogStack",
    "FunctionSpec",
    "catalog_settings",
    "function_specs",
    "source_bucket_names",
    "transform_part_spool_mb",
]

# SSM parameter names under `/<name_prefix>/<stage>/catalog/`.
PUBLISHED_NAMES = ("describe-catalog-state-machine-arn",)
STATE_MACHINE_SUFFIX = "describe-catalog"


class CatalogStack(Stack):
    """The step functions (`catalog_functions.py`), the service roles and the workflow's policy
    (`catalog_roles.py`), and the state machine that wires them (`CatalogWorkflow`). Every part
    is built in this stack's own scope, so construct paths and logical ids stay put."""

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
        parts = CatalogScope(self, config=config, data=data)
        self.state_machine_name = config.resource_name(STATE_MACHINE_SUFFIX)
        self.job_name_prefix = config.catalog_job_name_prefix
        self.source_buckets = parts.source_buckets
        self.functions = catalog_functions(parts)

        transform: TransformResources | None = None
        self.transform_role: iam.Role | None = None
        self.transform_policies: list[iam.Policy] = []
        if config.attribute_source == "endpoint":
            # The inference image the Hosting stack serves the VQA model with.
            self.image = huggingface_image(
                self,
                kind="inference",
                override=config.vqa.hosting.image_uri,
                config_key="vqa.hosting.image_uri",
            )
            self.transform_role, self.transform_policies = transform_role(parts, self.image)
            transform = TransformResources(
                role=self.transform_role,
                image=self.image,
                model_data_parameter=VQA.model_data_parameter(config),
                inference_environment=INFERENCE_ENVIRONMENT,
            )
        # (with vision-llm no VQA model, transform role or image: Bedrock reads the photos)
        self.bedrock_role = bedrock_role(parts)
        workflow = CatalogWorkflow(
            self,
            "States",
            config=config,
            functions=CatalogFunctions(
                **{key: function.function for key, function in self.functions.items()}
            ),
            resources=CatalogResources(
                results_bucket=data.results_bucket.bucket_name,
                key=data.key,
                bedrock_role=self.bedrock_role,
                job_name_prefix=self.job_name_prefix,
                transform=transform,
            ),
        )
        self.workflow_role = iam.Role(
            self,
            "WorkflowRole",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description=f"Atelier {config.stage}: runs the describe-catalog workflow",
        )
        policies = workflow_policies(
            parts,
            WorkflowGrantees(
                role=self.workflow_role,
                state_machine_name=self.state_machine_name,
                job_name_prefix=self.job_name_prefix,
                functions=list(self.functions.values()),
                transform_role=self.transform_role,
                bedrock_role=self.bedrock_role,
            ),
        )
        self.state_machine = observed_state_machine(
            self,
            "DescribeCatalog",
            config=config,
            name=self.state_machine_name,
            comment=(
                "Describes a catalog: Distributed Map, Batch Transform, Bedrock batch "
                "inference, or the online path for small catalogs"
                if transform is not None
                else "Describes a catalog: Distributed Map, Bedrock batch inference of the "
                "attributes (vision model) and of the texts, or the online path for small "
                "catalogs"
            ),
            definition=workflow.definition,
            role=self.workflow_role,
            policies=policies,
            timeout=Duration.hours(config.catalog.max_run_hours),
            policy_prefix="Workflow",
        )
        # StateMachine adds a policy of its own for a Distributed Map (start, describe, stop and
        # redrive executions by the machine's ARN); WorkflowPolicy already holds the reviewed
        # grants, built from the name, so CDK's copy goes.
        removed = self.state_machine.node.try_remove_child("DistributedMapPolicy")
        assert removed, "CDK no longer adds DistributedMapPolicy: check the workflow's grants"
        publish_names(
            self,
            config=config,
            section="catalog",
            names=PUBLISHED_NAMES,
            values={"describe-catalog-state-machine-arn": self.state_machine.state_machine_arn},
        )
