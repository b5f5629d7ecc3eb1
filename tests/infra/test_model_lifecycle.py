"""The model lifecycle guard in the Bedrock stack: the daily function, its schedule, exactly the
grants it needs, the alarms on the topic, and the inventory `atelier doctor` reads."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.config import load_stage_config
from infra.constructs import model_lifecycle
from infra.constructs.bedrock_models import foundation_model_id, inference_profile_id
from infra.constructs.model_lifecycle import configured_bedrock_models
from lifecycle.handlers import check
from tests.support import SynthesizedApp, cdk_json_context
from tests.templates import listed, one, render, resources, role_statements, ssm_parameters

pytestmark = pytest.mark.infra

STAGES = ("dev", "prod")


def _template(apps: dict[str, SynthesizedApp], stage: str) -> dict[str, Any]:
    return apps[stage].template("-bedrock")


@pytest.mark.parametrize("stage", STAGES)
def test_it_checks_the_configured_models_daily(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    template = _template(synthesized_apps, stage)
    config = load_stage_config(cdk_json_context(), stage)
    function_id, function = one(template, "AWS::Lambda::Function", "ModelLifecycleCheckFunction")
    assert function["Handler"] == "lifecycle.handlers.check.handler"
    variables = function["Environment"]["Variables"]
    # The models come from the configuration, each with the key that sets it
    models = json.loads(variables["CONFIGURED_MODELS"])
    # titan.base_model_id is null in the shipped stages: nothing to check (variant test below)
    assert config.titan.base_model_id is None
    # The shipped stages read attributes with the vision model: it is watched too
    assert config.attribute_source == "vision-llm"
    assert [(m["configKey"], m["modelId"]) for m in models] == [
        ("descriptions.model_id", config.descriptions.model_id),
        ("descriptions.attributes.model_id", config.descriptions.attributes.model_id),
    ]
    assert check.configured_models(variables["CONFIGURED_MODELS"])  # the handler reads it
    assert variables["WARNING_DAYS"] == str(config.lifecycle.warning_days)
    state = f"/atelier/{stage}/lifecycle/model-states"
    assert variables["STATE_PARAMETER"] == state
    # The function writes it; the stack publishes names only
    assert state not in ssm_parameters(template)
    _, rule = one(template, "AWS::Events::Rule", "ModelLifecycleSchedule")
    assert rule["ScheduleExpression"] == "cron(0 6 * * ? *)"
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}


@pytest.mark.parametrize("stage", STAGES)
def test_it_may_read_exactly_the_configured_models(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    template = _template(synthesized_apps, stage)
    config = load_stage_config(cdk_json_context(), stage)
    granted: dict[str, set[str]] = {}
    for statements in role_statements(template, "ModelLifecycleCheckFunctionRole").values():
        for statement in statements:
            for action in listed(statement["Action"]):
                granted.setdefault(action, set()).update(
                    render(resource, {}) for resource in listed(statement["Resource"])
                )
    region = "${AWS::Region}"
    expected_models = set()
    for model in configured_bedrock_models(config):
        profile = inference_profile_id(model.model_id)
        foundation = foundation_model_id(model.model_id)
        expected_models.add(
            f"arn:${{AWS::Partition}}:bedrock:{region}::foundation-model/{foundation}"
        )
        if profile is not None:
            assert granted["bedrock:GetInferenceProfile"] == {
                f"arn:${{AWS::Partition}}:bedrock:{region}:${{AWS::AccountId}}:"
                f"inference-profile/{profile}"
            }
    assert granted["bedrock:GetFoundationModel"] == expected_models
    assert not any("*" in resource for resource in granted["bedrock:GetFoundationModel"])
    bedrock_actions = {action for action in granted if action.startswith("bedrock:")}
    assert bedrock_actions <= {"bedrock:GetFoundationModel", "bedrock:GetInferenceProfile"}
    state = f"arn:${{AWS::Partition}}:ssm:{region}:${{AWS::AccountId}}:parameter/atelier/{stage}/"
    assert (
        granted["ssm:GetParameter"]
        == granted["ssm:PutParameter"]
        == {state + "lifecycle/model-states"}
    )
    assert "sns:Publish" in granted


def test_a_configured_image_base_model_is_checked_and_granted(
    variant_app: SynthesizedApp, synthesized_apps: dict[str, SynthesizedApp]
) -> None:
    """With titan.base_model_id set (the variant: G1 v2) the check lists it and may read exactly
    it; with null (shipped) no image model appears in its role at all."""
    titan = "amazon.titan-image-generator-v2:0"
    template = variant_app.template("-bedrock")
    _, function = one(template, "AWS::Lambda::Function", "ModelLifecycleCheckFunction")
    models = json.loads(function["Environment"]["Variables"]["CONFIGURED_MODELS"])
    assert [(m["configKey"], m["modelId"]) for m in models][1:] == [("titan.base_model_id", titan)]

    def foundation_models(template: dict[str, Any]) -> set[str]:
        return {
            render(resource, {})
            for statements in role_statements(template, "ModelLifecycleCheckFunctionRole").values()
            for statement in statements
            if "bedrock:GetFoundationModel" in listed(statement["Action"])
            for resource in listed(statement["Resource"])
        }

    assert f"arn:${{AWS::Partition}}:bedrock:${{AWS::Region}}::foundation-model/{titan}" in (
        foundation_models(template)
    )
    for stage in STAGES:
        granted = foundation_models(_template(synthesized_apps, stage))
        assert granted
        assert not [arn for arn in granted if "image" in arn or "canvas" in arn]


def test_an_inference_profile_is_told_from_a_model() -> None:
    def profile(model_id: str) -> tuple[str | None, str]:
        return inference_profile_id(model_id), foundation_model_id(model_id)

    assert profile("global.anthropic.claude-sonnet-4-6") == (
        "global.anthropic.claude-sonnet-4-6",
        "anthropic.claude-sonnet-4-6",
    )
    assert profile("eu.anthropic.claude-3-7-sonnet-20250219-v1:0")[1] == (
        "anthropic.claude-3-7-sonnet-20250219-v1:0"
    )
    assert profile("amazon.titan-image-generator-v1:0") == (
        None,
        "amazon.titan-image-generator-v1:0",
    )
    assert profile("arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-canvas-v1:0") == (
        None,
        "amazon.nova-canvas-v1:0",
    )


@pytest.mark.parametrize("stage", STAGES)
def test_an_alarm_watches_the_metric_the_function_publishes(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    template = _template(synthesized_apps, stage)
    topic_id, _ = one(template, "AWS::SNS::Topic")
    alarms = {
        alarm["Properties"]["AlarmName"]: alarm["Properties"]
        for alarm in resources(template, "AWS::CloudWatch::Alarm").values()
    }
    attention = alarms[f"atelier-{stage}-model-lifecycle-attention"]
    assert attention["MetricName"] == check.ATTENTION_METRIC == model_lifecycle.ATTENTION_METRIC
    assert attention["Namespace"] == "Atelier"
    assert {d["Name"]: d["Value"] for d in attention["Dimensions"]} == {
        "service": "model-lifecycle",
        "deployment": f"atelier-{stage}",
    }
    assert (attention["Statistic"], attention["Period"]) == ("Maximum", 86_400)
    errors = alarms[f"atelier-{stage}-model-lifecycle-errors"]
    assert errors["MetricName"] == "Errors"
    for alarm in (attention, errors):
        assert alarm["AlarmActions"] == [{"Ref": topic_id}]
    # CloudWatch may publish these alarms to the (encrypted) topic
    (policy,) = resources(template, "AWS::SNS::TopicPolicy").values()
    statement = next(
        s
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if s["Sid"] == "CloudWatchAlarms"
    )
    sources = json.dumps(statement["Condition"]["ArnLike"]["aws:SourceArn"])
    assert f"alarm:atelier-{stage}-model-lifecycle-*" in sources


@pytest.mark.parametrize("stage", STAGES)
def test_the_inventory_is_published_for_atelier_doctor(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    parameters = ssm_parameters(_template(synthesized_apps, stage))
    inventory = json.loads(parameters[f"/atelier/{stage}/bedrock/model-inventory"]["Value"])
    config = load_stage_config(cdk_json_context(), stage)
    assert inventory == model_lifecycle.stage_inventory(config)
    assert [e["name"] for e in inventory["endpoints"]] == [
        f"atelier-{stage}-vqa",
        f"atelier-{stage}-dreambooth",
        f"atelier-{stage}-styling",
    ]
    assert {m["configKey"] for m in inventory["trainingBaseModels"]} >= {
        "titan.base_model_id",
        "vqa.training.base_model",
        "dreambooth.training.base_model",
        "styling.training.base_model",
    }
    # Shipped: the image base model is listed as not configured (null), not left out, so
    # `atelier doctor` can say so; the lifecycle check has nothing to read for it.
    (titan,) = [
        m for m in inventory["trainingBaseModels"] if m["configKey"] == "titan.base_model_id"
    ]
    assert titan["modelId"] is None
    assert "titan.base_model_id" not in {m["configKey"] for m in inventory["bedrockModels"]}
