"""Which ARNs `bedrock:InvokeModel` must name for each way of configuring a model, and which of
them only through the configured inference profile."""

from __future__ import annotations

import pytest
from aws_cdk import App, Stack

from infra.constructs.bedrock_models import (
    GEO_REGION_PATTERNS,
    INFERENCE_PROFILE_GEOS,
    ModelGrant,
    StructuredOutput,
    batch_invocation_type,
    claude_release,
    foundation_model_id,
    invoke_model_arns,
    invoke_model_grants,
    invoke_model_statements,
)

MODEL = "anthropic.claude-3-sonnet-20240229-v1:0"


def _arns(model_id: str) -> list[str]:
    return invoke_model_arns(model_id, region="eu-west-1", account="123456789012", partition="aws")


def _grants(model_id: str) -> list[ModelGrant]:
    return invoke_model_grants(
        model_id, region="eu-west-1", account="123456789012", partition="aws"
    )


def test_a_foundation_model_id_is_its_regional_arn() -> None:
    assert _arns(MODEL) == [f"arn:aws:bedrock:eu-west-1::foundation-model/{MODEL}"]


@pytest.mark.parametrize(
    ("geo", "regions"),
    [
        ("us", "us-*"),
        ("eu", "eu-*"),
        ("apac", "ap-*"),
        ("jp", "ap-northeast-*"),
        ("au", "ap-southeast-*"),
        ("ca", "ca-*"),
        ("us-gov", "us-gov-*"),
    ],
)
def test_a_geographic_profile_needs_the_model_in_its_geographys_regions_only(
    geo: str, regions: str
) -> None:
    # Given a system inference profile id, When its ARNs are listed
    arns = _arns(f"{geo}.{MODEL}")
    # Then the profile in this account and region, and the model in the regions of the
    # profile's geography, never in any region
    assert arns == [
        f"arn:aws:bedrock:eu-west-1:123456789012:inference-profile/{geo}.{MODEL}",
        f"arn:aws:bedrock:{regions}::foundation-model/{MODEL}",
    ]


def test_every_profile_geography_has_its_regions() -> None:
    assert set(GEO_REGION_PATTERNS) == set(INFERENCE_PROFILE_GEOS)
    wide = [geo for geo, pattern in GEO_REGION_PATTERNS.items() if pattern == "*"]
    assert wide == ["global"]


def test_a_global_profile_also_needs_the_region_less_model() -> None:
    assert _arns(f"global.{MODEL}") == [
        f"arn:aws:bedrock:eu-west-1:123456789012:inference-profile/global.{MODEL}",
        f"arn:aws:bedrock:*::foundation-model/{MODEL}",
        f"arn:aws:bedrock:::foundation-model/{MODEL}",
    ]


def test_arns_are_built_in_the_given_partition() -> None:
    arns = invoke_model_arns(
        f"us-gov.{MODEL}", region="us-gov-west-1", account="123456789012", partition="aws-us-gov"
    )
    assert arns == [
        f"arn:aws-us-gov:bedrock:us-gov-west-1:123456789012:inference-profile/us-gov.{MODEL}",
        f"arn:aws-us-gov:bedrock:us-gov-*::foundation-model/{MODEL}",
    ]


def test_a_profile_arn_keeps_its_partition_for_its_models() -> None:
    arn = f"arn:aws-us-gov:bedrock:us-gov-west-1:123456789012:inference-profile/us-gov.{MODEL}"
    assert _arns(arn) == [arn, f"arn:aws-us-gov:bedrock:us-gov-*::foundation-model/{MODEL}"]


def test_a_foundation_model_is_one_grant_without_condition() -> None:
    (grant,) = _grants(MODEL)
    assert grant.resources == (f"arn:aws:bedrock:eu-west-1::foundation-model/{MODEL}",)
    assert grant.conditions is None


@pytest.mark.parametrize("geo", ["global", "eu"])
def test_a_profiles_models_are_granted_only_through_that_profile(geo: str) -> None:
    # Given a system inference profile, When its grants are listed
    profile, models = _grants(f"{geo}.{MODEL}")
    # Then the profile itself unconditionally, and its wide model ARNs only when the call
    # comes through exactly this profile (not directly, in any region)
    profile_arn = f"arn:aws:bedrock:eu-west-1:123456789012:inference-profile/{geo}.{MODEL}"
    assert profile == ModelGrant((profile_arn,))
    assert profile.conditions is None
    assert list(models.resources) == _arns(f"{geo}.{MODEL}")[1:]
    assert models.conditions == {"StringEquals": {"bedrock:InferenceProfileArn": profile_arn}}


def test_the_statements_name_the_stacks_partition_region_and_account() -> None:
    stack = Stack(App(), "Models")
    profile, models = (
        stack.resolve(statement.to_statement_json())
        for statement in invoke_model_statements(stack, f"global.{MODEL}")
    )
    profile_arn = {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":bedrock:",
                {"Ref": "AWS::Region"},
                ":",
                {"Ref": "AWS::AccountId"},
                f":inference-profile/global.{MODEL}",
            ],
        ]
    }
    assert profile == {"Action": "bedrock:InvokeModel", "Effect": "Allow", "Resource": profile_arn}
    assert models["Condition"] == {"StringEquals": {"bedrock:InferenceProfileArn": profile_arn}}
    assert models["Resource"][0] == {
        "Fn::Join": [
            "",
            ["arn:", {"Ref": "AWS::Partition"}, f":bedrock:*::foundation-model/{MODEL}"],
        ]
    }


def test_a_foundation_model_arn_is_used_as_given() -> None:
    arn = f"arn:aws:bedrock:us-east-1::foundation-model/{MODEL}"
    assert _arns(arn) == [arn]


def test_a_profile_arn_keeps_its_own_arn_and_adds_its_models() -> None:
    arn = f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.{MODEL}"
    assert _arns(arn) == [arn, f"arn:aws:bedrock:us-*::foundation-model/{MODEL}"]


@pytest.mark.parametrize(
    "model_id",
    [
        "global.anthropic.claude-sonnet-4-6",
        "anthropic.claude-sonnet-4-6",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/global.anthropic.claude-sonnet-4-6",
        "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-sonnet-4-6",
    ],
)
def test_the_foundation_model_behind_any_form_of_id(model_id: str) -> None:
    assert foundation_model_id(model_id) == "anthropic.claude-sonnet-4-6"
    assert claude_release(model_id) == (4, 6)


@pytest.mark.parametrize(
    ("mode", "invocation_type"), [("json_schema", "Converse"), ("tool", "InvokeModel")]
)
def test_batch_jobs_use_the_invocation_type_that_accepts_the_mode(
    mode: StructuredOutput, invocation_type: str
) -> None:
    assert batch_invocation_type(mode) == invocation_type
