"""The `vision-llm` attribute source on a Stubber-checked bedrock-runtime client: its answers
(tool call, JSON text, refusal, malformed) and the exact request each image should produce."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import boto3
from botocore.stub import Stubber

from descriptions.logic.prompt import StructuredOutput
from descriptions.logic.vision import (
    TOOL_NAME,
    VisionAttributeSource,
    converse_image_format,
    converse_request,
)
from shared.adapters.bedrock_runtime import BedrockTextModel

VISION_MODEL = "global.anthropic.claude-sonnet-4-6"
REGION = "us-east-1"


def vision_reply(
    attributes: Any,
    mode: StructuredOutput,
    *,
    stop_reason: str | None = None,
    input_tokens: int = 1_650,
    output_tokens: int = 110,
    latency_ms: int = 1_800,
) -> dict[str, Any]:
    """A Converse response answering `{"attributes": attributes}` in `mode`'s shape."""
    document = {"attributes": attributes}
    if mode == "tool":
        content: list[dict[str, Any]] = [
            {"toolUse": {"toolUseId": "tooluse_v1", "name": TOOL_NAME, "input": document}}
        ]
    else:
        content = [{"text": json.dumps(document)}]
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason or ("tool_use" if mode == "tool" else "end_turn"),
        "usage": {
            "inputTokens": input_tokens,
            "outputTokens": output_tokens,
            "totalTokens": input_tokens + output_tokens,
        },
        "metrics": {"latencyMs": latency_ms},
    }


def refusal_reply(stop_reason: str = "content_filtered") -> dict[str, Any]:
    """What Converse answers when the content filter or a guardrail stops the model."""
    return {
        "output": {
            "message": {
                "role": "assistant",
                "content": [{"text": "Sorry, the model cannot answer this request."}],
            }
        },
        "stopReason": stop_reason,
        "usage": {"inputTokens": 1_650, "outputTokens": 0, "totalTokens": 1_650},
        "metrics": {"latencyMs": 400},
    }


def expected_request(
    image: bytes, questions: Sequence[Any], mode: StructuredOutput, *, model_id: str = VISION_MODEL
) -> dict[str, Any]:
    image_format = converse_image_format(image)
    assert image_format is not None
    return converse_request(
        model_id=model_id,
        image=image,
        image_format=image_format,
        questions=questions,
        structured_output=mode,
    )


class StubbedVision:
    """A VisionAttributeSource on a bedrock-runtime client whose every call Stubber checks
    against the real API model (and against the expected parameters)."""

    def __init__(self, mode: StructuredOutput, *, model_id: str = VISION_MODEL) -> None:
        self.mode = mode
        self.model_id = model_id
        self.client = boto3.client("bedrock-runtime", region_name=REGION)
        self.stubber = Stubber(self.client)
        self.source = VisionAttributeSource(
            model_id=model_id,
            structured_output=mode,
            model=BedrockTextModel(bedrock_runtime=self.client, code_prefix="attribute_model"),
        )

    def expect(self, image: bytes, questions: Sequence[Any], response: Mapping[str, Any]) -> None:
        self.stubber.add_response(
            "converse",
            dict(response),
            expected_params=expected_request(image, questions, self.mode, model_id=self.model_id),
        )

    def expect_answer(
        self, image: bytes, questions: Sequence[Any], attributes: Mapping[str, str]
    ) -> None:
        self.expect(image, questions, vision_reply(dict(attributes), self.mode))

    def expect_error(self, code: str, status: int, message: str = "slow down") -> None:
        self.stubber.add_client_error(
            "converse", service_error_code=code, service_message=message, http_status_code=status
        )
