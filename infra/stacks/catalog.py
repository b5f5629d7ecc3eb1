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
table live in the Data stack. The stack depends on nothing else: the VQA model is found at run
time through the SSM parameter the VQA training workflow writes, the attribute endpoint of the
online path is granted by name, so the Hosting, Training and Api stacks come and go on their own.
Every grant is written into this stack's roles by name or ARN built from the config.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aws_cdk import Aws, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct, IConstruct

from infra.config import (
    BEDROCK_MB_BYTES,
    TRANSFORM_PAYLOAD_MB_BYTES,
    ConfigError,
    StageConfig,
)
from infra.constructs.bedrock_models import (
    invoke_model_arns,
    invoke_model_statements,
    nag_model_arns,
)
from infra.constructs.catalog_workflow import (
    CATALOG_PREFIX,
    CatalogFunctions,
    CatalogResources,
    CatalogWorkflow,
)
from infra.constructs.hf_images import huggingface_image
from infra.constructs.publishing import publish_names
from infra.constructs.python_function import (
    AWS_SDK_PIP_ARGS,
    AWS_SDK_REQUIREMENTS,
    PythonFunction,
)
from infra.constructs.sagemaker_endpoint import grant_invoke_endpoint
from infra.constructs.sagemaker_roles import (
    image_pull_auth_policy,
    job_container_statements,
    metrics_policy,
)
from infra.constructs.workflows import observed_state_machine
from infra.nag import acknowledge, exported_name
from infra.stacks.api import RESULTS_PREFIX, descriptions_settings_json
from infra.stacks.data import DataStack
from infra.stacks.hosting import INFERENCE_ENVIRONMENT
from infra.stacks.training import VQA_OUTPUT_PREFIX

# SSM parameter names under `/<name_prefix>/<stage>/catalog/`.
PUBLISHED_NAMES = ("describe-catalog-state-machine-arn",)
STATE_MACHINE_SUFFIX = "describe-catalog"
# Lambda allows 4 KB for all environment variables of a function together.
MAX_ENVIRONMENT_BYTES = 4096
# Where SageMaker writes transform job logs and metrics (one log group for the account).
TRANSFORM_LOG_GROUP = "/aws/sagemaker/TransformJobs"
TRANSFORM_METRICS_NAMESPACE = "/aws/sagemaker/TransformJobs"
# The Step Functions rule that turns transform-job state changes into `.sync` completions.
TRANSFORM_SYNC_RULE = "StepFunctionsGetEventsForSageMakerTransformJobsRule"

# Object patterns of a run (lambdas/catalog/logic/layout.py), below the results bucket.
RUN_OBJECTS = f"{CATALOG_PREFIX}*"
TRANSFORM_INPUT_OBJECTS = f"{CATALOG_PREFIX}*/transform-input/*"
TRANSFORM_MANIFEST_OBJECTS = f"{CATALOG_PREFIX}*/groups/*/transform-manifest.json"
TRANSFORM_OUTPUT_OBJECTS = f"{CATALOG_PREFIX}*/groups/*/transform-output/*"
BEDROCK_INPUT_OBJECTS = f"{CATALOG_PREFIX}*/groups/*/bedrock-input/*"
BEDROCK_OUTPUT_OBJECTS = f"{CATALOG_PREFIX}*/groups/*/bedrock-output/*"
MAP_RESULT_OBJECTS = f"{CATALOG_PREFIX}*/map-results/*"
REQUEST_OBJECTS = f"{CATALOG_PREFIX}*/request.json"
ONLINE_FAILURE_OBJECTS = f"{CATALOG_PREFIX}*/failures/*"


@dataclass(frozen=True)
class FunctionSpec:
    construct_id: str
    module: str
    description: str
    memory_size: int
    timeout: Duration
    # Lambda's /tmp, for steps that spool files to local disk before uploading them.
    ephemeral_storage_mb: int = 512
    # Bundle the pinned AWS SDK (a step that calls Converse; see python_function.py).
    bundles_aws_sdk: bool = False


# Lambda's largest /tmp.
MAX_EPHEMERAL_STORAGE_MB = 10_240
# A group's Bedrock input is a few KB per product (prompt and tool schema, ~2.3 KB for one
# language), its ledger about as much: 50,000 products spool ~300 MB. 2 GB leaves room for
# longer prompts and more languages.
GROUP_SPOOL_MB = 2048


