"""The attribute model behind a SageMaker real-time endpoint.

Contract (implemented by training/vqa/inference.py): one request per image carrying every
question, `{"image": <base64>, "questions": [{"name", "text"}]}` → `{"attributes": {name: answer}}`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters.aws import as_dependency_error, client, error_code
from shared.models.errors import DependencyError


class _Question(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def text(self) -> str: ...


class SageMakerAttributeModel:
    def __init__(self, endpoint_name: str, *, sagemaker_runtime: Any | None = None) -> None:
        self.endpoint_name = endpoint_name
        self._client = sagemaker_runtime or client("sagemaker-runtime")

    def extract(self, image: bytes, questions: Sequence[_Question]) -> dict[str, str]:
        body = json.dumps(
            {
                "image": base64.b64encode(image).decode("ascii"),
                "questions": [{"name": q.name, "text": q.text} for q in questions],
            }
        )
        what = f"SageMaker endpoint {self.endpoint_name}"
        try:
            response = self._client.invoke_endpoint(
                EndpointName=self.endpoint_name,
                ContentType="application/json",
                Accept="application/json",
                Body=body,
            )
            payload = response["Body"].read()
        except ClientError as error:
            raise self._model_error(error, what) from error
        except BotoCoreError as error:
            raise as_dependency_error(error, code_prefix="attribute_model", what=what) from error
        return _attributes(payload, what)

    @staticmethod
    def _model_error(error: ClientError, what: str) -> DependencyError:
        # ModelError wraps the container's own status: 429/503 mean an overloaded container
        # (retry), anything else a model that fails on this input (do not hammer it).
        overloaded = error_code(error) == "ModelError" and error.response.get(
            "OriginalStatusCode"
        ) in (429, 503)
        return as_dependency_error(
            error,
            code_prefix="attribute_model",
            what=what,
            extra_retryable_codes=("ModelError",) if overloaded else (),
        )


def _attributes(payload: bytes, what: str) -> dict[str, str]:
    try:
        document = json.loads(payload)
    except ValueError:
        document = None
    attributes = document.get("attributes") if isinstance(document, dict) else None
    if not isinstance(attributes, dict) or not all(
        isinstance(value, str) for value in attributes.values()
    ):
        raise DependencyError(
            "attribute_model_bad_response",
            f'{what} did not answer {{"attributes": {{name: text}}}}',
            retryable=False,
        )
    return {str(name): value.strip() for name, value in attributes.items()}
