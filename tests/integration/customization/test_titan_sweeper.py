"""The throughput sweeper end to end: Bedrock through botocore's Stubber (moto 5.2 has no
provisioned throughput), the release workflow's start and the notice through moto.

The Stubber checks every call's parameters against Bedrock's real API model, so a call the
service would refuse (a wrong member name, a missing required one) fails here too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from customization.handlers.sweep import SweepIncompleteError, run, scheduled_time
from customization.logic.expiry import Sweeper
from shared.adapters.bedrock_control import PAGE_SIZE, BedrockThroughputs
from shared.adapters.workflows import SnsNotifier, StepFunctionsWorkflow

pytestmark = pytest.mark.integration

NOW = datetime(2026, 8, 1, 12, 0, tzinfo=UTC)
ACCOUNT_ARN = "arn:aws:bedrock:us-east-1:123456789012"
EXPIRED = f"{ACCOUNT_ARN}:provisioned-model/aaaaaaaaaaaa"
FRESH = f"{ACCOUNT_ARN}:provisioned-model/bbbbbbbbbbbb"
FOREIGN = f"{ACCOUNT_ARN}:provisioned-model/cccccccccccc"
COMMITTED = f"{ACCOUNT_ARN}:provisioned-model/dddddddddddd"
MODEL = f"{ACCOUNT_ARN}:custom-model/amazon.titan-image-generator-v1:0/abcdefghijkl"


def summary(arn: str, **extra: Any) -> dict[str, Any]:
    return {
        "provisionedModelName": "atelier-dev-titan-" + arn[-4:],
        "provisionedModelArn": arn,
        "modelArn": MODEL,
        "desiredModelArn": MODEL,
        "foundationModelArn": "arn:aws:bedrock:us-east-1::foundation-model/"
        "amazon.titan-image-generator-v1:0",
        "modelUnits": 1,
        "desiredModelUnits": 1,
        "status": "InService",
        "creationTime": NOW - timedelta(hours=5),
        "lastModifiedTime": NOW - timedelta(hours=5),
        **extra,
    }


def tags(deployment: str, expires: str) -> dict[str, Any]:
    return {
        "tags": [
            {"key": "atelier:deployment", "value": deployment},
            {"key": "atelier:expires-at", "value": expires},
            {"key": "atelier:stage", "value": "dev"},
        ]
    }


class Harness:
    def __init__(self) -> None:
        self.bedrock = boto3.client("bedrock")
        self.stubber = Stubber(self.bedrock)
        self.sfn = boto3.client("stepfunctions")
        self.sns = boto3.client("sns")
        self.sqs = boto3.client("sqs")
        self.release_arn = self.sfn.create_state_machine(
            name="atelier-dev-titan-release",
            definition=json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}),
            roleArn="arn:aws:iam::123456789012:role/release",
        )["stateMachineArn"]
        self.topic_arn = self.sns.create_topic(Name="atelier-dev-titan-notifications")["TopicArn"]
        # A queue subscribed to the topic shows what was published.
        queue_url = self.sqs.create_queue(QueueName="notices")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn)
        self.queue_url = queue_url
        self.sweeper = Sweeper(
            catalog=BedrockThroughputs(bedrock=self.bedrock),
            releases=StepFunctionsWorkflow(self.release_arn, stepfunctions=self.sfn),
            notifier=SnsNotifier(self.topic_arn, sns=self.sns),
            deployment="atelier-dev",
        )

    def executions(self) -> list[dict[str, Any]]:
        listed = self.sfn.list_executions(stateMachineArn=self.release_arn)["executions"]
        return [
            json.loads(self.sfn.describe_execution(executionArn=e["executionArn"])["input"])
            for e in listed
        ]

    def notices(self) -> list[dict[str, Any]]:
        messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
        return [json.loads(m["Body"]) for m in messages.get("Messages", [])]


@pytest.fixture
def harness() -> Iterator[Harness]:
    with mock_aws():
        harness = Harness()
        with harness.stubber:
            yield harness
        harness.stubber.assert_no_pending_responses()


def test_a_sweep_releases_the_expired_throughput_and_notifies_the_committed_one(
    harness: Harness,
) -> None:
    stub = harness.stubber
    # Given two pages of throughputs: expired, fresh, another deployment's, committed
    stub.add_response(
        "list_provisioned_model_throughputs",
        {
            "provisionedModelSummaries": [summary(EXPIRED), summary(FRESH)],
            "nextToken": "page-2",
        },
        {"maxResults": PAGE_SIZE},
    )
    stub.add_response("list_tags_for_resource", tags("atelier-dev", "2026-08-01T11:59:00Z"),
                      {"resourceARN": EXPIRED})  # fmt: skip
    stub.add_response("list_tags_for_resource", tags("atelier-dev", "2026-08-01T16:00:00Z"),
                      {"resourceARN": FRESH})  # fmt: skip
    stub.add_response(
        "list_provisioned_model_throughputs",
        {
            "provisionedModelSummaries": [
                summary(FOREIGN),
                summary(
                    COMMITTED,
                    commitmentDuration="OneMonth",
                    commitmentExpirationTime=NOW + timedelta(days=10),
                ),
            ]
        },
        {"maxResults": PAGE_SIZE, "nextToken": "page-2"},
    )
    stub.add_response("list_tags_for_resource", tags("atelier-prod", "2026-01-01T00:00:00Z"),
                      {"resourceARN": FOREIGN})  # fmt: skip
    stub.add_response("list_tags_for_resource", tags("atelier-dev", "2026-08-01T00:00:00Z"),
                      {"resourceARN": COMMITTED})  # fmt: skip
    stub.add_response(
        "tag_resource",
        {},
        {
            "resourceARN": COMMITTED,
            "tags": [{"key": "atelier:expiry-notified", "value": "2026-08-01T00:00:00Z"}],
        },
    )
    # When the sweep runs
    result = run(harness.sweeper, NOW)
    # Then only the expired one is handed to the release workflow
    assert result["released"] == [EXPIRED]
    assert result["notified"] == [COMMITTED]
    assert (result["checked"], result["ours"], result["kept"]) == (4, 3, 1)
    assert harness.executions() == [
        {
            "provisionedModelArn": EXPIRED,
            "reason": "cost guard: expired at 2026-08-01T11:59:00Z",
        }
    ]
    (notice,) = harness.notices()
    assert notice["Subject"] == "[atelier-dev] Titan throughput past its expiry, still billing"
    assert COMMITTED in notice["Message"]
    assert "OneMonth commitment" in notice["Message"]


def test_a_failed_tag_read_fails_the_sweep_after_handling_the_rest(harness: Harness) -> None:
    stub = harness.stubber
    stub.add_response(
        "list_provisioned_model_throughputs",
        {"provisionedModelSummaries": [summary(FRESH), summary(EXPIRED)]},
        {"maxResults": PAGE_SIZE},
    )
    stub.add_client_error(
        "list_tags_for_resource",
        service_error_code="ThrottlingException",
        http_status_code=429,
        expected_params={"resourceARN": FRESH},
    )
    stub.add_response("list_tags_for_resource", tags("atelier-dev", "2026-08-01T11:00:00Z"),
                      {"resourceARN": EXPIRED})  # fmt: skip
    with pytest.raises(SweepIncompleteError, match=f"{FRESH}: DependencyError"):
        run(harness.sweeper, NOW)
    # The expired one was still released.
    assert [e["provisionedModelArn"] for e in harness.executions()] == [EXPIRED]


def test_a_second_start_for_the_same_sweep_counts_as_started(harness: Harness) -> None:
    workflow = StepFunctionsWorkflow(harness.release_arn, stepfunctions=harness.sfn)
    first = workflow.start(name="expired-x-1", payload={"provisionedModelArn": EXPIRED})
    assert workflow.start(name="expired-x-1", payload={"provisionedModelArn": EXPIRED}) == first


def _expired_only(harness: Harness) -> None:
    harness.stubber.add_response(
        "list_provisioned_model_throughputs",
        {"provisionedModelSummaries": [summary(EXPIRED)]},
        {"maxResults": PAGE_SIZE},
    )
    harness.stubber.add_response(
        "list_tags_for_resource",
        tags("atelier-dev", "2026-08-01T11:00:00Z"),
        {"resourceARN": EXPIRED},
    )


def test_a_retried_sweep_of_the_same_event_starts_each_release_once(harness: Harness) -> None:
    # The schedule's event time names the executions, whenever the (re)delivery runs.
    scheduled = scheduled_time({"time": "2026-08-01T12:00:00Z"})
    for late in (timedelta(0), timedelta(seconds=70)):
        _expired_only(harness)
        result = run(harness.sweeper, NOW + late, scheduled)
        assert result["released"] == [EXPIRED]
    listed = harness.sfn.list_executions(stateMachineArn=harness.release_arn)["executions"]
    assert [e["name"] for e in listed] == ["expired-aaaaaaaaaaaa-20260801T120000"]


def test_the_next_sweep_starts_a_release_of_its_own(harness: Harness) -> None:
    for time in ("2026-08-01T12:00:00Z", "2026-08-01T12:15:00Z"):
        _expired_only(harness)
        run(harness.sweeper, NOW, scheduled_time({"time": time}))
    assert len(harness.executions()) == 2


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"time": "2026-08-01T12:00:00Z"}, datetime(2026, 8, 1, 12, tzinfo=UTC)),
        ({"time": "2026-08-01T14:00:00+02:00"}, datetime(2026, 8, 1, 12, tzinfo=UTC)),
        ({}, None),
        ({"time": "soon"}, None),
        ({"time": 3}, None),
        ([], None),
    ],
)
def test_the_scheduled_time_is_the_events(event: Any, expected: datetime | None) -> None:
    assert scheduled_time(event) == expected
