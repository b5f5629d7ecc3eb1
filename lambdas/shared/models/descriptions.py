"""Pydantic models of the description pipeline: its settings, the API's request and answer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from shared.models.attributes import AttributesSource

PRODUCT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
ProductId = Annotated[str, StringConstraints(pattern=PRODUCT_ID_PATTERN)]

# Bumped whenever prompts, grounding rules or the stored shape change, so stored descriptions
# say which pipeline wrote them.
# 2: `attributesSource` records the attribute source (endpoint or vision-llm) and its model.
PIPELINE_VERSION = "2"


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="forbid")


class ImageLimitsSettings(_Model):
    max_bytes: int = Field(alias="maxBytes", gt=0)
    max_pixels: int = Field(alias="maxPixels", gt=0)
    max_side: int = Field(alias="maxSide", gt=0)
    min_side: int = Field(alias="minSide", gt=0)


class PipelineSettings(_Model):
    """The `DESCRIPTIONS_SETTINGS` environment variable, written by the Api stack from cdk.json."""

    endpoint_name: str = Field(alias="endpointName", min_length=1)
    model_id: str = Field(alias="modelId", min_length=1)
    # How the text model answers: a forced tool call, or Converse's JSON-schema output format
    # (`descriptions.structured_output`, resolved from `auto` when the stack is synthesized).
    structured_output: Literal["tool", "json_schema"] = Field(alias="structuredOutput")
    max_tokens_per_language: int = Field(alias="maxTokensPerLanguage", gt=0)
    temperature: float = Field(ge=0, le=1)
    languages: tuple[str, ...] = Field(min_length=1)
    default_languages: tuple[str, ...] = Field(alias="defaultLanguages", min_length=1)
    max_languages_per_request: int = Field(alias="maxLanguagesPerRequest", gt=0)
    questions: dict[str, str] = Field(min_length=1)
    categories: dict[str, tuple[str, ...]] = Field(min_length=1)
    image: ImageLimitsSettings
    grounding_retries: int = Field(alias="groundingRetries", ge=0)


class DescribeRequest(BaseModel):
    """Body of `POST /descriptions`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    productId: ProductId = Field(  # noqa: N815 - the API's JSON field names
        description="Your product id; the description is stored and retrieved under it.",
        examples=["38642"],
    )
    image: str = Field(
        description="The product photo, JPEG, PNG or WebP, base64-encoded (a data: URL prefix is "
        "accepted).",
        min_length=1,
    )
    category: str | None = Field(
        default=None,
        description="Product category selecting the attribute questions; the default set when "
        "omitted.",
        examples=["Shirts"],
    )
    languages: list[str] | None = Field(
        default=None,
        description="Languages to write the description in, e.g. ['en', 'de']; the configured "
        "default when omitted.",
        examples=[["en", "de"]],
    )


