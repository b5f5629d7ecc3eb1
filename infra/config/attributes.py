"""`descriptions.attributes`: where the description pipeline reads a photo's attributes.

`vision-llm` asks a Claude model on Bedrock (one Converse call per photo, nothing to train);
`endpoint` asks the fine-tuned VQA model on its SageMaker endpoint. `auto` is `endpoint` when the
stage hosts the VQA model or names an endpoint of its own (`vqa.hosting.model_data_url` or
`vqa.hosting.endpoint_name`), and `vision-llm` otherwise, so a new stage describes photos on the
day it is deployed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ValidationInfo, field_validator

from infra.config.constants import BEDROCK_MODEL_PATTERN
from infra.config.rules import choice, is_loading, matching, refuse, section
from infra.constructs.bedrock_models import (
    STRUCTURED_OUTPUT_SETTINGS,
    StructuredOutput,
    resolve_structured_output,
)

AttributeSource = Literal["vision-llm", "endpoint"]
ATTRIBUTE_SOURCE_SETTINGS = ("auto", "vision-llm", "endpoint")


def resolved_structured_output(cls: type, value: Any, info: ValidationInfo) -> Any:
    """A section's `structured_output` (`auto` or a mode) resolved against its `model_id`, as
    Bedrock will run that model: the validator of every section that names a Claude model."""
    model_id = info.data.get("model_id")
    if not is_loading(info) or not isinstance(model_id, str):
        return value
    if isinstance(value, bool) or value not in STRUCTURED_OUTPUT_SETTINGS:
        return value  # refused by its rule, with the allowed values
    try:
        return resolve_structured_output(model_id, value)
    except ValueError as error:
        raise refuse(str(error)) from None


@section
class AttributesConfig:
    """Which source answers the attribute questions, and the vision model when it is Bedrock."""

    source: Literal["auto", "vision-llm", "endpoint"] = choice(
        ATTRIBUTE_SOURCE_SETTINGS,
        "who reads the attributes: `vision-llm` (a Claude model on Bedrock, no training), "
        "`endpoint` (the fine-tuned VQA model's SageMaker endpoint) or `auto` (`endpoint` when "
        "`vqa.hosting` has a `model_data_url` or an `endpoint_name`, `vision-llm` otherwise)",
    )
    model_id: str = matching(
        BEDROCK_MODEL_PATTERN,
        "a Bedrock model id, inference profile id, or the ARN of a foundation model or "
        "inference profile",
        "the Bedrock model that reads attributes from the photo with `vision-llm` (it must "
        "accept images); watched by the lifecycle check",
    )
    # Resolved from `auto` while loading, as the description model's is.
    structured_output: StructuredOutput = choice(
        STRUCTURED_OUTPUT_SETTINGS,
        "how the vision model returns its answers: `tool`, `json_schema` or `auto` (as "
        "`descriptions.structured_output`)",
    )

    _resolve = field_validator("structured_output", mode="before")(resolved_structured_output)
