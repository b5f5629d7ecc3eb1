"""The synthesized SDXL LoRA training workflow, run state by state (tests/sfn_support.py), and
the hyperparameters it sends read by `sdxl_lora/train.py` as SageMaker passes them.

The workflow is the shared training workflow (tested in depth for VQA and DreamBooth); these tests
pin what is the LoRA's own: its program, its prefixes, its hyperparameters and their parsing, and
that its base model is the staged SDXL base.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.validate import ParamValidator

from infra.config import LORA_HYPERPARAMETER_NAMES
from tests.sfn_support import Interpreter
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
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/atelier-dev-lora-execution"
TOKENS = {
    r"AWS::Partition": "aws",
    r"AWS::Region": REGION,
    r"AWS::AccountId": ACCOUNT,
    r"AWS::URLSuffix": "amazonaws.com",
    r"import:.*ExportsOutputRefDatasets.*": DATASETS,
    r"import:.*ExportsOutputRefModels.*": MODELS,
    r"import:.*DataKey.*Arn.*": KEY_ARN,
    r"LoraExecutionRole[0-9A-F]{8}\.Arn": ROLE_ARN,
}
CREATE_JOB = "arn:aws:states:::sagemaker:createTrainingJob.sync"
SDXL = ("stabilityai/stable-diffusion-xl-base-1.0", "462165984030d82259a11f4367a4eed129e94a7b")
JOB = "atelier-dev-lora-20260725-172000-00000000"
ARCHIVE = f"s3://{MODELS}/lora/training/{JOB}/output/model.tar.gz"


@pytest.fixture(scope="module")
def definition(synthesized_apps: dict[str, SynthesizedApp]) -> dict[str, Any]:
    template = synthesized_apps["dev"].template("-training")
    _, properties = one(template, "AWS::StepFunctions::StateMachine", "LoraTraining")
    assert properties["StateMachineName"] == "atelier-dev-lora-training"
    text = render_definition(properties["DefinitionString"]).replace(
        "${HuggingFaceTrainingRegistries[${AWS::Region}].account}", "763104351884"
    )
    return _definition_with(text, TOKENS)


def _run(definition: dict[str, Any], execution_input: Any) -> dict[str, Any]:
    """The CreateTrainingJob arguments of a run (checked against SageMaker's API model)."""
    created: list[dict[str, Any]] = []
    shape = (
        boto3.client("sagemaker", region_name=REGION)
        .meta.service_model.operation_model("CreateTrainingJob")
        .input_shape
    )

    def tasks(resource: str, arguments: Any) -> Any:
        if resource == GET_PARAMETER:
            return record_parameter(arguments["Name"], bucket=MODELS)
        if resource == CREATE_JOB:
            report = ParamValidator().validate(arguments, shape)
            assert not report.has_errors(), report.generate_report()
            created.append(arguments)
            return {"ModelArtifacts": {"S3ModelArtifacts": ARCHIVE}}
        return {"Version": 1}

    outcome = Interpreter(definition, tasks).run(execution_input)
    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
    (job,) = created
    return job


def test_a_run_trains_the_staged_sdxl_base_into_the_lora_prefix(
    definition: dict[str, Any],
) -> None:
    job = _run(definition, {"dataset": "dreambooth/red-dress/"})
    hyperparameters = job["HyperParameters"]
    assert hyperparameters["sagemaker_program"] == "sdxl_lora/train.py"
    assert (hyperparameters["base_model"], hyperparameters["base_model_revision"]) == SDXL
    assert hyperparameters["base_model_manifest_sha256"] == manifest_sha256(*SDXL)
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"] for c in job["InputDataConfig"]}
    assert channels["training"]["S3Uri"] == f"s3://{DATASETS}/dreambooth/red-dress/"
    assert channels["model"]["S3Uri"] == f"s3://{MODELS}/base-models/{SDXL[0]}/{SDXL[1]}/"
    assert job["OutputDataConfig"]["S3OutputPath"] == f"s3://{MODELS}/lora/training/"
    assert job["ResourceConfig"]["InstanceType"] == "ml.g5.2xlarge"
    assert job["EnableNetworkIsolation"] is True


def test_train_py_parses_every_hyperparameter_the_workflow_sends(
    definition: dict[str, Any], tmp_path: Path
) -> None:
    from sdxl_lora.arguments import parse_args

    # Given a run that overrides the LoRA's own settings and a boolean as an execution may
    overrides = {"rank": 16, "lora_alpha": 32, "train_text_encoder": "true", "max_steps": 800}
    hyperparameters = _run(
        definition, {"dataset": "dreambooth/red-dress/", "hyperparameters": overrides}
    )["HyperParameters"]
    assert set(LORA_HYPERPARAMETER_NAMES) <= set(hyperparameters)

    # When train.py reads them as SageMaker passes them (`--name value`, sagemaker_* included)
    argv = [item for name, value in hyperparameters.items() for item in (f"--{name}", value)]
    env = {"SM_CHANNEL_TRAINING": str(tmp_path / "data"), "SM_MODEL_DIR": str(tmp_path / "model")}
    args = parse_args(argv, env)

    # Then each arrives typed as the config and the execution meant it
    assert (args.rank, args.lora_alpha, args.max_steps) == (16, 32, 800)
    assert args.train_text_encoder is True
    assert args.resolution == 1024
    assert args.gradient_checkpointing is True
    assert args.learning_rate == pytest.approx(1e-4)
    assert (args.base_model, args.base_model_revision) == SDXL
    assert args.base_model_manifest_sha256 == manifest_sha256(*SDXL)


def test_an_unset_alpha_is_the_rank(definition: dict[str, Any], tmp_path: Path) -> None:
    from sdxl_lora.arguments import parse_args

    hyperparameters = _run(definition, {"dataset": "dreambooth/red-dress/"})["HyperParameters"]
    assert hyperparameters["lora_alpha"] == "None"
    argv = [item for name, value in hyperparameters.items() for item in (f"--{name}", value)]
    args = parse_args(argv, {"SM_MODEL_DIR": str(tmp_path)})
    assert args.lora_alpha == args.rank == 4


def test_a_run_cannot_start_from_an_earlier_adapter(definition: dict[str, Any]) -> None:
    def no_task(resource: str, arguments: Any) -> Any:
        raise AssertionError(f"no task expected, got {resource}")

    outcome = Interpreter(definition, no_task).run(
        {"dataset": "dreambooth/red-dress/", "startFrom": JOB}
    )
    assert outcome.status == "FAILED"
    assert outcome.error == "InvalidStartFrom"
    assert "cannot start from an earlier run" in outcome.cause
