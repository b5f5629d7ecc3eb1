"""The text-model request and the validation of its structured answer."""

from __future__ import annotations

import pytest

from descriptions.logic.prompt import (
    TOOL_NAME,
    MalformedAnswerError,
    converse_request,
    parse_descriptions,
)
from tests.descriptions_support import ATTRIBUTES, grounded_entry, tool_input


def _request(**changes: object) -> dict[str, object]:
    arguments = {
        "model_id": "anthropic.claude-3-sonnet-20240229-v1:0",
        "attributes": ATTRIBUTES,
        "category": "Shirts",
        "languages": ["en", "de"],
        "max_tokens_per_language": 600,
        "temperature": 0.1,
        **changes,
    }
    return converse_request(**arguments)  # type: ignore[arg-type]


def test_every_attribute_and_language_is_in_the_user_message() -> None:
    request = _request()
    text = request["messages"][0]["content"][0]["text"]  # type: ignore[index]

    for name, value in ATTRIBUTES.items():
        assert f"{name.replace('_', ' ')}: {value}" in text
    assert "German (de)" in text
    assert "English (en)" in text


def test_the_tool_is_forced_and_budgets_scale_with_languages() -> None:
    request = _request()

    assert request["toolConfig"]["toolChoice"] == {"tool": {"name": TOOL_NAME}}  # type: ignore[index]
    assert request["inferenceConfig"] == {"maxTokens": 1200, "temperature": 0.1}
    schema = request["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]  # type: ignore[index]
    language = schema["properties"]["descriptions"]["items"]["properties"]["language"]
    assert language["enum"] == ["en", "de"]


def test_corrections_are_passed_back_to_the_model() -> None:
    request = _request(corrections=["fabric is 'cotton' but the text says 'silk'"])
    text = request["messages"][0]["content"][0]["text"]  # type: ignore[index]

    assert "contradicted" in text
    assert "says 'silk'" in text


def test_a_complete_answer_is_returned_in_request_order() -> None:
    parsed = parse_descriptions(tool_input(["de", "en"]), ["en", "de"])

    assert list(parsed) == ["en", "de"]


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (None, "did not call"),
        ({"descriptions": "text"}, "did not call"),
        ({"descriptions": [grounded_entry("en")]}, "no description in de"),
        ({"descriptions": [{**grounded_entry("en"), "bullets": []}]}, "bullets"),
        ({"descriptions": [{**grounded_entry("en"), "title": ""}]}, "title"),
    ],
)
def test_malformed_answers_are_named(answer: object, problem: str) -> None:
    with pytest.raises(MalformedAnswerError, match=problem):
        parse_descriptions(answer, ["en", "de"])  # type: ignore[arg-type]
