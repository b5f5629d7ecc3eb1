"""The text-model request: prompt, attributes and the answer's JSON schema.

One module builds every request to the text model, for the online path (Converse) and for the
catalog's batch jobs, so both write descriptions the same way. The answer is JSON with one
schema, asked for in one of two ways (`descriptions.structured_output`):

- `tool`: a single tool the model is forced to call, whose input schema is the answer's shape.
  Older Claude models support it; newer ones refuse forced tool use, and extended thinking
  cannot be combined with it.
- `json_schema`: Converse's structured output (`outputConfig.textFormat`), where the model's
  text is the JSON document the schema describes.

Either way the reply is read by `parse_reply` and validated by the same pydantic model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import ValidationError

from shared.models.descriptions import LocalizedDescription, TextModelReply

TOOL_NAME = "record_descriptions"
# The JSON-schema output format's name for the same answer.
SCHEMA_NAME = "product_descriptions"
StructuredOutput = Literal["tool", "json_schema"]
# Anthropic's Messages API version string for InvokeModel bodies on Bedrock.
ANTHROPIC_VERSION = "bedrock-2023-05-31"

_PROMPT = (
    "You write product descriptions for an online shop. You receive attributes that were read "
    "from the product photo. Write for shoppers: say what the product is, how it looks, how it "
    "feels and wears (how the fabric drapes or moves, how the fit sits), and when one would wear "
    "it. Use every attribute you are given, in natural words; never state a fabric, colour, fit, "
    "collar, neckline, pattern or sleeve that differs from the attributes, and do not invent "
    "materials, brands, sizes or care instructions. A few evocative sentences are welcome; "
    "keep claims honest. Make the text findable: the title and keywords should contain the "
    "words a shopper would search for (for example 'long sleeve cotton shirt'). Write each "
    "requested language natively, not as a word-by-word translation. "
)
_HOW_TO_ANSWER: dict[StructuredOutput, str] = {
    "tool": f"Answer only by calling the {TOOL_NAME} tool.",
    "json_schema": "Answer only with the JSON document the response schema describes.",
}


def system_prompt(structured_output: StructuredOutput) -> str:
    return _PROMPT + _HOW_TO_ANSWER[structured_output]


# The tool-mode prompt, kept under its historical name.
SYSTEM_PROMPT = system_prompt("tool")

LANGUAGE_NAMES = {
    "en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian",
    "nl": "Dutch", "pt": "Portuguese", "pl": "Polish", "sv": "Swedish", "da": "Danish",
    "fi": "Finnish", "ja": "Japanese", "ko": "Korean", "zh": "Chinese",
}  # fmt: skip


def answer_schema(languages: Sequence[str], *, closed: bool = False) -> dict[str, Any]:
    """The JSON schema of the answer: one entry per language. `closed` adds
    `additionalProperties: false` to every object, which Bedrock's structured outputs require."""
    entry: dict[str, Any] = {
        "type": "object",
        "properties": {
            "language": {"type": "string", "enum": list(languages)},
            "title": {"type": "string", "description": "Product title, at most 120 characters"},
            "description": {
                "type": "string",
                "description": "Two short paragraphs of flowing text for the product page",
            },
            "bullets": {
                "type": "array",
                "items": {"type": "string"},
                "description": "3 to 6 short feature bullets",
            },
            "keywords": {
                "type": "array",
                "items": {"type": "string"},
                "description": "5 to 12 search keywords and phrases",
            },
        },
        "required": ["language", "title", "description", "bullets", "keywords"],
    }
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"descriptions": {"type": "array", "items": entry}},
        "required": ["descriptions"],
    }
    if closed:
        entry["additionalProperties"] = False
        schema["additionalProperties"] = False
    return schema


_TOOL_DESCRIPTION = "Record the product description in every requested language."


def description_tool(languages: Sequence[str]) -> dict[str, Any]:
    """The Converse tool spec whose input schema is the structured answer."""
    return {
        "toolSpec": {
            "name": TOOL_NAME,
            "description": _TOOL_DESCRIPTION,
            "inputSchema": {"json": answer_schema(languages)},
        }
    }


def output_format(languages: Sequence[str]) -> dict[str, Any]:
    """Converse's `outputConfig.textFormat`: the answer schema as a JSON string."""
    return {
        "type": "json_schema",
        "structure": {
            "jsonSchema": {
                "schema": json.dumps(answer_schema(languages, closed=True)),
                "name": SCHEMA_NAME,
                "description": _TOOL_DESCRIPTION,
            }
        },
    }


def user_message(
    *,
    attributes: Mapping[str, str],
    category: str,
    languages: Sequence[str],
    corrections: Sequence[str] = (),
) -> str:
    lines = [f"Product category: {category}", "Attributes read from the photo:"]
    lines += [f"- {name.replace('_', ' ')}: {value}" for name, value in attributes.items()]
    names = ", ".join(f"{LANGUAGE_NAMES.get(code, code)} ({code})" for code in languages)
    lines.append(f"Write one description per language: {names}.")
    if corrections:
        lines.append("Your previous answer contradicted the attributes; fix exactly this:")
        lines += [f"- {correction}" for correction in corrections]
    return "\n".join(lines)


