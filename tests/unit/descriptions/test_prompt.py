"""The text-model request in both structured-output modes, and the validation of its answer."""

from __future__ import annotations

import json

import pytest

from descriptions.logic.prompt import (
    SCHEMA_NAME,
    TOOL_NAME,
    MalformedAnswerError,
    UnstructuredAnswerError,
    answer_schema,
    converse_request,
    parse_descriptions,
    parse_reply,
)
from shared.models.descriptions import TextModelReply
from tests.descriptions_support import ATTRIBUTES, grounded_entry, tool_input

MODES = ["tool", "json_schema"]


def _request(**changes: object) -> dict[str, object]:
    arguments = {
        "model_id": "global.anthropic.claude-sonnet-4-6",
        "attributes": ATTRIBUTES,
        "category": "Shirts",
        "languages": ["en", "de"],
        "max_tokens_per_language": 600,
        "temperature": 0.1,
        "structured_output": "json_schema",
        **changes,
    }
    return converse_request(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", MODES)
def test_every_attribute_and_language_is_in_the_user_message(mode: str) -> None:
    request = _request(structured_output=mode)
    text = request["messages"][0]["content"][0]["text"]  # type: ignore[index]

    for name, value in ATTRIBUTES.items():
        assert f"{name.replace('_', ' ')}: {value}" in text
    assert "German (de)" in text
    assert "English (en)" in text


def test_tool_mode_forces_the_tool_and_budgets_scale_with_languages() -> None:
    request = _request(structured_output="tool")

    assert request["toolConfig"]["toolChoice"] == {"tool": {"name": TOOL_NAME}}  # type: ignore[index]
    assert "outputConfig" not in request
    assert request["inferenceConfig"] == {"maxTokens": 1200, "temperature": 0.1}
    schema = request["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]  # type: ignore[index]
    assert schema == answer_schema(["en", "de"])
    assert f"calling the {TOOL_NAME} tool" in request["system"][0]["text"]  # type: ignore[index]


def test_json_schema_mode_asks_for_the_same_schema_closed_and_no_tool() -> None:
    request = _request(structured_output="json_schema")

    assert "toolConfig" not in request
    assert request["inferenceConfig"] == {"maxTokens": 1200, "temperature": 0.1}
    text_format = request["outputConfig"]["textFormat"]  # type: ignore[index]
    assert text_format["type"] == "json_schema"
    definition = text_format["structure"]["jsonSchema"]
    assert definition["name"] == SCHEMA_NAME
    # The schema travels as a JSON string; every object is closed, as structured outputs need.
    schema = json.loads(definition["schema"])
    assert schema["additionalProperties"] is False
    assert schema["properties"]["descriptions"]["items"]["additionalProperties"] is False
    open_schema = {k: v for k, v in schema.items() if k != "additionalProperties"}
    open_schema["properties"]["descriptions"]["items"].pop("additionalProperties")
    assert open_schema == answer_schema(["en", "de"])
    assert "tool" not in request["system"][0]["text"]  # type: ignore[index]


def test_corrections_are_passed_back_to_the_model() -> None:
    request = _request(corrections=["fabric is 'cotton' but the text says 'silk'"])
    text = request["messages"][0]["content"][0]["text"]  # type: ignore[index]

    assert "contradicted" in text
    assert "says 'silk'" in text


def test_a_complete_answer_is_returned_in_request_order() -> None:
    parsed = parse_descriptions(tool_input(["de", "en"]), ["en", "de"])

    assert list(parsed) == ["en", "de"]


def _reply(
    *, tool: object = None, text: str | None = None, stop: str = "end_turn"
) -> TextModelReply:
    return TextModelReply(
        tool_input=tool,  # type: ignore[arg-type]
        stop_reason=stop,
        input_tokens=1,
        output_tokens=1,
        text=text,
    )


@pytest.mark.parametrize("mode", MODES)
def test_either_shape_is_validated_by_the_same_model(mode: str) -> None:
    answer = tool_input(["en", "de"])
    by_tool = parse_reply(_reply(tool=answer), ["en", "de"], mode)
    by_json = parse_reply(_reply(text=" " + json.dumps(answer) + "\n"), ["en", "de"], mode)

    assert by_tool == by_json == parse_descriptions(answer, ["en", "de"])


@pytest.mark.parametrize(("mode", "other"), [("tool", "'json_schema'"), ("json_schema", "'tool'")])
@pytest.mark.parametrize("text", [None, "", "Here is a lovely shirt.", "[1, 2]"])
def test_an_answer_in_neither_shape_names_the_setting(mode: str, other: str, text: str) -> None:
    with pytest.raises(UnstructuredAnswerError) as error:
        parse_reply(_reply(text=text), ["en"], mode)

    assert f"set descriptions.structured_output to {other}" in str(error.value)


def test_json_cut_off_is_malformed_not_unstructured() -> None:
    cut = json.dumps(tool_input(["en"]))[:40]

    with pytest.raises(MalformedAnswerError, match="does not parse") as error:
        parse_reply(_reply(text=cut, stop="max_tokens"), ["en"], "json_schema")
    assert not isinstance(error.value, UnstructuredAnswerError)


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (None, "no 'descriptions' list"),
        ({"descriptions": "text"}, "no 'descriptions' list"),
        ({"descriptions": [grounded_entry("en")]}, "no description in de"),
        ({"descriptions": [{**grounded_entry("en"), "bullets": []}]}, "bullets"),
        ({"descriptions": [{**grounded_entry("en"), "title": ""}]}, "title"),
    ],
)
def test_malformed_answers_are_named(answer: object, problem: str) -> None:
    with pytest.raises(MalformedAnswerError, match=problem):
        parse_descriptions(answer, ["en", "de"])  # type: ignore[arg-type]
