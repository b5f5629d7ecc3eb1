"""Bedrock's model catalog for the lifecycle check: foundation models and inference profiles."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters.aws import as_dependency_error, client, error_code
from shared.models.lifecycle import Lifecycle

# A foundation model of any region in an inference profile's `models`.
_FOUNDATION_MODEL_ARN = ":foundation-model/"
_INFERENCE_PROFILE_ARN = ":inference-profile/"
# GetFoundationModel's answers for a model it does not (or no longer) offer.
_MISSING_CODES = frozenset({"ResourceNotFoundException", "ValidationException"})


def is_inference_profile(model_id: str) -> bool:
    """`global.anthropic.claude-sonnet-4-6`, `us.amazon.nova-pro-v1:0` or a profile ARN: a
    geography prefix before the provider (a foundation model id has one dot before ':')."""
    if model_id.startswith("arn:"):
        return _INFERENCE_PROFILE_ARN in model_id
    return model_id.split(":", 1)[0].count(".") >= 2


def foundation_model_id(model_id: str) -> str:
    """The model id inside a foundation-model ARN; a plain id unchanged."""
    if _FOUNDATION_MODEL_ARN in model_id:
        return model_id.split(_FOUNDATION_MODEL_ARN, 1)[1]
    return model_id


class BedrockModels:
    def __init__(self, *, bedrock: Any | None = None) -> None:
        self._client = bedrock or client("bedrock")

    def foundation_models(self, model_id: str) -> list[str]:
        if not is_inference_profile(model_id):
            return [foundation_model_id(model_id)]
        try:
            profile = self._client.get_inference_profile(inferenceProfileIdentifier=model_id)
        except (ClientError, BotoCoreError) as error:
            raise self._error(error, f"inference profile {model_id}") from error
        ids: list[str] = []
        for model in profile.get("models", []):
            found = foundation_model_id(str(model.get("modelArn", "")))
            if found and found not in ids:
                ids.append(found)
        if not ids:
            raise LookupError(f"inference profile {model_id} lists no foundation model")
        return ids

    def lifecycle(self, model_id: str) -> Lifecycle:
        try:
            details = self._client.get_foundation_model(modelIdentifier=model_id)["modelDetails"]
        except ClientError as error:
            if error_code(error) in _MISSING_CODES:
                return Lifecycle(model_id=model_id, found=False)
            raise self._error(error, f"foundation model {model_id}") from error
        except BotoCoreError as error:
            raise self._error(error, f"foundation model {model_id}") from error
        lifecycle = details.get("modelLifecycle", {})
        return Lifecycle(
            model_id=model_id,
            found=True,
            status=lifecycle.get("status"),
            legacy_time=_time(lifecycle.get("legacyTime")),
            public_extended_access_time=_time(lifecycle.get("publicExtendedAccessTime")),
            end_of_life_time=_time(lifecycle.get("endOfLifeTime")),
        )

    @staticmethod
    def _error(error: ClientError | BotoCoreError, what: str) -> Exception:
        return as_dependency_error(error, code_prefix="bedrock", what=f"Bedrock ({what})")


def _time(value: Any) -> datetime | None:
    return value if isinstance(value, datetime) else None
