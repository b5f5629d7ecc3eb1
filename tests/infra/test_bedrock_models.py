"""Which ARNs `bedrock:InvokeModel` must name for each way of configuring a model."""

from __future__ import annotations

import pytest

from infra.constructs.bedrock_models import INFERENCE_PROFILE_GEOS, invoke_model_arns

MODEL = "anthropic.claude-3-sonnet-20240229-v1:0"


def _arns(model_id: str) -> list[str]:
    return invoke_model_arns(model_id, region="eu-west-1", account="123456789012")


def test_a_foundation_model_id_is_its_regional_arn() -> None:
    assert _arns(MODEL) == [f"arn:aws:bedrock:eu-west-1::foundation-model/{MODEL}"]


@pytest.mark.parametrize("geo", [g for g in INFERENCE_PROFILE_GEOS if g != "global"])
def test_a_geographic_profile_needs_the_model_in_every_region(geo: str) -> None:
    # Given a system inference profile id, When its ARNs are listed
    arns = _arns(f"{geo}.{MODEL}")
    # Then the profile in this account and region, and the model wherever the profile routes
    assert arns == [
        f"arn:aws:bedrock:eu-west-1:123456789012:inference-profile/{geo}.{MODEL}",
        f"arn:aws:bedrock:*::foundation-model/{MODEL}",
    ]


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
    assert _arns(arn) == [arn, f"arn:aws:bedrock:*::foundation-model/{MODEL}"]
