"""Typed errors shared by every feature; handlers turn them into responses or failed records.

Two families, because callers must act differently:
- `RequestError`: the caller sent something we will never accept (4xx); retrying cannot help
  (a `ConflictError`, 409, until the deployment changes).
- `DependencyError`: a model endpoint, Bedrock or a data store failed (502/503); `retryable`
  says whether the same request may succeed later (throttling, unavailability) or not (a model
  that errors on this input, a missing permission).
"""

from __future__ import annotations

from typing import Any


class AtelierError(Exception):
    status: int = 500

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


class RequestError(AtelierError):
    """The request is wrong; the message tells the caller what to change."""

    def __init__(self, code: str, message: str, *, status: int = 400) -> None:
        super().__init__(code, message)
        self.status = status


class NotFoundError(RequestError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message, status=404)


class ConflictError(RequestError):
    """The request is fine but the deployment is not in a state to serve it (e.g. no model has
    been provisioned); the message says what to do first."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message, status=409)


class DependencyError(AtelierError):
    """A service we depend on failed. Retryable failures become 503 with a retry hint."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool,
        retry_after_seconds: int = 5,
    ) -> None:
        super().__init__(code, message)
        self.retryable = retryable
        self.retry_after_seconds = retry_after_seconds
        self.status = 503 if retryable else 502

    def body(self) -> dict[str, Any]:
        body = super().body()
        if self.retryable:
            body["error"]["retryAfterSeconds"] = self.retry_after_seconds
        return body
