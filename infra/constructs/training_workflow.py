"""A training workflow: check the input, run one SageMaker training job to the end, record its
model archive in SSM.

    {"dataset": "<prefix>/<name>/", "hyperparameters": {...}, "baseModel": "org/model",
     "baseModelRevision": "<40-hex Hub commit>"}

(`baseModel` and `baseModelRevision` come together or not at all: training loads a Hub model
only at a pinned commit, see training/hub_pins.py and docs/base-models.md.) Or, to fine-tune a
model this workflow trained before (subject A, then subject B on top of it):

    {"dataset": "<prefix>/<name>/", "startFrom": "<an earlier training job of this workflow>"}

Jobs never download. The base model is read from the models bucket, where `atelier models stage`
put it: the workflow looks up the model's SSM record and fails at once, naming the command to run,
when it is not staged; the job gets the staged folder (or the earlier run's archive) as its
`model` input channel, with the manifest hash from the record to check every file against, and
runs with network isolation, its code arriving as the `code` channel and its Python packages as
wheels inside the code archive.

A Step Functions state machine (JSONata) validates the input (each kind of mistake ends in a Fail
state of its own with a cause that names the fix), merges the hyperparameters (configured
defaults, the input's overrides as strings, the base model, then what the workflow fixes), runs
the job with the optimized `createTrainingJob.sync` integration and writes
`ModelArtifacts.S3ModelArtifacts` to the SSM parameter the matching `hosting.model_data_url` is
then set from. The job runs under an execution role of its own that may read the dataset prefix,
write its output and checkpoint prefixes, fetch the code archive, pull its image and write logs
and metrics; the workflow's role may create only jobs named with its prefix and pass only that
role.

`TrainingWorkflow` is a plain class creating its resources directly in the stack under
`<id_prefix>...` ids rather than a `Construct` subtree: the ids (and so the logical ids) stay what
the first workflow (VQA) deployed with, and a state machine with a fixed name cannot be replaced
under a new logical id (CloudFormation would create the new one before deleting the old, and the
name is taken). Only the states, which are no resources, live in a scope of their own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aws_cdk import Aws, Duration, Stack, Token
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.config import StageConfig
from infra.config.training_jobs import TrainingJobConfig
from infra.constructs.buckets import list_prefix_statement, read_prefix_statements
from infra.constructs.hf_images import ContainerImage, huggingface_image
from infra.constructs.ml_instances import has_instance_storage
from infra.constructs.network import sagemaker_network_policy, sagemaker_vpc_config
from infra.constructs.sagemaker_roles import (
    image_pull_auth_policy,
    job_container_statements,
    metrics_policy,
)
from infra.constructs.workflows import observed_state_machine, pass_role_statement
from infra.models import BASE_MODELS_PARAMETER_PATH, BASE_MODELS_PREFIX, base_model_parameter
from infra.nag import acknowledge, exported_name
from infra.workflows.states import (
    aws_call,
    either,
    input_checks,
    input_has_only,
    json_list,
    jsonata,
    quoted_list,
)

CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
# Keys a workflow input may have; anything else is a typo and fails the execution at once.
INPUT_KEYS = ("dataset", "hyperparameters", "baseModel", "baseModelRevision", "startFrom")
# The input channels the job reads its base model(s) and its code from; train.py reads the
# `model` channel (SM_CHANNEL_MODEL) and its companions' (SM_CHANNEL_<NAME>).
MODEL_CHANNEL = "model"
CODE_CHANNEL = "code"
# Where SageMaker puts a channel's files, and so the code archive under network isolation.
CHANNEL_ROOT = "/opt/ml/input/data"
# Nothing in a job may reach the Hugging Face Hub: a stray download fails at once instead of
# hanging until the network-isolated connection times out.
JOB_ENVIRONMENT = {"HF_HUB_OFFLINE": "1"}

# Where SageMaker writes training logs and metrics; one log group for every job of the account.
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TRAINING_METRICS_NAMESPACE = "/aws/sagemaker/TrainingJobs"
# The Step Functions rule that turns training-job state changes into `.sync` completions.
SYNC_EVENTS_RULE = "StepFunctionsGetEventsForSageMakerTrainingJobsRule"

# A training job name: `<prefix>-<yyyymmdd-hhmmss>-<8 hex>`, at most 63 characters.
MAX_JOB_NAME_LENGTH = 63
JOB_NAME_SUFFIX_LENGTH = len("-20260101-000000-0123abcd")
MAX_JOB_NAME_PREFIX_LENGTH = MAX_JOB_NAME_LENGTH - JOB_NAME_SUFFIX_LENGTH
# Hyperparameter values SageMaker passes to the script; booleans become `true`/`false`.
SCALAR_TYPES = ("string", "number")
SCALAR_OR_BOOLEAN_TYPES = ("string", "number", "boolean")
# How train.py scripts spell a boolean (any case).
BOOLEAN_SPELLINGS = ("true", "false", "1", "0")


def job_name_prefix(config: StageConfig, name: str, *, short_name: str) -> str:
    """`<prefix>-<stage>-<name>`, or with `short_name` where that leaves no room for the time and
    random suffix in SageMaker's 63 characters (long name prefixes and stages)."""
    prefix = config.resource_name(name)
    if len(prefix) <= MAX_JOB_NAME_PREFIX_LENGTH:
        return prefix
    short = config.resource_name(short_name)
    assert len(short) <= MAX_JOB_NAME_PREFIX_LENGTH, f"{short!r} leaves no room for a job name"
    return short


