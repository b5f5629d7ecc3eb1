"""Where `atelier` takes the region from, and that its advice about the region is true.

The no-region error names settings; each one it names is then set, alone, and must be the region
the command works in. A malformed region, wherever it comes from, is a usage error (exit 2) with
a fix line, never a service error from a client botocore could not build.
"""

from __future__ import annotations

import re
from pathlib import Path

import boto3
import botocore.session
import pytest
from moto import mock_aws

from atelier_cli.aws import REGION_NAME
from atelier_cli.errors import ExitCode
from atelier_cli.runtime import Hooks
from tests.cli_support import cloudformation_without_stacks, default_hooks, invoke, json_document

pytestmark = pytest.mark.integration

REGION_SETTINGS = ("AWS_REGION", "AWS_DEFAULT_REGION", "ATELIER_REGION", "AWS_PROFILE")


@pytest.fixture
def aws_config(tmp_path: Path) -> Path:
    """An AWS config file whose default profile has no region (tests may write one in)."""
    config = tmp_path / "config"
    config.write_text("[default]\n", encoding="utf-8")
    return config


@pytest.fixture
def no_region(monkeypatch: pytest.MonkeyPatch, aws_config: Path) -> pytest.MonkeyPatch:
    """No region anywhere: no variable, and a config file without one."""
    for name in REGION_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(aws_config))
    return monkeypatch


def region_used(args: list[str] | None = None) -> str:
    """The region `atelier status` works in (moto-backed clients for that region)."""
    with mock_aws():
        result = invoke([*(args or []), "--json", "status"], hooks=default_hooks())
    assert result.exit_code == 0, result.output
    region: str = json_document(result)["result"]["region"]
    return region


def test_every_variable_the_no_region_advice_names_is_one_the_command_reads(
    no_region: pytest.MonkeyPatch, aws_config: Path
) -> None:
    # Given no region anywhere, the command refuses and says what to set
    refused = invoke(["--json", "status"], hooks=Hooks())
    assert refused.exit_code == ExitCode.USAGE
    error = json_document(refused)["error"]
    assert error["code"] == "no_region"
    named = set(re.findall(r"\b[A-Z][A-Z_]*_REGION\b", error["fix"]))
    assert named, error["fix"]

    # When each variable it names is set on its own, that is the region used
    for variable in sorted(named):
        no_region.setenv(variable, "eu-west-3")
        assert region_used() == "eu-west-3", f"{variable} is advised but not read"
        no_region.delenv(variable)

    # And so are the option and the profile's region it also names
    assert "--region" in error["fix"]
    assert "profile" in error["fix"]
    assert region_used(["--region", "ap-south-2"]) == "ap-south-2"
    aws_config.write_text("[default]\nregion = sa-east-1\n", encoding="utf-8")
    assert region_used() == "sa-east-1"


def test_aws_region_alone_is_named_as_not_read(no_region: pytest.MonkeyPatch) -> None:
    # boto3 ignores AWS_REGION (other SDKs read it): the error says so instead of advising it
    no_region.setenv("AWS_REGION", "eu-west-1")

    result = invoke(["status"], hooks=Hooks())

    assert result.exit_code == ExitCode.USAGE
    assert "AWS_REGION=eu-west-1 is set, but boto3 does not read it" in result.stderr
    fix = next(line for line in result.stderr.splitlines() if line.startswith("Fix:"))
    assert "AWS_DEFAULT_REGION" in fix
    assert "AWS_REGION" not in re.findall(r"\b[A-Z_]+\b", fix)


ON_THE_COMMAND_LINE = "--region (or ATELIER_REGION)"


@pytest.mark.parametrize(
    ("args", "env", "profile_region", "source"),
    [
        (["--region", "us east 1"], {}, None, ON_THE_COMMAND_LINE),
        (["--region", "useast1"], {}, None, ON_THE_COMMAND_LINE),
        (["--region", "US-EAST-1"], {}, None, ON_THE_COMMAND_LINE),
        ([], {"ATELIER_REGION": "eu_west_1"}, None, ON_THE_COMMAND_LINE),
        ([], {"AWS_DEFAULT_REGION": "eu west"}, None, "AWS_DEFAULT_REGION"),
        ([], {}, "Mars", "the region of AWS profile 'default'"),
    ],
)
def test_a_malformed_region_is_a_usage_error_with_a_fix(
    no_region: pytest.MonkeyPatch,
    aws_config: Path,
    args: list[str],
    env: dict[str, str],
    profile_region: str | None,
    source: str,
) -> None:
    for name, value in env.items():
        no_region.setenv(name, value)
    if profile_region is not None:
        aws_config.write_text(f"[default]\nregion = {profile_region}\n", encoding="utf-8")

    # When a command needs AWS (real sessions: nothing stubbed)
    result = invoke([*args, "--json", "status"], hooks=Hooks())

    # Then it is a usage error naming where the region came from, with a fix
    assert result.exit_code == ExitCode.USAGE
    error = json_document(result)["error"]
    assert error["code"] == "invalid_region"
    assert error["message"].startswith(f"{source} is ")
    assert error["fix"].startswith(f"set {source} to the region")


def test_the_text_output_of_a_malformed_region_has_a_fix_line(
    no_region: pytest.MonkeyPatch,
) -> None:
    result = invoke(["--region", "us east 1", "status"], hooks=Hooks())

    assert result.exit_code == ExitCode.USAGE
    lines = result.stderr.splitlines()
    assert lines[0].startswith("Error: --region (or ATELIER_REGION) is 'us east 1', not an AWS")
    assert lines[1].startswith("Fix: set --region (or ATELIER_REGION) to the region")


def test_every_region_botocore_knows_has_the_accepted_shape() -> None:
    # botocore's own endpoint data, an independent list: no real region may be refused.
    session = botocore.session.get_session()
    known = {
        region
        for partition in session.get_available_partitions()
        for service in ("ec2", "s3", "ssm", "sagemaker")
        for region in session.get_available_regions(service, partition)
    }
    assert len(known) > 30
    assert sorted(region for region in known if not REGION_NAME.fullmatch(region)) == []


def test_a_good_region_reaches_the_clients() -> None:
    seen: list[str] = []
    cloudformation = cloudformation_without_stacks()

    def factory(service: str, region: str) -> object:
        seen.append(region)
        if service == "cloudformation":
            return cloudformation
        return boto3.client(service, region_name=region)

    with mock_aws():
        result = invoke(
            ["--region", "us-gov-west-1", "--json", "status"],
            hooks=Hooks(client_factory=factory),
        )
    assert result.exit_code == 0, result.output
    assert set(seen) == {"us-gov-west-1"}
