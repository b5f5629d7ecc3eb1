"""The Stable Diffusion endpoints (text to image, styling) behind SageMaker's real-time
InvokeEndpoint.

What SageMaker answers, and what the caller gets:
- `ValidationError` "Endpoint <name> of account <id> not found.": the endpoint is not deployed
  → 409 naming the config key that deploys it;
- `ModelError` with the container's status: the Hugging Face inference toolkit answers 400 with
  `{"code", "type", "message"}` when the handler raised (a ValueError naming the field) → 422
  with that message; 429/503 (an overloaded model server) → 503, retried; no status (0) or a
  timed-out invocation (the container gets 60 s) → 504 with a hint (not retried); anything else
  → 502;
- throttling and unavailability → 503 with Retry-After (after the service's bounded retries);
- our own read timeout (cut to the function's remaining time) → 504 with a hint.
"""

from __future__ import annotations

import json
import re
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError

from shared.adapters.aws import as_dependency_error, error_code, slow_model_client
from shared.models.diffusion import (
    EndpointNotDeployedError,
    EndpointSettings,
    ModelRejectedError,
    ModelTimeoutError,
)
from shared.models.errors import AtelierError, DependencyError

_ENDPOINT_MISSING = re.compile(r"endpoint\b.*\bnot found|could not find endpoint", re.I | re.S)
_TIMED_OUT = re.compile(r"timed out|timeout", re.IGNORECASE)
# "Received client error (400) from primary with message "<container body>". See https://..."
_WRAPPED_MESSAGE = re.compile(r'with message "(?P<inner>.*)"\.? See ', re.S)
_OVERLOADED = (429, 503)
_OUT_OF_MEMORY = 507


class SageMakerDiffusionModel:
    def __init__(self, *, sagemaker_runtime: Any | None = None, read_timeout: int = 60) -> None:
        # An injected client (tests) is used as is; otherwise one client per read timeout,
        # cached by `slow_model_client`.
        self._client = sagemaker_runtime
        self._read_timeout = read_timeout

    def client_for(self, timeout_seconds: int) -> Any:
        """The client whose read timeout is the configured one, cut to `timeout_seconds`."""
        if self._client is not None:
            return self._client
        read_timeout = max(1, min(self._read_timeout, timeout_seconds))
        return slow_model_client("sagemaker-runtime", read_timeout=read_timeout)

    def invoke(self, endpoint: EndpointSettings, body: bytes, *, timeout_seconds: int) -> bytes:
        what = f"SageMaker endpoint {endpoint.endpoint_name}"
        try:
            response = self.client_for(timeout_seconds).invoke_endpoint(
                EndpointName=endpoint.endpoint_name,
                ContentType="application/json",
                Accept="application/json",
                Body=body,
            )
            payload: bytes = response["Body"].read()
        except ClientError as error:
            raise endpoint_error(error, endpoint) from error
        except ReadTimeoutError as error:
            raise ModelTimeoutError(
                endpoint, f"no answer within {timeout_seconds} s, the time this request had left"
            ) from error
        except BotoCoreError as error:
            raise as_dependency_error(error, code_prefix="model", what=what) from error
        return payload


def endpoint_error(error: ClientError, endpoint: EndpointSettings) -> AtelierError:
    """The caller's view of a failed InvokeEndpoint call (see the module docstring)."""
    code = error_code(error)
    message = str(error.response.get("Error", {}).get("Message", ""))
    what = f"SageMaker endpoint {endpoint.endpoint_name}"
    if code in ("ValidationError", "ValidationException") and _ENDPOINT_MISSING.search(message):
        return EndpointNotDeployedError(endpoint)
    if code == "ModelError":
        return _model_error(error, endpoint, message)
    return as_dependency_error(error, code_prefix="model", what=what)


def _model_error(error: ClientError, endpoint: EndpointSettings, message: str) -> AtelierError:
    status = _status(error.response.get("OriginalStatusCode"))
    detail = container_message(error.response.get("OriginalMessage"), message)
    server_side = status is None or status == 0 or status >= 500
    if status == 0 or (server_side and _TIMED_OUT.search(f"{message} {detail}")):
        return ModelTimeoutError(endpoint, "SageMaker gives a container 60 s per invocation")
    if status is not None and 400 <= status < 500 and status not in _OVERLOADED:
        return ModelRejectedError(endpoint, detail)
    retryable = status in _OVERLOADED
    # The model server answers 507 when the worker ran out of (GPU) memory.
    hint = "; ask for fewer images or a smaller size" if status == _OUT_OF_MEMORY else ""
    return DependencyError(
        "model_unavailable" if retryable else "model_failed",
        f"the {endpoint.label} endpoint {endpoint.endpoint_name} failed with status {status}: "
        f"{detail[:400]}{hint}",
        retryable=retryable,
    )


def container_message(original: object, wrapper: str) -> str:
    """What the handler said: the toolkit's JSON body `{"code", "type", "message"}` unwrapped,
    from `OriginalMessage` or, failing that, from inside SageMaker's own message."""
    text = original if isinstance(original, str) and original.strip() else None
    if text is None:
        match = _WRAPPED_MESSAGE.search(wrapper)
        text = match["inner"] if match else wrapper
    try:
        document = json.loads(text)
    except ValueError:
        return text.strip()[:500]
    if isinstance(document, dict) and isinstance(document.get("message"), str):
        return str(document["message"]).strip()[:500]
    return text.strip()[:500]


def _status(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None