class LocalizedDescription(BaseModel):
    """One language's text, as Claude wrote it through the `record_descriptions` tool."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    language: str
    title: str = Field(min_length=1, max_length=300)
    description: str = Field(min_length=1, max_length=5000)
    bullets: list[Annotated[str, StringConstraints(min_length=1, max_length=500)]] = Field(
        min_length=1, max_length=12
    )
    keywords: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] = Field(
        min_length=1, max_length=30
    )


class GroundingReport(BaseModel):
    """Which extracted attributes the text uses, and any value it states that contradicts one."""

    model_config = ConfigDict(populate_by_name=True, frozen=True)

    checked_language: str | None = Field(
        alias="checkedLanguage",
        description="The language the check read; null when no language with a vocabulary was "
        "requested (only English has one today).",
    )
    covered: list[str]
    missing: list[str]
    contradictions: list[str]


class StoredDescription(BaseModel):
    """What `GET /descriptions/{productId}` and `POST /descriptions` return."""

    model_config = ConfigDict(populate_by_name=True, frozen=True)

    product_id: str = Field(alias="productId")
    category: str
    image_key: str = Field(alias="imageKey", description="S3 key of the upload, or 'api:<sha256>'")
    image_sha256: str = Field(alias="imageSha256")
    attributes: dict[str, str]
    descriptions: dict[str, LocalizedDescription]
    grounding: GroundingReport
    attribute_model: str = Field(
        alias="attributeModel", description="The model that read the attributes (as below)"
    )
    attributes_source: AttributesSource = Field(
        alias="attributesSource",
        description="Which attribute source answered (endpoint or vision-llm) and its model",
    )
    text_model: str = Field(alias="textModel")
    timings_ms: dict[str, int] = Field(alias="timingsMs")
    usage: dict[str, int]
    result_key: str = Field(
        alias="resultKey", description="S3 key of the JSON in the results bucket"
    )
    created_at: str = Field(alias="createdAt")
    version: str

    @model_validator(mode="before")
    @classmethod
    def _source_of_older_items(cls, data: Any) -> Any:
        """Descriptions stored before version 2 came from the endpoint (or its Batch Transform
        job), which `attributeModel` names."""
        if (
            isinstance(data, dict)
            and "attributesSource" not in data
            and ("attributes_source" not in data)
        ):
            model = data.get("attributeModel", data.get("attribute_model"))
            if isinstance(model, str) and model:
                return {**data, "attributesSource": {"kind": "endpoint", "model": model}}
        return data


@dataclass(frozen=True)
class TextModelReply:
    """What the pipeline needs from a text-model answer: the structured answer in whichever
    shape the model gave it (a tool call's input, or text that should be the JSON document)."""

    tool_input: Mapping[str, Any] | None
    stop_reason: str
    input_tokens: int
    output_tokens: int
    # The answer's text blocks joined; the JSON document in json_schema mode.
    text: str | None = None

    @classmethod
    def from_converse(cls, response: Mapping[str, Any]) -> TextModelReply:
        """Read a Converse response: tool call input or text, stop reason and token counts.

        Online answers and Converse batch outputs (whose `modelOutput` is a Converse response)
        are read by this one method, so both paths see the same reply."""
        output = response.get("output")
        message = output.get("message") if isinstance(output, Mapping) else None
        blocks = _blocks(message.get("content") if isinstance(message, Mapping) else None)
        tool_input = next(
            (
                block["toolUse"].get("input")
                for block in blocks
                if isinstance(block.get("toolUse"), Mapping)
            ),
            None,
        )
        texts = [block["text"] for block in blocks if isinstance(block.get("text"), str)]
        usage = response.get("usage")
        counts: Mapping[str, Any] = usage if isinstance(usage, Mapping) else {}
        return cls(
            tool_input=tool_input,
            stop_reason=str(response.get("stopReason", "")),
            input_tokens=int(counts.get("inputTokens", 0)),
            output_tokens=int(counts.get("outputTokens", 0)),
            text="".join(texts) if texts else None,
        )

    @classmethod
    def from_anthropic_messages(cls, response: Mapping[str, Any]) -> TextModelReply:
        """Read an Anthropic Messages API response (InvokeModel batch outputs in tool mode):
        `content` blocks of type `tool_use` or `text`, `stop_reason`, `usage` in snake case."""
        blocks = _blocks(response.get("content"))
        tool_input = next(
            (
                block.get("input")
                for block in blocks
                if block.get("type") == "tool_use" and isinstance(block.get("input"), Mapping)
            ),
            None,
        )
        texts = [
            block["text"]
            for block in blocks
            if block.get("type") == "text" and isinstance(block.get("text"), str)
        ]
        usage = response.get("usage")
        counts: Mapping[str, Any] = usage if isinstance(usage, Mapping) else {}
        return cls(
            tool_input=tool_input,
            stop_reason=str(response.get("stop_reason", "")),
            input_tokens=int(counts.get("input_tokens", 0)),
            output_tokens=int(counts.get("output_tokens", 0)),
            text="".join(texts) if texts else None,
        )


def _blocks(content: Any) -> list[Mapping[str, Any]]:
    return [
        block
        for block in (content if isinstance(content, list) else [])
        if isinstance(block, Mapping)
    ]
