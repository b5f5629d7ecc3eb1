"""`atelier train vqa|dreambooth|styling` and `atelier customize titan`: the exact input each
workflow gets, local refusals that start nothing, and `--wait`."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from atelier_cli.commands.training import TITAN_MANIFEST, parse_value
from atelier_cli.errors import ExitCode
from atelier_cli.executions import latest_metrics
from atelier_cli.output import Printer
from atelier_cli.runtime import GlobalOptions, Hooks, Run
from infra.config import load_stage_config
from infra.constructs.model_lifecycle import stage_inventory
from tests.cli_support import (
    REGION,
    client_factory,
    default_hooks,
    deploy_workflow,
    execution_input,
    invoke,
    json_document,
    publish,
)
from tests.support import cdk_json_context

pytestmark = pytest.mark.integration

VQA_MACHINE = "atelier-dev-vqa-training"


def executions(state_machine_arn: str) -> list[dict[str, Any]]:
    client = boto3.client("stepfunctions", region_name=REGION)
    found: list[dict[str, Any]] = client.list_executions(stateMachineArn=state_machine_arn)[
        "executions"
    ]
    return found


# --- the input each workflow gets ---------------------------------------------------------------


@mock_aws
def test_train_vqa_starts_the_workflow_with_typed_hyperparameters() -> None:
    arn = deploy_workflow("training", "vqa-state-machine-arn", VQA_MACHINE)

    result = invoke(
        [
            "--json",
            "train",
            "vqa",
            "--dataset",
            "vqa/shirts/",
            "--hp",
            "epochs=3",
            "--hp",
            "learning_rate=2e-4",
            "--hp",
            "lora_target_modules=q,v",
            "--base-model",
            "Salesforce/blip2-flan-t5-xl@0eb0d3b46c14c1f8c7680bca2693baafdb90bb28",
        ]
    )

    assert result.exit_code == 0, result.output
    started = json_document(result)["result"]
    assert started["stateMachineArn"] == arn
    assert execution_input(started["executionArn"]) == {
        "dataset": "vqa/shirts/",
        "hyperparameters": {"epochs": 3, "learning_rate": 0.0002, "lora_target_modules": "q,v"},
        "baseModel": "Salesforce/blip2-flan-t5-xl",
        "baseModelRevision": "0eb0d3b46c14c1f8c7680bca2693baafdb90bb28",
    }
    assert re.fullmatch(r"vqa-\d{8}-\d{6}-[0-9a-f]{6}", started["name"])
    assert started["consoleUrl"].startswith(
        "https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1#/v2/executions/"
    )
    assert started["watch"] == f"atelier --stage dev jobs watch {started['executionArn']}"
    assert started["next"] == "atelier endpoint use vqa && make deploy STAGE=dev"


@mock_aws
@pytest.mark.parametrize(
    ("model", "workflow", "endpoint"),
    [
        ("dreambooth", "dreambooth", "dreambooth"),
        ("styling", "inpainting", "styling"),
        # The command's name before the names were made one, kept for a release.
        ("inpainting", "inpainting", "styling"),
    ],
)
def test_train_dreambooth_workflows_take_booleans_and_point_at_their_endpoint(
    model: str, workflow: str, endpoint: str
) -> None:
    deploy_workflow("training", f"{workflow}-state-machine-arn", f"atelier-dev-{workflow}-training")

    result = invoke(
        [
            "--json",
            "train",
            model,
            "--dataset",
            "dreambooth/dog/",
            "--hp",
            "with_prior_preservation=true",
            "--hp",
            "max_steps=400",
        ]
    )

    assert result.exit_code == 0, result.output
    started = json_document(result)["result"]
    assert execution_input(started["executionArn"]) == {
        "dataset": "dreambooth/dog/",
        "hyperparameters": {"with_prior_preservation": True, "max_steps": 400},
    }
    assert started["next"].startswith(f"atelier endpoint use {endpoint} ")


@mock_aws
@pytest.mark.parametrize(("command", "deprecated"), [("styling", False), ("inpainting", True)])
def test_the_old_styling_command_says_it_is_deprecated(command: str, deprecated: bool) -> None:
    deploy_workflow("training", "inpainting-state-machine-arn", "atelier-dev-inpainting-training")

    result = invoke(["train", command, "--dataset", "dreambooth/dog/"])

    assert result.exit_code == 0, result.output
    notice = "atelier train inpainting is deprecated; use atelier train styling"
    assert (notice in result.stderr) is deprecated


@mock_aws
def test_customize_titan_builds_the_customize_input() -> None:
    deploy_workflow("bedrock", "titan-customize-state-machine-arn", "atelier-dev-titan-customize")

    result = invoke(
        [
            "customize",
            "titan",
            "--manifest",
            "titan/pets/manifest.jsonl",
            "--steps",
            "5000",
            "--batch-size",
            "8",
            "--learning-rate",
            "0.00001",
            "--model-units",
            "1",
            "--commitment",
            "none",
            "--ttl-hours",
            "8",
            "--model-name",
            "pets-v1",
            "--json",
        ]
    )

    assert result.exit_code == 0, result.output
    started = json_document(result)["result"]
    assert execution_input(started["executionArn"]) == {
        "manifest": "titan/pets/manifest.jsonl",
        "customModelName": "pets-v1",
        "hyperparameters": {"stepCount": 5000, "batchSize": 8, "learningRate": 1e-05},
        "modelUnits": 1,
        # The workflow reads null as "no commitment".
        "commitment": None,
        "ttlHours": 8,
    }


@mock_aws
def test_customize_titan_sends_only_what_was_given() -> None:
    deploy_workflow("bedrock", "titan-customize-state-machine-arn", "atelier-dev-titan-customize")

    result = invoke(["--json", "customize", "titan", "--manifest", "titan/a/b/m.jsonl"])

    document = json_document(result)["result"]
    assert execution_input(document["executionArn"]) == {"manifest": "titan/a/b/m.jsonl"}


# --- refused before anything starts -------------------------------------------------------------


@mock_aws
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--dataset", "dreambooth/dog/"], "not a folder under vqa/"),
        (["--dataset", "vqa/shirts"], "not a folder under vqa/"),
        (["--dataset", "vqa/../x/"], "not a folder under vqa/"),
        (["--dataset", "vqa/shirts/", "--hp", "epochs"], "is not name=value"),
        (["--dataset", "vqa/shirts/", "--hp", "epoch=3"], "not a hyperparameter"),
        (["--dataset", "vqa/shirts/", "--hp", "epochs=3", "--hp", "epochs=4"], "given twice"),
        (["--dataset", "vqa/shirts/", "--base-model", "blip2"], "not a Hugging Face model id"),
        (
            ["--dataset", "vqa/shirts/", "--base-model", "Salesforce/blip2-flan-t5-xl"],
            "(org/name@<40-hex commit>)",
        ),
        (
            ["--dataset", "vqa/shirts/", "--base-model", "Salesforce/blip2-flan-t5-xl@main"],
            "hub models only at a commit",
        ),
    ],
)
def test_train_refuses_bad_input_and_starts_nothing(arguments: list[str], message: str) -> None:
    arn = deploy_workflow("training", "vqa-state-machine-arn", VQA_MACHINE)

    result = invoke(["--json", "train", "vqa", *arguments])

    assert result.exit_code == ExitCode.USAGE
    error = json_document(result)["error"]
    assert message in error["message"]
    assert error["fix"]
    assert executions(arn) == []


@mock_aws
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--manifest", "pets/manifest.jsonl"], "not a .jsonl key in a folder under titan/"),
        (["--manifest", "titan/manifest.jsonl"], "not a .jsonl key in a folder under titan/"),
        (["--manifest", "titan/pets/m.json"], "not a .jsonl key"),
        (["--manifest", "titan/pets/m.jsonl", "--model-name", "a--b"], "--model-name"),
    ],
)
def test_customize_refuses_bad_input(arguments: list[str], message: str) -> None:
    arn = deploy_workflow("bedrock", "titan-customize-state-machine-arn", "c")

    result = invoke(["--json", "customize", "titan", *arguments])

    assert result.exit_code == ExitCode.USAGE
    assert message in json_document(result)["error"]["message"]
    assert executions(arn) == []


@pytest.mark.parametrize(
    "arguments",
    [
        ["--steps", "9"],
        ["--steps", "40001"],
        ["--batch-size", "4"],
        ["--learning-rate", "2"],
        ["--model-units", "0"],
        ["--commitment", "OneYear"],
        ["--ttl-hours", "0"],
    ],
)
def test_customize_ranges_are_spec_ranges(arguments: list[str]) -> None:
    result = invoke(["customize", "titan", "--manifest", "titan/p/m.jsonl", *arguments])

    assert result.exit_code == ExitCode.USAGE
    assert arguments[0] in result.output


@mock_aws
def test_customize_titan_without_an_image_model_names_the_setting() -> None:
    # The shipped dev stage: the inventory says titan.base_model_id is null, no workflow is
    # published (tests/infra/test_bedrock_stack.py checks the stack publishes exactly that).
    inventory = stage_inventory(load_stage_config(cdk_json_context(), "dev"))
    publish("bedrock", "model-inventory", json.dumps(inventory))

    result = invoke(["--json", "customize", "titan", "--manifest", "titan/pets/m.jsonl"])

    assert result.exit_code == ExitCode.NOT_DEPLOYED
    error = json_document(result)["error"]
    assert error["code"] == "not_configured"
    assert "titan.base_model_id is null" in error["message"]
    assert "no Bedrock image model can be fine-tuned today" in error["message"]
    assert "docs/image-customization.md" in error["fix"]
    assert "make deploy STAGE=dev" in error["fix"]


@mock_aws
def test_customize_titan_without_the_bedrock_stack_names_the_stack() -> None:
    result = invoke(["--json", "customize", "titan", "--manifest", "titan/pets/m.jsonl"])

    assert result.exit_code == ExitCode.NOT_DEPLOYED
    error = json_document(result)["error"]
    assert error["code"] == "stack_not_deployed"
    assert "atelier-dev-bedrock" in error["message"]


@mock_aws
def test_a_missing_training_stack_is_named() -> None:
    result = invoke(["--json", "train", "vqa", "--dataset", "vqa/shirts/"])

    assert result.exit_code == ExitCode.NOT_DEPLOYED
    error = json_document(result)["error"]
    assert "stack atelier-dev-training is not deployed" in error["message"]
    assert "npx cdk deploy atelier-dev-training" in error["fix"]


@pytest.mark.parametrize(
    ("text", "value"),
    [("3", 3), ("2e-4", 2e-4), ("true", True), ("False", False), ("q,v", "q,v"), ("1.0", 1.0)],
)
def test_hyperparameter_values_are_typed(text: str, value: object) -> None:
    parsed = parse_value(text)

    assert parsed == value
    assert type(parsed) is type(value)


# --- --wait ----------------------------------------------------------------------------------


def history(*events: dict[str, Any]) -> dict[str, Any]:
    stamped = []
    for number, event in enumerate(events, start=1):
        stamped.append({"timestamp": datetime(2026, 11, 22, tzinfo=UTC), "id": number, **event})
    return {"events": list(reversed(stamped))}


def entered(name: str) -> dict[str, Any]:
    return {"type": "TaskStateEntered", "stateEnteredEventDetails": {"name": name}}


def scheduled_training(job: str) -> dict[str, Any]:
    return {
        "type": "TaskScheduled",
        "taskScheduledEventDetails": {
            "resourceType": "sagemaker",
            "resource": "createTrainingJob.sync",
            "region": REGION,
            "parameters": f'{{"TrainingJobName": "{job}", "RoleArn": "r"}}',
        },
    }


def description(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "executionArn": "arn:aws:states:us-east-1:123456789012:execution:m:e",
        "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:m",
        "name": "e",
        "status": status,
        "startDate": datetime(2026, 11, 22, tzinfo=UTC),
        **extra,
    }


def test_wait_follows_the_training_job_and_returns_its_metrics() -> None:
    # Given a workflow that runs one training job and succeeds on the second look
    ssm = boto3.client("ssm", region_name=REGION)
    stepfunctions = boto3.client("stepfunctions", region_name=REGION)
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    machine = "arn:aws:states:us-east-1:123456789012:stateMachine:atelier-dev-vqa-training"
    execution = "arn:aws:states:us-east-1:123456789012:execution:m:e"
    with Stubber(ssm) as ssm_stub, Stubber(stepfunctions) as sfn, Stubber(sagemaker) as sm:
        ssm_stub.add_response(
            "get_parameters_by_path",
            {
                "Parameters": [
                    {"Name": "/atelier/dev/training/vqa-state-machine-arn", "Value": machine}
                ]
            },
        )
        sfn.add_response(
            "start_execution",
            {"executionArn": execution, "startDate": datetime(2026, 11, 22, tzinfo=UTC)},
        )
        events = history(entered("Check input"), entered("Train"), scheduled_training("job-1"))
        sfn.add_response("describe_execution", description("RUNNING"))
        sfn.add_response("get_execution_history", events)
        training = {
            "TrainingJobName": "job-1",
            "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/job-1",
            "ModelArtifacts": {"S3ModelArtifacts": "s3://m/model.tar.gz"},
            "AlgorithmSpecification": {"TrainingInputMode": "File"},
            "ResourceConfig": {
                "InstanceType": "ml.g5.2xlarge",
                "InstanceCount": 1,
                "VolumeSizeInGB": 50,
            },
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
            "CreationTime": datetime(2026, 11, 22, tzinfo=UTC),
        }
        sm.add_response(
            "describe_training_job",
            {**training, "TrainingJobStatus": "InProgress", "SecondaryStatus": "Training"},
        )
        sfn.add_response(
            "describe_execution", description("SUCCEEDED", output='{"modelDataUrl": "s3://m"}')
        )
        sfn.add_response("get_execution_history", events)
        sm.add_response(
            "describe_training_job",
            {
                **training,
                "TrainingJobStatus": "Completed",
                "SecondaryStatus": "Completed",
                "FinalMetricDataList": [
                    {"MetricName": "validation_exact_match", "Value": 0.8},
                    {"MetricName": "train_loss", "Value": 0.25},
                ],
            },
        )
        hooks = default_hooks(ssm=ssm, stepfunctions=stepfunctions, sagemaker=sagemaker)

        # When
        result = invoke(
            ["--json", "train", "vqa", "--dataset", "vqa/shirts/", "--wait"], hooks=hooks
        )

    # Then
    assert result.exit_code == 0, result.output
    finished = json_document(result)["result"]["execution"]
    assert finished["status"] == "SUCCEEDED"
    assert finished["output"] == {"modelDataUrl": "s3://m"}
    assert finished["job"] == {
        "kind": "training-job",
        "name": "job-1",
        "status": "Completed",
        "detail": "Completed",
        "metrics": {"validation_exact_match": 0.8, "train_loss": 0.25},
    }


def test_wait_on_a_failed_run_exits_6_with_its_error_and_cause() -> None:
    ssm = boto3.client("ssm", region_name=REGION)
    stepfunctions = boto3.client("stepfunctions", region_name=REGION)
    machine = "arn:aws:states:us-east-1:123456789012:stateMachine:atelier-dev-titan-customize"
    with Stubber(ssm) as ssm_stub, Stubber(stepfunctions) as sfn:
        ssm_stub.add_response(
            "get_parameters_by_path",
            {
                "Parameters": [
                    {
                        "Name": "/atelier/dev/bedrock/titan-customize-state-machine-arn",
                        "Value": machine,
                    }
                ]
            },
        )
        sfn.add_response(
            "start_execution",
            {
                "executionArn": "arn:aws:states:us-east-1:123456789012:execution:m:e",
                "startDate": datetime(2026, 11, 22, tzinfo=UTC),
            },
        )
        sfn.add_response(
            "describe_execution",
            description("FAILED", error="ManifestRejected", cause="3 images are too small"),
        )
        sfn.add_response("get_execution_history", history(entered("Check manifest")))
        hooks = default_hooks(ssm=ssm, stepfunctions=stepfunctions)

        result = invoke(
            ["--json", "customize", "titan", "--manifest", "titan/p/m.jsonl", "--wait"],
            hooks=hooks,
        )

    assert result.exit_code == ExitCode.FAILED
    error = json_document(result)["error"]
    assert error["code"] == "execution_failed"
    assert "ManifestRejected: 3 images are too small" in error["message"]
    assert error["details"]["cause"] == "3 images are too small"


# --- the CLI's rules are the workflows' rules --------------------------------------------------


def test_hyperparameter_names_are_the_workflows() -> None:
    from infra.config import DREAMBOOTH_HYPERPARAMETER_NAMES, VQA_HYPERPARAMETER_NAMES
    from infra.models import DREAMBOOTH, STYLING, VQA

    assert VQA.training
    assert VQA.training.hyperparameters == VQA_HYPERPARAMETER_NAMES
    for model in (DREAMBOOTH, STYLING):
        assert model.training
        assert model.training.hyperparameters == DREAMBOOTH_HYPERPARAMETER_NAMES


def test_manifest_and_dataset_patterns_are_the_workflows() -> None:
    from atelier_cli.commands.training import (
        BASE_MODEL,
        BASE_MODEL_REVISION,
        CUSTOM_MODEL_NAME,
        DATASET_FOLDERS,
    )
    from infra.constructs.training_workflow import BASE_MODEL_IS_VALID, dataset_is_valid
    from infra.workflows.titan_common import CUSTOM_MODEL_NAME_IS_VALID, MANIFEST_IS_VALID

    def as_jsonata(pattern: str) -> str:
        return "/" + pattern.replace("/", "\\/") + "/"

    assert as_jsonata(TITAN_MANIFEST.pattern) in MANIFEST_IS_VALID
    assert as_jsonata(CUSTOM_MODEL_NAME.pattern) in CUSTOM_MODEL_NAME_IS_VALID
    assert as_jsonata(BASE_MODEL.pattern) in BASE_MODEL_IS_VALID
    assert as_jsonata(BASE_MODEL_REVISION.pattern) in BASE_MODEL_IS_VALID
    assert as_jsonata("^vqa/" + DATASET_FOLDERS + "$") in dataset_is_valid("vqa/")


def test_inputs_use_only_the_fields_the_workflows_accept() -> None:
    from atelier_cli.commands.catalog_run import catalog_input
    from atelier_cli.commands.training import Commitment, titan_input, training_input
    from catalog.logic.sources import START_FIELDS
    from infra.config import TITAN_HYPERPARAMETER_NAMES
    from infra.constructs.training_workflow import INPUT_KEYS
    from infra.models import VQA
    from infra.workflows.titan_common import CUSTOMIZE_INPUT_KEYS

    titan = titan_input(
        manifest="titan/p/m.jsonl",
        model_name="m",
        steps=100,
        batch_size=8,
        learning_rate=1e-5,
        model_units=1,
        commitment=Commitment.one_month,
        ttl_hours=4,
    )
    assert set(titan) == set(CUSTOMIZE_INPUT_KEYS)
    assert set(titan["hyperparameters"]) == set(TITAN_HYPERPARAMETER_NAMES)
    training = training_input(VQA, "vqa/a/", ["epochs=1"], f"org/model@{'a' * 40}")
    # A run starts from a base model or from an earlier job's archive, never both.
    continued = training_input(VQA, "vqa/a/", [], None, "atelier-dev-vqa-1")
    assert set(training) | set(continued) == set(INPUT_KEYS)
    catalog = catalog_input("s3://u/p/", ["en"], "default", True, {"uploads-bucket": "u"})
    assert set(catalog) == set(START_FIELDS)


def test_a_running_training_job_shows_its_newest_metrics_from_cloudwatch() -> None:
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    started = datetime(2026, 11, 22, 11, 0, tzinfo=UTC)
    job = {
        "TrainingJobName": "atelier-dev-vqa-1",
        "CreationTime": started,
        "AlgorithmSpecification": {
            "MetricDefinitions": [
                {"Name": "train_loss", "Regex": " train_loss=(\\S+)"},
                {"Name": "validation_exact_match", "Regex": " validation_exact_match=(\\S+)"},
            ]
        },
    }
    host = [{"Name": "Host", "Value": "atelier-dev-vqa-1/algo-1"}]
    with Stubber(cloudwatch) as stub:
        stub.add_response(
            "get_metric_data",
            {
                "MetricDataResults": [
                    # Newest first (ScanBy TimestampDescending)
                    {"Id": "m0", "Label": "train_loss", "Values": [0.5, 0.9],
                     "Timestamps": [now, started], "StatusCode": "Complete"},
                    {"Id": "m1", "Label": "validation_exact_match", "Values": [],
                     "Timestamps": [], "StatusCode": "Complete"},
                ]
            },
            {
                "MetricDataQueries": [
                    {
                        "Id": f"m{index}",
                        "Label": name,
                        "MetricStat": {
                            "Metric": {
                                "Namespace": "/aws/sagemaker/TrainingJobs",
                                "MetricName": name,
                                "Dimensions": host,
                            },
                            "Period": 60,
                            "Stat": "Average",
                        },
                    }
                    for index, name in enumerate(["train_loss", "validation_exact_match"])
                ],
                "StartTime": started,
                "EndTime": now,
                "ScanBy": "TimestampDescending",
            },
        )  # fmt: skip
        options = GlobalOptions(
            prefix="atelier", stage="dev", region=REGION, profile=None, json=False,
            hooks=Hooks(client_factory=client_factory(cloudwatch=cloudwatch), clock=now.timestamp),
        )  # fmt: skip
        metrics = latest_metrics(Run("jobs watch", options, Printer(json_mode=True)), job)

    # Then the newest value of each metric that has one
    assert metrics == {"train_loss": 0.5}
