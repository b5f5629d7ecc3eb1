"""Bedrock runtime: Claude (or any Converse-capable model) through the Converse API, and Titan
Image Generator through InvokeModel."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import botocore
from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters.aws import as_dependency_error, client, error_code, slow_model_client
from shared.models.descriptions import TextModelReply
from shared.models.errors import AtelierError, DependencyError
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


# What Bedrock says when a model refuses the requested structured-output mode (forced tool
# choice, or the JSON-schema output format).
_STRUCTURED_OUTPUT_REFUSAL = re.compile(
    r"tool_?choice|output_?config|text_?format|structured output|json_schema", re.IGNORECASE
)


class BedrockTextModel:
    """A Converse-capable model. `code_prefix` starts the error codes (`text_model_throttled`...)
    and `setting` names the configuration key that picks its structured-output mode: the
    attribute source's calls go through this class too, under their own codes."""

    def __init__(
        self,
        *,
        bedrock_runtime: Any | None = None,
        code_prefix: str = "text_model",
        setting: str = "descriptions.structured_output",
    ) -> None:
        self._client = bedrock_runtime or client("bedrock-runtime")
        self.code_prefix = code_prefix
        self.setting = setting

    def converse(self, request: Mapping[str, Any]) -> TextModelReply:
        what = f"Bedrock model {request.get('modelId')}"
        self._check_sdk_knows(request)
        try:
            response = self._client.converse(**request)
        except ClientError as error:
            message = str(error.response.get("Error", {}).get("Message", ""))
            if error_code(error) == "ValidationException" and _STRUCTURED_OUTPUT_REFUSAL.search(
                message
            ):
                mode = "tool" if "toolConfig" in request else "json_schema"
                other = "json_schema" if mode == "tool" else "tool"
                raise DependencyError(
                    f"{self.code_prefix}_structured_output_unsupported",
                    f"{what} refused the {mode!r} structured-output mode ({message[:300]}); "
                    f"set {self.setting} to {other!r}",
                    retryable=False,
                ) from error
            raise as_dependency_error(error, code_prefix=self.code_prefix, what=what) from error
        except BotoCoreError as error:
            raise as_dependency_error(error, code_prefix=self.code_prefix, what=what) from error
        return TextModelReply.from_converse(response)

    def _check_sdk_knows(self, request: Mapping[str, Any]) -> None:
        """A botocore too old for a request field fails its parameter validation with a message
        about the field, not about the SDK; say which botocore this is and what to deploy."""
        members = self._client.meta.service_model.operation_model("Converse").input_shape.members
        unknown = sorted(set(request) - set(members))
        if unknown:
            raise DependencyError(
                f"{self.code_prefix}_sdk_outdated",
                f"this function's botocore {botocore.__version__} does not know Converse's "
                f"{', '.join(unknown)}; deploy the function with the bundled AWS SDK "
                f"(lambdas/requirements/aws-sdk.txt) or set {self.setting} to 'tool'",
                retryable=False,
            )


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
