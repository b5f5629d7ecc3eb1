"""SSM Parameter Store values that change outside any deployment, cached for a short while.

A workflow writes such a parameter and deletes it later (e.g. the ARN of a provisioned model): a
function must notice within seconds, yet not ask SSM on every request (GetParameter has a modest
per-account throughput). A missing parameter is remembered as missing for the same time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters.aws import as_dependency_error, client, error_code

_UNREAD = object()


class CachedParameter:
    """One String parameter, read at most once per `ttl_seconds` (0: on every call)."""

    def __init__(
        self,
        name: str,
        *,
        ttl_seconds: float,
        ssm: Any | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._ttl = ttl_seconds
        self._client = ssm or client("ssm")
        self._clock = clock
        self._value: object = _UNREAD
        self._read_at = 0.0

    def get(self) -> str | None:
        """The value, or None when the parameter does not exist."""
        now = self._clock()
        if self._value is not _UNREAD and now - self._read_at < self._ttl:
            return self._value  # type: ignore[return-value]
        try:
            response = self._client.get_parameter(Name=self.name)
            value: str | None = str(response["Parameter"]["Value"])
        except ClientError as error:
            if error_code(error) != "ParameterNotFound":
                raise self._error(error) from error
            value = None
        except BotoCoreError as error:
            raise self._error(error) from error
        self._value, self._read_at = value, now
        return value

    def invalidate(self) -> None:
        """Forget the cached value: the next `get` asks SSM (e.g. after the value proved stale)."""
        self._value = _UNREAD

    def _error(self, error: ClientError | BotoCoreError) -> Exception:
        return as_dependency_error(
            error, code_prefix="parameter_store", what=f"SSM parameter {self.name}"
        )
