"""Running `atelier` commands in tests: CliRunner with swapped hooks, and a stage's published
names in moto's SSM."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import boto3
from botocore.stub import Stubber
from typer.testing import CliRunner, Result

from atelier_cli.main import app
from atelier_cli.runtime import Hooks

REGION = "us-east-1"
PREFIX = "atelier"
STAGE = "dev"


def no_sleep(seconds: float) -> None:
    del seconds


def invoke(args: Sequence[str], *, hooks: Hooks | None = None, input: str | None = None) -> Result:
    """`atelier <args>` in-process; polling commands never really sleep, and CloudFormation
    knows no stack unless `hooks` say otherwise."""
    return CliRunner().invoke(
        app, list(args), obj=hooks or default_hooks(), input=input, catch_exceptions=False
    )


def json_document(result: Result) -> dict[str, Any]:
    """The one JSON document a `--json` command printed, checked against the common schema."""
    document = json.loads(result.stdout)
    assert document["version"] == 1
    assert isinstance(document["command"], str)
    if document["ok"]:
        assert set(document) == {"version", "command", "ok", "result"}
        assert isinstance(document["result"], dict)
    else:
        assert set(document) == {"version", "command", "ok", "error"}
        assert set(document["error"]) <= {"code", "message", "fix", "details"}
        assert document["error"]["code"]
        assert document["error"]["message"]
    return document


def publish(section: str, name: str, value: str, *, stage: str = STAGE) -> None:
    """What a stack (or a workflow) publishes: `/<prefix>/<stage>/<section>/<name>` in SSM."""
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=f"/{PREFIX}/{stage}/{section}/{name}", Value=value, Type="String", Overwrite=True
    )


def client_factory(**stubbed: Any) -> Callable[[str, str], Any]:
    """For `Hooks.client_factory`: the given clients by service (stubbed ones), moto-backed
    boto3 clients for every other service."""

    def factory(service: str, region: str) -> Any:
        return stubbed.get(service) or boto3.client(service, region_name=region)

    return factory


def cloudformation_without_stacks(calls: int = 6) -> Any:
    """A CloudFormation client that knows no stack, for `calls` DescribeStacks calls (moto's
    CloudFormation needs packages this project does not install)."""
    client = boto3.client("cloudformation", region_name=REGION)
    stubber = Stubber(client)
    for _ in range(calls):
        stubber.add_client_error(
            "describe_stacks",
            service_error_code="ValidationError",
            service_message="Stack with id x does not exist",
            http_status_code=400,
        )
    stubber.activate()
    return client


def default_hooks(**stubbed: Any) -> Hooks:
    """Hooks whose clients are `stubbed` by service, moto's otherwise; CloudFormation knows no
    stack unless given."""
    stubbed.setdefault("cloudformation", cloudformation_without_stacks())
    return Hooks(client_factory=client_factory(**stubbed), sleep=no_sleep)


ROLE_ARN = "arn:aws:iam::123456789012:role/workflow"
WORKFLOW_DEFINITION = '{"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}'


def deploy_workflow(section: str, name: str, state_machine: str) -> str:
    """A state machine in moto, published under `/<prefix>/<stage>/<section>/<name>` as the
    stack does (moto does not run definitions: executions stay RUNNING)."""
    arn: str = boto3.client("stepfunctions", region_name=REGION).create_state_machine(
        name=state_machine, definition=WORKFLOW_DEFINITION, roleArn=ROLE_ARN
    )["stateMachineArn"]
    publish(section, name, arn)
    return arn


def execution_input(execution_arn: str) -> Any:
    description = boto3.client("stepfunctions", region_name=REGION).describe_execution(
        executionArn=execution_arn
    )
    return json.loads(description["input"])