def transform_part_spool_mb(config: StageConfig) -> int:
    """Lambda disk (MB) for one Batch Transform input part: `records_per_part` lines, each at
    most one transform payload (its base64 image and questions), with 10% and 64 MB of headroom."""
    catalog = config.catalog
    line_bytes = catalog.transform.max_payload_mb * TRANSFORM_PAYLOAD_MB_BYTES
    needed = catalog.records_per_part * line_bytes * 1.1 / 2**20 + 64
    megabytes = max(512, math.ceil(needed))
    if megabytes > MAX_EPHEMERAL_STORAGE_MB:
        raise ConfigError(
            f"catalog.records_per_part ({catalog.records_per_part}) lines of up to "
            f"catalog.transform.max_payload_mb ({catalog.transform.max_payload_mb} MB) need "
            f"{megabytes} MB of Lambda /tmp, more than its {MAX_EPHEMERAL_STORAGE_MB} MB; "
            "lower one of them"
        )
    return megabytes


def function_specs(config: StageConfig) -> dict[str, FunctionSpec]:
    """One function per step; the ones that stream many files get memory (and its CPU) and
    Lambda's longest timeout."""
    long = Duration.minutes(15)
    return {
        "start": FunctionSpec(
            "StartFunction", "start", "Checks a describe-catalog request", 256, Duration.minutes(1)
        ),
        "transform_input": FunctionSpec(
            "TransformInputFunction",
            "transform_input",
            "Builds one Batch Transform input part of a catalog run",
            # io_concurrency images in flight, each as bytes, base64 and JSON line at once.
            2048,
            long,
            transform_part_spool_mb(config),
        ),
        "plan": FunctionSpec(
            "PlanFunction", "plan", "Plans a catalog run's route and groups", 512, long
        ),
        "bedrock_input": FunctionSpec(
            "BedrockInputFunction",
            "bedrock_input",
            "Builds a catalog group's Bedrock batch input from its transform output",
            1024,
            long,
            GROUP_SPOOL_MB,
        ),
        "results": FunctionSpec(
            "ResultsFunction",
            "results",
            "Stores a catalog group's descriptions from its Bedrock batch output",
            1024,
            long,
            GROUP_SPOOL_MB,
        ),
        "online": FunctionSpec(
            "OnlineFunction",
            "online",
            "Describes one product of a small catalog run online",
            512,
            Duration.seconds(config.descriptions.worker_timeout_seconds),
            bundles_aws_sdk=True,
        ),
        "finalize": FunctionSpec(
            "FinalizeFunction",
            "finalize",
            "Writes a catalog run's failures report and summary",
            1024,
            long,
            # The report is spooled whole: ~550 bytes a failure, 1M failed products ~550 MB.
            GROUP_SPOOL_MB,
        ),
    }


def source_bucket_names(data: DataStack) -> list[str]:
    """Buckets a run may read images and manifests from: uploads, datasets, and results (the
    failures report of an earlier run is a manifest)."""
    return [
        data.uploads_bucket.bucket_name,
        data.datasets_bucket.bucket_name,
        data.results_bucket.bucket_name,
    ]


