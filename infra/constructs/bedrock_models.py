"""The text model's id, read at synthesis: which ARNs IAM must name, which structured mode it uses.

A call through a system-defined (cross-region) inference profile is authorized twice: on the
profile, and on the foundation model in whichever region the profile routes the request to. So a
profile needs its own ARN plus the model's ARN in every region of its geography; a `global.`
profile routes to any commercial region and also to a region-less model ARN.

The geography is granted as a region prefix (`eu-*`), not as a list of today's destination
regions: AWS adds destination regions to a profile without notice, and a request routed to a
region missing from the list would fail with AccessDenied. Only `global.` needs `*`.

Those wide model ARNs are only usable through the profile: their statement carries the
condition `bedrock:InferenceProfileArn` = the profile's ARN (Bedrock user guide, "Prerequisites
for inference profiles", checked 2026-12-07), so a caller cannot invoke the model directly in
any region. ARNs are built in the stack's partition (`${AWS::Partition}`), not `aws`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from aws_cdk import Aws, Stack
from aws_cdk import aws_iam as iam

# Prefixes of the system-defined inference profiles (`us.anthropic.claude-...`).
INFERENCE_PROFILE_GEOS = ("us", "eu", "apac", "jp", "au", "ca", "us-gov", "global")

# The regions (as an IAM region pattern) each geography's profiles route to. `jp.` and `au.`
# profiles stay in Japan's and Australia's regions (Tokyo/Osaka, Sydney/Melbourne).
GEO_REGION_PATTERNS = {
    "us": "us-*",
    "eu": "eu-*",
    "apac": "ap-*",
    "jp": "ap-northeast-*",
    "au": "ap-southeast-*",
    "ca": "ca-*",
    "us-gov": "us-gov-*",
    "global": "*",
}

StructuredOutput = Literal["tool", "json_schema"]
STRUCTURED_OUTPUT_SETTINGS = ("auto", "tool", "json_schema")
# Claude releases from this one on answer through Converse's JSON-schema output format
# (`outputConfig.textFormat`); newer ones refuse forced tool use.
FIRST_JSON_SCHEMA_CLAUDE = (4, 5)

# The request context key Bedrock sets on the foundation-model check of a call made through an
# inference profile: the profile's ARN.
INFERENCE_PROFILE_ARN_KEY = "bedrock:InferenceProfileArn"

_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):bedrock:[a-z0-9-]*:\d{0,12}:(?P<kind>foundation-model|inference-profile)/(?P<id>.+)$"
)
# `claude-3-5-sonnet-2024...`, `claude-sonnet-4-5-2025...`, `claude-sonnet-4-6`: the release
# is the first one or two short numbers after `claude-` (dates have eight digits).
_CLAUDE_RELEASE = re.compile(r"^anthropic\.claude-(?:[a-z]+-)*?(\d{1,2})(?:-(\d{1,2}))?(?:-|$|:)")


def _profile_model(model_id: str) -> tuple[str, str] | None:
    """(geo, foundation model id) if `model_id` is a system inference profile id."""
    geo, _, model = model_id.partition(".")
    if geo in INFERENCE_PROFILE_GEOS and "." in model:
        return geo, model
    return None


def _model_arns(partition: str, geo: str, model: str) -> list[str]:
    arns = [f"arn:{partition}:bedrock:{GEO_REGION_PATTERNS[geo]}::foundation-model/{model}"]
    if geo == "global":
        arns.append(f"arn:{partition}:bedrock:::foundation-model/{model}")
    return arns


def invoke_model_arns(model_id: str, *, region: str, account: str, partition: str) -> list[str]:
    """Every ARN a caller of `model_id` must be allowed `bedrock:InvokeModel` on; for a profile,
    its own ARN first, then its foundation model's."""
    match = _ARN.fullmatch(model_id)
    if match:
        profile = _profile_model(match["id"]) if match["kind"] == "inference-profile" else None
        # A given ARN names its own partition; the models it routes to are in the same one.
        return [model_id, *_model_arns(match["partition"], *profile)] if profile else [model_id]
    profile = _profile_model(model_id)
    if profile is None:
        return [f"arn:{partition}:bedrock:{region}::foundation-model/{model_id}"]
    return [
        f"arn:{partition}:bedrock:{region}:{account}:inference-profile/{model_id}",
        *_model_arns(partition, *profile),
    ]


