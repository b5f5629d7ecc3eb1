"""The Catalog stack's roles: the Batch Transform model's, the Bedrock batch job's and the
describe-catalog workflow's policy, every grant written by name or ARN built from the config."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import aws_iam as iam

from infra.constructs.hf_images import ContainerImage
from infra.constructs.network import sagemaker_network_policy
from infra.constructs.python_function import PythonFunction
from infra.constructs.sagemaker_roles import (
    image_pull_auth_policy,
    job_container_statements,
    metrics_policy,
)
from infra.models import VQA
from infra.nag import acknowledge
from infra.stacks.catalog_names import (
    ATTRIBUTE_INPUT_OBJECTS,
    ATTRIBUTE_OUTPUT_OBJECTS,
    BEDROCK_INPUT_OBJECTS,
    BEDROCK_OUTPUT_OBJECTS,
    MAP_RESULT_OBJECTS,
    RUN_OBJECTS,
    TRANSFORM_INPUT_OBJECTS,
    TRANSFORM_MANIFEST_OBJECTS,
    TRANSFORM_OUTPUT_OBJECTS,
    CatalogScope,
)
from infra.training_specs.vqa import VQA_OUTPUT_PREFIX

# Where SageMaker writes transform job logs and metrics (one log group for the account).
TRANSFORM_LOG_GROUP = "/aws/sagemaker/TransformJobs"
TRANSFORM_METRICS_NAMESPACE = "/aws/sagemaker/TransformJobs"
# The Step Functions rule that turns transform-job state changes into `.sync` completions.
TRANSFORM_SYNC_RULE = "StepFunctionsGetEventsForSageMakerTransformJobsRule"


def transform_role(scope: CatalogScope, image: ContainerImage) -> tuple[iam.Role, list[iam.Policy]]:
    """What a Batch Transform job's model may touch: the VQA archive, its run's transform
    input and manifest, its group's output, the key, the image and its logs; with the role's
    image-pull and metrics policies (and its network-interface policy with private networking)."""
    stack, data = scope.stack, scope.data
    role = iam.Role(
        stack,
        "TransformModelRole",
        assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
        description=f"Atelier {scope.config.stage}: the catalog's Batch Transform model",
    )
    archives = scope.objects(data.models_bucket, f"{VQA_OUTPUT_PREFIX}*")
    inputs = scope.objects(data.results_bucket, TRANSFORM_INPUT_OBJECTS)
    manifests = scope.objects(data.results_bucket, TRANSFORM_MANIFEST_OBJECTS)
    outputs = scope.objects(data.results_bucket, TRANSFORM_OUTPUT_OBJECTS)
    log_group = scope.arn("logs", f"log-group:{TRANSFORM_LOG_GROUP}")
    for statement in (
        iam.PolicyStatement(
            actions=["s3:GetObject"], resources=[archives[0], inputs[0], manifests[0]]
        ),
        iam.PolicyStatement(
            actions=["s3:PutObject", "s3:AbortMultipartUpload"], resources=[outputs[0]]
        ),
        *job_container_statements(
            key_arn=data.key.key_arn,
            region=stack.region,
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
        f"AwsSolutions-IAM5[Resource::{scope.nag_arn('logs', 'log-group:')}"
        f"{TRANSFORM_LOG_GROUP}:*]",
        "Log streams in SageMaker's transform-job log group only; SageMaker names a stream "
        "per job and instance, so they cannot be listed in advance.",
    )
    ecr_auth = image_pull_auth_policy(
        stack,
        "TransformEcrAuthPolicy",
        role=role,
        repository="inference repository",
    )
    metrics = metrics_policy(
        stack,
        "TransformMetricsPolicy",
        role=role,
        namespace=TRANSFORM_METRICS_NAMESPACE,
        kind="transform-job",
    )
    # With the stage's `network` section set, the run's model (and so its transform jobs) runs
    # in the VPC: SageMaker creates the jobs' network interfaces with this role.
    network = sagemaker_network_policy(
        stack, "TransformNetworkPolicy", config=scope.config, role=role
    )
    return role, [ecr_auth, metrics, *([network] if network is not None else [])]


def bedrock_role(scope: CatalogScope) -> iam.Role:
    """The Bedrock batch inference service role (AWS's documented trust and S3 access)."""
    stack, data, config = scope.stack, scope.data, scope.config
    role = iam.Role(
        stack,
        "BedrockBatchRole",
        assumed_by=iam.ServicePrincipal(
            "bedrock.amazonaws.com",
            conditions={
                "StringEquals": {"aws:SourceAccount": stack.account},
                "ArnLike": {"aws:SourceArn": scope.arn("bedrock", "model-invocation-job/*")},
            },
        ),
        description=f"Atelier {config.stage}: Bedrock batch inference of catalog runs",
    )
    inputs = [scope.objects(data.results_bucket, BEDROCK_INPUT_OBJECTS)]
    outputs = [scope.objects(data.results_bucket, BEDROCK_OUTPUT_OBJECTS)]
    if config.attribute_source == "vision-llm":
        # The attributes job of each group reads and writes its own prefixes.
        inputs.append(scope.objects(data.results_bucket, ATTRIBUTE_INPUT_OBJECTS))
        outputs.append(scope.objects(data.results_bucket, ATTRIBUTE_OUTPUT_OBJECTS))
    statements = [
        iam.PolicyStatement(actions=["s3:GetObject"], resources=[arn for arn, _ in inputs]),
        iam.PolicyStatement(
            actions=["s3:ListBucket"],
            resources=[data.results_bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [RUN_OBJECTS]}},
        ),
        iam.PolicyStatement(actions=["s3:PutObject"], resources=[arn for arn, _ in outputs]),
        iam.PolicyStatement(
            actions=["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"],
            resources=[data.key.key_arn],
            conditions={"StringEquals": {"kms:ViaService": f"s3.{stack.region}.amazonaws.com"}},
        ),
    ]
    model_arns = scope.profile_model_arns()
    if model_arns:
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
    if model_arns:
        scope.acknowledge_model_regions(
            policy,
            "The Bedrock batch role",
            "Only Bedrock can assume the role, for this stage's batch jobs.",
            model_ids=scope.batch_model_ids(),
        )
    for (_, nag_name), reason in (
        *((found, "reads each group's Bedrock input files") for found in inputs),
        *((found, "writes each group's Bedrock output files") for found in outputs),
    ):
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::{nag_name}]",
            f"The Bedrock batch role {reason}; runs and groups are named at run time, so "
            "the prefix is the narrowest scope.",
        )
    return role