def job_name_expression(prefix: str) -> str:
    """`<prefix>-<yyyymmdd-hhmmss>-<8 hex>`: unique per execution and at most 63 characters for a
    prefix of at most 38 (`job_name_prefix`; `<20 name prefix>-<12 stage>-vqa` is 37)."""
    return (
        f"'{prefix}-' & $now('[Y0001][M01][D01]-[H01][m01][s01]') & '-' & $substring($uuid(), 0, 8)"
    )


def hyperparameters_expression(defaults: Mapping[str, str], *, fixed: Mapping[str, str]) -> str:
    """Defaults, then the input's overrides as strings, then what is fixed. (The base model's
    hyperparameters are added when its record has been read: `$baseHyperparameters`.)"""
    return f"""$merge([
      {json.dumps(dict(defaults))},
      (
        $h := $states.input.hyperparameters;
        $exists($h) and $count($keys($h)) > 0
          ? $merge($each($h, function($v, $k) {{ {{ $k: $string($v) }} }}))
          : {{}}
      ),
      {json.dumps(dict(fixed))}
    ])"""


def base_model_parameter_expression(ssm_prefix: str, *, model: str, revision: str) -> str:
    """The SSM record of the run's base model: the input's `baseModel` at `baseModelRevision`, or
    the configured one (`infra.models.base_model_parameter`, written in JSONata)."""
    return (
        f"'{ssm_prefix}/{BASE_MODELS_PARAMETER_PATH}/' & "
        f"($exists($states.input.baseModel) ? $states.input.baseModel : {json.dumps(model)})"
        " & '/' & "
        f"($exists($states.input.baseModel) ? $states.input.baseModelRevision "
        f": {json.dumps(revision)})"
    )


def staged_hyperparameters(prefix: str, record: str) -> str:
    """`<prefix>`, `<prefix>_revision` and `<prefix>_manifest_sha256` from a staged model's
    record (`record`: the JSONata of its parsed JSON value)."""
    return (
        f"{{ '{prefix}': {record}.model, '{prefix}_revision': {record}.revision, "
        f"'{prefix}_manifest_sha256': {record}.manifestSha256 }}"
    )


# --- input checks (JSONata; each returns true or false, never undefined) ----------------------

INPUT_IS_AN_OBJECT = input_has_only(INPUT_KEYS)
BASE_MODEL_IS_VALID = r"""(
  $m := $states.input.baseModel;
  $r := $states.input.baseModelRevision;
  ($not($exists($m)) and $not($exists($r))) or (
    $type($m) = 'string'
    and $contains($m, /^[A-Za-z0-9][A-Za-z0-9._-]{0,95}\/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$/)
    and $type($r) = 'string'
    and $contains($r, /^[0-9a-f]{40}$/)
  )
)"""


def start_from_is_valid(job_name_prefix: str, *, supported: bool = True) -> str:
    """An earlier job of this workflow (its name starts with the workflow's job prefix, which is
    also all the workflow may describe), and no base model named beside it; no `startFrom` at
    all where the training script cannot start from an earlier archive."""
    if not supported:
        return "$not($exists($states.input.startFrom))"
    assert re.fullmatch(r"[A-Za-z0-9-]+", job_name_prefix), job_name_prefix
    return rf"""(
  $s := $states.input.startFrom;
  $not($exists($s)) or (
    $type($s) = 'string' and $length($s) <= {MAX_JOB_NAME_LENGTH}
    and $contains($s, /^{job_name_prefix}-[a-zA-Z0-9](-*[a-zA-Z0-9])*$/)
    and $not($exists($states.input.baseModel)) and $not($exists($states.input.baseModelRevision))
  )
)"""


def dataset_is_valid(dataset_prefix: str) -> str:
    """A prefix of folders below `dataset_prefix`, ending in '/': `vqa/shirts/`,
    `vqa/shirts/2026-08/`."""
    escaped = dataset_prefix.rstrip("/")
    return rf"""(
  $d := $states.input.dataset;
  $type($d) = 'string' and $length($d) <= 512
  and $contains($d, /^{escaped}\/([A-Za-z0-9][A-Za-z0-9._-]*\/)+$/)
)"""


