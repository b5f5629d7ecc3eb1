"""Attribute sources: who reads a product's attributes from its photo, and what they answer.

Two sources answer the same configured questions (`descriptions.questions`/`categories`):
- `endpoint`: the fine-tuned attribute model (BLIP-2) on a SageMaker endpoint, or a Batch
  Transform job of it in the catalog workflow;
- `vision-llm`: a general vision-language model on Bedrock (Claude through Converse), no training.

Both answers are the one document `{"attributes": {name: text}}`, validated by `AttributeAnswers`,
so the grounding check, the stored description and the API answer cannot tell them apart except
by `attributesSource`, which records the source and the model that answered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from shared.models.errors import DependencyError

AttributeSourceKind = Literal["endpoint", "vision-llm"]
ATTRIBUTE_SOURCE_KINDS: tuple[AttributeSourceKind, ...] = ("endpoint", "vision-llm")


class AttributeAnswers(BaseModel):
    """The answer of either source: one text per question name.

    Extra keys are ignored (a serving container may add its own); answers must be strings. Empty
    answers are allowed here and dropped by the pipeline (`answered`): a vision model says ""
    for a detail the photo does not show, as the endpoint does."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    attributes: dict[str, StrictStr]


def model_answers(answer: bytes | Mapping[str, Any], what: str) -> AttributeAnswers:
    """An attribute model's answer (its JSON bytes, or the document already parsed) as
    `{"attributes": {name: text}}`; anything else is the model's fault, named by `what`."""
    try:
        if isinstance(answer, bytes):
            return AttributeAnswers.model_validate_json(answer)
        return AttributeAnswers.model_validate(answer)
    except ValidationError:
        raise DependencyError(
            "attribute_model_bad_response",
            f'{what} did not answer {{"attributes": {{name: text}}}}',
            retryable=False,
        ) from None


class AttributesSource(BaseModel):
    """`attributesSource` of a stored description: which source and which model answered
    (the endpoint's or Batch Transform job's name, or the Bedrock model id)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: AttributeSourceKind
    model: str = Field(min_length=1)


class AttributeSourceSettings(BaseModel):
    """The functions' attribute-source variables, read by `attribute_source_settings`:

    - `ATTRIBUTE_SOURCE`: `endpoint` or `vision-llm` (unset: `endpoint`, what functions deployed
      before the variable existed use);
    - `ATTRIBUTE_MODEL_ID`: the Bedrock model or inference profile id; required for `vision-llm`;
    - `ATTRIBUTE_STRUCTURED_OUTPUT`: `tool` or `json_schema` for the vision model (resolved for
      that model id like `descriptions.structured_output`); unset: the description call's mode.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: AttributeSourceKind = "endpoint"
    model_id: str | None = Field(default=None, min_length=1)
    structured_output: Literal["tool", "json_schema"] | None = None
