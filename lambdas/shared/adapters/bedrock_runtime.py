"""Claude (or any Converse-capable model) through the Bedrock Converse API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters.aws import as_dependency_error, client
from shared.models.descriptions import TextModelReply


class BedrockTextModel:
    def __init__(self, *, bedrock_runtime: Any | None = None) -> None:
        self._client = bedrock_runtime or client("bedrock-runtime")

    def converse(self, request: Mapping[str, Any]) -> TextModelReply:
        what = f"Bedrock model {request.get('modelId')}"
        try:
            response = self._client.converse(**request)
        except (ClientError, BotoCoreError) as error:
            raise as_dependency_error(error, code_prefix="text_model", what=what) from error
        content = response.get("output", {}).get("message", {}).get("content", [])
        tool_input = next(
            (block["toolUse"].get("input") for block in content if "toolUse" in block), None
        )
        usage = response.get("usage", {})
        return TextModelReply(
            tool_input=tool_input,
            stop_reason=str(response.get("stopReason", "")),
            input_tokens=int(usage.get("inputTokens", 0)),
            output_tokens=int(usage.get("outputTokens", 0)),
        )
