"""The `vision-llm` attribute source: Claude on Bedrock reads the attributes from the photo.

One Converse call per image: the photo as an image content block, the category's questions as the
properties of one structured answer, asked for the way the description call asks for its answer
(`tool`: a forced tool call; `json_schema`: Converse's output schema). The answer is validated by
`AttributeAnswers`, the model the endpoint's answers go through, so nothing after this step can
tell the sources apart.

The catalog's Bedrock batch records for the attributes step are built here too (`batch_input`), so
the batch path asks exactly what the online path asks.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from descriptions.logic.images import ImageInfo
from descriptions.logic.prompt import (
    ANTHROPIC_VERSION,
    MalformedAnswerError,
    StructuredOutput,
    UnstructuredAnswerError,
    answer_document,
)
from shared.models.attributes import AttributeAnswers, AttributesSource, model_answers
from shared.models.descriptions import TextModelReply
from shared.models.errors import DependencyError, RequestError

ConverseImageFormat = Literal["jpeg", "png", "gif", "webp"]


@dataclass(frozen=True)
class VisionImageLimits:
    """What Bedrock takes as one image in a Converse request to Claude."""

    formats: tuple[ConverseImageFormat, ...]
    max_bytes: int
    max_side: int


# The one declaration of these numbers (checked 2026-12-07): bedrock-runtime's `ImageFormat`
# enum lists png, jpeg, gif and webp; Bedrock's Converse documentation gives at most 3.75 MB per
# image and at most 8,000 px for its height and width (Anthropic's vision guide: 8000x8000 px for
# a request with up to 20 images, which this one-image request is).
BEDROCK_IMAGE_LIMITS = VisionImageLimits(
    formats=("jpeg", "png", "gif", "webp"),
    max_bytes=3_932_160,  # 3.75 MiB
    max_side=8000,
)

TOOL_NAME = "record_attributes"
SCHEMA_NAME = "product_attributes"
_TOOL_DESCRIPTION = "Record the product's attributes read from the photo."
# The answers are short phrases; this leaves room for the JSON around them.
MAX_TOKENS_PER_QUESTION = 60
MAX_TOKENS_BASE = 200
# Claude reads and answers at temperature 0: the same photo, the same attributes.
TEMPERATURE = 0.0
# Stop reasons that mean the model (or a guardrail) declined to answer about this image.
REFUSAL_STOP_REASONS = frozenset({"content_filtered", "guardrail_intervened"})

_SYSTEM = (
    "You read product attributes from a product photo for an online shop's catalogue. Answer "
    "every question with a short phrase of one to four words in the words a catalogue uses "
    "(for example 'Cotton', 'Slim Fit', 'Long Sleeves', 'Button-Down Collar', 'Navy Blue'). "
    "Describe only the main product. When the photo does not show a detail, or it does not "
    "apply to this product, answer with an empty string; never guess brands or materials you "
    "cannot see. "
)
_HOW_TO_ANSWER: dict[StructuredOutput, str] = {
    "tool": f"Answer only by calling the {TOOL_NAME} tool.",
    "json_schema": "Answer only with the JSON document the response schema describes.",
}


class _Question(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def text(self) -> str: ...


def converse_image_format(data: bytes) -> ConverseImageFormat | None:
    """The Converse image format of `data` from its leading bytes, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    return None


def check_image(
    info: ImageInfo, limits: VisionImageLimits = BEDROCK_IMAGE_LIMITS
) -> ConverseImageFormat:
    """The image's Converse format, or a RequestError naming the Bedrock limit it breaks (413
    for bytes, 400 otherwise), raised before any call is paid for."""
    image_format = next((name for name in limits.formats if name == info.format.value), None)
    if image_format is None:
        raise RequestError(
            "image_unsupported_format",
            f"the image is {info.format.value.upper()}; the vision attribute model on Bedrock "
            f"takes {', '.join(name.upper() for name in limits.formats)}",
        )
    if info.size_bytes > limits.max_bytes:
        raise RequestError(
            "image_too_large",
            f"the image is {info.size_bytes:,} bytes; Bedrock's limit for one image to the "
            f"vision attribute model is {limits.max_bytes:,} bytes (3.75 MB)",
            status=413,
        )
    if max(info.width, info.height) > limits.max_side:
        raise RequestError(
            "image_side_too_long",
            f"the image is {info.width}x{info.height} px; Bedrock's limit for the vision "
            f"attribute model is {limits.max_side} px per side",
        )
    return image_format


def system_prompt(structured_output: StructuredOutput) -> str:
    return _SYSTEM + _HOW_TO_ANSWER[structured_output]


def answer_schema(questions: Sequence[_Question], *, closed: bool = False) -> dict[str, Any]:
    """`{"attributes": {name: string}}` with one required property per question, the question
    as its description. `closed` adds `additionalProperties: false` (Bedrock's output schema
    requires it)."""
    attributes: dict[str, Any] = {
        "type": "object",
        "properties": {q.name: {"type": "string", "description": q.text} for q in questions},
        "required": [q.name for q in questions],
    }
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"attributes": attributes},
        "required": ["attributes"],
    }
    if closed:
        attributes["additionalProperties"] = False
        schema["additionalProperties"] = False
    return schema


def user_text(questions: Sequence[_Question]) -> str:
    lines = ["Answer these questions about the product in the photo:"]
    lines += [f"- {q.name}: {q.text}" for q in questions]
    return "\n".join(lines)


def max_tokens(questions: Sequence[_Question]) -> int:
    return MAX_TOKENS_BASE + MAX_TOKENS_PER_QUESTION * len(questions)


