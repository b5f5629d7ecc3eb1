"""`atelier throughput list|release|extend` (moto has no provisioned throughput: Bedrock is a
botocore Stubber, which checks every call against the real API model)."""

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
from atelier_cli.runtime import Hooks
from infra.config import load_stage_config
from infra.constructs.model_lifecycle import stage_inventory
from tests.cli_support import (
    REGION,
    client_factory,
    cloudformation_without_stacks,
    deploy_workflow,
    execution_input,
    invoke,
    json_document,
    no_sleep,
    publish,
)
from tests.support import cdk_json_context

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
OURS = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/ours1"
OTHER = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/other1"


def summary(arn: str, status: str = "InService") -> dict[str, Any]:
    model = "arn:aws:bedrock:us-east-1:123456789012:custom-model/titan/x"
    return {
        "provisionedModelName": arn.rsplit("/", 1)[1],
        "provisionedModelArn": arn,
        "modelArn": model,
        "desiredModelArn": model,
        "foundationModelArn": "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan",
        "modelUnits": 1,
        "desiredModelUnits": 1,
        "status": status,
        "creationTime": NOW,
        "lastModifiedTime": NOW,
    }


def tags(deployment: str | None, expires: str | None) -> dict[str, Any]:
    found = []
    if deployment is not None:
        found.append({"key": "atelier:deployment", "value": deployment})
    if expires is not None:
        found.append({"key": "atelier:expires-at", "value": expires})
    return {"tags": found}


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def bedrock() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("bedrock", region_name=REGION)
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def hooks_with(client: Any) -> Hooks:
    return Hooks(
        client_factory=client_factory(
            bedrock=client, cloudformation=cloudformation_without_stacks()
        ),
        sleep=no_sleep,
        clock=NOW.timestamp,
    )


@pytest.mark.usefixtures("aws")
def test_list_shows_this_deployments_throughputs_with_time_left(
    bedrock: tuple[Any, Stubber],
) -> None:
    client, stubber = bedrock
    publish("titan", "provisioned-model-arn", OURS)
    stubber.add_response(
        "list_provisioned_model_throughputs",
        {"provisionedModelSummaries": [summary(OURS), summary(OTHER)], "nextToken": "n"},
    )
    stubber.add_response(
        "list_provisioned_model_throughputs",
        {"provisionedModelSummaries": [summary("arn:aws:bedrock:us-east-1:1:provisioned-model/x")]},
        {"nextToken": "n"},
    )
    stubber.add_response(
        "list_tags_for_resource",
        tags("atelier-dev", "2026-11-22T16:30:00Z"),
        {"resourceARN": OURS},
    )
    stubber.add_response("list_tags_for_resource", tags("atelier-prod", None))
    stubber.add_response("list_tags_for_resource", tags(None, None))

    result = invoke(["--json", "throughput", "list"], hooks=hooks_with(client))

    assert result.exit_code == 0, result.output
    document = json_document(result)["result"]
    (entry,) = document["throughputs"]
    assert entry == {
        "provisionedModelArn": OURS,
        "name": "ours1",
        "status": "InService",
        "modelArn": "arn:aws:bedrock:us-east-1:123456789012:custom-model/titan/x",
        "modelUnits": 1,
        "commitment": None,
        "createdAt": NOW.isoformat(),
        "ours": True,
        "recorded": True,
        "expiresAt": "2026-11-22T16:30:00Z",
        "hoursLeft": 4.5,
    }
    assert document["billing"] == 1


@pytest.mark.usefixtures("aws")
def test_list_all_marks_foreign_ones_and_warns_about_the_bill(
    bedrock: tuple[Any, Stubber],
) -> None:
    client, stubber = bedrock
    stubber.add_response(
        "list_provisioned_model_throughputs", {"provisionedModelSummaries": [summary(OTHER)]}
    )
    stubber.add_response("list_tags_for_resource", tags(None, None))

    stubber.add_response(
        "list_provisioned_model_throughputs", {"provisionedModelSummaries": [summary(OTHER)]}
    )
    stubber.add_response("list_tags_for_resource", tags(None, None))

    listed = invoke(["--json", "throughput", "list", "--all"], hooks=hooks_with(client))
    text = invoke(["throughput", "list", "--all"], hooks=hooks_with(client))

    (entry,) = json_document(listed)["result"]["throughputs"]
    assert entry["ours"] is False
    # No tag at all counts as expired for the cost guard
    assert entry["hoursLeft"] == 0
    assert text.exit_code == 0
    assert "bill per model unit per hour" in text.stdout