def catalog_settings(
    config: StageConfig, *, results_bucket: str, table_name: str, source_buckets: Sequence[str]
) -> dict[str, Any]:
    """`CATALOG_SETTINGS` (lambdas/shared/models/catalog.py CatalogSettings, camelCase)."""
    catalog = config.catalog
    bedrock = catalog.bedrock
    return {
        "resultsBucket": results_bucket,
        "tableName": table_name,
        "sourceBuckets": list(source_buckets),
        "recordsPerPart": catalog.records_per_part,
        "maxRecordsPerGroup": catalog.max_records_per_group,
        "onlineThreshold": catalog.online_threshold,
        "transformMaxPayloadBytes": catalog.transform.max_payload_mb * TRANSFORM_PAYLOAD_MB_BYTES,
        "bedrock": {
            "minRecordsPerJob": bedrock.min_records_per_job,
            "maxRecordsPerJob": bedrock.max_records_per_job,
            "maxRecordsPerFile": bedrock.max_records_per_file,
            "maxFileBytes": bedrock.max_file_mb * BEDROCK_MB_BYTES,
            "maxJobBytes": bedrock.max_job_mb * BEDROCK_MB_BYTES,
        },
        "ioConcurrency": catalog.io_concurrency,
    }


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class CatalogStack(Stack):
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
        self.state_machine_name = config.resource_name(STATE_MACHINE_SUFFIX)
        self.job_name_prefix = config.catalog_job_name_prefix
        self.source_buckets: list[s3.IBucket] = [
            data.uploads_bucket,
            data.datasets_bucket,
            data.results_bucket,
        ]
        settings = _json(
            catalog_settings(
                config,
                results_bucket=data.results_bucket.bucket_name,
                table_name=data.table.table_name,
                source_buckets=source_bucket_names(data),
            )
        )
        environment = {
            "CATALOG_SETTINGS": settings,
            "DESCRIPTIONS_SETTINGS": descriptions_settings_json(config),
        }
        self.functions = {
            key: PythonFunction(
                self,
                spec.construct_id,
                config=config,
                handler=f"catalog.handlers.{spec.module}.handler",
                description=spec.description,
                service_name="catalog",
                environment=environment,
                memory_size=spec.memory_size,
                timeout=spec.timeout,
                ephemeral_storage_mb=spec.ephemeral_storage_mb,
                requirements=AWS_SDK_REQUIREMENTS if spec.bundles_aws_sdk else None,
                extra_pip_args=AWS_SDK_PIP_ARGS if spec.bundles_aws_sdk else (),
            )
            for key, spec in function_specs(config).items()
        }
        self._check_environment_size(environment)
        self._grant_functions()

        # The inference image the Hosting stack serves the VQA model with.
        self.image = huggingface_image(
            self,
            kind="inference",
            override=config.vqa.hosting.image_uri,
            config_key="vqa.hosting.image_uri",
        )
        self.transform_role = self._transform_role()
        self.bedrock_role = self._bedrock_role()
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
                transform_role=self.transform_role,
                bedrock_role=self.bedrock_role,
                image=self.image,
                job_name_prefix=self.job_name_prefix,
                model_data_parameter=config.vqa_model_data_parameter,
                inference_environment=INFERENCE_ENVIRONMENT,
            ),
        )
        self.workflow_role = iam.Role(
            self,
            "WorkflowRole",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description=f"Atelier {config.stage}: runs the describe-catalog workflow",
        )
        policies = self._grant_workflow()
        self.state_machine = observed_state_machine(
            self,
            "DescribeCatalog",
            config=config,
            name=self.state_machine_name,
            comment="Describes a catalog: Distributed Map, Batch Transform, Bedrock batch "
            "inference, or the online path for small catalogs",
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

    # --- names ----------------------------------------------------------------------------------

    def _arn(self, service: str, resource: str, *, region: bool = True) -> str:
        region_part = self.region if region else ""
        return f"arn:{Aws.PARTITION}:{service}:{region_part}:{self.account}:{resource}"

    def _nag_arn(self, service: str, resource: str) -> str:
        """The same ARN as cdk-nag names it in a finding id."""
        return f"arn:<AWS::Partition>:{service}:<AWS::Region>:<AWS::AccountId>:{resource}"

    def _objects(self, bucket: s3.IBucket, pattern: str) -> tuple[str, str]:
        """(ARN, cdk-nag's name for it) of objects matching `pattern` in a Data stack bucket."""
        return (
            bucket.arn_for_objects(pattern),
            f"{exported_name(self._data, bucket.bucket_arn)}/{pattern}",
        )

    def _model_arns(self) -> list[str]:
        """The text model's ARNs in this stack's region, account and partition (no condition)."""
        return invoke_model_arns(
            self._config.descriptions.model_id,
            region=self.region,
            account=self.account,
            partition=Aws.PARTITION,
        )

    def _acknowledge_model_regions(self, policy: IConstruct, who: str, why: str) -> None:
        """A cross-region inference profile as model id: its foundation model in every region."""
        for arn in (a for a in nag_model_arns(self._config.descriptions.model_id) if "*" in a):
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::{arn}]",
                f"{who}: a cross-region inference profile routes each request to the foundation "
                "model in any region of its geography; IAM checks that model ARN in the region "
                f"that serves the call. {why}",
            )

    def _check_environment_size(self, environment: Mapping[str, str]) -> None:
        resolved = self.resolve(environment)
        # Tokens (bucket and table names) resolve to intrinsics here: count them at the longest
        # physical names CloudFormation generates (63 characters for a bucket).
        size = sum(len(k) + len(json.dumps(v)) for k, v in resolved.items())
        if size > MAX_ENVIRONMENT_BYTES - 600:
            raise ConfigError(
                f"the catalog functions' settings take about {size} bytes; with Powertools' "
                f"variables they must fit Lambda's {MAX_ENVIRONMENT_BYTES}: shorten "
                "descriptions.questions or descriptions.categories"
            )

    # --- the functions --------------------------------------------------------------------------

    def _grant_functions(self) -> None:
        data, config = self._data, self._config
        results = data.results_bucket
        run_objects = self._objects(results, RUN_OBJECTS)
        descriptions = self._objects(results, f"{RESULTS_PREFIX}*")
        sources = [
            self._objects(data.uploads_bucket, "*"),
            self._objects(data.datasets_bucket, "*"),
            run_objects,
        ]
        list_run = iam.PolicyStatement(
            actions=["s3:ListBucket"],
            resources=[results.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [RUN_OBJECTS]}},
        )
        # Without ListBucket, S3 answers a missing image with 403, and the failures report
        # would say "access denied" where the image simply is not there.
        list_sources = iam.PolicyStatement(
            actions=["s3:ListBucket"],
            resources=[bucket.bucket_arn for bucket in self.source_buckets],
        )
        key_via_s3 = iam.PolicyStatement(
            actions=["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"],
            resources=[data.key.key_arn],
            conditions={
                "StringEquals": {
                    "kms:ViaService": [
                        f"s3.{self.region}.amazonaws.com",
                        f"dynamodb.{self.region}.amazonaws.com",
                    ]
                }
            },
        )
        table = data.table.table_arn

        def objects(*patterns: tuple[str, str]) -> list[str]:
            return [arn for arn, _ in patterns]

        grants: dict[str, tuple[list[iam.PolicyStatement], list[tuple[tuple[str, str], str]]]] = {
            "start": (
                [
                    # A prefix must list at least one object; a manifest must exist (HEAD).
                    iam.PolicyStatement(
                        actions=["s3:ListBucket"],
                        resources=[bucket.bucket_arn for bucket in self.source_buckets],
                    ),
                    iam.PolicyStatement(actions=["s3:GetObject"], resources=objects(*sources)),
                    iam.PolicyStatement(
                        actions=["s3:PutObject"],
                        resources=[results.arn_for_objects(REQUEST_OBJECTS)],
                    ),
                ],
                [
                    *(
                        (source, "reads (HEAD) the manifest or images a run names")
                        for source in sources
                    ),
                    (self._objects(results, REQUEST_OBJECTS), "writes each run's request.json"),
                ],
            ),
            "transform_input": (
                [
                    list_sources,
                    iam.PolicyStatement(actions=["s3:GetObject"], resources=objects(*sources)),
                    # A retried batch replaces its parts and removes a stale failures file.
                    iam.PolicyStatement(
                        actions=["s3:PutObject", "s3:DeleteObject"], resources=[run_objects[0]]
                    ),
                    iam.PolicyStatement(actions=["dynamodb:BatchGetItem"], resources=[table]),
                ],
                [
                    *((source, "reads the product images a run names") for source in sources[:2]),
                    (run_objects, "reads the images a run names and writes its transform input"),
                ],
            ),
            "plan": (
                [
                    list_run,
                    iam.PolicyStatement(
                        actions=["s3:GetObject", "s3:PutObject"], resources=[run_objects[0]]
                    ),
                ],
                [(run_objects, "reads and writes the files of its run")],
            ),
            "bedrock_input": (
                [
                    list_run,
                    # A retry first deletes the group's Bedrock input of the earlier attempt.
                    iam.PolicyStatement(
                        actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                        resources=[run_objects[0]],
                    ),
                ],
                [(run_objects, "reads and writes the files of its run")],
            ),
            "results": (
                [
                    list_run,
                    iam.PolicyStatement(
                        actions=["s3:GetObject", "s3:PutObject"], resources=[run_objects[0]]
                    ),
                    iam.PolicyStatement(actions=["s3:PutObject"], resources=[descriptions[0]]),
                    iam.PolicyStatement(actions=["dynamodb:BatchWriteItem"], resources=[table]),
                ],
                [
                    (run_objects, "reads and writes the files of its run"),
                    (descriptions, "writes each product's description JSON"),
                ],
            ),
            "online": (
                [
                    list_sources,
                    iam.PolicyStatement(actions=["s3:GetObject"], resources=objects(*sources)),
                    iam.PolicyStatement(
                        actions=["s3:PutObject"],
                        resources=[
                            descriptions[0],
                            results.arn_for_objects(ONLINE_FAILURE_OBJECTS),
                        ],
                    ),
                    iam.PolicyStatement(
                        actions=["dynamodb:GetItem", "dynamodb:PutItem"], resources=[table]
                    ),
                    # Through a profile: the profile, and its model only via that profile.
                    *invoke_model_statements(self, config.descriptions.model_id),
                ],
                [
                    *((source, "reads the product images a run names") for source in sources),
                    (descriptions, "writes each product's description JSON"),
                    (
                        self._objects(results, ONLINE_FAILURE_OBJECTS),
                        "writes the failures of each run's online products",
                    ),
                ],
            ),
            "finalize": (
                [
                    list_run,
                    iam.PolicyStatement(
                        actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                        resources=[run_objects[0]],
                    ),
                ],
                [(run_objects, "reads and writes the files of its run")],
            ),
        }
        for key, (statements, acknowledged) in grants.items():
            function = self.functions[key]
            for statement in [*statements, key_via_s3]:
                function.role.add_to_principal_policy(statement)
            if key == "online":
                grant_invoke_endpoint(
                    function.role, stack=self, endpoint_name=config.attribute_endpoint_name
                )
            policy = function.role.node.find_child("DefaultPolicy")
            self._acknowledge_objects(policy, dict(acknowledged), function=key)
            if key == "online":
                self._acknowledge_model_regions(
                    policy,
                    "The online function",
                    "The statement allows it only through this stage's profile (condition "
                    "bedrock:InferenceProfileArn).",
                )

    def _acknowledge_objects(
        self, policy: IConstruct, reasons: Mapping[tuple[str, str], str], *, function: str
    ) -> None:
        for (_, nag_name), reason in reasons.items():
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::{nag_name}]",
                f"The catalog {function} function {reason}; runs and products are named at run "
                "time (catalog/<runId>/..., images chosen by the caller), so a prefix is the "
                "narrowest scope.",
            )

    # --- the service roles ----------------------------------------------------------------------

    def _transform_role(self) -> iam.Role:
        """What a Batch Transform job's model may touch: the VQA archive, its run's transform
        input and manifest, its group's output, the key, the image and its logs."""
        data = self._data
        role = iam.Role(
            self,
            "TransformModelRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"Atelier {self._config.stage}: the catalog's Batch Transform model",
        )
        archives = self._objects(data.models_bucket, f"{VQA_OUTPUT_PREFIX}*")
        inputs = self._objects(data.results_bucket, TRANSFORM_INPUT_OBJECTS)
        manifests = self._objects(data.results_bucket, TRANSFORM_MANIFEST_OBJECTS)
        outputs = self._objects(data.results_bucket, TRANSFORM_OUTPUT_OBJECTS)
        log_group = self._arn("logs", f"log-group:{TRANSFORM_LOG_GROUP}")
        image = self.image
        for statement in (
            iam.PolicyStatement(
                actions=["s3:GetObject"], resources=[archives[0], inputs[0], manifests[0]]
            ),
            iam.PolicyStatement(
                actions=["s3:PutObject", "s3:AbortMultipartUpload"], resources=[outputs[0]]
            ),
            *job_container_statements(
                key_arn=data.key.key_arn,
                region=self.region,
                repository_arn=image.repository_arn,
                log_group_arn=log_group,
            ),
        ):
            role.add_to_principal_policy(statement)
        policy = role.node.find_child("DefaultPolicy")
        for (_, nag_name), reason in (
            (archives, "the VQA model archive, recorded per training run under vqa/training/"),
            (inputs, "each run's transform input parts (runs are named at run time)"),
            (manifests, "each group's transform manifest (runs and groups are named at run time)"),
            (outputs, "each group's transform output (runs and groups are named at run time)"),
        ):
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::{nag_name}]",
                f"The catalog's Batch Transform model reads or writes {reason}; the prefix is "
                "the narrowest scope that names them.",
            )
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::{self._nag_arn('logs', 'log-group:')}"
            f"{TRANSFORM_LOG_GROUP}:*]",
            "Log streams in SageMaker's transform-job log group only; SageMaker names a stream "
            "per job and instance, so they cannot be listed in advance.",
        )
        ecr_auth = image_pull_auth_policy(
            self,
            "TransformEcrAuthPolicy",
            role=role,
            repository="inference repository",
        )
        metrics = metrics_policy(
            self,
            "TransformMetricsPolicy",
            role=role,
            namespace=TRANSFORM_METRICS_NAMESPACE,
            kind="transform-job",
        )
        self.transform_policies = [ecr_auth, metrics]
        return role

    def _bedrock_role(self) -> iam.Role:
        """The Bedrock batch inference service role (AWS's documented trust and S3 access)."""
        data, config = self._data, self._config
        role = iam.Role(
            self,
            "BedrockBatchRole",
            assumed_by=iam.ServicePrincipal(
                "bedrock.amazonaws.com",
                conditions={
                    "StringEquals": {"aws:SourceAccount": self.account},
                    "ArnLike": {"aws:SourceArn": self._arn("bedrock", "model-invocation-job/*")},
                },
            ),
            description=f"Atelier {config.stage}: Bedrock batch inference of catalog runs",
        )
        inputs = self._objects(data.results_bucket, BEDROCK_INPUT_OBJECTS)
        outputs = self._objects(data.results_bucket, BEDROCK_OUTPUT_OBJECTS)
        statements = [
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[inputs[0]]),
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[data.results_bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [RUN_OBJECTS]}},
            ),
            iam.PolicyStatement(actions=["s3:PutObject"], resources=[outputs[0]]),
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"],
                resources=[data.key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"s3.{self.region}.amazonaws.com"}},
            ),
        ]
        model_arns = self._model_arns()
        if len(model_arns) > 1:
            # Through an inference profile the service role itself must be allowed the profile
            # and the model in each region it routes to (Bedrock's batch inference guide).
            # Unlike the functions' grant, no bedrock:InferenceProfileArn condition: the batch
            # guide's service-role policy shows none, and whether Bedrock sets that key on
            # the calls a batch job makes is not documented (checked 2026-12-07).
            statements.append(
                iam.PolicyStatement(actions=["bedrock:InvokeModel"], resources=model_arns)
            )
        for statement in statements:
            role.add_to_principal_policy(statement)
        policy = role.node.find_child("DefaultPolicy")
        if len(model_arns) > 1:
            self._acknowledge_model_regions(
                policy,
                "The Bedrock batch role",
                "Only Bedrock can assume the role, for this stage's batch jobs.",
            )
        for (_, nag_name), reason in (
            (inputs, "reads each group's Bedrock input files"),
            (outputs, "writes each group's Bedrock output files"),
        ):
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::{nag_name}]",
                f"The Bedrock batch role {reason}; runs and groups are named at run time, so "
                "the prefix is the narrowest scope.",
            )
        return role

    # --- the workflow's role --------------------------------------------------------------------

    def _grant_workflow(self) -> list[iam.Policy]:
        config, data = self._config, self._data
        prefix = self.job_name_prefix
        results = data.results_bucket
        state_machine_arn = self._arn("states", f"stateMachine:{self.state_machine_name}")
        executions = [
            self._arn("states", f"execution:{self.state_machine_name}/*"),
            self._arn("states", f"execution:{self.state_machine_name}:*"),
        ]
        parameter_arn = self._arn("ssm", f"parameter{config.vqa_model_data_parameter}")
        models = self._arn("sagemaker", f"model/{prefix}-*")
        transform_jobs = self._arn("sagemaker", f"transform-job/{prefix}-*")
        bedrock_jobs = self._arn("bedrock", "model-invocation-job/*")
        model_arns = self._model_arns()
        sources = [
            self._objects(data.uploads_bucket, "*"),
            self._objects(data.datasets_bucket, "*"),
            self._objects(results, RUN_OBJECTS),
        ]
        map_results = self._objects(results, MAP_RESULT_OBJECTS)
        policy = iam.Policy(
            self,
            "WorkflowPolicy",
            roles=[self.workflow_role],
            statements=[
                iam.PolicyStatement(
                    actions=["lambda:InvokeFunction"],
                    resources=[f.function.function_arn for f in self.functions.values()],
                ),
                # Distributed Map: children are executions of this very state machine.
                iam.PolicyStatement(
                    actions=["states:StartExecution"], resources=[state_machine_arn]
                ),
                # Redrive: a redriven run redrives its Map Runs' failed children.
                iam.PolicyStatement(
                    actions=[
                        "states:DescribeExecution",
                        "states:StopExecution",
                        "states:RedriveExecution",
                    ],
                    resources=executions,
                ),
                # ItemReader: list a prefix, read a manifest.
                iam.PolicyStatement(
                    actions=["s3:ListBucket"],
                    resources=[bucket.bucket_arn for bucket in self.source_buckets],
                ),
                iam.PolicyStatement(
                    actions=["s3:GetObject"], resources=[arn for arn, _ in sources]
                ),
                # ResultWriter.
                iam.PolicyStatement(
                    actions=[
                        "s3:PutObject",
                        "s3:GetObject",
                        "s3:ListMultipartUploadParts",
                        "s3:AbortMultipartUpload",
                    ],
                    resources=[map_results[0]],
                ),
                iam.PolicyStatement(
                    actions=["kms:Decrypt", "kms:GenerateDataKey"],
                    resources=[data.key.key_arn],
                    conditions={
                        "StringEquals": {"kms:ViaService": f"s3.{self.region}.amazonaws.com"}
                    },
                ),
                iam.PolicyStatement(actions=["ssm:GetParameter"], resources=[parameter_arn]),
                iam.PolicyStatement(
                    actions=["sagemaker:CreateModel", "sagemaker:DeleteModel", "sagemaker:AddTags"],
                    resources=[models],
                ),
                iam.PolicyStatement(
                    actions=[
                        "sagemaker:AddTags",
                        "sagemaker:CreateTransformJob",
                        "sagemaker:DescribeTransformJob",
                        "sagemaker:ListTags",
                        "sagemaker:StopTransformJob",
                    ],
                    resources=[transform_jobs],
                ),
                iam.PolicyStatement(
                    actions=["events:DescribeRule", "events:PutRule", "events:PutTargets"],
                    resources=[self._arn("events", f"rule/{TRANSFORM_SYNC_RULE}")],
                ),
                iam.PolicyStatement(
                    actions=["iam:PassRole"],
                    resources=[self.transform_role.role_arn],
                    conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
                ),
                iam.PolicyStatement(
                    actions=["bedrock:CreateModelInvocationJob"],
                    resources=[*model_arns, bedrock_jobs],
                ),
                iam.PolicyStatement(
                    actions=[
                        "bedrock:GetModelInvocationJob",
                        "bedrock:StopModelInvocationJob",
                        "bedrock:TagResource",
                    ],
                    resources=[bedrock_jobs],
                ),
                iam.PolicyStatement(
                    actions=["iam:PassRole"],
                    resources=[self.bedrock_role.role_arn],
                    conditions={"StringEquals": {"iam:PassedToService": "bedrock.amazonaws.com"}},
                ),
            ],
        )
        nag_name = self._nag_arn
        reasons: list[tuple[str, str]] = [
            (
                nag_name("states", f"execution:{self.state_machine_name}/*"),
                "Distributed Map children are executions of this state machine, named by Step "
                "Functions per run: the workflow may describe and stop only those.",
            ),
            (
                nag_name("states", f"execution:{self.state_machine_name}:*"),
                "Executions of this one state machine, named per run: the Distributed Map "
                "describes and stops only those.",
            ),
            (
                nag_name("sagemaker", f"model/{prefix}-*"),
                "Each run creates and deletes one SageMaker model named with its run id; only "
                "models with this deployment's catalog prefix.",
            ),
            (
                nag_name("sagemaker", f"transform-job/{prefix}-*"),
                "Each group's transform job is named with its run id and group; only jobs with "
                "this deployment's catalog prefix.",
            ),
            (
                nag_name("bedrock", "model-invocation-job/*"),
                "Bedrock names a batch job's ARN by a job id it generates, so the job cannot be "
                "named in advance; the model is named exactly.",
            ),
            *(
                (
                    source,
                    "The Distributed Map's ItemReader reads the listing or manifest a run "
                    "names in the buckets a run may read from; keys are the caller's.",
                )
                for _, source in sources
            ),
            (
                map_results[1],
                "The Distributed Map's ResultWriter writes under each run's map-results/ "
                "prefix; runs are named at run time.",
            ),
        ]
        for nag_id, reason in reasons:
            acknowledge(policy, f"AwsSolutions-IAM5[Resource::{nag_id}]", reason)
        self._acknowledge_model_regions(
            policy,
            "The workflow's CreateModelInvocationJob",
            "It creates jobs only; the invocations are the batch role's.",
        )
        return [policy]
