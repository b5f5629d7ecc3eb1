"""What the lifecycle check remembers between runs: one SSM String parameter holding a JSON
object of model to state key, created by the first run (missing: nothing remembered yet)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters.aws import as_dependency_error, client, error_code


class ParameterStates:
    def __init__(self, name: str, *, ssm: Any | None = None) -> None:
        self.name = name
        self._client = ssm or client("ssm")

    def load(self) -> dict[str, str]:
        try:
            value = self._client.get_parameter(Name=self.name)["Parameter"]["Value"]
        except ClientError as error:
            if error_code(error) == "ParameterNotFound":
                return {}
            raise self._error(error) from error
        except BotoCoreError as error:
            raise self._error(error) from error
        try:
            states = json.loads(value)
        except ValueError:
            # Hand-edited into something else: start afresh (one notice per model, not silence).
            return {}
        if not isinstance(states, dict):
            return {}
        return {str(key): str(state) for key, state in states.items()}

    def save(self, states: Mapping[str, str]) -> None:
        try:
            self._client.put_parameter(
                Name=self.name,
                Value=json.dumps(dict(sorted(states.items())), separators=(",", ":")),
                Type="String",
                Overwrite=True,
            )
        except (ClientError, BotoCoreError) as error:
            raise self._error(error) from error

    def _error(self, error: ClientError | BotoCoreError) -> Exception:
        return as_dependency_error(
            error, code_prefix="parameter_store", what=f"SSM parameter {self.name}"
        )
