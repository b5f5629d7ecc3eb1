"""The per-group states of the describe-catalog workflow, and what its constructs are given.

A group is one child execution of the groups Distributed Map: read the attributes (Batch
Transform on the VQA endpoint's model, or a Bedrock batch job on the vision model), build the
description input, run the description job and store the results. `CatalogWorkflow`
(`catalog_workflow.py`) builds the run around them: the build maps over the source, the plan, the
online route, the groups map, the model's lifecycle and finalize.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aws_cdk import Aws, Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.config import MAX_WORKFLOW_POLLS, ConfigError, StageConfig
from infra.constructs.bedrock_models import batch_invocation_type
from infra.constructs.hf_images import ContainerImage
from infra.constructs.ml_instances import has_instance_storage
from infra.workflows.states import (
    FUNCTION_DEPENDENCY_ERRORS,
    LAMBDA_TRANSIENT_ERRORS,
    PollUntil,
    aws_call,
    dependency_retry,
    error_output,
    jsonata,
    lambda_task,
    quoted_list,
    retry,
    retry_json,
)

# Where each run keeps its files in the results bucket (lambdas/catalog/logic/layout.py).
CATALOG_PREFIX = "catalog/"
MAP_RESULTS = "map-results/"
# What the source kinds are called in the start function's answer.
SOURCE_KINDS = ("prefix", "csv", "jsonl")
# The contracts' DataProcessing: the model sees the image, the questions and `errors: inline`
# (the endpoint's request, training/vqa/inference.py: a record it cannot read is answered with an
# error instead of failing its whole part); each output line keeps the product's identity.
INPUT_FILTER = "$['image','questions','errors']"
OUTPUT_FILTER = "$['product_id','image_key','category','SageMakerOutput']"
# GetModelInvocationJob statuses after which a job does no more work.
TERMINAL_JOB_STATUSES = ("Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired")
# The start function's error for a request the caller must fix (its class name).
INPUT_ERROR = "CatalogInputError"

# Step Functions refuses a child execution's input above 256 KiB; a batch of manifest rows stays
# below this (the batch input and the execution's own fields take the rest).
MAX_INPUT_BYTES_PER_BATCH = 200_000
# Manifest columns a child needs (a failures report used as a manifest also has stage and reason).
MANIFEST_COLUMNS = ("product_id", "image_key", "category")
# What each source kind's child state is called: state names are unique across the whole
# machine, Map processors included (CreateStateMachine refuses a repeated one).
BUILD_PART_STATE = "Build transform input part ({kind})"
# A Lambda function's error arrives as a JSON string in Cause: show its message.
ERROR_MESSAGE = """(
  $c := $states.input.Cause;
  $type($c) = 'string' and $contains($c, '"errorMessage"') ? $parse($c).errorMessage : $string($c)
)"""


def check_group_polls(config: StageConfig) -> None:
    """A group's child execution polls each of its Bedrock jobs: with the vision source two jobs,
    one after the other, so twice the polls the config check allows for one must fit in the
    child's event history. Raises ConfigError naming the settings."""
    if config.attribute_source != "vision-llm":
        return
    bedrock = config.catalog.bedrock
    polls = 2 * (bedrock.timeout_hours * 3600 // bedrock.poll_seconds)
    if polls > MAX_WORKFLOW_POLLS:
        raise ConfigError(
            f"with the vision-llm attribute source each catalog group polls two Bedrock jobs: "
            f"catalog.bedrock.timeout_hours = {bedrock.timeout_hours} at "
            f"catalog.bedrock.poll_seconds = {bedrock.poll_seconds} makes {polls} polls; at most "
            f"{MAX_WORKFLOW_POLLS} fit in a Step Functions execution's history: poll less often"
        )


def group_payload(**fields: Any) -> dict[str, Any]:
    """A group step's payload: the group's run, group and languages, then its own `fields`."""
    return {
        "runId": jsonata("$item.runId"),
        "group": jsonata("$item.group"),
        "languages": jsonata("$item.languages"),
        **fields,
    }


def optional(path: str) -> str:
    """`path`, or null where it names nothing. A field that evaluates to nothing (JSONata's
    undefined, e.g. a manifest row without that column) fails the state in Step Functions; null
    lets the row reach its child, which reports it."""
    return jsonata(f"$exists({path}) ? {path} : null")


@dataclass(frozen=True)
class CatalogFunctions:
    start: lambda_.IFunction
    transform_input: lambda_.IFunction
    plan: lambda_.IFunction
    bedrock_input: lambda_.IFunction
    results: lambda_.IFunction
    online: lambda_.IFunction
    finalize: lambda_.IFunction
    # The vision attribute source's step: a group's attributes job input.
    attribute_input: lambda_.IFunction | None = None


@dataclass(frozen=True)
class TransformResources:
    """What the Batch Transform states name (endpoint source only): the model's role and
    image, the parameter the VQA training workflow records its archive in, the serving
    environment."""

    role: iam.IRole
    image: ContainerImage
    model_data_parameter: str
    inference_environment: Mapping[str, str]


@dataclass(frozen=True)
class CatalogResources:
    """What the states name: bucket, key, the Bedrock role, the job names' prefix, and the
    transform's resources when the stage's attribute source is the endpoint."""

    results_bucket: str
    key: kms.IKey
    bedrock_role: iam.IRole
    job_name_prefix: str
    transform: TransformResources | None = None


class CatalogGroupStates(Construct):
    """The states each group runs, on the workflow's own scope (so every state keeps its id)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        functions: CatalogFunctions,
        resources: CatalogResources,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._functions = functions
        self._resources = resources
        # The attribute source is chosen at synthesis: one state machine per source.
        self._vision = config.attribute_source == "vision-llm"
        if self._vision and functions.attribute_input is None:
            raise ValueError("the vision attribute source needs the attribute input function")
        if not self._vision and resources.transform is None:
            raise ValueError("the endpoint attribute source needs the transform resources")
        check_group_polls(config)

    @property
    def _transform(self) -> TransformResources:
        transform = self._resources.transform
        assert transform is not None, "checked in __init__ for the endpoint source"
        return transform

    def _fail(self, construct_id: str, *, error: str, cause: str) -> sfn.Fail:
        return sfn.Fail.jsonata(self, construct_id, error=error, cause=cause)

    def _lambda_state_json(self, function: lambda_.IFunction, comment: str) -> dict[str, Any]:
        """A Lambda task written out, for the Distributed Map children given as JSON."""
        return {
            "Type": "Task",
            "Comment": comment,
            "Resource": f"arn:{Aws.PARTITION}:states:::lambda:invoke",
            "Arguments": {
                "FunctionName": function.function_arn,
                "Payload": jsonata("$states.input"),
            },
            "Output": jsonata("$states.result.Payload"),
            "Retry": [
                retry_json(LAMBDA_TRANSIENT_ERRORS, retry()),
                retry_json(FUNCTION_DEPENDENCY_ERRORS, dependency_retry()),
            ],
            "End": True,
        }

    def _transform_arguments(self) -> dict[str, Any]:
        config, resources = self._config, self._resources
        transform = config.catalog.transform
        transform_resources: dict[str, Any] = {
            "InstanceType": transform.instance_type,
            "InstanceCount": transform.instance_count,
        }
        # NVMe instance types (ml.g5 included) encrypt their storage in hardware and refuse a key.
        if not has_instance_storage(transform.instance_type):
            transform_resources["VolumeKmsKeyId"] = resources.key.key_arn
        return {
            "TransformJobName": jsonata("$item.jobName"),
            "ModelName": jsonata("$item.modelName"),
            "MaxConcurrentTransforms": transform.max_concurrent_transforms,
            "MaxPayloadInMB": transform.max_payload_mb,
            # Several JSON lines per request, up to MaxPayloadInMB: the handler encodes their
            # images in one batched pass and answers every line on its own output line, errors
            # inline, so a bad image still fails only its record.
            "BatchStrategy": "MultiRecord",
            "ModelClientConfig": {
                "InvocationsTimeoutInSeconds": transform.invocation_timeout_seconds,
                "InvocationsMaxRetries": transform.invocation_max_retries,
            },
            "TransformInput": {
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "ManifestFile",
                        "S3Uri": jsonata("$item.group.manifestUri"),
                    }
                },
                # What the handler reads as a batch of records (one JSON document per line).
                "ContentType": "application/jsonlines",
                "SplitType": "Line",
                "CompressionType": "None",
            },
            "TransformOutput": {
                "S3OutputPath": jsonata("$item.group.outputUri"),
                "Accept": "application/jsonlines",
                "AssembleWith": "Line",
                "KmsKeyId": resources.key.key_arn,
            },
            "TransformResources": transform_resources,
            "DataProcessing": {
                "InputFilter": INPUT_FILTER,
                "JoinSource": "Input",
                "OutputFilter": OUTPUT_FILTER,
            },
            "Tags": self._tags(key="Key", value="Value"),
        }

    def _tags(self, *, key: str, value: str) -> list[dict[str, str]]:
        config = self._config
        tags = {**config.tags, "atelier:stage": config.stage, "atelier:workflow": "catalog"}
        return [{key: k, value: v} for k, v in tags.items()]

    def _group(self) -> sfn.IChainable:
        """The states of one group's child execution (input: the Map's ItemSelector)."""
        if self._vision:
            return self._vision_group()
        prepare = sfn.Pass.jsonata(
            self,
            "PrepareGroup",
            state_name="Prepare group",
            # (CDK drops None values from a definition: nulls are written as JSONata.)
            assign={"item": jsonata("$states.input"), "transformError": jsonata("null")},
        )
        # CallAwsService cannot wait for a job: the optimized .sync integration written out.
        transform = sfn.CustomState(
            self,
            "Transform",
            state_json={
                "Type": "Task",
                "Comment": "Runs the attribute model over the group's transform input parts",
                "Resource": f"arn:{Aws.PARTITION}:states:::sagemaker:createTransformJob.sync",
                "Arguments": self._transform_arguments(),
            },
        )
        bedrock_input = self._bedrock_input(
            transformJob=jsonata("$item.jobName"), transformError=jsonata("$transformError")
        )
        # A failed transform still leaves the products it did describe, and the rest must be
        # reported: bedrock input reads what is there and is told why the job ended.
        transform.add_catch(
            bedrock_input,
            errors=["States.ALL"],
            assign={"transformError": error_output()},
        )
        has_records = self._description_states()
        return prepare.next(transform).next(bedrock_input).next(has_records)

    def _vision_group(self) -> sfn.IChainable:
        """A group with the vision source: a Bedrock job reads the attributes from the photos
        (its records written by the attribute input step), then the description job as with
        the endpoint's attributes."""
        functions = self._functions
        assert functions.attribute_input is not None, "checked in __init__"
        attributes = self._config.descriptions.attributes
        no_job = jsonata("{'arn': null, 'status': null, 'message': null}")
        prepare = sfn.Pass.jsonata(
            self,
            "PrepareGroup",
            state_name="Prepare group",
            assign={"item": jsonata("$states.input"), "attributesJob": no_job},
        )
        attribute_input = lambda_task(
            self,
            "AttributeInput",
            state_name="Build attributes input",
            function=functions.attribute_input,
            payload=group_payload(),
            assign={"attributeInput": jsonata("$states.result.Payload")},
        )
        bedrock_input = self._bedrock_input(attributesJob=jsonata("$attributesJob"))
        create_job, poll_job = self._bedrock_job(
            "Attributes",
            name="attributes",
            job_name=jsonata("$item.attributesJobName"),
            model_id=attributes.model_id,
            # Converse records may not carry toolConfig: tool mode writes InvokeModel records.
            invocation_type=batch_invocation_type(attributes.structured_output),
            input_uri=jsonata("$attributeInput.inputUri"),
            output_uri=jsonata("$attributeInput.outputUri"),
            job_variable="attributesJob",
            # (every product of the group then fails at stage attributes, with this reason)
            refused=jsonata(
                "{'arn': null, 'status': 'Failed', 'message': 'the Bedrock batch job for the "
                "attributes could not be created: ' & $states.errorOutput.Error & ': ' & "
                "$string($states.errorOutput.Cause)}"
            ),
            then=bedrock_input,
        )
        no_attributes_job = sfn.Pass.jsonata(
            self,
            "NoAttributesJob",
            state_name="No attributes job",
            comment="No product of the group can go to the vision model (each is reported)",
        )
        has_products = (
            sfn.Choice.jsonata(self, "HasAttributeRecords", state_name="Anything to read?")
            .when(
                sfn.Condition.jsonata(jsonata("$attributeInput.records > 0")),
                create_job.next(poll_job),
            )
            .otherwise(no_attributes_job.next(bedrock_input))
        )
        has_records = self._description_states()
        bedrock_input.next(has_records)
        return prepare.next(attribute_input).next(has_products)

    def _description_states(self) -> sfn.Choice:
        """After the Bedrock input: the description job (when any product reached it), then
        the results step. Returns the first state, the choice whether there is a job."""
        config, functions = self._config, self._functions
        results = lambda_task(
            self,
            "Results",
            state_name="Store descriptions",
            function=functions.results,
            payload=group_payload(job=jsonata("$job")),
            outputs=jsonata("$states.result.Payload"),
        )
        no_job = sfn.Pass.jsonata(
            self,
            "NoBedrockJob",
            state_name="No Bedrock job",
            comment="No product of the group reached the description step",
            assign={"job": jsonata("{'arn': null, 'status': null, 'message': null}")},
        )
        create_job, poll_job = self._bedrock_job(
            "Bedrock",
            name="Bedrock",
            job_name=jsonata("$item.jobName"),
            model_id=config.descriptions.model_id,
            # Converse records may not carry toolConfig: tool mode writes InvokeModel records.
            invocation_type=batch_invocation_type(config.descriptions.structured_output),
            input_uri=jsonata("$item.group.bedrockInputUri"),
            output_uri=jsonata("$item.group.bedrockOutputUri"),
            job_variable="job",
            refused=jsonata(
                "{'arn': null, 'status': 'Failed', 'message': 'the Bedrock batch job could "
                "not be created: ' & $states.errorOutput.Error & ': ' & "
                "$string($states.errorOutput.Cause)}"
            ),
            then=results,
        )
        return (
            sfn.Choice.jsonata(self, "HasRecords", state_name="Anything to describe?")
            .when(
                sfn.Condition.jsonata(jsonata("$bedrockInput.records > 0")),
                create_job.next(poll_job),
            )
            .otherwise(no_job.next(results))
        )

    def _bedrock_input(self, **fields: Any) -> tasks.LambdaInvoke:
        return lambda_task(
            self,
            "BedrockInput",
            state_name="Build Bedrock input",
            function=self._functions.bedrock_input,
            payload=group_payload(**fields),
            assign={"bedrockInput": jsonata("$states.result.Payload")},
        )

    def _bedrock_job(
        self,
        prefix: str,
        *,
        name: str,
        job_name: str,
        model_id: str,
        invocation_type: str,
        input_uri: str,
        output_uri: str,
        job_variable: str,
        refused: str,
        then: sfn.IChainable,
    ) -> tuple[tasks.CallAwsService, sfn.Wait]:
        """Create a Bedrock batch job and poll it until it ends, then go on to `then` with
        `$<job_variable>` = {arn, status, message}; a job Bedrock refuses goes on to `then`
        too, with `refused` (JSONata) as that variable. Returns the create state and the loop."""
        resources = self._resources
        bedrock = self._config.catalog.bedrock
        arn_variable = f"{job_variable}Arn"
        create_job = aws_call(
            self,
            f"Create{prefix}Job",
            state_name=f"Start {name} batch job",
            service="bedrock",
            action="createModelInvocationJob",
            # The workflow role's policy is written by the stack (the role takes no updates).
            iam_resources=["*"],
            parameters={
                "JobName": job_name,
                # A retried create whose first attempt did start the job gets that job back.
                "ClientRequestToken": job_name,
                "RoleArn": resources.bedrock_role.role_arn,
                "ModelId": model_id,
                "ModelInvocationType": invocation_type,
                "InputDataConfig": {
                    "S3InputDataConfig": {"S3Uri": input_uri, "S3InputFormat": "JSONL"}
                },
                "OutputDataConfig": {
                    "S3OutputDataConfig": {
                        "S3Uri": output_uri,
                        "S3EncryptionKeyId": resources.key.key_arn,
                    }
                },
                "TimeoutDurationInHours": bedrock.timeout_hours,
                "Tags": self._tags(key="Key", value="Value"),
            },
            assign={arn_variable: jsonata("$states.result.JobArn")},
        )
        # A job Bedrock refuses is reported like one that failed: every product of the group
        # goes into the failures report with Bedrock's reason.
        create_job.add_catch(then, errors=["States.ALL"], assign={job_variable: refused})
        get_job = aws_call(
            self,
            f"Get{prefix}Job",
            state_name=f"Get {name} job",
            service="bedrock",
            action="getModelInvocationJob",
            iam_resources=["*"],
            parameters={"JobIdentifier": jsonata(f"${arn_variable}")},
            assign={
                job_variable: {
                    "arn": jsonata(f"${arn_variable}"),
                    "status": jsonata("$states.result.Status"),
                    "message": jsonata(
                        "$exists($states.result.Message) ? $states.result.Message : null"
                    ),
                }
            },
        )
        every = Duration.seconds(bedrock.poll_seconds)
        poll_job = PollUntil(
            self,
            f"WaitFor{prefix}Job",
            state_name=f"Wait for {name} job",
            every=every,
            poll=get_job,
        )
        job_ended = (
            sfn.Choice.jsonata(
                self, f"{prefix}JobEnded", state_name=f"{name.capitalize()} job ended?"
            )
            .when(
                sfn.Condition.jsonata(
                    jsonata(f"${job_variable}.status in {quoted_list(TERMINAL_JOB_STATUSES)}")
                ),
                then,
            )
            .otherwise(poll_job.wait)
        )
        return create_job, poll_job.until(job_ended)
