"""Calls to the stage's REST API, signed with SigV4 (service `execute-api`), as IAM auth needs.

The API answers errors as `{"error": {"code", "message", "retryAfterSeconds"?}}`; each status
becomes the `CliError` with the matching exit status, carrying the API's own code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from atelier_cli.aws import CREDENTIALS_FIX, translated_errors
from atelier_cli.errors import AccessError, CliError, NotDeployedError, ServiceError, UsageError
from atelier_cli.runtime import Run

# API Gateway answers within 29 s; a little more covers the connection.
TIMEOUT_SECONDS = 35.0
# Presigned result downloads can be tens of MB.
DOWNLOAD_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None


def send(
    method: str, url: str, headers: Mapping[str, str], body: bytes | None, timeout: float
) -> Answer:
    """One HTTPS request with urllib3 (botocore's own HTTP library)."""
    import urllib3

    try:
        response = urllib3.request(
            method,
            url,
            body=body,
            headers=dict(headers),
            timeout=urllib3.Timeout(total=timeout),
            retries=False,
            redirect=False,
        )
    except urllib3.exceptions.HTTPError as error:
        raise ServiceError(
            f"{method} {url} failed: {error}",
            fix="check the network, then run the command again",
            code="connection_failed",
        ) from error
    return Answer(response.status, dict(response.headers), response.data)


class Api:
    """The stage's API: its base URL from the Api stack, requests signed as the caller."""

    def __init__(self, run: Run) -> None:
        self._run = run
        self.base_url = run.resources.published("api", "api-url").rstrip("/")

    def call(self, method: str, path: str, document: Any = None) -> Any:
        url = f"{self.base_url}{path}"
        body = None if document is None else json.dumps(document).encode()
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        signed = self._sign(method, url, headers, body)
        answer = self._send(method, url, signed, body, TIMEOUT_SECONDS)
        if 200 <= answer.status < 300:
            return answer.json()
        raise api_error(method, path, answer, self.base_url)

    def download(self, url: str) -> bytes:
        """A presigned URL (unsigned GET: the URL carries its own signature)."""
        answer = self._send("GET", url, {}, None, DOWNLOAD_TIMEOUT_SECONDS)
        if answer.status != 200:
            raise ServiceError(
                f"download of {urlsplit(url).path} failed with HTTP {answer.status}",
                fix="run the command again (presigned links expire after a while)",
                code="download_failed",
            )
        return answer.body

    def _sign(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> dict[str, str]:
        with translated_errors("read your AWS credentials"):
            credentials = self._run.aws.session.get_credentials()
        if credentials is None:
            raise AccessError(
                "no AWS credentials to sign the API request with",
                fix=CREDENTIALS_FIX,
                code="no_credentials",
            )
        # botocore's signer pulls in its HTTP stack: loaded when a request is signed, not when
        # the command line starts.
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method, url=url, data=body, headers=headers)
        SigV4Auth(
            credentials.get_frozen_credentials(), "execute-api", self._run.aws.region
        ).add_auth(request)
        return dict(request.headers.items())

    def _send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None, timeout: float
    ) -> Answer:
        sender = self._run.hooks.http_send
        if sender is None:
            return send(method, url, headers, body, timeout)
        status, answer_headers, answer_body = sender(method, url, headers, body)
        return Answer(status, answer_headers, answer_body)


def api_error(method: str, path: str, answer: Answer, base_url: str) -> CliError:
    document = answer.json()
    error = document.get("error") if isinstance(document, dict) else None
    code = str(error.get("code")) if isinstance(error, dict) and error.get("code") else None
    text = str(error.get("message")) if isinstance(error, dict) and error.get("message") else ""
    text = text or answer.body[:200].decode("utf-8", "replace") or "no message"
    message = f"{method} {path} answered {answer.status}: {code or 'error'}: {text}"
    status = answer.status
    if status in (400, 413, 415, 422):
        return UsageError(
            message, code=code or "request_refused", fix="change the request as the message says"
        )
    if status in (401, 403):
        api_id = urlsplit(base_url).hostname or base_url
        return AccessError(
            message,
            code=code or "access_denied",
            fix=f"grant your role execute-api:Invoke on the API ({api_id.split('.')[0]}, "
            f"{method} {path}), or pass --profile with a role that has it",
        )
    if status in (404, 409):
        return NotDeployedError(message, code=code or "not_found")
    retry = error.get("retryAfterSeconds") if isinstance(error, dict) else None
    retry = retry or answer.headers.get("Retry-After") or answer.headers.get("retry-after")
    fix = f"retry in {retry} s" if retry else "run the command again"
    return ServiceError(message, code=code or "api_failed", fix=fix)
