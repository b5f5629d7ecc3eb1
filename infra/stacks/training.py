"""Training workflows: the VQA attribute model (BLIP-2 + LoRA) on a SageMaker training job.

`<prefix>-<stage>-vqa-training` (Step Functions, JSONata) checks its input, runs one training job
to completion (`createTrainingJob.sync`) and records the model archive in the SSM parameter
`/<prefix>/<stage>/vqa/model-data-url`, which `vqa.hosting.model_data_url` is then set from.

    {"dataset": "vqa/<name>/", "hyperparameters": {"epochs": 3}, "baseModel": "org/model"}

`dataset` is a prefix of the datasets bucket holding `train/` and `validation/` (rows.jsonl and
images); `hyperparameters` (names from `vqa.training.hyperparameters`) and `baseModel` are
optional overrides of the configured defaults.

Compute only: the datasets, models, checkpoints and the key stay in the Data stack. The training
code travels as a .tar.gz asset (see `source_archive`), run by the Hugging Face PyTorch training
container as `vqa/train.py` with `/opt/ml/code` (the `training/` folder) on its Python path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from aws_cdk import Aws, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.config import VQA_HYPERPARAMETER_NAMES, ConfigError, StageConfig
from infra.constructs.hf_images import huggingface_image
from infra.constructs.ml_instances import has_instance_storage
from infra.constructs.publishing import publish_names
from infra.constructs.source_archive import source_archive_asset
from infra.constructs.workflows import observed_state_machine
from infra.nag import acknowledge, exported_name
from infra.stacks.data import DataStack

TRAINING_DIR = Path(__file__).resolve().parents[2] / "training"
# Relative to the code archive's root, which the container extracts to /opt/ml/code.
VQA_PROGRAM = "vqa/train.py"

VQA_DATASETS_PREFIX = "vqa/"
VQA_OUTPUT_PREFIX = "vqa/training/"
VQA_CHECKPOINTS_PREFIX = "vqa/checkpoints/"
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
CHANNELS = ("train", "validation")
# Keys a workflow input may have; anything else is a typo and fails the execution at once.
INPUT_KEYS = ("dataset", "hyperparameters", "baseModel")

# Where SageMaker writes training logs and metrics; one log group for every job of the account.
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TRAINING_METRICS_NAMESPACE = "/aws/sagemaker/TrainingJobs"
# The Step Functions rule that turns training-job state changes into `.sync` completions.
SYNC_EVENTS_RULE = "StepFunctionsGetEventsForSageMakerTrainingJobsRule"

# The metrics `vqa/train.py` logs (names as in training/vqa/metrics.py: infra does not import the
# training code; a test runs these regexes against lines made by that module).
BATCH_LOSS = "batch_loss"
TRAIN_LOSS = "train_loss"
VALIDATION_LOSS = "validation_loss"
VALIDATION_EXACT_MATCH = "validation_exact_match"
VQA_METRICS = (BATCH_LOSS, TRAIN_LOSS, VALIDATION_LOSS, VALIDATION_EXACT_MATCH)
# A training job accepts at most 40 metric definitions.
MAX_METRIC_DEFINITIONS = 40

# SSM parameter names under `/<name_prefix>/<stage>/training/`.
PUBLISHED_NAMES = (
    "vqa-state-machine-arn",
    "vqa-execution-role-arn",
    "vqa-model-data-url-parameter",
    "vqa-code-uri",
)


def metric_definitions(attributes: Iterable[str]) -> list[dict[str, str]]:
    """One definition per logged metric: the value token after ` <name>=`, taken as it is.

    The leading space keeps `fit` from matching `fit_type=`, and `=` right after the name keeps
    `validation_exact_match` from matching `validation_exact_match_fabric`; a NaN loss shows as
    `nan` instead of the previous value.
    """
    names = [*VQA_METRICS, *(f"{VALIDATION_EXACT_MATCH}_{attribute}" for attribute in attributes)]
    if len(names) > MAX_METRIC_DEFINITIONS:
        raise ConfigError(
            f"descriptions.questions names {len(names) - len(VQA_METRICS)} attributes; a training "
            f"job takes at most {MAX_METRIC_DEFINITIONS} metric definitions, "
            f"{len(VQA_METRICS)} of them the losses: ask at most "
            f"{MAX_METRIC_DEFINITIONS - len(VQA_METRICS)}"
        )
    return [{"Name": name, "Regex": rf" {name}=(\S+)"} for name in names]


def _jsonata(expression: str) -> str:
    return "{% " + " ".join(expression.split()) + " %}"


def _list(values: Iterable[str]) -> str:
    return json.dumps(list(values))


# --- input checks (JSONata; each returns true or false, never undefined) ----------------------

INPUT_IS_AN_OBJECT = f"""(
  $type($states.input) = 'object'
  and $count($keys($states.input)[$not($ in {_list(INPUT_KEYS)})]) = 0
)"""
# A prefix of folders below vqa/, ending in '/': `vqa/shirts/`, `vqa/shirts/2026-08/`.
DATASET_IS_VALID = r"""(
  $d := $states.input.dataset;
  $type($d) = 'string' and $length($d) <= 512
  and $contains($d, /^vqa\/([A-Za-z0-9][A-Za-z0-9._-]*\/)+$/)
)"""
HYPERPARAMETERS_ARE_VALID = f"""(
  $h := $states.input.hyperparameters;
  $not($exists($h)) or (
    $type($h) = 'object'
    and $count($keys($h)[$not($ in {_list(VQA_HYPERPARAMETER_NAMES)})]) = 0
    and $count($keys($h)[$not($type($lookup($h, $)) in ['string', 'number'])]) = 0
  )
)"""
BASE_MODEL_IS_VALID = r"""(
  $m := $states.input.baseModel;
  $not($exists($m)) or (
    $type($m) = 'string'
    and $contains($m, /^[A-Za-z0-9][A-Za-z0-9._-]{0,95}\/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$/)
  )
)"""


def job_name_expression(prefix: str) -> str:
    """`<prefix>-<yyyymmdd-hhmmss>-<8 hex>`: unique per execution and at most 63 characters
    (prefix at most 37: 20 name prefix + 12 stage + `-vqa` and two hyphens)."""
    return (
        f"'{prefix}-' & $now('[Y0001][M01][D01]-[H01][m01][s01]') & '-' & $substring($uuid(), 0, 8)"
    )


def hyperparameters_expression(
    defaults: Mapping[str, str], *, base_model: str, fixed: Mapping[str, str]
) -> str:
    """Defaults, then the input's overrides as strings, then base model and SageMaker's own."""
    return f"""$merge([
      {json.dumps(dict(defaults))},
      (
        $h := $states.input.hyperparameters;
        $exists($h) and $count($keys($h)) > 0
          ? $merge($each($h, function($v, $k) {{ {{ $k: $string($v) }} }}))
          : {{}}
      ),
      {{ 'base_model': $exists($states.input.baseModel) ? $states.input.baseModel
          : {json.dumps(base_model)} }},
      {json.dumps(dict(fixed))}
    ])"""


TRAINING_FAILURE_CAUSE = """(
  $c := $states.input.Cause;
  $type($c) = 'string' and $contains($c, '"FailureReason"')
    ? 'training job ' & $jobName & ' failed: ' & $parse($c).FailureReason
    : 'training job ' & $jobName & ': ' & $string($c)
)"""


class TrainingStack(Stack):
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
        training = config.vqa.training
        self.code = source_archive_asset(self, "TrainingCode", source_dir=TRAINING_DIR)
        self.image = huggingface_image(
            self, kind="training", override=training.image_uri, config_key="vqa.training.image_uri"
        )
        self.execution_role = iam.Role(
            self,
            "VqaExecutionRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"Atelier {config.stage}: SageMaker training jobs of the VQA model",
        )
        self._grant_execution_role(data)
        self.state_machine = self._state_machine(config, data)
        publish_names(
            self,
            config=config,
            section="training",
            names=PUBLISHED_NAMES,
            values={
                "vqa-state-machine-arn": self.state_machine.state_machine_arn,
                "vqa-execution-role-arn": self.execution_role.role_arn,
                "vqa-model-data-url-parameter": config.vqa_model_data_parameter,
                "vqa-code-uri": self.code.s3_object_url,
            },
        )

    # --- the training job's role --------------------------------------------------------------

    def _grant_execution_role(self, data: DataStack) -> None:
        role = self.execution_role
        datasets, models = data.datasets_bucket, data.models_bucket
        log_group = f"arn:{Aws.PARTITION}:logs:{self.region}:{self.account}:log-group:"
        statements = [
            # File-mode channels: list and read the dataset prefixes under vqa/ only.
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[datasets.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{VQA_DATASETS_PREFIX}*"]}},
            ),
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[datasets.arn_for_objects(f"{VQA_DATASETS_PREFIX}*")],
            ),
            # The model archive and (with spot) the checkpoints SageMaker syncs during the run.
            iam.PolicyStatement(
                actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[
                    models.arn_for_objects(f"{VQA_OUTPUT_PREFIX}*"),
                    models.arn_for_objects(f"{VQA_CHECKPOINTS_PREFIX}*"),
                ],
            ),
            # A spot job restarted after an interruption downloads its checkpoints again.
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[models.arn_for_objects(f"{VQA_CHECKPOINTS_PREFIX}*")],
            ),
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[models.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{VQA_CHECKPOINTS_PREFIX}*"]}},
            ),
            # The training code archive: exactly this asset's object.
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[self.code.bucket.arn_for_objects(self.code.s3_object_key)],
            ),
            # Datasets, checkpoints and the model archive are under the data key, through S3;
            # SageMaker itself checks the key named for the output.
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"],
                resources=[data.key.key_arn],
                conditions={
                    "StringEquals": {
                        "kms:ViaService": [
                            f"s3.{self.region}.amazonaws.com",
                            f"sagemaker.{self.region}.amazonaws.com",
                        ]
                    }
                },
            ),
            # Volume encryption on instance types with EBS storage: a grant to the AWS resource.
            iam.PolicyStatement(
                actions=["kms:CreateGrant"],
                resources=[data.key.key_arn],
                conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
            ),
            iam.PolicyStatement(
                actions=[
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                ],
                resources=[self.image.repository_arn],
            ),
            iam.PolicyStatement(
                actions=["logs:CreateLogGroup"], resources=[f"{log_group}{TRAINING_LOG_GROUP}"]
            ),
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
                resources=[f"{log_group}{TRAINING_LOG_GROUP}:*"],
            ),
        ]
        for statement in statements:
            role.add_to_principal_policy(statement)

        policy = role.node.find_child("DefaultPolicy")
        datasets_export = exported_name(data, datasets.bucket_arn)
        models_export = exported_name(data, models.bucket_arn)
        for resource, reason in (
            (
                f"{datasets_export}/{VQA_DATASETS_PREFIX}*",
                "Reads the VQA datasets prefix of the datasets bucket: which dataset a run "
                "trains on is the workflow's input, so the role covers every dataset under vqa/.",
            ),
            (
                f"{models_export}/{VQA_OUTPUT_PREFIX}*",
                "Writes model archives under vqa/training/ of the models bucket; SageMaker adds "
                "the per-run job name to the key, which is only known when a run starts.",
            ),
            (
                f"{models_export}/{VQA_CHECKPOINTS_PREFIX}*",
                "Writes and reads back checkpoints under vqa/checkpoints/<job name>/ so an "
                "interrupted spot job resumes; job names are made per run.",
            ),
            (
                "arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:"
                f"{TRAINING_LOG_GROUP}:*",
                "Log streams in SageMaker's training log group only; SageMaker names a stream "
                "per job and instance, so they cannot be listed in advance.",
            ),
        ):
            acknowledge(policy, f"AwsSolutions-IAM5[Resource::{resource}]", reason)

        # Neither action supports resource-level permissions: each gets a policy of its own, so
        # the acknowledgment covers exactly it and a later wildcard elsewhere still fails synth.
        ecr_auth = iam.Policy(
            self,
            "VqaEcrAuthPolicy",
            roles=[role],
            statements=[
                iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"])
            ],
        )
        acknowledge(
            ecr_auth,
            "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken supports no resource-level permissions; image pulls "
            "themselves are limited to the one training repository in the role's default policy.",
        )
        metrics = iam.Policy(
            self,
            "VqaMetricsPolicy",
            roles=[role],
            statements=[
                iam.PolicyStatement(
                    actions=["cloudwatch:PutMetricData"],
                    resources=["*"],
                    conditions={
                        "StringEquals": {"cloudwatch:namespace": TRAINING_METRICS_NAMESPACE}
                    },
                )
            ],
        )
        acknowledge(
            metrics,
            "AwsSolutions-IAM5[Resource::*]",
            "cloudwatch:PutMetricData supports no resource-level permissions; the statement is "
            "limited to SageMaker's training-job metrics namespace by condition.",
        )

    # --- the workflow ------------------------------------------------------------------------

    def _training_job_arguments(self, config: StageConfig, data: DataStack) -> dict[str, Any]:
        training = config.vqa.training
        datasets = data.datasets_bucket.bucket_name
        models = data.models_bucket.bucket_name
        resources: dict[str, Any] = {
            "InstanceType": training.instance_type,
            "InstanceCount": training.instance_count,
            "VolumeSizeInGB": training.volume_size_gb,
        }
        # NVMe instance types (ml.g5 included) encrypt their local storage in hardware and
        # reject a volume key; EBS-backed ones get the data key.
        if not has_instance_storage(training.instance_type):
            resources["VolumeKmsKeyId"] = data.key.key_arn
        stopping: dict[str, Any] = {"MaxRuntimeInSeconds": training.max_runtime_hours * 3600}
        arguments: dict[str, Any] = {
            "TrainingJobName": _jsonata("$jobName"),
            "RoleArn": self.execution_role.role_arn,
            "AlgorithmSpecification": {
                "TrainingImage": self.image.uri,
                "TrainingInputMode": "File",
                "MetricDefinitions": metric_definitions(config.descriptions.questions),
                "EnableSageMakerMetricsTimeSeries": True,
            },
            "HyperParameters": _jsonata("$hyperparameters"),
            "InputDataConfig": [
                {
                    "ChannelName": channel,
                    "DataSource": {
                        "S3DataSource": {
                            "S3DataType": "S3Prefix",
                            "S3Uri": _jsonata(f"'s3://{datasets}/' & $dataset & '{channel}/'"),
                            "S3DataDistributionType": "FullyReplicated",
                        }
                    },
                    "InputMode": "File",
                    "CompressionType": "None",
                }
                for channel in CHANNELS
            ],
            "OutputDataConfig": {
                "S3OutputPath": f"s3://{models}/{VQA_OUTPUT_PREFIX}",
                "KmsKeyId": data.key.key_arn,
            },
            "ResourceConfig": resources,
            "StoppingCondition": stopping,
            "Tags": [
                {"Key": key, "Value": value}
                for key, value in {**config.tags, "atelier:stage": config.stage}.items()
            ],
        }
        if training.use_spot:
            arguments["EnableManagedSpotTraining"] = True
            stopping["MaxWaitTimeInSeconds"] = training.max_wait_hours * 3600
            # The job name is in the path, so a restarted spot job finds its own checkpoints.
            arguments["CheckpointConfig"] = {
                "S3Uri": _jsonata(f"'s3://{models}/{VQA_CHECKPOINTS_PREFIX}' & $jobName & '/'"),
                "LocalPath": CHECKPOINT_LOCAL_PATH,
            }
        return arguments

    def _state_machine(self, config: StageConfig, data: DataStack) -> sfn.StateMachine:
        training = config.vqa.training
        parameter_name = config.vqa_model_data_parameter
        parameter_arn = (
            f"arn:{Aws.PARTITION}:ssm:{self.region}:{self.account}:parameter{parameter_name}"
        )
        job_prefix = config.resource_name("vqa")

        def fail(construct_id: str, error: str, cause: str) -> sfn.Fail:
            return sfn.Fail.jsonata(self, construct_id, error=error, cause=cause)

        invalid_input = fail(
            "InvalidInput",
            "InvalidInput",
            "the input must be a JSON object with 'dataset' (required), 'hyperparameters' and "
            "'baseModel' (optional) and no other keys",
        )
        invalid_dataset = fail(
            "InvalidDataset",
            "InvalidDataset",
            _jsonata(
                '\'dataset must be a prefix of the datasets bucket under vqa/ ending in "/", '
                'such as "vqa/shirts/", holding train/ and validation/; got \' '
                "& $string($states.input.dataset)"
            ),
        )
        invalid_hyperparameters = fail(
            "InvalidHyperparameters",
            "InvalidHyperparameters",
            "hyperparameters must be an object of string or number values named among: "
            + ", ".join(VQA_HYPERPARAMETER_NAMES),
        )
        invalid_base_model = fail(
            "InvalidBaseModel",
            "InvalidBaseModel",
            "baseModel must be a Hugging Face model id such as 'Salesforce/blip2-flan-t5-xl'",
        )
        validate = (
            sfn.Choice.jsonata(self, "ValidateInput", state_name="Validate input")
            .when(sfn.Condition.jsonata(_jsonata(f"$not({INPUT_IS_AN_OBJECT})")), invalid_input)
            .when(sfn.Condition.jsonata(_jsonata(f"$not({DATASET_IS_VALID})")), invalid_dataset)
            .when(
                sfn.Condition.jsonata(_jsonata(f"$not({HYPERPARAMETERS_ARE_VALID})")),
                invalid_hyperparameters,
            )
            .when(
                sfn.Condition.jsonata(_jsonata(f"$not({BASE_MODEL_IS_VALID})")), invalid_base_model
            )
        )
        prepare = sfn.Pass.jsonata(
            self,
            "PrepareJob",
            state_name="Prepare training job",
            assign={
                "jobName": _jsonata(job_name_expression(job_prefix)),
                "dataset": _jsonata("$states.input.dataset"),
                "hyperparameters": _jsonata(
                    hyperparameters_expression(
                        training.hyperparameters.as_strings(),
                        base_model=training.base_model,
                        fixed={
                            "sagemaker_program": VQA_PROGRAM,
                            "sagemaker_submit_directory": self.code.s3_object_url,
                            "sagemaker_region": self.region,
                            "sagemaker_container_log_level": "20",
                        },
                    )
                ),
            },
        )
        # CallAwsService cannot wait for a job and the L2 SageMakerCreateTrainingJob has no spot,
        # checkpoint, wait-time or inter-container-encryption fields: the optimized .sync
        # integration written out.
        train = sfn.CustomState(
            self,
            "Train",
            state_json={
                "Type": "Task",
                "Comment": "Runs the training job and waits for it to end",
                "Resource": f"arn:{Aws.PARTITION}:states:::sagemaker:createTrainingJob.sync",
                "Arguments": self._training_job_arguments(config, data),
                "Assign": {
                    "modelDataUrl": _jsonata("$states.result.ModelArtifacts.S3ModelArtifacts")
                },
            },
        )
        train.add_catch(
            fail(
                "TrainingFailed", _jsonata("$states.input.Error"), _jsonata(TRAINING_FAILURE_CAUSE)
            ),
            errors=["States.ALL"],
        )
        record = tasks.CallAwsService.jsonata(
            self,
            "RecordModel",
            state_name="Record model artifact",
            service="ssm",
            action="putParameter",
            iam_resources=[parameter_arn],
            parameters={
                "Name": parameter_name,
                "Value": _jsonata("$modelDataUrl"),
                "Type": "String",
                "Overwrite": True,
                "Description": _jsonata("'VQA model archive of training job ' & $jobName"),
            },
            outputs={
                "trainingJobName": _jsonata("$jobName"),
                "modelDataUrl": _jsonata("$modelDataUrl"),
                "modelDataUrlParameter": parameter_name,
            },
        )
        record.add_catch(
            fail(
                "RecordFailed",
                _jsonata("$states.input.Error"),
                _jsonata(
                    f"'training job ' & $jobName & ' wrote ' & $modelDataUrl & ' but it could not "
                    f"be recorded in {parameter_name}: ' & $string($states.input.Cause)"
                ),
            ),
            errors=["States.ALL"],
        )
        definition = validate.otherwise(prepare.next(train).next(record))

        role = iam.Role(
            self,
            "VqaWorkflowRole",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description=f"Atelier {config.stage}: runs VQA training jobs and records the model",
        )
        policies = self._grant_workflow_role(
            role, job_prefix=job_prefix, parameter_arn=parameter_arn
        )
        hours = training.max_wait_hours if training.use_spot else training.max_runtime_hours
        return observed_state_machine(
            self,
            "VqaTraining",
            config=config,
            name=config.resource_name("vqa-training"),
            comment="Fine-tunes the VQA attribute model and records its archive in SSM",
            definition=definition,
            role=role,
            policies=policies,
            # The job's own limit plus time to start instances and upload the model.
            timeout=Duration.hours(hours + 2),
            policy_prefix="VqaWorkflow",
        )

    def _grant_workflow_role(
        self, role: iam.Role, *, job_prefix: str, parameter_arn: str
    ) -> list[iam.Policy]:
        jobs = (
            f"arn:{Aws.PARTITION}:sagemaker:{self.region}:{self.account}:"
            f"training-job/{job_prefix}-*"
        )
        tasks_policy = iam.Policy(
            self,
            "VqaWorkflowPolicy",
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
                iam.PolicyStatement(
                    actions=["iam:PassRole"],
                    resources=[self.execution_role.role_arn],
                    conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
                ),
                iam.PolicyStatement(
                    actions=["events:DescribeRule", "events:PutRule", "events:PutTargets"],
                    resources=[
                        f"arn:{Aws.PARTITION}:events:{self.region}:{self.account}:"
                        f"rule/{SYNC_EVENTS_RULE}"
                    ],
                ),
                iam.PolicyStatement(actions=["ssm:PutParameter"], resources=[parameter_arn]),
            ],
        )
        acknowledge(
            tasks_policy,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:"
            f"<AWS::AccountId>:training-job/{job_prefix}-*]",
            "Training jobs get a new name per run (prefix, time, random suffix), so the "
            "workflow may create, watch and stop only jobs whose names carry this prefix.",
        )
        return [tasks_policy]
