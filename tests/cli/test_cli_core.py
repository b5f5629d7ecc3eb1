"""The CLI's core: finding a stage's names (SSM, then stack outputs), errors that name the missing
stack or permission, exit statuses, and the one JSON document every command prints."""

from __future__ import annotations

import json
import re
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from atelier_cli.aws import Aws
from atelier_cli.errors import ExitCode, NotDeployedError
from atelier_cli.main import main
from atelier_cli.resources import Resources, Stage, output_key
from atelier_cli.runtime import Hooks
from atelier_cli.stage_command import SECTIONS
from tests.cli_support import REGION, client_factory, invoke, json_document, no_sleep, publish
from tests.support import SynthesizedApp

pytestmark = pytest.mark.integration


def denied(operation: str) -> dict[str, Any]:
    return {
        "service_error_code": "AccessDeniedException",
        "service_message": "User: arn:aws:iam::123456789012:user/dev is not authorized to "
        f"perform: {operation}",
        "http_status_code": 400,
    }


# --- status --------------------------------------------------------------------------------------


@mock_aws
def test_status_lists_what_each_stack_publishes_and_what_workflows_recorded() -> None:
    # Given a stage whose data and training stacks are deployed and one trained VQA model
    publish("data", "datasets-bucket", "atelier-dev-datasets")
    publish("training", "vqa-state-machine-arn", "arn:aws:states:us-east-1:1:stateMachine:v")
    publish("vqa", "model-data-url", "s3://models/vqa/model.tar.gz")
    # And another stage's names, which must not leak in
    publish("data", "datasets-bucket", "other", stage="prod")

    # When
    result = invoke(["--json", "status"])

    # Then
    assert result.exit_code == 0
    document = json_document(result)
    stacks = {entry["stack"]: entry for entry in document["result"]["stacks"]}
    assert list(stacks) == [f"atelier-dev-{section}" for section in SECTIONS]
    assert stacks["atelier-dev-data"] == {
        "stack": "atelier-dev-data",
        "deployed": True,
        "published": {"datasets-bucket": "atelier-dev-datasets"},
    }
    assert stacks["atelier-dev-training"]["deployed"] is True
    assert stacks["atelier-dev-api"] == {
        "stack": "atelier-dev-api",
        "deployed": False,
        "published": {},
    }
    assert document["result"]["recorded"]["vqa/model-data-url"] == "s3://models/vqa/model.tar.gz"
    assert document["result"]["recorded"]["titan/provisioned-model-arn"] is None
    assert document["result"]["region"] == REGION


@mock_aws
def test_status_honours_stage_prefix_and_region_options() -> None:
    # Given names of a stage "qa" with prefix "shop" in eu-west-1
    boto3.client("ssm", region_name="eu-west-1").put_parameter(
        Name="/shop/qa/data/uploads-bucket", Value="shop-qa-uploads", Type="String"
    )

    # When
    result = invoke(
        ["--stage", "qa", "--prefix", "shop", "--region", "eu-west-1", "status", "--json"]
    )

    # Then: the per-command --json works as the global one does
    document = json_document(result)
    assert document["result"]["stacks"][0] == {
        "stack": "shop-qa-data",
        "deployed": True,
        "published": {"uploads-bucket": "shop-qa-uploads"},
    }
    assert document["result"]["region"] == "eu-west-1"


@mock_aws
def test_status_as_text_names_the_stage_and_the_missing_models() -> None:
    publish("data", "datasets-bucket", "atelier-dev-datasets")

    result = invoke(["status"])

    assert result.exit_code == 0
    assert "Atelier dev in us-east-1" in result.stdout
    assert "datasets-bucket = atelier-dev-datasets" in result.stdout
    assert "none yet (atelier customize titan)" in result.stdout


# --- names from stack outputs when SSM is refused ------------------------------------------------


