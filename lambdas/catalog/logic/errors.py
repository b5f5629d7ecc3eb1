"""Errors of the catalog workflow that Step Functions must tell apart.

A Lambda error reaches Step Functions as `{"Error": <exception class name>, "Cause": ...}`, so the
class name is part of the workflow's contract: the state machine catches `CatalogInputError`
without retrying it (the same input will never pass), while anything else is retried.
"""

from __future__ import annotations

from shared.models.errors import RequestError


class CatalogInputError(RequestError):
    """The execution input cannot be run; the message names the field and how to fix it."""