@pytest.mark.usefixtures("aws")
def test_list_without_permission_names_it(bedrock: tuple[Any, Stubber]) -> None:
    client, stubber = bedrock
    stubber.add_client_error(
        "list_provisioned_model_throughputs",
        service_error_code="AccessDeniedException",
        service_message="not authorized to perform: bedrock:ListProvisionedModelThroughputs",
    )

    result = invoke(["--json", "throughput", "list"], hooks=hooks_with(client))

    assert result.exit_code == ExitCode.ACCESS
    error = json_document(result)["error"]
    assert "bedrock:ListProvisionedModelThroughputs" in error["message"]
    assert "ListProvisionedModelThroughputs" in error["fix"]


@pytest.mark.usefixtures("aws")
def test_release_starts_the_workflow_for_the_recorded_throughput(
    bedrock: tuple[Any, Stubber],
) -> None:
    client, stubber = bedrock
    publish("titan", "provisioned-model-arn", OURS)
    deploy_workflow("bedrock", "titan-release-state-machine-arn", "atelier-dev-titan-release")
    stubber.add_response("list_tags_for_resource", tags("atelier-dev", None), {"resourceARN": OURS})

    result = invoke(["--json", "throughput", "release", "--yes"], hooks=hooks_with(client))

    assert result.exit_code == 0, result.output
    started = json_document(result)["result"]
    # The workflow releases the recorded throughput when given no ARN
    assert execution_input(started["executionArn"]) == {}
    assert started["provisionedModelArn"] == OURS


@pytest.mark.usefixtures("aws")
def test_release_of_a_named_throughput_passes_its_arn(bedrock: tuple[Any, Stubber]) -> None:
    client, stubber = bedrock
    deploy_workflow("bedrock", "titan-release-state-machine-arn", "atelier-dev-titan-release")
    stubber.add_response("list_tags_for_resource", tags("atelier-dev", None))

    result = invoke(["--json", "throughput", "release", OURS, "-y"], hooks=hooks_with(client))

    started = json_document(result)["result"]
    assert execution_input(started["executionArn"]) == {"provisionedModelArn": OURS}


@pytest.mark.usefixtures("aws")
def test_release_refuses_another_deployments_throughput(bedrock: tuple[Any, Stubber]) -> None:
    client, stubber = bedrock
    stubber.add_response("list_tags_for_resource", tags("atelier-prod", None))

    result = invoke(["--json", "throughput", "release", OTHER, "--yes"], hooks=hooks_with(client))

    assert result.exit_code == ExitCode.USAGE
    assert json_document(result)["error"]["code"] == "not_this_deployment"


@pytest.mark.usefixtures("aws")
def test_release_with_nothing_recorded_is_not_deployed(bedrock: tuple[Any, Stubber]) -> None:
    client, _ = bedrock

    result = invoke(["--json", "throughput", "release", "--yes"], hooks=hooks_with(client))

    assert result.exit_code == ExitCode.NOT_DEPLOYED
    error = json_document(result)["error"]
    assert error["code"] == "nothing_recorded"
    assert "/atelier/dev/titan/provisioned-model-arn" in error["message"]


@pytest.mark.usefixtures("aws")
def test_release_needs_yes_without_a_terminal(bedrock: tuple[Any, Stubber]) -> None:
    client, stubber = bedrock
    stubber.add_response("list_tags_for_resource", tags("atelier-dev", None))

    result = invoke(["--json", "throughput", "release", OURS], hooks=hooks_with(client))

    assert result.exit_code == ExitCode.USAGE
    assert json_document(result)["error"]["code"] == "confirmation_required"


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--hours", "6"], "2026-11-22T18:00:00Z"),
        (["--until", "2026-11-23T09:30:00+01:00"], "2026-11-23T08:30:00Z"),
        (["--until", "2026-11-24T00:00:00"], "2026-11-24T00:00:00Z"),
    ],
)
def test_extend_moves_the_expiry_tag(
    bedrock: tuple[Any, Stubber], arguments: list[str], expected: str
) -> None:
    client, stubber = bedrock
    publish("titan", "provisioned-model-arn", OURS)
    stubber.add_response(
        "list_tags_for_resource", tags("atelier-dev", "2026-11-22T16:00:00Z"), {"resourceARN": OURS}
    )
    answer = {
        **summary(OURS),
        "provisionedModelName": "ours1",
    }
    answer.pop("provisionedModelArn")
    stubber.add_response(
        "get_provisioned_model_throughput",
        {**answer, "provisionedModelArn": OURS},
        {"provisionedModelId": OURS},
    )
    stubber.add_response(
        "tag_resource",
        {},
        {"resourceARN": OURS, "tags": [{"key": "atelier:expires-at", "value": expected}]},
    )

    result = invoke(["--json", "throughput", "extend", *arguments], hooks=hooks_with(client))

    assert result.exit_code == 0, result.output
    document = json_document(result)["result"]
    assert document["previousExpiresAt"] == "2026-11-22T16:00:00Z"
    assert document["expiresAt"] == expected


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ([], "exactly one of --hours and --until"),
        (["--hours", "2", "--until", "2027-01-01"], "exactly one of --hours and --until"),
        (["--until", "tomorrow"], "not an ISO 8601 time"),
        (["--until", "2020-01-01T00:00:00Z"], "has passed"),
        (["not-an-arn", "--hours", "1"], "not a provisioned model ARN"),
    ],
)
def test_extend_checks_its_options_before_any_call(arguments: list[str], message: str) -> None:
    client = boto3.client("bedrock", region_name=REGION)
    with Stubber(client):
        result = invoke(["--json", "throughput", "extend", *arguments], hooks=hooks_with(client))

    assert result.exit_code == ExitCode.USAGE
    assert message in json_document(result)["error"]["message"]