def test_stack_outputs_serve_when_ssm_is_refused() -> None:
    # Given a role that may not read SSM but may describe the stacks
    ssm = boto3.client("ssm", region_name=REGION)
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    with Stubber(ssm) as ssm_stub, Stubber(cloudformation) as cfn_stub:
        ssm_stub.add_client_error("get_parameters_by_path", **denied("ssm:GetParametersByPath"))
        cfn_stub.add_response(
            "describe_stacks",
            {
                "Stacks": [
                    {
                        "StackName": "atelier-dev-data",
                        "CreationTime": "2026-11-01T00:00:00Z",
                        "StackStatus": "UPDATE_COMPLETE",
                        "Outputs": [
                            {
                                "OutputKey": "DatasetsBucket",
                                "OutputValue": "from-outputs",
                                "Description": "Also in SSM parameter "
                                "/atelier/dev/data/datasets-bucket",
                            },
                            # CDK's own outputs (no parameter) are not published names.
                            {"OutputKey": "ExportsOutputRefKey", "OutputValue": "k"},
                        ],
                    }
                ]
            },
            {"StackName": "atelier-dev-data"},
        )
        for section in SECTIONS[1:]:
            cfn_stub.add_client_error(
                "describe_stacks",
                service_error_code="ValidationError",
                service_message=f"Stack with id atelier-dev-{section} does not exist",
                expected_params={"StackName": f"atelier-dev-{section}"},
            )
        hooks = Hooks(
            client_factory=client_factory(ssm=ssm, cloudformation=cloudformation),
            sleep=no_sleep,
        )

        # When
        result = invoke(["--json", "status"], hooks=hooks)

    # Then the stacks' names come from their outputs; what workflows record (SSM only) is
    # reported as unreadable, with the permission that would show it
    assert result.exit_code == 0
    document = json_document(result)["result"]
    assert document["stacks"][0] == {
        "stack": "atelier-dev-data",
        "deployed": True,
        "published": {"datasets-bucket": "from-outputs"},
    }
    assert [entry["deployed"] for entry in document["stacks"][1:]] == [False] * 5
    assert set(document["recorded"].values()) == {None}
    (warning,) = document["warnings"]
    assert "cannot read SSM parameter /atelier/dev/vqa/model-data-url" in warning
    assert "ssm:GetParametersByPath on /atelier/dev/*" in warning


def test_published_name_comes_from_the_stack_output_when_ssm_is_refused() -> None:
    ssm = boto3.client("ssm", region_name=REGION)
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    with Stubber(ssm) as ssm_stub, Stubber(cloudformation) as cfn_stub:
        ssm_stub.add_client_error("get_parameters_by_path", **denied("ssm:GetParametersByPath"))
        cfn_stub.add_response(
            "describe_stacks",
            {
                "Stacks": [
                    {
                        "StackName": "atelier-dev-api",
                        "CreationTime": "2026-11-01T00:00:00Z",
                        "StackStatus": "CREATE_COMPLETE",
                        "Outputs": [
                            {
                                "OutputKey": "ApiUrl",
                                "OutputValue": "https://x/v1/",
                                "Description": "Also in SSM parameter /atelier/dev/api/api-url",
                            }
                        ],
                    }
                ]
            },
            {"StackName": "atelier-dev-api"},
        )
        aws = Aws(
            region=REGION, client_factory=client_factory(ssm=ssm, cloudformation=cloudformation)
        )
        resources = Resources(aws, Stage(prefix="atelier", name="dev", region=REGION))

        assert resources.published("api", "api-url") == "https://x/v1/"
        # A second name of the same stack needs no second call (the stubber would refuse it).
        with pytest.raises(NotDeployedError, match="has no output UploadsPrefix"):
            resources.published("api", "uploads-prefix")


# --- errors --------------------------------------------------------------------------------------


@mock_aws
def test_a_missing_stack_is_named_with_the_command_that_deploys_it() -> None:
    # Given SSM without the bedrock stack's names, and no such stack in CloudFormation
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    with Stubber(cloudformation) as stub:
        stub.add_client_error(
            "describe_stacks",
            service_error_code="ValidationError",
            service_message="Stack with id atelier-dev-bedrock does not exist",
        )
        aws = Aws(region=REGION, client_factory=client_factory(cloudformation=cloudformation))
        resources = Resources(aws, Stage(prefix="atelier", name="dev", region=REGION))

        # When / Then
        with pytest.raises(NotDeployedError) as raised:
            resources.published("bedrock", "titan-release-state-machine-arn")
    assert raised.value.exit_code == ExitCode.NOT_DEPLOYED
    assert "stack atelier-dev-bedrock is not deployed in us-east-1" in raised.value.message
    assert "/atelier/dev/bedrock/titan-release-state-machine-arn" in raised.value.message
    assert raised.value.fix is not None
    assert "npx cdk deploy atelier-dev-bedrock -c stage=dev" in raised.value.fix


@mock_aws
def test_a_parameter_missing_from_a_deployed_stack_asks_for_an_update() -> None:
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    with Stubber(cloudformation) as stub:
        stub.add_response(
            "describe_stacks",
            {
                "Stacks": [
                    {
                        "StackName": "atelier-dev-catalog",
                        "CreationTime": "2026-11-01T00:00:00Z",
                        "StackStatus": "UPDATE_COMPLETE",
                        "Outputs": [],
                    }
                ]
            },
        )
        aws = Aws(region=REGION, client_factory=client_factory(cloudformation=cloudformation))
        resources = Resources(aws, Stage(prefix="atelier", name="dev", region=REGION))
        with pytest.raises(NotDeployedError, match="older Atelier") as raised:
            resources.published("catalog", "describe-catalog-state-machine-arn")
    assert raised.value.code == "output_missing"


def test_no_credentials_is_an_access_error_with_a_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given no credentials anywhere
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)

    # When (real sessions: no client handed in)
    result = invoke(["--json", "status"], hooks=Hooks())

    # Then
    assert result.exit_code == ExitCode.ACCESS
    error = json_document(result)["error"]
    assert error["code"] == "no_credentials"
    assert "aws configure" in error["fix"]


