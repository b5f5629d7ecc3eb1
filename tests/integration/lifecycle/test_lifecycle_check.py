"""The daily model lifecycle check end to end: Bedrock through botocore's Stubber (moto 5.2 has
no GetFoundationModel or GetInferenceProfile; the Stubber checks each call and each answer
against Bedrock's API model), the state parameter and the topic through moto, the metrics as the
embedded-metric-format lines the function prints.

Four models, four states: Active, Legacy, in public extended access, past its end of life (no
longer found). Each run publishes a metric per model; a notice goes out once per state change.
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

from lifecycle.handlers.check import (
    CheckIncompleteError,
    EmfMetrics,
    configured_models,
    run,
)
from lifecycle.logic.checker import ConfiguredModel, LifecycleChecker
from shared.adapters.bedrock_models import BedrockModels, is_inference_profile
from shared.adapters.lifecycle_state import ParameterStates
from shared.adapters.workflows import SnsNotifier

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
REGION = "us-east-1"
PARAMETER = "/atelier/dev/lifecycle/model-states"
PROFILE = "global.anthropic.claude-sonnet-4-6"
CLAUDE = "anthropic.claude-sonnet-4-6"
TITAN = "amazon.titan-image-generator-v1:0"
CANVAS = "amazon.nova-canvas-v1:0"
OLD_CLAUDE = "anthropic.claude-3-sonnet-20240229-v1:0"


def details(model_id: str, lifecycle: dict[str, Any]) -> dict[str, Any]:
    return {
        "modelDetails": {
            "modelArn": f"arn:aws:bedrock:{REGION}::foundation-model/{model_id}",
            "modelId": model_id,
            "modelName": model_id,
            "providerName": "Amazon",
            "modelLifecycle": lifecycle,
        }
    }


ACTIVE = {"status": "ACTIVE", "startOfLifeTime": datetime(2026, 2, 17, tzinfo=UTC)}
LEGACY = {
    "status": "LEGACY",
    "legacyTime": NOW - timedelta(days=10),
    "publicExtendedAccessTime": NOW + timedelta(days=80),
    "endOfLifeTime": NOW + timedelta(days=200),
}
EXTENDED = {
    "status": "LEGACY",
    "legacyTime": NOW - timedelta(days=120),
    "publicExtendedAccessTime": NOW - timedelta(days=5),
    "endOfLifeTime": NOW + timedelta(days=60),
}


class Stage:
    """moto for SSM and SNS (the topic feeds a queue we read), a Stubber for Bedrock."""

    def __init__(self) -> None:
        self.bedrock = boto3.client("bedrock", region_name=REGION)
        self.stubber = Stubber(self.bedrock)
        self.ssm = boto3.client("ssm", region_name=REGION)
        # No state parameter yet: the first run creates it.
        sns = boto3.client("sns", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        topic = sns.create_topic(Name="atelier-dev-titan-notifications")["TopicArn"]
        self.queue = sqs.create_queue(QueueName="notices")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"])
        self.sqs = sqs
        self.notifier = SnsNotifier(topic, sns=sns)
        self.checker = LifecycleChecker(
            catalog=BedrockModels(bedrock=self.bedrock),
            states=ParameterStates(PARAMETER, ssm=self.ssm),
            notifier=self.notifier,
            metrics=EmfMetrics("atelier-dev"),
            deployment="atelier-dev",
            warning_days=90,
        )

    def answer(self, model_id: str, lifecycle: dict[str, Any] | None) -> None:
        if lifecycle is None:
            self.stubber.add_client_error(
                "get_foundation_model",
                service_error_code="ResourceNotFoundException",
                service_message=f"The model {model_id} was not found.",
                http_status_code=404,
                expected_params={"modelIdentifier": model_id},
            )
        else:
            self.stubber.add_response(
                "get_foundation_model",
                details(model_id, lifecycle),
                {"modelIdentifier": model_id},
            )

    def answer_profile(self) -> None:
        self.stubber.add_response(
            "get_inference_profile",
            {
                "inferenceProfileName": "Global Claude Sonnet 4.6",
                "inferenceProfileArn": f"arn:aws:bedrock:{REGION}:123456789012:"
                f"inference-profile/{PROFILE}",
                "inferenceProfileId": PROFILE,
                "status": "ACTIVE",
                "type": "SYSTEM_DEFINED",
                "models": [
                    {"modelArn": f"arn:aws:bedrock:{region}::foundation-model/{CLAUDE}"}
                    for region in ("us-east-1", "eu-west-1", "ap-northeast-1")
                ],
            },
            {"inferenceProfileIdentifier": PROFILE},
        )

    def notices(self) -> list[dict[str, str]]:
        answer = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10)
        for message in answer.get("Messages", []):
            self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
        return [json.loads(m["Body"]) for m in answer.get("Messages", [])]

    def states(self) -> dict[str, str]:
        try:
            value = self.ssm.get_parameter(Name=PARAMETER)["Parameter"]["Value"]
        except self.ssm.exceptions.ParameterNotFound:
            return {}
        return dict(json.loads(value))


MODELS = [
    ConfiguredModel(
        config_key="descriptions.model_id", model_id=PROFILE, used_for="product descriptions"
    ),
    ConfiguredModel(
        config_key="titan.base_model_id", model_id=TITAN, used_for="Titan customization"
    ),
    ConfiguredModel(config_key="extra.canvas", model_id=CANVAS, used_for="a test"),
    ConfiguredModel(config_key="extra.old", model_id=OLD_CLAUDE, used_for="a test"),
]


def answer_all(stage: Stage, *, titan: dict[str, Any] | None = LEGACY) -> None:
    stage.answer_profile()
    stage.answer(CLAUDE, ACTIVE)
    stage.answer(TITAN, titan)
    stage.answer(CANVAS, EXTENDED)
    stage.answer(OLD_CLAUDE, None)


@pytest.fixture
def stage() -> Iterator[Stage]:
    with mock_aws():
        stage = Stage()
        with stage.stubber:
            yield stage
        stage.stubber.assert_no_pending_responses()


def emf_lines(output: str) -> list[dict[str, Any]]:
    lines = []
    for line in output.splitlines():
        if line.startswith("{") and "_aws" in line:
            lines.append(json.loads(line))
    return lines


def metric_values(output: str) -> dict[tuple[str, str], float]:
    """(metric, model) -> value, from the EMF lines the run printed."""
    values = {}
    for document in emf_lines(output):
        for definition in document["_aws"]["CloudWatchMetrics"]:
            for metric in definition["Metrics"]:
                name = metric["Name"]
                value = document[name]
                assert document["deployment"] == "atelier-dev"
                values[(name, document.get("model", ""))] = (
                    value[0] if isinstance(value, list) else value
                )
    return values


def test_each_state_gets_a_metric_and_one_notice(
    stage: Stage, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the four models, nothing remembered yet
    answer_all(stage)
    # When the check runs
    report = stage.checker.check(MODELS, NOW)
    # Then every model has its stage, its days to end of life and whether it needs attention
    values = metric_values(capsys.readouterr().out)
    assert values[("LifecycleStage", CLAUDE)] == 0
    assert values[("NeedsAttention", CLAUDE)] == 0
    assert ("DaysToEndOfLife", CLAUDE) not in values  # Active, no end of life announced
    assert values[("LifecycleStage", TITAN)] == 1
    assert values[("DaysToEndOfLife", TITAN)] == pytest.approx(200)
    assert values[("LifecycleStage", CANVAS)] == 2
    assert values[("DaysToEndOfLife", CANVAS)] == pytest.approx(60)
    assert values[("LifecycleStage", OLD_CLAUDE)] == 3
    assert values[("NeedsAttention", OLD_CLAUDE)] == 1
    assert values[("ModelsNeedingAttention", "")] == 3
    # ... and a notice for each model that needs attention, naming the model, dates and key
    notices = {n["Subject"]: n["Message"] for n in stage.notices()}
    assert len(notices) == 3, notices
    titan = notices[f"[atelier-dev] Bedrock model {TITAN}: legacy"]
    assert "titan.base_model_id in cdk.json" in titan
    assert (NOW - timedelta(days=10)).date().isoformat() in titan  # Legacy since
    assert (NOW + timedelta(days=200)).date().isoformat() in titan  # end of life
    canvas = notices[f"[atelier-dev] Bedrock model {CANVAS}: extended access"]
    assert "public extended access" in canvas
    assert "within 90 days (lifecycle.warning_days)" in canvas
    gone = notices[f"[atelier-dev] Bedrock model {OLD_CLAUDE}: not found"]
    assert "extra.old in cdk.json" in gone
    # ... and the profile was resolved to its model (one check, whatever the regions)
    assert [(m.foundation_model_id, m.notified) for m in report.models] == [
        (CLAUDE, False),
        (TITAN, True),
        (CANVAS, True),
        (OLD_CLAUDE, True),
    ]
    assert stage.states()[f"titan.base_model_id|{TITAN}|{TITAN}"] == "legacy"


def test_an_unchanged_state_is_not_notified_twice(stage: Stage) -> None:
    answer_all(stage)
    stage.checker.check(MODELS, NOW)
    assert len(stage.notices()) == 3
    # The next day nothing changed: metrics again, no notice
    answer_all(stage)
    report = stage.checker.check(MODELS, NOW + timedelta(days=1))
    assert stage.notices() == []
    assert report.needing_attention == 3
    assert not any(model.notified for model in report.models)


def test_each_state_change_is_notified_once(stage: Stage) -> None:
    answer_all(stage)
    stage.checker.check(MODELS, NOW)
    stage.notices()
    # 120 days later the Legacy Titan model ends within 90 days: one more notice ...
    later = NOW + timedelta(days=120)
    answer_all(stage)
    stage.checker.check(MODELS, later)
    subjects = [n["Subject"] for n in stage.notices()]
    # (the extended-access model has passed its end of life meanwhile: a change too)
    assert sorted(subjects) == [
        f"[atelier-dev] Bedrock model {CANVAS}: end of life",
        f"[atelier-dev] Bedrock model {TITAN}: extended access",
    ]
    # ... and none the day after
    answer_all(stage)
    stage.checker.check(MODELS, later + timedelta(days=1))
    assert stage.notices() == []


def test_an_active_model_ending_soon_is_notified(stage: Stage) -> None:
    ending = {"status": "ACTIVE", "endOfLifeTime": NOW + timedelta(days=30)}
    stage.answer(TITAN, ending)
    report = stage.checker.check(MODELS[1:2], NOW)
    (notice,) = stage.notices()
    assert "Active; end of life " in notice["Message"]
    assert "30 days left" in notice["Message"]
    assert report.models[0].assessment.state_key == "active+ending_soon"


def test_a_model_that_cannot_be_read_fails_the_run_after_the_others(stage: Stage) -> None:
    stage.answer_profile()
    stage.answer(CLAUDE, ACTIVE)
    stage.stubber.add_client_error(
        "get_foundation_model",
        service_error_code="ThrottlingException",
        expected_params={"modelIdentifier": TITAN},
    )
    stage.answer(CANVAS, EXTENDED)
    stage.answer(OLD_CLAUDE, None)
    with pytest.raises(CheckIncompleteError, match=r"titan.base_model_id .*ThrottlingException"):
        run(stage.checker, MODELS, NOW)
    # The others were checked and notified; Titan's state is not remembered, so the next run
    # notices it
    assert len(stage.notices()) == 2
    assert not any(key.startswith("titan.") for key in stage.states())


def test_a_failed_notice_is_sent_again_next_run(stage: Stage) -> None:
    stage.answer(TITAN, LEGACY)
    stage.checker.notifier = _Failing()
    report = stage.checker.check(MODELS[1:2], NOW)
    assert report.errors
    assert stage.states() == {}
    stage.checker.notifier = stage.notifier
    stage.answer(TITAN, LEGACY)
    assert stage.checker.check(MODELS[1:2], NOW).models[0].notified


def test_a_new_setting_starts_afresh(stage: Stage) -> None:
    stage.answer(TITAN, LEGACY)
    stage.checker.check(MODELS[1:2], NOW)
    stage.notices()
    # The same model under another setting is that setting's news
    moved = ConfiguredModel(config_key="titan.other", model_id=TITAN, used_for="x")
    stage.answer(TITAN, LEGACY)
    assert stage.checker.check([moved], NOW).models[0].notified


def test_inference_profile_ids_are_told_from_model_ids() -> None:
    assert is_inference_profile(PROFILE)
    assert is_inference_profile("us.anthropic.claude-3-5-sonnet-20240620-v1:0")
    assert is_inference_profile(f"arn:aws:bedrock:{REGION}:123456789012:inference-profile/x.y.z")
    assert not is_inference_profile(OLD_CLAUDE)
    assert not is_inference_profile(f"arn:aws:bedrock:{REGION}::foundation-model/{TITAN}")


def test_the_configured_models_come_from_the_environment() -> None:
    raw = json.dumps([{"configKey": "titan.base_model_id", "modelId": TITAN, "usedFor": "Titan"}])
    assert configured_models(raw)[0].model_id == TITAN


class _Failing:
    def publish(self, *, subject: str, message: str) -> None:
        raise RuntimeError("SNS is down")