def hyperparameters_are_valid(
    names: Sequence[str], *, types: Sequence[str], booleans: Sequence[str] = ()
) -> str:
    """Only known names, only values of `types`; the `booleans` spelled as train.py reads them."""
    boolean_check = (
        f"""
    and $count($keys($h)[$ in {json_list(booleans)} and $not(
      $type($lookup($h, $)) = 'boolean'
      or $lowercase($string($lookup($h, $))) in {quoted_list(BOOLEAN_SPELLINGS)}
    )]) = 0"""
        if booleans
        else ""
    )
    return f"""(
  $h := $states.input.hyperparameters;
  $not($exists($h)) or (
    $type($h) = 'object'
    and $count($keys($h)[$not($ in {json_list(names)})]) = 0
    and $count($keys($h)[$not($type($lookup($h, $)) in {quoted_list(types)})]) = 0{boolean_check}
  )
)"""


TRAINING_FAILURE_CAUSE = """(
  $c := $states.input.Cause;
  $type($c) = 'string' and $contains($c, '"FailureReason"')
    ? 'training job ' & $jobName & ' failed: ' & $parse($c).FailureReason
    : 'training job ' & $jobName & ': ' & $string($c)
)"""


@dataclass(frozen=True)
class InstanceChoice:
    """The instance type of a run: `default`, or `alternative` when `condition` (JSONata over the
    merged `$hyperparameters`, strings all) is true."""

    default: str
    alternative: str | None = None
    condition: str | None = None

    def __post_init__(self) -> None:
        if (self.alternative is None) != (self.condition is None):
            raise ValueError("an alternative instance type needs its condition, and vice versa")


@dataclass(frozen=True)
class CompanionModel:
    """A second staged model a job loads beside its base model (CLIPSeg beside the inpainting
    pipeline): its own input channel and `<hyperparameter>`, `<hyperparameter>_revision` and
    `<hyperparameter>_manifest_sha256`; always the configured one."""

    channel: str
    hyperparameter: str
    model: str
    revision: str
    # For state names and causes: "CLIPSeg".
    title: str


@dataclass(frozen=True)
class TrainingWorkflowSpec:
    """What one training workflow trains, on what, and where things go."""

    # Construct ids start with it (`VqaExecutionRole`, `VqaTraining`, ...).
    id_prefix: str
    # The state machine is `<prefix>-<stage>-<name>-training`.
    name: str
    # Training job names start `<job_name_prefix>-`.
    job_name_prefix: str
    # What is trained, "VQA" or "DreamBooth text-to-image": in descriptions ("... model").
    title: str
    comment: str
    # Relative to the code archive's root (/opt/ml/code in the container).
    program: str
    # Datasets bucket prefix every dataset of this workflow lives under (`vqa/`).
    dataset_prefix: str
    dataset_example: str
    # What a dataset holds, for the InvalidDataset cause: "train/ and validation/".
    dataset_holds: str
    # Channel name → what is appended to the dataset prefix for it ("train/", or "" for all).
    channels: Mapping[str, str]
    output_prefix: str
    checkpoints_prefix: str
    hyperparameter_names: tuple[str, ...]
    hyperparameter_defaults: Mapping[str, str]
    base_model: str
    # The 40-hex Hub commit of base_model.
    base_model_revision: str
    base_model_example: str
    metric_definitions: Sequence[Mapping[str, str]]
    # SSM parameter each successful run writes its model archive's URI to.
    model_data_parameter: str
    instance: InstanceChoice
    instance_count: int
    volume_size_gb: int
    max_runtime_hours: int
    use_spot: bool
    max_wait_hours: int
    image_uri: str | None
    image_config_key: str
    # Hyperparameters the workflow sets beside sagemaker_* (the input cannot name them).
    fixed_hyperparameters: Mapping[str, str] = field(default_factory=dict)
    hyperparameter_types: tuple[str, ...] = SCALAR_TYPES
    boolean_hyperparameters: tuple[str, ...] = ()
    companion_models: tuple[CompanionModel, ...] = ()
    # Whether train.py can start from an earlier run's archive (`startFrom`).
    start_from_supported: bool = True


def job_settings(training: TrainingJobConfig) -> dict[str, Any]:
    """The spec fields every model's `training` section sets the same way: its base model and
    the job's instance count, volume, time limits, spot and image."""
    return {
        "base_model": training.base_model,
        "base_model_revision": training.base_model_revision,
        "instance_count": training.instance_count,
        "volume_size_gb": training.volume_size_gb,
        "max_runtime_hours": training.max_runtime_hours,
        "use_spot": training.use_spot,
        "max_wait_hours": training.max_wait_hours,
        "image_uri": training.image_uri,
    }


