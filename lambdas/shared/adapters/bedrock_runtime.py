"""Bedrock runtime: Claude (or any Converse-capable model) through the Converse API, and Titan
Image Generator through InvokeModel."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters.aws import as_dependency_error, client, error_code, slow_model_client
from shared.models.descriptions import TextModelReply
from shared.models.errors import AtelierError
from shared.models.images import (
    ContentFilteredError,
    ProvisionedModelUnavailableError,
    is_content_filter_message,
)

# What Bedrock says about a model id that no longer names a usable provisioned model (deleted,
# failed, or not in service): a stale ARN, not a malformed request.
_UNUSABLE_MODEL = re.compile(
    r"model identifier|provisioned|not found|does not exist|not ready|no longer", re.IGNORECASE
)


class BedrockTextModel:
    def __init__(self, *, bedrock_runtime: Any | None = None) -> None:
        self._client = bedrock_runtime or client("bedrock-runtime")

    def converse(self, request: Mapping[str, Any]) -> TextModelReply:
        what = f"Bedrock model {request.get('modelId')}"
        try:
            response = self._client.converse(**request)
        except (ClientError, BotoCoreError) as error:
            raise as_dependency_error(error, code_prefix="text_model", what=what) from error
        return TextModelReply.from_converse(response)


class BedrockImageModel:
    """An image model behind InvokeModel; here a customized Titan Image Generator's provisioned
    throughput, named by its ARN at each call (the ARN changes with every provisioning)."""

    def __init__(self, *, bedrock_runtime: Any | None = None, read_timeout: int = 60) -> None:
        # An injected client (tests) is used as is; otherwise one client per read timeout,
        # cached by `slow_model_client`.
        self._client = bedrock_runtime
        self._read_timeout = read_timeout

    def client_for(self, timeout_seconds: int) -> Any:
        """The client whose read timeout is the configured one, cut to `timeout_seconds`."""
        if self._client is not None:
            return self._client
        read_timeout = max(1, min(self._read_timeout, timeout_seconds))
        return slow_model_client("bedrock-runtime", read_timeout=read_timeout)

    def invoke(self, model_arn: str, body: Mapping[str, Any], *, timeout_seconds: int) -> bytes:
        """The raw response body; raises typed errors for refusals and a stale model ARN.

        The call waits at most `timeout_seconds` (or the configured read timeout if shorter) for
        Titan, so a retry never outlives the function's deadline."""
        what = f"Bedrock provisioned model {model_arn}"
        try:
            response = self.client_for(timeout_seconds).invoke_model(
                modelId=model_arn,
                body=json.dumps(body),
                contentType="application/json",
                accept="application/json",
            )
            payload: bytes = response["body"].read()
        except ClientError as error:
            raise _image_model_error(error, model_arn, what) from error
        except BotoCoreError as error:
            raise as_dependency_error(error, code_prefix="image_model", what=what) from error
        return payload


def _image_model_error(error: ClientError, model_arn: str, what: str) -> AtelierError:
    code = error_code(error)
    message = str(error.response.get("Error", {}).get("Message", ""))
    if code == "ValidationException" and is_content_filter_message(message):
        return ContentFilteredError(message)
    if code == "ResourceNotFoundException" or (
        code == "ValidationException" and _UNUSABLE_MODEL.search(message)
    ):
        return ProvisionedModelUnavailableError(model_arn, f"{code}: {message}")
    return as_dependency_error(error, code_prefix="image_model", what=what)