@dataclass(frozen=True)
class ModelGrant:
    """The resources of one IAM statement; `through_profile` set: only via that profile."""

    resources: tuple[str, ...]
    through_profile: str | None = None

    @property
    def conditions(self) -> dict[str, dict[str, str]] | None:
        if self.through_profile is None:
            return None
        return {"StringEquals": {INFERENCE_PROFILE_ARN_KEY: self.through_profile}}


def invoke_model_grants(
    model_id: str, *, region: str, account: str, partition: str
) -> list[ModelGrant]:
    """A foundation model: one grant on its ARN. A profile: the profile's ARN, and its
    foundation model's ARNs on condition that the call comes through that profile."""
    arns = invoke_model_arns(model_id, region=region, account=account, partition=partition)
    if len(arns) == 1:
        return [ModelGrant(tuple(arns))]
    profile, *models = arns
    return [ModelGrant((profile,)), ModelGrant(tuple(models), through_profile=profile)]


def invoke_model_statements(
    stack: Stack, model_id: str, actions: Sequence[str] = ("bedrock:InvokeModel",)
) -> list[iam.PolicyStatement]:
    """The statements allowing `actions` (InvokeModel also authorizes Converse) on `model_id`
    in `stack`'s region, account and partition."""
    return [
        iam.PolicyStatement(
            actions=list(actions), resources=list(grant.resources), conditions=grant.conditions
        )
        for grant in invoke_model_grants(
            model_id, region=stack.region, account=stack.account, partition=Aws.PARTITION
        )
    ]


def nag_model_arns(model_id: str) -> list[str]:
    """The model ARNs as cdk-nag names them in findings (tokens as `<AWS::Region>`)."""
    return invoke_model_arns(
        model_id,
        region="<AWS::Region>",
        account="<AWS::AccountId>",
        partition="<AWS::Partition>",
    )


def inference_profile_id(model_id: str) -> str | None:
    """The system inference profile an id or ARN names (`global.anthropic.claude-sonnet-4-6`);
    None for a foundation model."""
    match = _ARN.fullmatch(model_id)
    bare = match["id"] if match else model_id
    return bare if _profile_model(bare) else None


def foundation_model_id(model_id: str) -> str:
    """The foundation model behind an id, profile id or ARN (`anthropic.claude-sonnet-4-6`)."""
    match = _ARN.fullmatch(model_id)
    bare = match["id"] if match else model_id
    profile = _profile_model(bare)
    return profile[1] if profile else bare


def claude_release(model_id: str) -> tuple[int, int] | None:
    """(major, minor) of a Claude model (`(4, 6)` for Sonnet 4.6); None for any other model."""
    found = _CLAUDE_RELEASE.match(foundation_model_id(model_id))
    if found is None:
        return None
    return int(found[1]), int(found[2] or 0)


def resolve_structured_output(model_id: str, setting: str) -> StructuredOutput:
    """The mode `descriptions.structured_output` stands for with this model.

    `auto`: Claude before 4.5 uses forced tool use (those releases predate Bedrock's structured
    outputs); Claude 4.5 and newer, and every other model family, use the JSON-schema output
    format (newer Claude models refuse forced tool use, it is the mode extended thinking allows,
    and it is the only mode a Converse batch job accepts). Raises ValueError when
    the catalog's batch jobs could not run the mode: a Converse batch job refuses `toolConfig`,
    so tool mode goes through InvokeModel with the model's native body, which this project
    writes for Claude (Anthropic's Messages API) only.
    """
    if setting not in STRUCTURED_OUTPUT_SETTINGS:
        raise ValueError(f"must be one of {', '.join(STRUCTURED_OUTPUT_SETTINGS)}")
    release = claude_release(model_id)
    mode: StructuredOutput
    if setting == "auto":
        old_claude = release is not None and release < FIRST_JSON_SCHEMA_CLAUDE
        mode = "tool" if old_claude else "json_schema"
    else:
        mode = "tool" if setting == "tool" else "json_schema"
    if mode == "tool" and release is None:
        raise ValueError(
            f"is {setting!r}, which means forced tool use for {model_id}; Bedrock batch jobs "
            "(the catalog path) refuse tool use in Converse records, and the native request "
            "body written here is Claude's: set it to 'json_schema' (the model must support "
            "Bedrock's structured outputs) or choose a Claude model"
        )
    return mode


def batch_invocation_type(mode: StructuredOutput) -> Literal["Converse", "InvokeModel"]:
    """`ModelInvocationType` of the catalog's batch jobs: Converse records may not carry
    `toolConfig`, so tool mode writes Anthropic Messages bodies for InvokeModel instead."""
    return "Converse" if mode == "json_schema" else "InvokeModel"
