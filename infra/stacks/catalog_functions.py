"""The Catalog stack's functions: one per workflow step, their settings and their grants."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from constructs import IConstruct

from infra.config import (
    BEDROCK_MB_BYTES,
    TRANSFORM_PAYLOAD_MB_BYTES,
    ConfigError,
    StageConfig,
)
from infra.constructs.attribute_source import (
    attribute_source_environment,
    bedrock_model_ids,
    grant_attribute_source,
)
from infra.constructs.bedrock_models import invoke_model_statements
from infra.constructs.python_function import (
    AWS_SDK_PIP_ARGS,
    AWS_SDK_REQUIREMENTS,
    PythonFunction,
)
from infra.nag import acknowledge
from infra.stacks.api import RESULTS_PREFIX
from infra.stacks.api_settings import descriptions_settings_json
from infra.stacks.catalog_names import (
    ONLINE_FAILURE_OBJECTS,
    REQUEST_OBJECTS,
    RUN_OBJECTS,
    CatalogScope,
)
from infra.stacks.data import DataStack

# Lambda allows 4 KB for all environment variables of a function together.
MAX_ENVIRONMENT_BYTES = 4096


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


def attribute_spool_mb(config: StageConfig) -> int:
    """Lambda disk (MB) for the vision source's attribute input: one Bedrock input file of
    images at a time (uploaded when full), plus its ledger and 64 MB of headroom."""
    file_mb = config.catalog.bedrock.max_file_mb * BEDROCK_MB_BYTES / 2**20
    megabytes = max(GROUP_SPOOL_MB, math.ceil(file_mb * 1.1 + 64))
    if megabytes > MAX_EPHEMERAL_STORAGE_MB:
        raise ConfigError(
            f"catalog.bedrock.max_file_mb ({config.catalog.bedrock.max_file_mb}) needs "
            f"{megabytes} MB of Lambda /tmp for one attributes input file, more than its "
            f"{MAX_EPHEMERAL_STORAGE_MB} MB; lower it"
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
        **(
            {
                "attribute_input": FunctionSpec(
                    "AttributeInputFunction",
                    "attribute_input",
                    "Builds a catalog group's Bedrock batch input for the vision attribute model",
                    1024,
                    long,
                    # One input file (at most catalog.bedrock.max_file_mb) spooled at a time.
                    attribute_spool_mb(config),
                )
            }
            if config.attribute_source == "vision-llm"
            else {}
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


def catalog_functions(scope: CatalogScope) -> dict[str, PythonFunction]:
    """The step functions, built in the stack itself (their construct ids are the stack's), with
    the run settings in their environment and their grants."""
    config, data = scope.config, scope.data
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
        # The online step asks the stage's source; the batch steps write and read its records.
        **attribute_source_environment(config),
    }
    functions = {
        key: PythonFunction(
            scope.stack,
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
    check_environment_size(scope.stack, environment)
    grant_functions(scope, functions)
    return functions


def check_environment_size(stack: Stack, environment: Mapping[str, str]) -> None:
    resolved = stack.resolve(environment)
    # Tokens (bucket and table names) resolve to intrinsics here: count them at the longest
    # physical names CloudFormation generates (63 characters for a bucket).
    size = sum(len(k) + len(json.dumps(v)) for k, v in resolved.items())
    if size > MAX_ENVIRONMENT_BYTES - 600:
        raise ConfigError(
            f"the catalog functions' settings take about {size} bytes; with Powertools' "
            f"variables they must fit Lambda's {MAX_ENVIRONMENT_BYTES}: shorten "
            "descriptions.questions or descriptions.categories"
        )


def grant_functions(scope: CatalogScope, functions: Mapping[str, PythonFunction]) -> None:
    """Each function's own statements, the data key through S3 and DynamoDB, and a written
    reason for every object prefix it is granted."""
    data, config, region = scope.data, scope.config, scope.stack.region
    results = data.results_bucket
    run_objects = scope.objects(results, RUN_OBJECTS)
    descriptions = scope.objects(results, f"{RESULTS_PREFIX}*")
    sources = [
        scope.objects(data.uploads_bucket, "*"),
        scope.objects(data.datasets_bucket, "*"),
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
        resources=[bucket.bucket_arn for bucket in scope.source_buckets],
    )
    key_via_s3 = iam.PolicyStatement(
        actions=["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"],
        resources=[data.key.key_arn],
        conditions={
            "StringEquals": {
                "kms:ViaService": [
                    f"s3.{region}.amazonaws.com",
                    f"dynamodb.{region}.amazonaws.com",
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
                    resources=[bucket.bucket_arn for bucket in scope.source_buckets],
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
                (scope.objects(results, REQUEST_OBJECTS), "writes each run's request.json"),
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
        # The vision source: reads its group's transform input parts, writes the attributes
        # job's input and ledger (a retry first deletes the earlier attempt's input).
        "attribute_input": (
            [
                list_run,
                iam.PolicyStatement(
                    actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                    resources=[run_objects[0]],
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
                *invoke_model_statements(scope.stack, config.descriptions.model_id),
            ],
            [
                *((source, "reads the product images a run names") for source in sources),
                (descriptions, "writes each product's description JSON"),
                (
                    scope.objects(results, ONLINE_FAILURE_OBJECTS),
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
        if key not in functions:
            continue
        function = functions[key]
        for statement in [*statements, key_via_s3]:
            function.role.add_to_principal_policy(statement)
        if key == "online":
            # The VQA endpoint by name, or the vision model: only what the stage's source needs.
            grant_attribute_source(scope.stack, function.role, config)
        policy = function.role.node.find_child("DefaultPolicy")
        _acknowledge_objects(policy, dict(acknowledged), function=key)
        if key == "online":
            scope.acknowledge_model_regions(
                policy,
                "The online function",
                "The statement allows it only through this stage's profile (condition "
                "bedrock:InferenceProfileArn).",
                model_ids=bedrock_model_ids(config),
            )


def _acknowledge_objects(
    policy: IConstruct, reasons: Mapping[tuple[str, str], str], *, function: str
) -> None:
    for (_, nag_name), reason in reasons.items():
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::{nag_name}]",
            f"The catalog {function} function {reason}; runs and products are named at run "
            "time (catalog/<runId>/..., images chosen by the caller), so a prefix is the "
            "narrowest scope.",
        )
