"""The synthesized VQA training workflow, run state by state (tests/sfn_support.py).

Every expression is the deployed one, taken from the dev template: input validation, the job
name, the merged hyperparameters and the CreateTrainingJob arguments (checked against SageMaker's
API model with botocore's ParamValidator), the SSM record on success (moto) and the failure
causes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.validate import ParamValidator
from moto import mock_aws

from tests.sfn_support import Clock, Interpreter, Outcome, TaskFailedError, call_aws_sdk
from tests.sfn_support import definition_with as _definition_with
from tests.staged_models_support import (
    DESCRIBE_JOB,
    GET_PARAMETER,
    manifest_sha256,
    put_record,
    record_parameter,
    staged_record,
)
from tests.support import SynthesizedApp
from tests.templates import one, render_definition

pytestmark = [pytest.mark.integration, pytest.mark.infra]

ACCOUNT = "123456789012"
REGION = "us-east-1"
DATASETS = "atelier-dev-datasets"
MODELS = "atelier-dev-models"
KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/12345678-1234-1234-1234-123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/atelier-dev-vqa-execution"
IMAGE_REGISTRY = "763104351884"
PARAMETER = "/atelier/dev/vqa/model-data-url"
TOKENS = {
    r"AWS::Partition": "aws",
    r"AWS::Region": REGION,
    r"AWS::AccountId": ACCOUNT,
    r"AWS::URLSuffix": "amazonaws.com",
    r"import:.*ExportsOutputRefDatasets.*": DATASETS,
    r"import:.*ExportsOutputRefModels.*": MODELS,
    r"import:.*DataKey.*Arn.*": KEY_ARN,
    r"VqaExecutionRole[0-9A-F]{8}\.Arn": ROLE_ARN,
}
CREATE_JOB = "arn:aws:states:::sagemaker:createTrainingJob.sync"
PUT_PARAMETER = "arn:aws:states:::aws-sdk:ssm:putParameter"
# The test clock starts at 2026-07-25T17:20:00Z; the job name takes the first UUID's 8 hex.
JOB_NAME = "atelier-dev-vqa-20260725-172000-00000000"
JOB_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
ARTIFACT = f"s3://{MODELS}/vqa/training/{JOB_NAME}/output/model.tar.gz"


@pytest.fixture(scope="module")
def definition(synthesized_apps: dict[str, SynthesizedApp]) -> dict[str, Any]:
    template = synthesized_apps["dev"].template("-training")
    _, properties = one(template, "AWS::StepFunctions::StateMachine", "VqaTraining")
    assert properties["StateMachineName"] == "atelier-dev-vqa-training"
    text = render_definition(properties["DefinitionString"]).replace(
        "${HuggingFaceTrainingRegistries[${AWS::Region}].account}", IMAGE_REGISTRY
    )
    return _definition_with(text, TOKENS)


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


@pytest.mark.parametrize(
    ("execution_input", "error", "cause"),
    [
        ("vqa/shirts/", "InvalidInput", "the input must be a JSON object"),
        ({"dataset": "vqa/shirts/", "extra": 1}, "InvalidInput", "no other keys"),
        ({}, "InvalidDataset", "holding train/ and validation/; got "),
        ({"dataset": "vqa/shirts"}, "InvalidDataset", 'ending in "/"'),
        ({"dataset": "other/shirts/"}, "InvalidDataset", "got other/shirts/"),
        ({"dataset": "vqa/../x/"}, "InvalidDataset", "got vqa/../x/"),
        (
            {"dataset": "vqa/shirts/", "hyperparameters": {"epoch": 3}},
            "InvalidHyperparameters",
            "named among: epochs",
        ),
        (
            {"dataset": "vqa/shirts/", "hyperparameters": {"epochs": [3]}},
            "InvalidHyperparameters",
            "string or number values",
        ),
        (
            {"dataset": "vqa/shirts/", "hyperparameters": "epochs=3"},
            "InvalidHyperparameters",
            "must be an object",
        ),
        ({"dataset": "vqa/shirts/", "baseModel": "blip2"}, "InvalidBaseModel", "Hugging Face"),
        ({"dataset": "vqa/shirts/", "baseModel": 7}, "InvalidBaseModel", "baseModel must be"),
        (
            {"dataset": "vqa/shirts/", "startFrom": "atelier-dev-dreambooth-20260725-172000-0"},
            "InvalidStartFrom",
            "an earlier training job of this workflow (it starts with 'atelier-dev-vqa-')",
        ),
        ({"dataset": "vqa/shirts/", "startFrom": 7}, "InvalidStartFrom", "startFrom must be"),
        (
            {
                "dataset": "vqa/shirts/",
                "startFrom": JOB_NAME,
                "baseModel": "Salesforce/blip2-opt-2.7b",
                "baseModelRevision": "a" * 40,
            },
            "InvalidStartFrom",
            "comes without baseModel and baseModelRevision",
        ),
    ],
)
def test_bad_input_ends_in_its_fail_state(
    definition: dict[str, Any], execution_input: Any, error: str, cause: str
) -> None:
    outcome = _run(definition, execution_input)
    assert outcome.status == "FAILED"
    assert outcome.path[-1] == error
    assert outcome.error == error
    assert cause in outcome.cause
    assert outcome.calls == []


@pytest.fixture
def ssm() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("ssm", region_name=REGION)


def test_a_good_input_trains_and_records_the_archive(definition: dict[str, Any], ssm: Any) -> None:
    jobs: list[dict[str, Any]] = []

    def tasks(resource: str, arguments: Any) -> Any:
        if resource == CREATE_JOB:
            _validate_create_training_job(arguments)
            jobs.append(arguments)
            return {
                "TrainingJobName": arguments["TrainingJobName"],
                "TrainingJobStatus": "Completed",
                "ModelArtifacts": {"S3ModelArtifacts": ARTIFACT},
            }
        if resource == GET_PARAMETER:
            return call_aws_sdk(ssm, "getParameter", arguments)
        assert resource == PUT_PARAMETER
        return call_aws_sdk(ssm, "putParameter", arguments)

    # Given the model the run names, staged (its record in SSM, as `atelier models stage` writes)
    record = put_record(ssm, "Salesforce/blip2-opt-2.7b", "a" * 40, bucket=MODELS)
    outcome = _run(
        definition,
        {
            "dataset": "vqa/shirts/",
            "hyperparameters": {"learning_rate": 2e-05, "epochs": 3, "precision": "bf16"},
            "baseModel": "Salesforce/blip2-opt-2.7b",
            "baseModelRevision": "a" * 40,
        },
        tasks,
    )

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
    (job,) = jobs
    name = job["TrainingJobName"]
    assert name == JOB_NAME
    assert len(name) <= 63
    assert JOB_NAME_PATTERN.fullmatch(name)
    hyperparameters = job["HyperParameters"]
    assert all(isinstance(value, str) for value in hyperparameters.values())
    assert hyperparameters["learning_rate"] == "0.00002"
    assert hyperparameters["epochs"] == "3"
    assert hyperparameters["precision"] == "bf16"
    assert hyperparameters["base_model"] == "Salesforce/blip2-opt-2.7b"
    assert hyperparameters["base_model_revision"] == "a" * 40
    # train.py checks the staged files against the manifest the record names.
    assert hyperparameters["base_model_manifest_sha256"] == record["manifestSha256"]
    assert "start_from" not in hyperparameters
    # Defaults stay where no override is given.
    assert hyperparameters["lora_r"] == "8"
    assert hyperparameters["sagemaker_program"] == "vqa/train.py"
    uris = {
        channel["ChannelName"]: channel["DataSource"]["S3DataSource"]["S3Uri"]
        for channel in job["InputDataConfig"]
    }
    code = uris.pop("code")
    assert code.startswith(f"s3://cdk-hnb659fds-assets-{ACCOUNT}-{REGION}/")
    assert hyperparameters["sagemaker_submit_directory"] == (
        "/opt/ml/input/data/code/" + code.rsplit("/", 1)[1]
    )
    assert uris == {
        "train": f"s3://{DATASETS}/vqa/shirts/train/",
        "validation": f"s3://{DATASETS}/vqa/shirts/validation/",
        "model": f"s3://{MODELS}/base-models/Salesforce/blip2-opt-2.7b/{'a' * 40}/",
    }
    assert job["EnableNetworkIsolation"] is True
    assert job["ResourceConfig"]["InstanceCount"] == 1
    assert ssm.get_parameter(Name=PARAMETER)["Parameter"]["Value"] == ARTIFACT
    assert outcome.output == {
        "trainingJobName": JOB_NAME,
        "modelDataUrl": ARTIFACT,
        "modelDataUrlParameter": PARAMETER,
    }


def test_a_failed_job_ends_in_training_failed_with_its_reason(definition: dict[str, Any]) -> None:
    reason = "AlgorithmError: CUDA out of memory"

    def tasks(resource: str, arguments: Any) -> Any:
        if resource == GET_PARAMETER:
            return record_parameter(arguments["Name"], bucket=MODELS)
        assert resource == CREATE_JOB
        # What createTrainingJob.sync reports: the DescribeTrainingJob answer as the cause.
        cause = {
            "TrainingJobName": arguments["TrainingJobName"],
            "TrainingJobStatus": "Failed",
            "FailureReason": reason,
        }
        raise TaskFailedError("States.TaskFailed", json.dumps(cause))

    outcome = _run(definition, {"dataset": "vqa/shirts/"}, tasks)

    assert outcome.status == "FAILED"
    assert outcome.path[-1] == "TrainingFailed"
    assert outcome.error == "States.TaskFailed"
    assert outcome.cause == f"training job {JOB_NAME} failed: {reason}"


# ---------------------------------------------------------------------------------------------
# Where the base model comes from
# ---------------------------------------------------------------------------------------------


def test_a_model_that_is_not_staged_stops_before_any_job_with_the_command(
    definition: dict[str, Any], ssm: Any
) -> None:
    def tasks(resource: str, arguments: Any) -> Any:
        assert resource == GET_PARAMETER, "no job may start"
        return call_aws_sdk(ssm, "getParameter", arguments)

    outcome = _run(definition, {"dataset": "vqa/shirts/"}, tasks)

    assert outcome.status == "FAILED"
    assert outcome.path[-1] == "BaseModelNotStaged"
    assert outcome.error == "BaseModelNotStaged"
    assert (
        "`atelier models stage Salesforce/blip2-flan-t5-xl "
        "--revision 0eb0d3b46c14c1f8c7680bca2693baafdb90bb28`"
    ) in outcome.cause


def test_the_configured_model_is_read_from_its_record(definition: dict[str, Any]) -> None:
    jobs: list[dict[str, Any]] = []

    def tasks(resource: str, arguments: Any) -> Any:
        if resource == GET_PARAMETER:
            assert arguments["Name"] == (
                "/atelier/dev/base-models/Salesforce/blip2-flan-t5-xl/"
                "0eb0d3b46c14c1f8c7680bca2693baafdb90bb28"
            )
            return record_parameter(arguments["Name"], bucket=MODELS)
        if resource == CREATE_JOB:
            _validate_create_training_job(arguments)
            jobs.append(arguments)
            return {"ModelArtifacts": {"S3ModelArtifacts": ARTIFACT}}
        return {"Version": 1}

    outcome = _run(definition, {"dataset": "vqa/shirts/"}, tasks)

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
    (job,) = jobs
    assert job["HyperParameters"]["base_model_manifest_sha256"] == manifest_sha256(
        "Salesforce/blip2-flan-t5-xl", "0eb0d3b46c14c1f8c7680bca2693baafdb90bb28"
    )


EARLIER_JOB = "atelier-dev-vqa-20260701-090000-1234abcd"
EARLIER_ARCHIVE = f"s3://{MODELS}/vqa/training/{EARLIER_JOB}/output/model.tar.gz"


def test_a_run_can_start_from_an_earlier_runs_model(definition: dict[str, Any]) -> None:
    jobs: list[dict[str, Any]] = []

    def tasks(resource: str, arguments: Any) -> Any:
        if resource == DESCRIBE_JOB:
            assert arguments == {"TrainingJobName": EARLIER_JOB}
            return {
                "TrainingJobName": EARLIER_JOB,
                "TrainingJobStatus": "Completed",
                "ModelArtifacts": {"S3ModelArtifacts": EARLIER_ARCHIVE},
            }
        if resource == CREATE_JOB:
            _validate_create_training_job(arguments)
            jobs.append(arguments)
            return {"ModelArtifacts": {"S3ModelArtifacts": ARTIFACT}}
        assert resource == PUT_PARAMETER, "no staged record is read"
        return {"Version": 2}

    outcome = _run(definition, {"dataset": "vqa/shirts/", "startFrom": EARLIER_JOB}, tasks)

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
    (job,) = jobs
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"] for c in job["InputDataConfig"]}
    assert channels["model"]["S3Uri"] == EARLIER_ARCHIVE
    hyperparameters = job["HyperParameters"]
    assert hyperparameters["start_from"] == EARLIER_JOB
    assert not {name for name in hyperparameters if name.startswith("base_model")}


@pytest.mark.parametrize(
    ("answer", "error", "cause"),
    [
        (
            {"TrainingJobStatus": "Failed", "FailureReason": "AlgorithmError"},
            "StartFromNotCompleted",
            f"training job {EARLIER_JOB} is Failed, not Completed",
        ),
        (
            TaskFailedError("SageMaker.ValidationException", "Requested resource not found"),
            "StartFromNotFound",
            f"could not read training job {EARLIER_JOB} to start from: "
            "SageMaker.ValidationException: Requested resource not found",
        ),
    ],
)
def test_an_earlier_run_without_a_model_stops_before_any_job(
    definition: dict[str, Any], answer: Any, error: str, cause: str
) -> None:
    def tasks(resource: str, arguments: Any) -> Any:
        assert resource == DESCRIBE_JOB, "no job may start"
        if isinstance(answer, Exception):
            raise answer
        return answer

    outcome = _run(definition, {"dataset": "vqa/shirts/", "startFrom": EARLIER_JOB}, tasks)

    assert outcome.status == "FAILED"
    assert outcome.path[-1] == error
    assert outcome.cause.startswith(cause)


def test_staged_records_name_their_files_in_the_models_bucket() -> None:
    record = staged_record("org/model", "b" * 40, bucket=MODELS)
    assert record["uri"] == f"s3://{MODELS}/base-models/org/model/{'b' * 40}/"
