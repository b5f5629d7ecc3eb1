"""The text-model request: prompt, attributes and the structured-output tool.

One module builds every request to the text model, for the online path (Converse) and, later,
for catalog batch jobs, so both write descriptions the same way. Structured output comes from a
single tool the model is forced to call: its input schema is the answer's shape, so the reply is
JSON we validate rather than prose we would have to parse.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from shared.models.descriptions import LocalizedDescription

TOOL_NAME = "record_descriptions"

SYSTEM_PROMPT = (
    "You write product descriptions for an online shop. You receive attributes that were read "
    "from the product photo. Write for shoppers: say what the product is, how it looks, how it "
    "feels and wears (how the fabric drapes or moves, how the fit sits), and when one would wear "
    "it. Use every attribute you are given, in natural words; never state a fabric, colour, fit, "
    "collar, neckline, pattern or sleeve that differs from the attributes, and do not invent "
    "materials, brands, sizes or care instructions. A few evocative sentences are welcome; "
    "keep claims honest. Make the text findable: the title and keywords should contain the "
    "words a shopper would search for (for example 'long sleeve cotton shirt'). Write each "
    "requested language natively, not as a word-by-word translation. Answer only by calling the "
    f"{TOOL_NAME} tool."
)

LANGUAGE_NAMES = {
    "en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian",
    "nl": "Dutch", "pt": "Portuguese", "pl": "Polish", "sv": "Swedish", "da": "Danish",
    "fi": "Finnish", "ja": "Japanese", "ko": "Korean", "zh": "Chinese",
}  # fmt: skip


def description_tool(languages: Sequence[str]) -> dict[str, Any]:
    """The tool spec whose input schema is the structured answer, one entry per language."""
    entry = {
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
    return {
        "toolSpec": {
            "name": TOOL_NAME,
            "description": "Record the product description in every requested language.",
            "inputSchema": {
                "json": {
                    "type": "object",
                    "properties": {"descriptions": {"type": "array", "items": entry}},
                    "required": ["descriptions"],
                }
            },
        }
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
    corrections: Sequence[str] = (),
) -> dict[str, Any]:
    """Keyword arguments of bedrock-runtime `Converse`, forcing the description tool."""
    text = user_message(
        attributes=attributes, category=category, languages=languages, corrections=corrections
    )
    return {
        "modelId": model_id,
        "system": [{"text": SYSTEM_PROMPT}],
        "messages": [{"role": "user", "content": [{"text": text}]}],
        "inferenceConfig": {
            "maxTokens": max_tokens_per_language * len(languages),
            "temperature": temperature,
        },
        "toolConfig": {
            "tools": [description_tool(languages)],
            "toolChoice": {"tool": {"name": TOOL_NAME}},
        },
    }


def token_limit_advice(max_tokens_per_language: int) -> str:
    """What to say when an answer was cut off at the token limit (stop reason `max_tokens`)."""
    return (
        "the text model stopped at the token limit "
        f"({max_tokens_per_language} per language); raise "
        "descriptions.max_tokens_per_language"
    )


class MalformedAnswerError(ValueError):
    """The model's tool input does not have the promised shape."""


def parse_descriptions(
    tool_input: Mapping[str, Any] | None, languages: Sequence[str]
) -> dict[str, LocalizedDescription]:
    """Validate the tool input: exactly one well-formed entry per requested language."""
    if not isinstance(tool_input, Mapping) or not isinstance(tool_input.get("descriptions"), list):
        raise MalformedAnswerError("the model did not call the description tool with a list")
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