class TrainingWorkflow:
    """The execution role, the workflow role and the state machine of one training workflow."""

    def __init__(
        self,
        stack: Stack,
        *,
        spec: TrainingWorkflowSpec,
        config: StageConfig,
        datasets: s3.IBucket,
        models: s3.IBucket,
        key: kms.IKey,
        code: s3_assets.Asset,
    ) -> None:
        self.stack = stack
        self.spec = spec
        self.config = config
        self.code = code
        # In the Data stack: datasets under `dataset_prefix`, archives and checkpoints, their key.
        self.datasets, self.models, self.key = datasets, models, key
        self.image: ContainerImage = huggingface_image(
            stack, kind="training", override=spec.image_uri, config_key=spec.image_config_key
        )
        self.execution_role = iam.Role(
            stack,
            f"{spec.id_prefix}ExecutionRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=(
                f"Atelier {config.stage}: SageMaker training jobs of the {spec.title} model"
            ),
        )
        self._grant_execution_role()
        # With the stage's `network` section, jobs run in its private subnets: SageMaker creates
        # their network interfaces with this role as soon as a job starts.
        self.network_policy = sagemaker_network_policy(
            stack, self._id("NetworkPolicy"), config=config, role=self.execution_role
        )
        self.state_machine = self._state_machine(config)
        if self.network_policy is not None:
            self.state_machine.node.add_dependency(self.network_policy)

    def _id(self, suffix: str) -> str:
        return f"{self.spec.id_prefix}{suffix}"

    # --- the training job's role --------------------------------------------------------------

    def _grant_execution_role(self) -> None:
        stack, spec, role = self.stack, self.spec, self.execution_role
        datasets, models = self.datasets, self.models
        log_group = f"arn:{Aws.PARTITION}:logs:{stack.region}:{stack.account}:log-group:"
        statements = [
            # File-mode channels: list and read the dataset prefixes of this workflow only.
            *read_prefix_statements(datasets, spec.dataset_prefix),
            # The model archive and (with spot) the checkpoints SageMaker syncs during the run.
            iam.PolicyStatement(
                actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[
                    models.arn_for_objects(f"{spec.output_prefix}*"),
                    models.arn_for_objects(f"{spec.checkpoints_prefix}*"),
                ],
            ),
            # A spot job restarted after an interruption downloads its checkpoints again.
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[models.arn_for_objects(f"{spec.checkpoints_prefix}*")],
            ),
            list_prefix_statement(models, spec.checkpoints_prefix),
            # The `model` channel: a staged base model (which one is the run's input), or with
            # `startFrom` an earlier run's archive of this workflow.
            *read_prefix_statements(models, BASE_MODELS_PREFIX),
            *read_prefix_statements(models, spec.output_prefix),
            # The training code archive, the `code` channel: exactly this asset's object (a
            # channel lists its prefix, which is the object's key).
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[self.code.bucket.arn_for_objects(self.code.s3_object_key)],
            ),
            list_prefix_statement(self.code.bucket, self.code.s3_object_key),
            # Datasets, checkpoints and the model archive are under the data key.
            *job_container_statements(
                key_arn=self.key.key_arn,
                region=stack.region,
                repository_arn=self.image.repository_arn,
                log_group_arn=f"{log_group}{TRAINING_LOG_GROUP}",
            ),
        ]
        for statement in statements:
            role.add_to_principal_policy(statement)

        policy = role.node.find_child("DefaultPolicy")
        datasets_export = exported_name(Stack.of(datasets), datasets.bucket_arn)
        models_export = exported_name(Stack.of(models), models.bucket_arn)
        for resource, reason in (
            (
                f"{datasets_export}/{spec.dataset_prefix}*",
                f"Reads the {spec.dataset_prefix} datasets prefix of the datasets bucket: which "
                "dataset a run trains on is the workflow's input, so the role covers every "
                f"dataset under {spec.dataset_prefix}.",
            ),
            (
                f"{models_export}/{spec.output_prefix}*",
                f"Writes model archives under {spec.output_prefix} of the models bucket, and "
                "reads one back when a run starts from an earlier run's model; SageMaker adds the "
                "per-run job name to the key, which is only known when a run starts.",
            ),
            (
                f"{models_export}/{BASE_MODELS_PREFIX}*",
                f"Reads the staged base models under {BASE_MODELS_PREFIX} of the models bucket: "
                "which model a run starts from is the workflow's input (any staged Hub commit), "
                "and jobs run network-isolated, so this is where every base model comes from.",
            ),
            (
                f"{models_export}/{spec.checkpoints_prefix}*",
                f"Writes and reads back checkpoints under {spec.checkpoints_prefix}<job name>/ so "
                "an interrupted spot job resumes; job names are made per run.",
            ),
            (
                "arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:"
                f"{TRAINING_LOG_GROUP}:*",
                "Log streams in SageMaker's training log group only; SageMaker names a stream "
                "per job and instance, so they cannot be listed in advance.",
            ),
        ):
            acknowledge(policy, f"AwsSolutions-IAM5[Resource::{resource}]", reason)

        # Neither action supports resource-level permissions: each gets a policy of its own.
        image_pull_auth_policy(
            stack,
            self._id("EcrAuthPolicy"),
            role=role,
            repository="training repository",
        )
        metrics_policy(
            stack,
            self._id("MetricsPolicy"),
            role=role,
            namespace=TRAINING_METRICS_NAMESPACE,
            kind="training-job",
        )

    # --- the workflow ------------------------------------------------------------------------

    def _resources(self, instance_type: str) -> dict[str, Any]:
        spec = self.spec
        resources: dict[str, Any] = {
            "InstanceType": instance_type,
            "InstanceCount": spec.instance_count,
            "VolumeSizeInGB": spec.volume_size_gb,
        }
        # NVMe instance types (ml.g5 and ml.g4dn included) encrypt their local storage in
        # hardware and reject a volume key; EBS-backed ones get the data key.
        if not has_instance_storage(instance_type):
            resources["VolumeKmsKeyId"] = self.key.key_arn
        return resources

    def _resource_config(self) -> dict[str, Any] | str:
        """A fixed ResourceConfig, or one JSONata picks by the run's hyperparameters (the key
        goes with the type: a run may move between NVMe and EBS-backed instances)."""
        choice = self.spec.instance
        default = self._resources(choice.default)
        if choice.alternative is None or choice.condition is None:
            return default
        alternative = self._resources(choice.alternative)
        return jsonata(f"({choice.condition}) ? {json.dumps(alternative)} : {json.dumps(default)}")

    @staticmethod
    def _s3_channel(name: str, uri: str) -> dict[str, Any]:
        return {
            "ChannelName": name,
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": uri,
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
            "InputMode": "File",
            "CompressionType": "None",
        }

    def _model_channels(self) -> list[dict[str, Any]]:
        """The base model (`$modelUri`, set by the states that read its record), each companion
        (`$<channel>Uri`), and the code archive."""
        return [
            self._s3_channel(MODEL_CHANNEL, jsonata("$modelUri")),
            *(
                self._s3_channel(companion.channel, jsonata(f"${companion.channel}Uri"))
                for companion in self.spec.companion_models
            ),
            self._s3_channel(CODE_CHANNEL, self.code.s3_object_url),
        ]

    def code_path_in_job(self) -> str:
        """Where the code archive lies in the job: `sagemaker_submit_directory` under network
        isolation, which the training toolkit extracts instead of downloading from S3."""
        key = self.code.s3_object_key
        assert not Token.is_unresolved(key), "the code asset's key must be known at synth"
        return f"{CHANNEL_ROOT}/{CODE_CHANNEL}/{key.rsplit('/', 1)[-1]}"

    def _training_job_arguments(self, config: StageConfig) -> dict[str, Any]:
        spec = self.spec
        datasets = self.datasets.bucket_name
        models = self.models.bucket_name
        stopping: dict[str, Any] = {"MaxRuntimeInSeconds": spec.max_runtime_hours * 3600}
        arguments: dict[str, Any] = {
            "TrainingJobName": jsonata("$jobName"),
            "RoleArn": self.execution_role.role_arn,
            "AlgorithmSpecification": {
                "TrainingImage": self.image.uri,
                "TrainingInputMode": "File",
                "MetricDefinitions": [dict(d) for d in spec.metric_definitions],
                "EnableSageMakerMetricsTimeSeries": True,
            },
            "HyperParameters": jsonata("$merge([$hyperparameters, $baseHyperparameters])"),
            "InputDataConfig": [
                *(
                    self._s3_channel(
                        channel, jsonata(f"'s3://{datasets}/' & $dataset & '{suffix}'")
                    )
                    for channel, suffix in spec.channels.items()
                ),
                *self._model_channels(),
            ],
            # No internet: the base model, the code and its packages all come from the account's
            # buckets (the channels above), and no job can send data out.
            "EnableNetworkIsolation": True,
            "Environment": dict(JOB_ENVIRONMENT),
            "OutputDataConfig": {
                "S3OutputPath": f"s3://{models}/{spec.output_prefix}",
                "KmsKeyId": self.key.key_arn,
            },
            "ResourceConfig": self._resource_config(),
            "StoppingCondition": stopping,
            "Tags": [
                {"Key": key, "Value": value}
                for key, value in {**config.tags, "atelier:stage": config.stage}.items()
            ],
        }
        vpc_config = sagemaker_vpc_config(config)
        if vpc_config is not None:
            arguments["VpcConfig"] = vpc_config
        if spec.use_spot:
            arguments["EnableManagedSpotTraining"] = True
            stopping["MaxWaitTimeInSeconds"] = spec.max_wait_hours * 3600
            # The job name is in the path, so a restarted spot job finds its own checkpoints.
            arguments["CheckpointConfig"] = {
                "S3Uri": jsonata(f"'s3://{models}/{spec.checkpoints_prefix}' & $jobName & '/'"),
                "LocalPath": CHECKPOINT_LOCAL_PATH,
            }
        return arguments

    def _state_machine(self, config: StageConfig) -> sfn.StateMachine:
        stack, spec = self.stack, self.spec
        # The states are no resources: a scope of their own keeps their ids apart per workflow.
        scope = Construct(stack, self._id("States"))
        parameter_name = spec.model_data_parameter
        parameter_arn = (
            f"arn:{Aws.PARTITION}:ssm:{stack.region}:{stack.account}:parameter{parameter_name}"
        )

        def fail(construct_id: str, error: str, cause: str) -> sfn.Fail:
            return sfn.Fail.jsonata(scope, construct_id, error=error, cause=cause)

        types = spec.hyperparameter_types
        # "string or number", "string, number or boolean"
        type_text = f"{', '.join(types[:-1])} or {types[-1]}" if len(types) > 1 else types[0]
        booleans_text = (
            f"; {', '.join(spec.boolean_hyperparameters)} take true or false "
            "(or 'True', 'False', '1', '0')"
            if spec.boolean_hyperparameters
            else ""
        )
        invalid_input = fail(
            "InvalidInput",
            "InvalidInput",
            "the input must be a JSON object with 'dataset' (required), 'hyperparameters', "
            "'baseModel' and 'baseModelRevision', or 'startFrom' (optional) and no other keys",
        )
        invalid_dataset = fail(
            "InvalidDataset",
            "InvalidDataset",
            jsonata(
                f"'dataset must be a prefix of the datasets bucket under {spec.dataset_prefix} "
                f'ending in "/", such as "{spec.dataset_example}", holding {spec.dataset_holds}; '
                "got ' & $string($states.input.dataset)"
            ),
        )
        invalid_hyperparameters = fail(
            "InvalidHyperparameters",
            "InvalidHyperparameters",
            f"hyperparameters must be an object of {type_text} values named among: "
            + ", ".join(spec.hyperparameter_names)
            + booleans_text,
        )
        invalid_base_model = fail(
            "InvalidBaseModel",
            "InvalidBaseModel",
            f"baseModel must be a Hugging Face model id such as '{spec.base_model_example}', "
            "given with baseModelRevision, its 40-hex Hub commit (a branch can move or vanish, "
            "so training loads hub models only at a commit); give neither for "
            f"{spec.base_model} at {spec.base_model_revision}",
        )
        invalid_start_from = fail(
            "InvalidStartFrom",
            "InvalidStartFrom",
            "startFrom must be the name of an earlier training job of this workflow (it starts "
            f"with '{spec.job_name_prefix}-'), and comes without baseModel and baseModelRevision: "
            "the run starts from that job's model"
            if spec.start_from_supported
            else f"the {spec.title} workflow cannot start from an earlier run (its training "
            "script trains each run from the base model): leave startFrom out",
        )
        hyperparameters_valid = hyperparameters_are_valid(
            spec.hyperparameter_names, types=types, booleans=spec.boolean_hyperparameters
        )
        validate = input_checks(
            scope,
            "ValidateInput",
            [
                (INPUT_IS_AN_OBJECT, invalid_input),
                (dataset_is_valid(spec.dataset_prefix), invalid_dataset),
                (hyperparameters_valid, invalid_hyperparameters),
                (BASE_MODEL_IS_VALID, invalid_base_model),
                (
                    start_from_is_valid(spec.job_name_prefix, supported=spec.start_from_supported),
                    invalid_start_from,
                ),
            ],
        )
        prepare = sfn.Pass.jsonata(
            scope,
            "PrepareJob",
            state_name="Prepare training job",
            assign={
                "jobName": jsonata(job_name_expression(spec.job_name_prefix)),
                "dataset": jsonata("$states.input.dataset"),
                "startFrom": jsonata(
                    "$exists($states.input.startFrom) ? $states.input.startFrom : null"
                ),
                "hyperparameters": jsonata(
                    hyperparameters_expression(
                        spec.hyperparameter_defaults,
                        fixed={
                            "sagemaker_program": spec.program,
                            "sagemaker_submit_directory": self.code_path_in_job(),
                            "sagemaker_region": stack.region,
                            "sagemaker_container_log_level": "20",
                            **spec.fixed_hyperparameters,
                        },
                    )
                ),
            },
        )
        # CallAwsService cannot wait for a job and the L2 SageMakerCreateTrainingJob has no spot,
        # checkpoint, wait-time or inter-container-encryption fields: the optimized .sync
        # integration written out.
        train = sfn.CustomState(
            scope,
            "Train",
            state_json={
                "Type": "Task",
                "Comment": "Runs the training job and waits for it to end",
                "Resource": f"arn:{Aws.PARTITION}:states:::sagemaker:createTrainingJob.sync",
                "Arguments": self._training_job_arguments(config),
                "Assign": {
                    "modelDataUrl": jsonata("$states.result.ModelArtifacts.S3ModelArtifacts")
                },
            },
        )
        train.add_catch(
            fail("TrainingFailed", jsonata("$states.input.Error"), jsonata(TRAINING_FAILURE_CAUSE)),
            errors=["States.ALL"],
        )
        # A throttled SSM call must not fail a run whose model is trained: the one SSM retrier.
        record = aws_call(
            scope,
            "RecordModel",
            state_name="Record model artifact",
            service="ssm",
            action="putParameter",
            iam_resources=[parameter_arn],
            parameters={
                "Name": parameter_name,
                "Value": jsonata("$modelDataUrl"),
                "Type": "String",
                "Overwrite": True,
                "Description": jsonata(f"'{spec.title} model archive of training job ' & $jobName"),
            },
            outputs={
                "trainingJobName": jsonata("$jobName"),
                "modelDataUrl": jsonata("$modelDataUrl"),
                "modelDataUrlParameter": parameter_name,
            },
        )
        record.add_catch(
            fail(
                "RecordFailed",
                jsonata("$states.input.Error"),
                jsonata(
                    f"'training job ' & $jobName & ' wrote ' & $modelDataUrl & ' but it could not "
                    f"be recorded in {parameter_name}: ' & $string($states.input.Cause)"
                ),
            ),
            errors=["States.ALL"],
        )
        train.next(record)
        definition = validate.otherwise(
            prepare.next(self._base_model_states(scope, fail, then=train, config=config))
        )

        role = iam.Role(
            stack,
            self._id("WorkflowRole"),
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description=f"Atelier {config.stage}: runs {spec.title} training jobs and records "
            "the model",
        )
        policies = self._grant_workflow_role(role, parameter_arn=parameter_arn)
        hours = spec.max_wait_hours if spec.use_spot else spec.max_runtime_hours
        return observed_state_machine(
            stack,
            self._id("Training"),
            config=config,
            name=config.resource_name(f"{spec.name}-training"),
            comment=spec.comment,
            definition=definition,
            role=role,
            policies=policies,
            # The job's own limit plus time to start instances and upload the model.
            timeout=Duration.hours(hours + 2),
            policy_prefix=self._id("Workflow"),
        )

    # --- where the base model comes from --------------------------------------------------------

    def _base_model_states(
        self,
        scope: Construct,
        fail: Callable[[str, str, str], sfn.Fail],
        *,
        then: sfn.IChainable,
        config: StageConfig,
    ) -> sfn.IChainable:
        """Set `$modelUri` and `$baseHyperparameters` (and each companion's `$<channel>Uri`):
        from an earlier job of this workflow with `startFrom`, otherwise from the staged model's
        SSM record. A model that is not staged ends the run here, with the command to stage it."""
        spec = self.spec
        ssm_prefix = config.ssm_prefix
        records_arn = self._base_model_records_arn()
        companions: sfn.IChainable = then
        for companion in reversed(spec.companion_models):
            companions = self._read_companion(
                scope, fail, companion, records_arn=records_arn, ssm_prefix=ssm_prefix
            ).next(companions)

        read_record = aws_call(
            scope,
            "ReadBaseModel",
            state_name="Read staged base model",
            service="ssm",
            action="getParameter",
            iam_resources=[records_arn],
            parameters={
                "Name": jsonata(
                    base_model_parameter_expression(
                        ssm_prefix, model=spec.base_model, revision=spec.base_model_revision
                    )
                )
            },
            assign={
                "modelUri": jsonata("$parse($states.result.Parameter.Value).uri"),
                "baseHyperparameters": jsonata(
                    staged_hyperparameters("base_model", "$parse($states.result.Parameter.Value)")
                ),
            },
        )
        model_text = (
            f"($exists($states.input.baseModel) ? $states.input.baseModel : "
            f"{json.dumps(spec.base_model)})"
        )
        revision_text = (
            f"($exists($states.input.baseModel) ? $states.input.baseModelRevision : "
            f"{json.dumps(spec.base_model_revision)})"
        )
        read_record.add_catch(
            fail(
                "BaseModelNotStaged",
                "BaseModelNotStaged",
                jsonata(
                    f"{model_text} & ' at ' & {revision_text} & ' is not staged in the models "
                    "bucket of this stage (training jobs run without internet access): run "
                    f"`atelier models stage ' & {model_text} & ' --revision ' & {revision_text} "
                    "& '`, then start the run again (docs/base-models.md)'"
                ),
            ),
            errors=["Ssm.ParameterNotFoundException"],
        )
        read_record.add_catch(
            fail(
                "BaseModelLookupFailed",
                jsonata("$states.input.Error"),
                jsonata(
                    "'could not read the staged base model record: ' & $states.input.Error & "
                    "': ' & $states.input.Cause"
                ),
            ),
            errors=["States.ALL"],
        )

        earlier_job = aws_call(
            scope,
            "DescribeEarlierJob",
            state_name="Describe earlier job",
            service="sagemaker",
            action="describeTrainingJob",
            iam_resources=[self._jobs_arn()],
            parameters={"TrainingJobName": jsonata("$startFrom")},
            assign={
                "earlierJob": jsonata(
                    "{ 'status': $states.result.TrainingJobStatus, "
                    "'archive': $states.result.ModelArtifacts.S3ModelArtifacts }"
                ),
                # Checked by the next state before the job starts.
                "modelUri": jsonata(
                    "$exists($states.result.ModelArtifacts.S3ModelArtifacts) "
                    "? $states.result.ModelArtifacts.S3ModelArtifacts : ''"
                ),
                "baseHyperparameters": jsonata("{ 'start_from': $startFrom }"),
            },
        )
        earlier_job.add_catch(
            fail(
                "StartFromNotFound",
                "StartFromNotFound",
                jsonata(
                    "'could not read training job ' & $startFrom & ' to start from: ' "
                    "& $states.input.Error & ': ' & $states.input.Cause"
                ),
            ),
            errors=["States.ALL"],
        )
        not_completed = fail(
            "StartFromNotCompleted",
            "StartFromNotCompleted",
            jsonata(
                "'training job ' & $startFrom & ' is ' & $earlierJob.status & "
                "', not Completed: only a finished run has a model to start from'"
            ),
        )
        check_earlier = either(
            scope,
            "EarlierJobCompleted",
            state_name="Earlier job completed?",
            condition=(
                "$earlierJob.status = 'Completed' and $type($earlierJob.archive) = 'string'"
            ),
            then=companions,
            otherwise=not_completed,
        )
        return either(
            scope,
            "ChooseBaseModel",
            state_name="Start from an earlier run?",
            condition="$type($startFrom) = 'string'",
            then=earlier_job.next(check_earlier),
            otherwise=read_record.next(companions),
        )

    def _read_companion(
        self,
        scope: Construct,
        fail: Callable[[str, str, str], sfn.Fail],
        companion: CompanionModel,
        *,
        records_arn: str,
        ssm_prefix: str,
    ) -> tasks.CallAwsService:
        name = base_model_parameter(ssm_prefix, companion.model, companion.revision)
        title = companion.title
        state = aws_call(
            scope,
            f"Read{title}",
            state_name=f"Read staged {title}",
            service="ssm",
            action="getParameter",
            iam_resources=[records_arn],
            parameters={"Name": name},
            assign={
                f"{companion.channel}Uri": jsonata("$parse($states.result.Parameter.Value).uri"),
                "baseHyperparameters": jsonata(
                    "$merge([$baseHyperparameters, "
                    + staged_hyperparameters(
                        companion.hyperparameter, "$parse($states.result.Parameter.Value)"
                    )
                    + "])"
                ),
            },
        )
        state.add_catch(
            fail(
                f"{title}NotStaged",
                "BaseModelNotStaged",
                f"{companion.model} at {companion.revision} ({title}) is not staged in this "
                "stage's models bucket (training jobs run without internet access): run "
                f"`atelier models stage {companion.model} --revision {companion.revision}`, then "
                "start the run again (docs/base-models.md)",
            ),
            errors=["Ssm.ParameterNotFoundException"],
        )
        state.add_catch(
            fail(
                f"{title}LookupFailed",
                jsonata("$states.input.Error"),
                jsonata(
                    f"'could not read the staged {title} record: ' & $states.input.Error & ': ' "
                    "& $states.input.Cause"
                ),
            ),
            errors=["States.ALL"],
        )
        return state

    def _base_model_records_arn(self) -> str:
        stack = self.stack
        return (
            f"arn:{Aws.PARTITION}:ssm:{stack.region}:{stack.account}:"
            f"parameter{self.config.ssm_prefix}/{BASE_MODELS_PARAMETER_PATH}/*"
        )

    def _jobs_arn(self) -> str:
        stack = self.stack
        return (
            f"arn:{Aws.PARTITION}:sagemaker:{stack.region}:{stack.account}:"
            f"training-job/{self.spec.job_name_prefix}-*"
        )

    def _grant_workflow_role(self, role: iam.Role, *, parameter_arn: str) -> list[iam.Policy]:
        stack, spec = self.stack, self.spec
        jobs = self._jobs_arn()
        tasks_policy = iam.Policy(
            stack,
            self._id("WorkflowPolicy"),
            roles=[role],
            statements=[
                iam.PolicyStatement(
                    actions=[
                        "sagemaker:AddTags",
                        "sagemaker:CreateTrainingJob",
                        "sagemaker:DescribeTrainingJob",
                        "sagemaker:ListTags",
                        "sagemaker:StopTrainingJob",
                    ],
                    resources=[jobs],
                ),
                pass_role_statement(self.execution_role.role_arn, "sagemaker.amazonaws.com"),
                iam.PolicyStatement(
                    actions=["events:DescribeRule", "events:PutRule", "events:PutTargets"],
                    resources=[
                        f"arn:{Aws.PARTITION}:events:{stack.region}:{stack.account}:"
                        f"rule/{SYNC_EVENTS_RULE}"
                    ],
                ),
                iam.PolicyStatement(actions=["ssm:PutParameter"], resources=[parameter_arn]),
                # The staged base models' records (which model is the run's input).
                iam.PolicyStatement(
                    actions=["ssm:GetParameter"], resources=[self._base_model_records_arn()]
                ),
            ],
        )
        acknowledge(
            tasks_policy,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:"
            f"<AWS::AccountId>:training-job/{spec.job_name_prefix}-*]",
            "Training jobs get a new name per run (prefix, time, random suffix), so the "
            "workflow may create, watch and stop only jobs whose names carry this prefix.",
        )
        acknowledge(
            tasks_policy,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ssm:<AWS::Region>:"
            f"<AWS::AccountId>:parameter{self.config.ssm_prefix}/{BASE_MODELS_PARAMETER_PATH}/*]",
            "Reads the records of staged base models: which Hub model and commit a run starts "
            "from is the workflow's input, so any record under the stage's base-models path.",
        )
        return [tasks_policy]