@pytest.mark.usefixtures("aws")
def test_extend_refuses_a_throughput_that_is_gone(bedrock: tuple[Any, Stubber]) -> None:
    client, stubber = bedrock
    stubber.add_response("list_tags_for_resource", tags("atelier-dev", None))
    answer = summary(OURS, status="Failed")
    stubber.add_response("get_provisioned_model_throughput", answer)

    result = invoke(
        ["--json", "throughput", "extend", OURS, "--hours", "1"], hooks=hooks_with(client)
    )

    assert result.exit_code == ExitCode.USAGE
    assert json_document(result)["error"]["code"] == "not_in_service"


@pytest.mark.parametrize(
    "value",
    ["2026-11-22T16:30:00Z", "2026-11-22T16:30:00", "2026-11-22T17:30:00+01:00", "soon", "", None],
)
def test_expiry_and_tags_are_read_as_the_cost_guard_reads_them(value: str | None) -> None:
    """The CLI cannot import the Lambda code (not part of the installed command): its copies of
    the tag names and the expiry rule must stay the sweeper's."""
    from atelier_cli.commands import provisioned
    from customization.logic.expiry import parse_expiry
    from shared.models.customization import DEPLOYMENT_TAG, EXPIRES_AT_TAG

    assert provisioned.DEPLOYMENT_TAG == DEPLOYMENT_TAG
    assert provisioned.EXPIRES_AT_TAG == EXPIRES_AT_TAG
    assert provisioned.parse_expiry(value) == parse_expiry(value)


# --- a stage that customizes no image model (titan.base_model_id null, the shipped default) ---


def publish_shipped_inventory() -> None:
    """What the Bedrock stack publishes for the shipped dev stage: the inventory (base model
    null) and the release workflow, but no customize workflow."""
    inventory = stage_inventory(load_stage_config(cdk_json_context(), "dev"))
    publish("bedrock", "model-inventory", json.dumps(inventory))
    deploy_workflow("bedrock", "titan-release-state-machine-arn", "atelier-dev-titan-release")


@pytest.mark.usefixtures("aws")
def test_without_an_image_model_release_says_why_nothing_is_recorded(
    bedrock: tuple[Any, Stubber],
) -> None:
    client, _ = bedrock
    publish_shipped_inventory()
    for command in (["throughput", "release", "-y"], ["throughput", "extend", "--hours", "2"]):
        result = invoke(["--json", *command], hooks=hooks_with(client))
        assert result.exit_code == ExitCode.NOT_DEPLOYED, command
        error = json_document(result)["error"]
        assert error["code"] == "not_configured"
        assert "titan.base_model_id is null" in error["message"]
        assert "docs/image-customization.md" in error["fix"]
        # A throughput left from an earlier configuration can still be named.
        assert "atelier throughput list --all" in error["fix"]


@pytest.mark.usefixtures("aws")
def test_without_an_image_model_list_still_shows_what_bills_and_says_so(
    bedrock: tuple[Any, Stubber],
) -> None:
    client, stubber = bedrock
    publish_shipped_inventory()
    for _ in range(2):
        stubber.add_response(
            "list_provisioned_model_throughputs", {"provisionedModelSummaries": []}
        )
    listed = invoke(["--json", "throughput", "list"], hooks=hooks_with(client))
    assert listed.exit_code == ExitCode.OK, listed.stdout
    assert json_document(listed)["result"]["customizable"] is False
    text = invoke(["throughput", "list"], hooks=hooks_with(client))
    assert "titan.base_model_id is null" in " ".join(text.stdout.split())
