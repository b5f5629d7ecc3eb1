"""The `endpoint` attribute source: the fine-tuned attribute model on a SageMaker endpoint.

Contract (implemented by training/vqa/inference.py): one request per image carrying every
question, `{"image": <base64>, "questions": [{"name", "text"}]}` → `{"attributes": {name: answer}}`,
validated by `AttributeAnswers` like the `vision-llm` source's answer.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters.aws import as_dependency_error, client, error_code
from shared.models.attributes import AttributeAnswers, AttributesSource, model_answers
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

    @property
    def source(self) -> AttributesSource:
        return AttributesSource(kind="endpoint", model=self.endpoint_name)

    def check_image(self, info: object) -> None:
        """The endpoint takes whatever the configured image limits let through."""
        del info

    def answer(self, image: bytes, questions: Sequence[_Question]) -> AttributeAnswers:
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
        return model_answers(payload, what)

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
