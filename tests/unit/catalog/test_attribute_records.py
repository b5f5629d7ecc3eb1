"""Bedrock batch records for the attributes step (vision-llm source): their model input, the
limits checked before a line is written, and the reading of the answers."""

from __future__ import annotations

import base64
import json
from typing import Any

import boto3
import pytest
from botocore.validate import validate_parameters

from catalog.logic.attribute_records import (
    AttributeRecordError,
    build_attribute_record,
    read_attribute_answers,
)
from catalog.logic.bedrock_records import Answer, parse_output_line
from descriptions.logic.images import ImageFormat, ImageInfo, ImageLimits, inspect_image
from descriptions.logic.requests import questions_for
from descriptions.logic.vision import BEDROCK_IMAGE_LIMITS, TOOL_NAME, converse_request
from shared.models.catalog import BedrockBatchLimits
from shared.models.errors import DependencyError
from tests.descriptions_support import image_bytes, settings

SETTINGS = settings()
_, QUESTIONS = questions_for(SETTINGS, None)
LIMITS = BedrockBatchLimits(
    min_records_per_job=100,
    max_records_per_job=50_000,
    max_records_per_file=50_000,
    max_file_bytes=1024 * 2**20,
    max_job_bytes=5 * 1024 * 2**20,
)


def _info(image: bytes) -> ImageInfo:
    return inspect_image(image, ImageLimits(2**23, 2**26, 8192, 1))


def _build(image: bytes, mode: Any, **overrides: Any) -> Any:
    arguments: dict[str, Any] = {
        "product_id": "P1",
        "image_key": "s3://bucket/P1.jpg",
        "category": "default",
        "questions": QUESTIONS,
        "image": image,
        "info": _info(image),
        "structured_output": mode,
        "limits": LIMITS,
    }
    arguments.update(overrides)
    return build_attribute_record(7, **arguments)


def test_a_converse_record_is_the_online_request_with_the_image_as_base64() -> None:
    image = image_bytes()

    record = _build(image, "json_schema")

    document = json.loads(record.line)
    assert document["recordId"] == "R0000000007"
    model_input = document["modelInput"]
    assert "modelId" not in model_input
    block = model_input["messages"][0]["content"][0]["image"]
    assert block["format"] == "jpeg"
    assert base64.b64decode(block["source"]["bytes"]) == image
    # With the bytes decoded and the job's model id added, it is the online request exactly,
    # and valid against bedrock-runtime's own Converse input shape.
    block["source"]["bytes"] = image
    online = converse_request(
        model_id="m",
        image=image,
        image_format="jpeg",
        questions=QUESTIONS,
        structured_output="json_schema",
    )
    assert {**model_input, "modelId": "m"} == online
    shape = (
        boto3.client("bedrock-runtime", region_name="us-east-1")
        .meta.service_model.operation_model("Converse")
        .input_shape
    )
    validate_parameters({**model_input, "modelId": "m"}, shape)
    assert record.index.product_id == "P1"
    assert record.size == len(record.line) + 1


def test_a_tool_mode_record_is_an_anthropic_messages_body_with_a_base64_image() -> None:
    image = image_bytes("PNG")

    model_input = json.loads(_build(image, "tool").line)["modelInput"]

    image_block, text_block = model_input["messages"][0]["content"]
    assert image_block["source"]["media_type"] == "image/png"
    assert base64.b64decode(image_block["source"]["data"]) == image
    assert text_block["type"] == "text"
    assert model_input["tool_choice"] == {"type": "tool", "name": TOOL_NAME}
    properties = model_input["tools"][0]["input_schema"]["properties"]["attributes"]["properties"]
    assert list(properties) == [q.name for q in QUESTIONS]


def test_an_image_over_bedrocks_limit_gets_no_record() -> None:
    image = image_bytes()
    info = ImageInfo(ImageFormat.JPEG, 100, 100, BEDROCK_IMAGE_LIMITS.max_bytes + 1)

    with pytest.raises(AttributeRecordError, match="3,932,160 bytes"):
        _build(image, "json_schema", info=info)


def test_a_record_larger_than_an_input_file_is_refused_naming_the_setting() -> None:
    small = LIMITS.model_copy(update={"max_file_bytes": 1000})

    with pytest.raises(AttributeRecordError, match=r"catalog\.bedrock\.max_file_mb"):
        _build(image_bytes(), "json_schema", limits=small)


ANSWER = {"attributes": {"fabric": "Cotton", "fit": "Slim Fit"}}


@pytest.mark.parametrize(
    ("output", "mode"),
    [
        (
            {
                "output": {
                    "message": {"role": "assistant", "content": [{"text": json.dumps(ANSWER)}]}
                },
                "stopReason": "end_turn",
                "usage": {"inputTokens": 1600, "outputTokens": 90},
            },
            "json_schema",
        ),
        (
            {
                "content": [{"type": "tool_use", "id": "t", "name": TOOL_NAME, "input": ANSWER}],
                "stop_reason": "tool_use",
                "usage": {"input_tokens": 1600, "output_tokens": 90},
            },
            "tool",
        ),
    ],
    ids=["converse", "anthropic"],
)
def test_batch_answers_are_read_like_online_ones(output: dict[str, Any], mode: str) -> None:
    line = json.dumps({"recordId": "R0000000007", "modelInput": {}, "modelOutput": output})
    outcome = parse_output_line(line.encode())
    assert isinstance(outcome, Answer)

    answers = read_attribute_answers(outcome, model_id="m", structured_output=mode)

    assert answers.attributes == ANSWER["attributes"]


def test_a_refused_batch_answer_is_the_online_refusal() -> None:
    line = json.dumps(
        {
            "recordId": "R0000000001",
            "modelInput": {},
            "modelOutput": {
                "output": {"message": {"role": "assistant", "content": [{"text": "No."}]}},
                "stopReason": "content_filtered",
                "usage": {"inputTokens": 1, "outputTokens": 0},
            },
        }
    )
    outcome = parse_output_line(line.encode())
    assert isinstance(outcome, Answer)

    with pytest.raises(DependencyError) as raised:
        read_attribute_answers(outcome, model_id="m", structured_output="json_schema")
    assert raised.value.code == "attribute_model_refused"
