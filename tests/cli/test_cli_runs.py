"""`atelier jobs list|watch` and `atelier describe-catalog`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from atelier_cli.errors import ExitCode
from atelier_cli.executions import job_in
from atelier_cli.runtime import Hooks
from infra.models import trained_models
from tests.cli_support import (
    REGION,
    client_factory,
    cloudformation_without_stacks,
    default_hooks,
    deploy_workflow,
    execution_input,
    invoke,
    json_document,
    no_sleep,
    publish,
)
from tests.support import SynthesizedApp
from tests.templates import state_machine_definition

pytestmark = pytest.mark.integration


def start(state_machine_arn: str, name: str) -> str:
    arn: str = boto3.client("stepfunctions", region_name=REGION).start_execution(
        stateMachineArn=state_machine_arn, name=name, input="{}"
    )["executionArn"]
    return arn


# --- jobs list ---------------------------------------------------------------------------------


@mock_aws
def test_list_merges_the_workflows_runs_and_skips_stacks_not_deployed() -> None:
    # Given the training and bedrock stacks (not the catalog stack), and runs of two workflows
    vqa = deploy_workflow("training", "vqa-state-machine-arn", "atelier-dev-vqa-training")
    # (every other training workflow of the registry, deployed but without runs)
    for name in [m.training.workflow for m in trained_models() if m.training][1:]:
        deploy_workflow("training", f"{name}-state-machine-arn", f"atelier-dev-{name}-training")
    titan = deploy_workflow(
        "bedrock", "titan-customize-state-machine-arn", "atelier-dev-titan-customize"
    )
    deploy_workflow("bedrock", "titan-release-state-machine-arn", "atelier-dev-titan-release")
    start(vqa, "vqa-1")
    start(titan, "titan-1")
    start(vqa, "vqa-2")

    # When
    result = invoke(["--json", "jobs", "list"])

    # Then
    assert result.exit_code == 0, result.output
    document = json_document(result)["result"]
    assert sorted((run["kind"], run["name"]) for run in document["runs"]) == [
        ("titan", "titan-1"),
        ("vqa", "vqa-1"),
        ("vqa", "vqa-2"),
    ]
    starts = [run["startDate"] for run in document["runs"]]
    assert starts == sorted(starts, reverse=True)
    assert {run["status"] for run in document["runs"]} == {"RUNNING"}
    (skipped,) = document["skipped"]
    assert skipped.startswith("catalog: stack atelier-dev-catalog is not deployed")


@mock_aws
def test_list_filters_by_kind_status_and_limit() -> None:
    vqa = deploy_workflow("training", "vqa-state-machine-arn", "atelier-dev-vqa-training")
    for number in range(3):
        start(vqa, f"vqa-{number}")

    running = invoke(["--json", "jobs", "list", "--kind", "vqa", "--status", "RUNNING"])
    failed = invoke(["--json", "jobs", "list", "--kind", "vqa", "--status", "FAILED"])
    limited = invoke(["--json", "jobs", "list", "--kind", "vqa", "--limit", "2"])

    assert len(json_document(running)["result"]["runs"]) == 3
    assert json_document(failed)["result"]["runs"] == []
    assert len(json_document(limited)["result"]["runs"]) == 2


@mock_aws
def test_list_of_a_kind_whose_stack_is_missing_is_an_error() -> None:
    result = invoke(["--json", "jobs", "list", "--kind", "catalog"])

    assert result.exit_code == ExitCode.NOT_DEPLOYED
    assert "atelier-dev-catalog" in json_document(result)["error"]["message"]


def test_list_refuses_an_unknown_kind() -> None:
    result = invoke(["jobs", "list", "--kind", "sdxl"])

    assert result.exit_code == ExitCode.USAGE


@mock_aws
def test_list_as_text_is_a_table() -> None:
    vqa = deploy_workflow("training", "vqa-state-machine-arn", "atelier-dev-vqa-training")
    start(vqa, "vqa-1")

    result = invoke(["jobs", "list", "--kind", "vqa"])

    assert result.exit_code == 0
    assert "vqa-1" in result.stdout
    assert "RUNNING" in result.stdout


# --- jobs watch --------------------------------------------------------------------------------


def described(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "executionArn": "arn:aws:states:us-east-1:123456789012:execution:m:e",
        "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:m",
        "name": "e",
        "status": status,
        "startDate": datetime(2026, 11, 22, tzinfo=UTC),
        **extra,
    }


def titan_history() -> dict[str, Any]:
    stamp = datetime(2026, 11, 22, tzinfo=UTC)
    return {
        "events": [
            {
                "timestamp": stamp,
                "id": 3,
                "type": "TaskScheduled",
                "taskScheduledEventDetails": {
                    "resourceType": "aws-sdk:bedrock",
                    "resource": "createModelCustomizationJob",
                    "region": REGION,
                    "parameters": '{"JobName": "atelier-dev-titan-1", '
                    '"CustomModelName": "atelier-dev-titan-1", "RoleArn": "r"}',
                },
            },
            {
                "timestamp": stamp,
                "id": 2,
                "type": "TaskStateEntered",
                "stateEnteredEventDetails": {"name": "Create customization job"},
            },
        ]
    }


EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:m:e"


@pytest.mark.parametrize(
    ("final", "exit_code"),
    [
        ("SUCCEEDED", ExitCode.OK),
        ("FAILED", ExitCode.FAILED),
        ("TIMED_OUT", ExitCode.FAILED),
        ("ABORTED", ExitCode.FAILED),
    ],
)
def test_watch_follows_a_customization_until_it_ends(final: str, exit_code: int) -> None:
    stepfunctions = boto3.client("stepfunctions", region_name=REGION)
    bedrock = boto3.client("bedrock", region_name=REGION)
    waits: list[float] = []
    with Stubber(stepfunctions) as sfn, Stubber(bedrock) as bedrock_stub:
        for status in ("RUNNING", "RUNNING", final):
            extra = (
                {"error": "States.Timeout", "cause": "took too long"}
                if final != "SUCCEEDED"
                else {}
            )
            sfn.add_response(
                "describe_execution",
                described(status, **(extra if status == final else {})),
                {"executionArn": EXECUTION},
            )
            sfn.add_response("get_execution_history", titan_history())
            bedrock_stub.add_response(
                "get_model_customization_job",
                {
                    "jobArn": "arn:aws:bedrock:us-east-1:123456789012:model-customization-job/x",
                    "jobName": "atelier-dev-titan-1",
                    "outputModelName": "atelier-dev-titan-1",
                    "roleArn": "arn:aws:iam::123456789012:role/r",
                    "creationTime": datetime(2026, 11, 22, tzinfo=UTC),
                    "baseModelArn": "arn:aws:bedrock:us-east-1::foundation-model/t",
                    "trainingDataConfig": {"s3Uri": "s3://d/titan/p/m.jsonl"},
                    "validationDataConfig": {"validators": []},
                    "outputDataConfig": {"s3Uri": "s3://m/titan/"},
                    "hyperParameters": {},
                    "status": "InProgress" if status == "RUNNING" else "Completed",
                },
                {"jobIdentifier": "atelier-dev-titan-1"},
            )
        hooks = Hooks(
            client_factory=client_factory(
                stepfunctions=stepfunctions,
                bedrock=bedrock,
                cloudformation=cloudformation_without_stacks(),
            ),
            sleep=waits.append,
        )

        result = invoke(["--json", "jobs", "watch", EXECUTION, "--interval", "45"], hooks=hooks)

    assert result.exit_code == exit_code, result.output
    document = json_document(result)
    assert waits == [45, 45]
    if final == "SUCCEEDED":
        job = document["result"]["job"]
        assert job["kind"] == "model-customization-job"
        assert job["name"] == "atelier-dev-titan-1"
        assert job["status"] == "Completed"
    else:
        assert document["error"]["code"] == f"execution_{final.lower()}"
        assert document["error"]["details"]["error"] == "States.Timeout"


def test_watch_prints_each_change_once_on_stderr() -> None:
    stepfunctions = boto3.client("stepfunctions", region_name=REGION)
    bedrock = boto3.client("bedrock", region_name=REGION)
    with Stubber(stepfunctions) as sfn, Stubber(bedrock) as bedrock_stub:
        for status in ("RUNNING", "RUNNING", "SUCCEEDED"):
            sfn.add_response("describe_execution", described(status))
            sfn.add_response("get_execution_history", titan_history())
            bedrock_stub.add_client_error(
                "get_model_customization_job", service_error_code="AccessDeniedException"
            )
        hooks = default_hooks(stepfunctions=stepfunctions, bedrock=bedrock)

        result = invoke(["jobs", "watch", EXECUTION], hooks=hooks)

    assert result.exit_code == 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("RUNNING | step Create customization job")
    assert "model-customization-job atelier-dev-titan-1: ?" in lines[0]


def test_watch_timeout_is_exit_5_and_the_run_keeps_going() -> None:
    stepfunctions = boto3.client("stepfunctions", region_name=REGION)
    clock = iter([0.0, 100.0, 200.0, 300.0])
    with Stubber(stepfunctions) as sfn:
        for _ in range(3):
            sfn.add_response("describe_execution", described("RUNNING"))
            sfn.add_response("get_execution_history", {"events": []})
        hooks = Hooks(
            client_factory=client_factory(
                stepfunctions=stepfunctions, cloudformation=cloudformation_without_stacks()
            ),
            sleep=no_sleep,
            clock=lambda: next(clock),
        )

        result = invoke(["--json", "jobs", "watch", EXECUTION, "--timeout", "250"], hooks=hooks)

    assert result.exit_code == ExitCode.SERVICE
    error = json_document(result)["error"]
    assert error["code"] == "watch_timeout"
    assert "keeps running" in error["message"]
    assert f"jobs watch {EXECUTION}" in error["fix"]


@mock_aws
def test_watch_finds_a_run_by_name() -> None:
    vqa = deploy_workflow("training", "vqa-state-machine-arn", "atelier-dev-vqa-training")
    arn = start(vqa, "vqa-1")
    clock = iter([0.0, 10.0])
    hooks = default_hooks()
    hooks.clock = lambda: next(clock)

    result = invoke(["--json", "jobs", "watch", "vqa-1", "--timeout", "5"], hooks=hooks)

    # moto's executions never end: the watch times out, having found the run by its name
    assert result.exit_code == ExitCode.SERVICE
    assert json_document(result)["error"]["details"]["executionArn"] == arn


@mock_aws
def test_watch_of_an_unknown_name_is_not_found() -> None:
    deploy_workflow("training", "vqa-state-machine-arn", "atelier-dev-vqa-training")

    result = invoke(["--json", "jobs", "watch", "nope"])

    assert result.exit_code == ExitCode.NOT_DEPLOYED
    assert json_document(result)["error"]["code"] == "execution_not_found"


def test_watch_refuses_an_arn_that_is_not_an_execution() -> None:
    result = invoke(["jobs", "watch", "arn:aws:states:us-east-1:1:stateMachine:m"])

    assert result.exit_code == ExitCode.USAGE
    assert "not a Step Functions execution ARN" in result.stderr


# --- describe-catalog ---------------------------------------------------------------------------


def data_stack() -> None:
    for name in ("uploads", "datasets", "results"):
        publish("data", f"{name}-bucket", f"atelier-dev-{name}")


@mock_aws
def test_describe_catalog_starts_the_workflow_with_its_input() -> None:
    data_stack()
    arn = deploy_workflow(
        "catalog", "describe-catalog-state-machine-arn", "atelier-dev-describe-catalog"
    )

    result = invoke(
        [
            "--json",
            "describe-catalog",
            "s3://atelier-dev-uploads/catalog/2026-11/manifest.csv",
            "-l",
            "en",
            "--language",
            "de",
            "--attribute-set",
            "shirts",
            "--force",
        ]
    )

    assert result.exit_code == 0, result.output
    started = json_document(result)["result"]
    assert started["stateMachineArn"] == arn
    assert execution_input(started["executionArn"]) == {
        "source": "s3://atelier-dev-uploads/catalog/2026-11/manifest.csv",
        "languages": ["en", "de"],
        "attributeSet": "shirts",
        "force": True,
    }


@mock_aws
@pytest.mark.parametrize(
    ("source", "code"),
    [
        ("./manifest.csv", "invalid_argument"),
        ("s3://someone-elses-bucket/images/", "source_bucket_not_allowed"),
        ("s3://atelier-dev-uploads/catalog/manifest.xlsx", "invalid_argument"),
    ],
)
def test_describe_catalog_refuses_sources_the_workflow_would(source: str, code: str) -> None:
    data_stack()
    deploy_workflow("catalog", "describe-catalog-state-machine-arn", "m")

    result = invoke(["--json", "describe-catalog", source])

    assert result.exit_code == ExitCode.USAGE
    assert json_document(result)["error"]["code"] == code


def test_describe_catalog_wait_returns_the_run_summary() -> None:
    ssm = boto3.client("ssm", region_name=REGION)
    stepfunctions = boto3.client("stepfunctions", region_name=REGION)
    parameters = {
        "/atelier/dev/data/uploads-bucket": "atelier-dev-uploads",
        "/atelier/dev/data/datasets-bucket": "atelier-dev-datasets",
        "/atelier/dev/data/results-bucket": "atelier-dev-results",
        "/atelier/dev/catalog/describe-catalog-state-machine-arn": "arn:aws:states:us-east-1:"
        "123456789012:stateMachine:atelier-dev-describe-catalog",
    }
    summary = {"runId": "20261122000000-abcd1234", "described": 120, "failed": 6}
    with Stubber(ssm) as ssm_stub, Stubber(stepfunctions) as sfn:
        ssm_stub.add_response(
            "get_parameters_by_path",
            {"Parameters": [{"Name": k, "Value": v} for k, v in parameters.items()]},
        )
        sfn.add_response(
            "start_execution",
            {"executionArn": EXECUTION, "startDate": datetime(2026, 11, 22, tzinfo=UTC)},
        )
        sfn.add_response("describe_execution", described("SUCCEEDED", output=json.dumps(summary)))
        sfn.add_response("get_execution_history", {"events": []})
        hooks = default_hooks(ssm=ssm, stepfunctions=stepfunctions)

        result = invoke(
            ["--json", "describe-catalog", "s3://atelier-dev-uploads/shirts/", "--wait"],
            hooks=hooks,
        )
    assert result.exit_code == 0, result.output
    assert json_document(result)["result"]["summary"] == summary


@pytest.mark.infra
@pytest.mark.parametrize(
    ("stack", "machine", "resource", "kind"),
    [
        ("training", "VqaTraining", "createTrainingJob.sync", "training-job"),
        ("training", "InpaintingTraining", "createTrainingJob.sync", "training-job"),
        ("bedrock", "TitanCustomize", "createModelCustomizationJob", "model-customization-job"),
    ],
)
def test_watch_finds_the_job_in_the_real_workflows_task_arguments(
    variant_app: SynthesizedApp, stack: str, machine: str, resource: str, kind: str
) -> None:
    """The job is read from the arguments the workflow schedules its task with: the names
    must be the ones the deployed definitions use. The variant synthesis: the shipped stages
    build no customize workflow (titan.base_model_id null)."""
    definition = state_machine_definition(variant_app.template(f"-{stack}"), machine)
    (task,) = [
        state for state in all_states(definition) if state.get("Resource", "").endswith(resource)
    ]
    scheduled = {
        "type": "TaskScheduled",
        "taskScheduledEventDetails": {"parameters": json.dumps(task["Arguments"])},
    }

    job = job_in([scheduled])

    assert job is not None
    assert job.kind == kind
    assert job.name == task["Arguments"].get("TrainingJobName", task["Arguments"].get("JobName"))


def all_states(definition: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for state in definition["States"].values():
        yield state
        for branch in state.get("Branches", []):
            yield from all_states(branch)
        if "ItemProcessor" in state:
            yield from all_states(state["ItemProcessor"])
