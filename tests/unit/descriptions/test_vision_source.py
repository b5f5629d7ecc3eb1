"""The vision attribute source's pure parts: Bedrock's image limits, the request, the reading of
the answer, and the environment variables that choose the source."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from PIL import Image

from descriptions.handlers.environment import Environment, attribute_source_settings
from descriptions.handlers.wiring import attribute_source
from descriptions.logic.images import ImageFormat, ImageInfo
from descriptions.logic.requests import Question
from descriptions.logic.vision import (
    BEDROCK_IMAGE_LIMITS,
    TOOL_NAME,
    VisionAttributeSource,
    check_image,
    converse_image_format,
    converse_request,
    read_answers,
)
from shared.adapters.sagemaker_runtime import SageMakerAttributeModel
from shared.environment import DeploymentError
from shared.models.attributes import AttributeAnswers
from shared.models.descriptions import StoredDescription, TextModelReply
from shared.models.errors import DependencyError, RequestError
from tests.descriptions_support import image_bytes, settings

QUESTIONS = [Question("fabric", "What is the fabric?"), Question("fit", "What is the fit?")]


def _info(size_bytes: int = 1000, width: int = 640, height: int = 480) -> ImageInfo:
    return ImageInfo(ImageFormat.JPEG, width, height, size_bytes)


def test_bedrock_limits_are_the_documented_ones() -> None:
    # 3.75 MB (MiB) and 8,000 px per side, png/jpeg/gif/webp (checked 2026-12-07).
    assert BEDROCK_IMAGE_LIMITS.max_bytes == int(3.75 * 1024 * 1024)
    assert BEDROCK_IMAGE_LIMITS.max_side == 8000
    assert set(BEDROCK_IMAGE_LIMITS.formats) == {"png", "jpeg", "gif", "webp"}


def test_an_image_at_the_limits_passes_and_one_byte_or_pixel_more_is_refused() -> None:
    limit = BEDROCK_IMAGE_LIMITS
    assert check_image(_info(limit.max_bytes, limit.max_side, 10)) == "jpeg"

    with pytest.raises(RequestError) as too_large:
        check_image(_info(limit.max_bytes + 1))
    assert too_large.value.status == 413
    assert too_large.value.code == "image_too_large"
    assert "3,932,160 bytes" in too_large.value.message

    with pytest.raises(RequestError) as too_long:
        check_image(_info(width=10, height=limit.max_side + 1))
    assert too_long.value.status == 400
    assert too_long.value.code == "image_side_too_long"
    assert "8000 px" in too_long.value.message


@pytest.mark.parametrize(
    ("pil_format", "expected"),
    [("JPEG", "jpeg"), ("PNG", "png"), ("WEBP", "webp"), ("GIF", "gif")],
)
def test_the_image_format_comes_from_the_bytes(pil_format: str, expected: str) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format=pil_format)
    assert converse_image_format(buffer.getvalue()) == expected
    assert converse_image_format(b"BM" + buffer.getvalue()) is None


@pytest.mark.parametrize("mode", ["tool", "json_schema"])
def test_the_request_carries_the_photo_and_one_answer_property_per_question(mode: Any) -> None:
    image = image_bytes()
    request = converse_request(
        model_id="m", image=image, image_format="jpeg", questions=QUESTIONS, structured_output=mode
    )

    [message] = request["messages"]
    assert message["content"][0] == {"image": {"format": "jpeg", "source": {"bytes": image}}}
    assert "What is the fabric?" in message["content"][1]["text"]
    if mode == "tool":
        assert request["toolConfig"]["toolChoice"] == {"tool": {"name": TOOL_NAME}}
        schema = request["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]
    else:
        assert "toolConfig" not in request
        schema = json.loads(
            request["outputConfig"]["textFormat"]["structure"]["jsonSchema"]["schema"]
        )
        assert schema["properties"]["attributes"]["additionalProperties"] is False
    attributes = schema["properties"]["attributes"]
    assert list(attributes["properties"]) == ["fabric", "fit"]
    assert attributes["required"] == ["fabric", "fit"]


def _reply(tool_input: Any = None, *, stop: str = "tool_use", text: str | None = None) -> Any:
    return TextModelReply(
        tool_input=tool_input, stop_reason=stop, input_tokens=1, output_tokens=1, text=text
    )


def test_an_answer_is_validated_by_the_endpoints_model() -> None:
    answers = read_answers(
        _reply({"attributes": {"fabric": "Cotton", "fit": ""}}),
        model_id="m",
        structured_output="tool",
    )
    assert answers == AttributeAnswers(attributes={"fabric": "Cotton", "fit": ""})
    as_json = read_answers(
        _reply(stop="end_turn", text='{"attributes": {"fabric": "Linen"}}'),
        model_id="m",
        structured_output="json_schema",
    )
    assert as_json.attributes == {"fabric": "Linen"}


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (_reply({"attributes": {"fabric": 3}}), "attribute_model_bad_response"),
        (_reply({"attributes": "Cotton"}), "attribute_model_bad_response"),
        (_reply({"answers": {}}), "attribute_model_bad_response"),
        (_reply(stop="end_turn", text='{"attributes": {"fab'), "attribute_model_bad_response"),
        (_reply({"attributes": {}}, stop="max_tokens"), "attribute_model_bad_response"),
        (_reply(stop="end_turn", text="It is a shirt."), "attribute_model_unstructured"),
        (_reply(stop="content_filtered", text="Sorry."), "attribute_model_refused"),
        (_reply(stop="guardrail_intervened", text="Sorry."), "attribute_model_refused"),
    ],
)
def test_a_bad_or_refused_answer_is_a_final_dependency_error(reply: Any, code: str) -> None:
    with pytest.raises(DependencyError) as raised:
        read_answers(reply, model_id="m", structured_output="tool")
    assert raised.value.code == code
    assert raised.value.status == 502
    assert not raised.value.retryable


def test_the_endpoint_is_the_source_when_no_variable_says_otherwise() -> None:
    chosen = attribute_source_settings({})
    assert chosen.kind == "endpoint"
    source = attribute_source(_environment(chosen))
    assert isinstance(source, SageMakerAttributeModel)
    assert source.source.model_dump() == {"kind": "endpoint", "model": "atelier-dev-vqa"}


def test_vision_llm_is_chosen_by_the_variables() -> None:
    chosen = attribute_source_settings(
        {"ATTRIBUTE_SOURCE": "vision-llm", "ATTRIBUTE_MODEL_ID": "global.anthropic.claude-x"}
    )
    source = attribute_source(_environment(chosen))
    assert isinstance(source, VisionAttributeSource)
    assert source.model_id == "global.anthropic.claude-x"
    # Without its own mode the vision call asks like the description call.
    assert source.structured_output == settings().structured_output
    assert source.source.model_dump() == {
        "kind": "vision-llm",
        "model": "global.anthropic.claude-x",
    }

    tool = attribute_source_settings(
        {
            "ATTRIBUTE_SOURCE": "vision-llm",
            "ATTRIBUTE_MODEL_ID": "m",
            "ATTRIBUTE_STRUCTURED_OUTPUT": "tool",
        }
    )
    assert tool.structured_output == "tool"


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({"ATTRIBUTE_SOURCE": "blip"}, "ATTRIBUTE_SOURCE"),
        ({"ATTRIBUTE_SOURCE": "vision-llm"}, "ATTRIBUTE_MODEL_ID"),
        (
            {
                "ATTRIBUTE_SOURCE": "vision-llm",
                "ATTRIBUTE_MODEL_ID": "m",
                "ATTRIBUTE_STRUCTURED_OUTPUT": "x",
            },
            "ATTRIBUTE_STRUCTURED_OUTPUT",
        ),
    ],
)
def test_a_bad_variable_is_a_deployment_error_naming_it(
    environ: dict[str, str], names: str
) -> None:
    with pytest.raises(DeploymentError, match=names):
        attribute_source_settings(environ)


def test_a_description_stored_before_sources_existed_reads_as_the_endpoints() -> None:
    stored = StoredDescription.model_validate(_old_item())
    assert stored.attributes_source.model_dump() == {"kind": "endpoint", "model": "atelier-dev-vqa"}


def _old_item() -> dict[str, Any]:
    return {
        "productId": "1",
        "category": "default",
        "imageKey": "api:x",
        "imageSha256": "x",
        "attributes": {},
        "descriptions": {},
        "grounding": {"checkedLanguage": None, "covered": [], "missing": [], "contradictions": []},
        "attributeModel": "atelier-dev-vqa",
        "textModel": "t",
        "timingsMs": {},
        "usage": {},
        "resultKey": "descriptions/1.json",
        "createdAt": "2026-01-01T00:00:00.000+00:00",
        "version": "1",
    }


def _environment(chosen: Any) -> Environment:
    return Environment(
        settings=settings(),
        table_name="t",
        results_bucket="b",
        uploads_bucket=None,
        dead_letter_queue_url=None,
        idempotency_ttl_seconds=0,
        worker_concurrency=1,
        attributes=chosen,
    )
