"""Which ARNs `bedrock:InvokeModel` must name for each way of configuring a model."""

from __future__ import annotations

import pytest

from infra.constructs.bedrock_models import (
    GEO_REGION_PATTERNS,
    INFERENCE_PROFILE_GEOS,
    StructuredOutput,
    batch_invocation_type,
    claude_release,
    foundation_model_id,
    invoke_model_arns,
)

MODEL = "anthropic.claude-3-sonnet-20240229-v1:0"


def _arns(model_id: str) -> list[str]:
    return invoke_model_arns(model_id, region="eu-west-1", account="123456789012")


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