def converse_request(
    *,
    model_id: str,
    attributes: Mapping[str, str],
    category: str,
    languages: Sequence[str],
    max_tokens_per_language: int,
    temperature: float,
    structured_output: StructuredOutput,
    corrections: Sequence[str] = (),
) -> dict[str, Any]:
    """Keyword arguments of bedrock-runtime `Converse`: forcing the description tool, or asking
    for the answer schema through the JSON-schema output format."""
    text = user_message(
        attributes=attributes, category=category, languages=languages, corrections=corrections
    )
    request: dict[str, Any] = {
        "modelId": model_id,
        "system": [{"text": system_prompt(structured_output)}],
        "messages": [{"role": "user", "content": [{"text": text}]}],
        "inferenceConfig": {
            "maxTokens": max_tokens_per_language * len(languages),
            "temperature": temperature,
        },
    }
    if structured_output == "tool":
        request["toolConfig"] = {
            "tools": [description_tool(languages)],
            "toolChoice": {"tool": {"name": TOOL_NAME}},
        }
    else:
        request["outputConfig"] = {"textFormat": output_format(languages)}
    return request


def anthropic_tool_request(
    *,
    attributes: Mapping[str, str],
    category: str,
    languages: Sequence[str],
    max_tokens_per_language: int,
    temperature: float,
) -> dict[str, Any]:
    """The same tool-mode request as an Anthropic Messages API body (InvokeModel).

    Bedrock batch jobs of the Converse type refuse records with `toolConfig`; tool mode's batch
    records therefore use the InvokeModel type, whose records carry the model's native body."""
    text = user_message(attributes=attributes, category=category, languages=languages)
    return {
        "anthropic_version": ANTHROPIC_VERSION,
        "max_tokens": max_tokens_per_language * len(languages),
        "temperature": temperature,
        "system": system_prompt("tool"),
        "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
        "tools": [
            {
                "name": TOOL_NAME,
                "description": _TOOL_DESCRIPTION,
                "input_schema": answer_schema(languages),
            }
        ],
        "tool_choice": {"type": "tool", "name": TOOL_NAME},
    }


def token_limit_advice(max_tokens_per_language: int) -> str:
    """What to say when an answer was cut off at the token limit (stop reason `max_tokens`)."""
    return (
        "the text model stopped at the token limit "
        f"({max_tokens_per_language} per language); raise "
        "descriptions.max_tokens_per_language"
    )


class MalformedAnswerError(ValueError):
    """The model's answer does not have the promised shape."""


class UnstructuredAnswerError(MalformedAnswerError):
    """The model answered neither by the tool nor with a JSON document: the structured-output
    mode does not suit the model, and asking again will not help."""


def unstructured_advice(structured_output: str) -> str:
    other = "json_schema" if structured_output == "tool" else "tool"
    how = "by calling the record_descriptions tool" if structured_output == "tool" else "with JSON"
    return (
        f"the text model answered neither by the {TOOL_NAME} tool nor with a JSON document "
        f"(asked {how}, descriptions.structured_output resolved to {structured_output!r}); "
        f"set descriptions.structured_output to {other!r} or choose a model that supports "
        f"{structured_output!r}"
    )


def answer_document(reply: TextModelReply, structured_output: str) -> Mapping[str, Any]:
    """The answer as a JSON object, from whichever shape the model used: a tool call's input
    first, else text that parses as a JSON object. Raises UnstructuredAnswerError when there
    is neither, MalformedAnswerError when the JSON text was cut off at the token limit."""
    if isinstance(reply.tool_input, Mapping):
        return reply.tool_input
    text = (reply.text or "").strip()
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except ValueError as error:
            raise MalformedAnswerError(f"the JSON answer does not parse ({error})") from None
        if isinstance(document, dict):
            return document
    raise UnstructuredAnswerError(unstructured_advice(structured_output))


def parse_reply(
    reply: TextModelReply, languages: Sequence[str], structured_output: str
) -> dict[str, LocalizedDescription]:
    """The validated descriptions of a reply in either structured shape."""
    return parse_descriptions(answer_document(reply, structured_output), languages)


def parse_descriptions(
    tool_input: Mapping[str, Any] | None, languages: Sequence[str]
) -> dict[str, LocalizedDescription]:
    """Validate the tool input: exactly one well-formed entry per requested language."""
    if not isinstance(tool_input, Mapping) or not isinstance(tool_input.get("descriptions"), list):
        raise MalformedAnswerError("the answer has no 'descriptions' list")
    found: dict[str, LocalizedDescription] = {}
    for index, raw in enumerate(tool_input["descriptions"]):
        try:
            entry = LocalizedDescription.model_validate(raw)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise MalformedAnswerError(f"description {index}: {where}: {first['msg']}") from None
        if entry.language in languages and entry.language not in found:
            found[entry.language] = entry
    missing = [code for code in languages if code not in found]
    if missing:
        raise MalformedAnswerError(f"no description in {', '.join(missing)}")
    return {code: found[code] for code in languages}
