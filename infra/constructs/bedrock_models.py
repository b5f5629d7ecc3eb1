"""The resources `bedrock:InvokeModel` must name for a configured model id.

A call through a system-defined (cross-region) inference profile is authorized twice: on the
profile, and on the foundation model in whichever region the profile routes the request to. So a
profile needs its own ARN plus the model's ARN in every region; a `global.` profile may also route
to a region-less model ARN.
"""

from __future__ import annotations

import re

# Prefixes of the system-defined inference profiles (`us.anthropic.claude-...`).
INFERENCE_PROFILE_GEOS = ("us", "eu", "apac", "jp", "au", "ca", "us-gov", "global")

_ARN = re.compile(
    r"^arn:aws:bedrock:[a-z0-9-]*:\d{0,12}:(?P<kind>foundation-model|inference-profile)/(?P<id>.+)$"
)


def _profile_model(model_id: str) -> tuple[str, str] | None:
    """(geo, foundation model id) if `model_id` is a system inference profile id."""
    geo, _, model = model_id.partition(".")
    if geo in INFERENCE_PROFILE_GEOS and "." in model:
        return geo, model
    return None


def _model_arns(geo: str, model: str) -> list[str]:
    arns = [f"arn:aws:bedrock:*::foundation-model/{model}"]
    if geo == "global":
        arns.append(f"arn:aws:bedrock:::foundation-model/{model}")
    return arns


def invoke_model_arns(model_id: str, *, region: str, account: str) -> list[str]:
    """Every ARN a caller of `model_id` must be allowed `bedrock:InvokeModel` on."""
    match = _ARN.fullmatch(model_id)
    if match:
        profile = _profile_model(match["id"]) if match["kind"] == "inference-profile" else None
        return [model_id, *_model_arns(*profile)] if profile else [model_id]
    profile = _profile_model(model_id)
    if profile is None:
        return [f"arn:aws:bedrock:{region}::foundation-model/{model_id}"]
    return [
        f"arn:aws:bedrock:{region}:{account}:inference-profile/{model_id}",
        *_model_arns(*profile),
    ]