def converse_request(
    *,
    model_id: str,
    image: bytes,
    image_format: ConverseImageFormat,
    questions: Sequence[_Question],
    structured_output: StructuredOutput,
) -> dict[str, Any]:
    """Keyword arguments of bedrock-runtime `Converse`: the photo, then the questions, answered
    by the forced `record_attributes` tool or through the JSON-schema output format."""
    request: dict[str, Any] = {
        "modelId": model_id,
        "system": [{"text": system_prompt(structured_output)}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"image": {"format": image_format, "source": {"bytes": image}}},
                    {"text": user_text(questions)},
                ],
            }
        ],
        "inferenceConfig": {"maxTokens": max_tokens(questions), "temperature": TEMPERATURE},
    }
    if structured_output == "tool":
        request["toolConfig"] = {
            "tools": [
                {
                    "toolSpec": {
                        "name": TOOL_NAME,
                        "description": _TOOL_DESCRIPTION,
                        "inputSchema": {"json": answer_schema(questions)},
                    }
                }
            ],
            "toolChoice": {"tool": {"name": TOOL_NAME}},
        }
    else:
        request["outputConfig"] = {
            "textFormat": {
                "type": "json_schema",
                "structure": {
                    "jsonSchema": {
                        "schema": json.dumps(answer_schema(questions, closed=True)),
                        "name": SCHEMA_NAME,
                        "description": _TOOL_DESCRIPTION,
                    }
                },
            }
        }
    return request


def batch_input(
    *,
    image: bytes,
    image_format: ConverseImageFormat,
    questions: Sequence[_Question],
    structured_output: StructuredOutput,
) -> dict[str, Any]:
    """A Bedrock batch record's `modelInput` for the same question: the Converse body less
    `modelId`, the image bytes as base64 text (json_schema mode: a Converse-type job), or the
    Anthropic Messages body with a base64 image block (tool mode: an InvokeModel-type job, as
    Converse batch records may not carry `toolConfig`)."""
    encoded = base64.b64encode(image).decode("ascii")
    if structured_output == "json_schema":
        body = converse_request(
            model_id="-",
            image=image,
            image_format=image_format,
            questions=questions,
            structured_output=structured_output,
        )
        del body["modelId"]
        body["messages"][0]["content"][0]["image"]["source"]["bytes"] = encoded
        return body
    return {
        "anthropic_version": ANTHROPIC_VERSION,
        "max_tokens": max_tokens(questions),
        "temperature": TEMPERATURE,
        "system": system_prompt("tool"),
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": f"image/{image_format}",
                            "data": encoded,
                        },
                    },
                    {"type": "text", "text": user_text(questions)},
                ],
            }
        ],
        "tools": [
            {
                "name": TOOL_NAME,
                "description": _TOOL_DESCRIPTION,
                "input_schema": answer_schema(questions),
            }
        ],
        "tool_choice": {"type": "tool", "name": TOOL_NAME},
    }


def read_answers(
    reply: TextModelReply, *, model_id: str, structured_output: str
) -> AttributeAnswers:
    """The validated answers of a reply, or the DependencyError the description call would raise
    for the same failure (502: retrying this image will not help)."""
    what = f"the vision attribute model {model_id}"
    if reply.stop_reason in REFUSAL_STOP_REASONS:
        raise DependencyError(
            "attribute_model_refused",
            f"{what} declined to answer about this image (stop reason {reply.stop_reason})",
            retryable=False,
        )
    if reply.stop_reason == "max_tokens":
        raise DependencyError(
            "attribute_model_bad_response",
            f"{what} stopped at its token limit ({MAX_TOKENS_BASE} + {MAX_TOKENS_PER_QUESTION} "
            "per question) before finishing the answers",
            retryable=False,
        )
    try:
        document = answer_document(reply, structured_output)
    except UnstructuredAnswerError:
        other = "json_schema" if structured_output == "tool" else "tool"
        raise DependencyError(
            "attribute_model_unstructured",
            f"{what} answered neither by the {TOOL_NAME} tool nor with a JSON document (asked "
            f"in {structured_output!r} mode); set ATTRIBUTE_STRUCTURED_OUTPUT "
            f"(descriptions.attributes) to {other!r} or choose a model that supports "
            f"{structured_output!r}",
            retryable=False,
        ) from None
    except MalformedAnswerError as error:
        raise DependencyError(
            "attribute_model_bad_response", f"{what}: {error}", retryable=False
        ) from None
    return model_answers(document, what)


class ConverseModel(Protocol):
    def converse(self, request: Mapping[str, Any]) -> TextModelReply: ...


@dataclass
class VisionAttributeSource:
    """The `vision-llm` source; `model` is the Bedrock adapter (errors become DependencyErrors
    with `attribute_model_` codes, throttling retryable with a retry hint)."""

    model_id: str
    structured_output: StructuredOutput
    model: ConverseModel

    @property
    def source(self) -> AttributesSource:
        return AttributesSource(kind="vision-llm", model=self.model_id)

    def check_image(self, info: ImageInfo) -> None:
        check_image(info)

    def answer(self, image: bytes, questions: Sequence[_Question]) -> AttributeAnswers:
        image_format = converse_image_format(image)
        if image_format is None:
            # The pipeline's header check runs first; this is for callers that skip it.
            raise RequestError(
                "image_unsupported_format",
                "the data is not a JPEG, PNG, GIF or WebP image (checked by its leading bytes)",
            )
        request = converse_request(
            model_id=self.model_id,
            image=image,
            image_format=image_format,
            questions=questions,
            structured_output=self.structured_output,
        )
        reply = self.model.converse(request)
        return read_answers(reply, model_id=self.model_id, structured_output=self.structured_output)