@dataclass(frozen=True)
class WorkflowGrantees:
    """What the describe-catalog workflow starts, invokes or passes on."""

    role: iam.Role
    state_machine_name: str
    job_name_prefix: str
    functions: Sequence[PythonFunction]
    # The Batch Transform model's role: None with the vision attribute source (no transform).
    transform_role: iam.Role | None
    bedrock_role: iam.Role


def workflow_policies(scope: CatalogScope, grantees: WorkflowGrantees) -> list[iam.Policy]:
    """The workflow role's one policy: every grant written by name or ARN, with a reason for
    each pattern cdk-nag flags."""
    stack, config, data = scope.stack, scope.config, scope.data
    prefix = grantees.job_name_prefix
    results = data.results_bucket
    state_machine_arn = scope.arn("states", f"stateMachine:{grantees.state_machine_name}")
    executions = [
        scope.arn("states", f"execution:{grantees.state_machine_name}/*"),
        scope.arn("states", f"execution:{grantees.state_machine_name}:*"),
    ]
    parameter_arn = scope.arn("ssm", f"parameter{VQA.model_data_parameter(config)}")
    models = scope.arn("sagemaker", f"model/{prefix}-*")
    transform_jobs = scope.arn("sagemaker", f"transform-job/{prefix}-*")
    bedrock_jobs = scope.arn("bedrock", "model-invocation-job/*")
    model_arns = scope.model_arns()
    sources = [
        scope.objects(data.uploads_bucket, "*"),
        scope.objects(data.datasets_bucket, "*"),
        scope.objects(results, RUN_OBJECTS),
    ]
    map_results = scope.objects(results, MAP_RESULT_OBJECTS)
    policy = iam.Policy(
        stack,
        "WorkflowPolicy",
        roles=[grantees.role],
        statements=[
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"],
                resources=[f.function.function_arn for f in grantees.functions],
            ),
            # Distributed Map: children are executions of this very state machine.
            iam.PolicyStatement(actions=["states:StartExecution"], resources=[state_machine_arn]),
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
                resources=[bucket.bucket_arn for bucket in scope.source_buckets],
            ),
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[arn for arn, _ in sources]),
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
                conditions={"StringEquals": {"kms:ViaService": f"s3.{stack.region}.amazonaws.com"}},
            ),
            # Batch Transform (endpoint source only): the recorded archive, the run's model,
            # the groups' jobs and the rule behind .sync.
            *(
                [
                    iam.PolicyStatement(actions=["ssm:GetParameter"], resources=[parameter_arn]),
                    iam.PolicyStatement(
                        actions=[
                            "sagemaker:CreateModel",
                            "sagemaker:DeleteModel",
                            "sagemaker:AddTags",
                        ],
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
                        resources=[scope.arn("events", f"rule/{TRANSFORM_SYNC_RULE}")],
                    ),
                    iam.PolicyStatement(
                        actions=["iam:PassRole"],
                        resources=[grantees.transform_role.role_arn],
                        conditions={
                            "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
                        },
                    ),
                ]
                if grantees.transform_role is not None
                else []
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
                resources=[grantees.bedrock_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "bedrock.amazonaws.com"}},
            ),
        ],
    )
    nag_name = scope.nag_arn
    reasons: list[tuple[str, str]] = [
        (
            nag_name("states", f"execution:{grantees.state_machine_name}/*"),
            "Distributed Map children are executions of this state machine, named by Step "
            "Functions per run: the workflow may describe and stop only those.",
        ),
        (
            nag_name("states", f"execution:{grantees.state_machine_name}:*"),
            "Executions of this one state machine, named per run: the Distributed Map "
            "describes and stops only those.",
        ),
        *(
            [
                (
                    nag_name("sagemaker", f"model/{prefix}-*"),
                    "Each run creates and deletes one SageMaker model named with its run id; "
                    "only models with this deployment's catalog prefix.",
                ),
                (
                    nag_name("sagemaker", f"transform-job/{prefix}-*"),
                    "Each group's transform job is named with its run id and group; only jobs "
                    "with this deployment's catalog prefix.",
                ),
            ]
            if grantees.transform_role is not None
            else []
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
    scope.acknowledge_model_regions(
        policy,
        "The workflow's CreateModelInvocationJob",
        "It creates jobs only; the invocations are the batch role's.",
        model_ids=scope.batch_model_ids(),
    )
    return [policy]
