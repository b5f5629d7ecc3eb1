"""`descriptions.attributes`: which source a stage reads attributes with, what the functions'
environment says, and the one grant each source needs (never both)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Template

from infra.config import ConfigError, StageConfig, load_stage_config
from infra.constructs.attribute_source import (
    attribute_source_environment,
    grant_attribute_source,
)
from tests.support import cdk_json_context

ARCHIVE = "s3://atelier-dev-models/vqa/training/job/output/model.tar.gz"
HAIKU = "global.anthropic.claude-haiku-4-5-20251001-v1:0"


def stage(**sections: Any) -> StageConfig:
    context = copy.deepcopy(cdk_json_context())
    context["atelier"]["stages"]["dev"] = sections
    return load_stage_config(context, "dev")


def granted(config: StageConfig) -> list[dict[str, Any]]:
    stack = Stack(App(), "Grants", env={"account": "123456789012", "region": "us-east-1"})
    role = iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    grant_attribute_source(stack, role, config)
    policies = Template.from_stack(stack).find_resources("AWS::IAM::Policy")
    return [
        statement
        for policy in policies.values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def actions(statements: list[dict[str, Any]]) -> set[str]:
    return {
        action
        for statement in statements
        for action in (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
    }


@pytest.mark.parametrize(
    ("sections", "source"),
    [
        ({}, "vision-llm"),
        ({"vqa": {"hosting": {"model_data_url": ARCHIVE}}}, "endpoint"),
        ({"vqa": {"hosting": {"endpoint_name": "shop-vqa"}}}, "endpoint"),
        ({"descriptions": {"attributes": {"source": "endpoint"}}}, "endpoint"),
        (
            {
                "vqa": {"hosting": {"model_data_url": ARCHIVE}},
                "descriptions": {"attributes": {"source": "vision-llm"}},
            },
            "vision-llm",
        ),
    ],
)
def test_auto_reads_with_the_endpoint_only_once_one_is_configured(
    sections: dict[str, Any], source: str
) -> None:
    assert stage(**sections).attribute_source == source


def test_the_vision_source_names_its_model_and_mode() -> None:
    config = stage(descriptions={"attributes": {"model_id": HAIKU, "structured_output": "tool"}})
    assert attribute_source_environment(config) == {
        "ATTRIBUTE_SOURCE": "vision-llm",
        "ATTRIBUTE_MODEL_ID": HAIKU,
        "ATTRIBUTE_STRUCTURED_OUTPUT": "tool",
    }
    # `auto` resolves against the vision model, as the description model's mode does.
    assert stage().descriptions.attributes.structured_output == "json_schema"


def test_the_endpoint_source_names_nothing_else() -> None:
    config = stage(descriptions={"attributes": {"source": "endpoint"}})
    assert attribute_source_environment(config) == {"ATTRIBUTE_SOURCE": "endpoint"}


def test_the_endpoint_source_may_invoke_only_the_endpoint() -> None:
    statements = granted(stage(vqa={"hosting": {"endpoint_name": "shop-vqa"}}))
    assert actions(statements) == {"sagemaker:InvokeEndpoint"}
    assert "endpoint/shop-vqa" in str(statements)


def test_a_vision_model_other_than_the_description_model_is_granted_alone() -> None:
    statements = granted(stage(descriptions={"attributes": {"model_id": HAIKU}}))
    assert actions(statements) == {"bedrock:InvokeModel"}
    assert "inference-profile/" + HAIKU in str(statements)
    assert "sagemaker" not in str(statements)


def test_the_description_models_grant_covers_the_same_vision_model() -> None:
    # The functions hold the description model's grant already: nothing is added twice.
    assert granted(stage()) == []


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        (
            {"source": "sometimes"},
            "descriptions.attributes.source = 'sometimes' is not allowed; allowed "
            "values: auto, vision-llm, endpoint",
        ),
        ({"model_id": ""}, "descriptions.attributes.model_id"),
        ({"colour": "red"}, "descriptions.attributes.colour is not a known key"),
    ],
)
def test_a_bad_attributes_key_is_one_line_naming_it(
    attributes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        stage(descriptions={"attributes": attributes})
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