def test_no_region_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)

    result = invoke(["status"], hooks=Hooks())

    assert result.exit_code == ExitCode.USAGE
    assert "no AWS region given" in result.stderr
    assert "--region" in result.stderr


def test_an_unknown_profile_is_a_usage_error() -> None:
    result = invoke(["--profile", "nope", "--json", "status"], hooks=Hooks())

    assert result.exit_code == ExitCode.USAGE
    assert json_document(result)["error"]["code"] == "profile_not_found"


def test_access_denied_names_the_operation() -> None:
    ssm = boto3.client("ssm", region_name=REGION)
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    with Stubber(ssm) as ssm_stub, Stubber(cloudformation) as cfn_stub:
        ssm_stub.add_client_error("get_parameters_by_path", **denied("ssm:GetParametersByPath"))
        for _ in SECTIONS:
            cfn_stub.add_client_error("describe_stacks", **denied("cloudformation:DescribeStacks"))
        hooks = Hooks(client_factory=client_factory(ssm=ssm, cloudformation=cloudformation))
        result = invoke(["--json", "status"], hooks=hooks)

    assert result.exit_code == ExitCode.ACCESS
    error = json_document(result)["error"]
    assert "both refused" in error["message"]
    assert "ssm:GetParametersByPath on /atelier/dev/*" in error["fix"]


# --- usage errors through the console script ---------------------------------------------------


def test_usage_errors_exit_2_and_print_a_json_error_with_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = main(["status", "--no-such-option", "--json"])

    captured = capsys.readouterr()
    assert status == ExitCode.USAGE
    document = json.loads(captured.out)
    assert document == {
        "version": 1,
        "command": "status",
        "ok": False,
        "error": {"code": "usage", "message": "No such option: --no-such-option"},
    }
    assert "Usage: atelier status" in captured.err


def test_usage_errors_without_json_print_usage_only(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["no-such-command"])

    captured = capsys.readouterr()
    assert status == ExitCode.USAGE
    assert captured.out == ""
    assert "No such command" in captured.err


@mock_aws
def test_main_returns_the_command_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    publish("data", "datasets-bucket", "b")

    assert main(["--json", "status"]) == ExitCode.OK
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_help_lists_every_command_group() -> None:
    result = invoke(["--help"])

    assert result.exit_code == 0
    for name in ("status",):
        assert re.search(rf"\b{name}\b", result.stdout)


# --- the names the CLI reads are the names the stacks publish ---------------------------------


@pytest.mark.infra
def test_every_published_parameter_has_the_stack_output_the_cli_falls_back_to(
    dev_app: SynthesizedApp,
) -> None:
    sections: set[str] = set()
    for stack_name, template in dev_app.templates.items():
        outputs = template.get("Outputs", {})
        for resource in template["Resources"].values():
            if resource["Type"] != "AWS::SSM::Parameter":
                continue
            name = resource["Properties"]["Name"]
            if not isinstance(name, str) or not name.startswith("/atelier/dev/"):
                continue
            section, published = name.removeprefix("/atelier/dev/").split("/")
            sections.add(section)
            # Then the stack is the one the CLI names, and its output is where it looks
            assert stack_name == f"atelier-dev-{section}"
            assert outputs[output_key(published)]["Description"] == (
                f"Also in SSM parameter {name}"
            )
    assert sections == set(SECTIONS)


def leaf_commands() -> dict[str, Any]:
    """Every runnable command of the tree, by its path (`train vqa`)."""
    import typer

    from atelier_cli.main import app

    leaves: dict[str, Any] = {}

    def walk(command: Any, path: str) -> None:
        children = getattr(command, "commands", None)
        if children:
            for name, child in children.items():
                walk(child, f"{path} {name}".strip())
        else:
            leaves[path] = command

    walk(typer.main.get_command(app), "")
    return leaves


def test_every_command_takes_json() -> None:
    leaves = leaf_commands()

    assert "status" in leaves
    for path, leaf in leaves.items():
        options = {option for param in leaf.params for option in param.opts}
        assert "--json" in options, f"atelier {path} has no --json"
        assert leaf.help, f"atelier {path} has no help text"


# Modules help must not wait for: the AWS SDK and botocore's HTTP stack load when a command first
# needs a session, a client or a signature (benchmarks/cli_bench.py times the difference).
HEAVY_FOR_HELP = ("boto3", "botocore.config", "botocore.auth", "botocore.session", "urllib3")
HELP_IMPORTS = """
import sys
from atelier_cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("loaded:", " ".join(sorted(name for name in sys.modules if name in {heavy!r})))
"""


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["endpoint", "use", "--help"]])
def test_help_imports_no_aws_sdk(args: list[str]) -> None:
    import subprocess
    import sys

    script = HELP_IMPORTS.format(heavy=set(HEAVY_FOR_HELP))
    result = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, check=True
    )
    assert "Usage" in result.stdout
    assert result.stdout.splitlines()[-1] == "loaded: "
