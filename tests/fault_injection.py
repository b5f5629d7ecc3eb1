"""AWS faults injected just below botocore's client, for the fault-class gate.

A fault is planted on a client's `before-call` event, which replaces sending the request (so
moto never sees the call). An error answer is a raw HTTP response (status, headers and body in
the service's own protocol) that botocore's own response parser turns into the ClientError, as
it does in production; a connection failure is raised as the HTTP sender raises it; a body fault
is a 200 answer whose stream breaks while it is read, so botocore's StreamingBody raises
ResponseStreamingError, ReadTimeoutError or IncompleteReadError itself. Everything above that
(the adapters, the retries, the handlers) is the real code.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.endpoint import convert_to_response_dict
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.model import OperationModel
from botocore.parsers import create_parser
from urllib3.exceptions import ProtocolError
from urllib3.exceptions import ReadTimeoutError as URLLib3ReadTimeoutError

RETRY = "retry"  # worker: returned to SQS for another delivery; API: 503 with a retry hint
FINAL = "final"  # worker: parked in the dead-letter queue at once; API: 502

# One attempt per call, so each injected fault reaches the adapters (production data clients
# let botocore retry a transient fault first; the outcome class is the same).
ONE_ATTEMPT = Config(retries={"mode": "standard", "total_max_attempts": 1})
_URL = "https://injected.amazonaws.com"


def one_attempt_client(service: str) -> Any:
    return boto3.client(service, config=ONE_ATTEMPT)


class _Raw:
    """The raw stream of an HTTP response: its bytes, then `fail` (if any) instead of the end."""

    def __init__(self, data: bytes, fail: Exception | None = None) -> None:
        self._data = io.BytesIO(data)
        self._fail = fail

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.read()

    def read(self, amt: int | None = None) -> bytes:
        chunk = self._data.read(amt) if amt else self._data.read()
        if self._fail is not None and (amt is None or not chunk):
            raise self._fail
        return chunk


def http_response(status: int, body: bytes, headers: dict[str, str] | None = None) -> AWSResponse:
    return AWSResponse(_URL, status, headers or {}, _Raw(body))


@dataclass(frozen=True)
class Fault:
    """One failure of one call: `respond` returns the HTTP answer or raises the exception."""

    label: str
    outcome: str  # RETRY or FINAL
    respond: Callable[[], AWSResponse]


def s3_error(code: str, status: int, outcome: str) -> Fault:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Error><Code>{code}</Code><Message>injected</Message><RequestId>R</RequestId></Error>"
    ).encode()
    return Fault(f"{code}-{status}", outcome, lambda: http_response(status, body))


def dynamodb_error(code: str, status: int, outcome: str) -> Fault:
    body = json.dumps(
        {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "injected"}
    ).encode()
    return Fault(f"{code}-{status}", outcome, lambda: http_response(status, body))


def rest_json_error(code: str, status: int, outcome: str, **fields: Any) -> Fault:
    """An error of a REST-JSON service (SageMaker runtime, Bedrock runtime)."""
    body = json.dumps({"message": "injected", **fields}).encode()
    label = f"{code}-{status}" + "".join(f"-{value}" for value in fields.values())
    return Fault(
        label,
        outcome,
        lambda: http_response(status, body, {"x-amzn-ErrorType": code}),
    )


def _raises(error: Exception) -> Callable[[], AWSResponse]:
    def respond() -> AWSResponse:
        raise error

    return respond


# Failures before any answer: every one of them is transient.
NETWORK_FAULTS = [
    Fault("EndpointConnectionError", RETRY, _raises(EndpointConnectionError(endpoint_url=_URL))),
    Fault("ConnectTimeoutError", RETRY, _raises(ConnectTimeoutError(endpoint_url=_URL))),
    Fault("ConnectionClosedError", RETRY, _raises(ConnectionClosedError(endpoint_url=_URL))),
    Fault("ReadTimeoutError", RETRY, _raises(ReadTimeoutError(endpoint_url=_URL))),
]


def _broken_body(fail: Exception | None, *, declared: int = 4096) -> Callable[[], AWSResponse]:
    def respond() -> AWSResponse:
        headers = {"content-length": str(declared), "content-type": "application/json"}
        return AWSResponse(_URL, 200, headers, _Raw(b'{"partial": ', fail))

    return respond


# A 200 answer whose body breaks off: transient too (a new request reads it afresh).
BODY_FAULTS = [
    Fault(
        "ResponseStreamingError",
        RETRY,
        _broken_body(ProtocolError("Connection broken: IncompleteRead")),
    ),
    Fault(
        "ReadTimeoutError-in-body",
        RETRY,
        _broken_body(URLLib3ReadTimeoutError(None, _URL, "Read timed out.")),  # type: ignore[arg-type]
    ),
    Fault("IncompleteReadError", RETRY, _broken_body(None)),
]

S3_FAULTS = [
    s3_error("InternalError", 500, RETRY),
    s3_error("ServiceUnavailable", 503, RETRY),
    s3_error("SlowDown", 503, RETRY),
    s3_error("RequestTimeout", 400, RETRY),
    s3_error("AccessDenied", 403, FINAL),
    s3_error("NoSuchBucket", 404, FINAL),
    s3_error("InvalidObjectState", 403, FINAL),
]
DYNAMODB_FAULTS = [
    dynamodb_error("ProvisionedThroughputExceededException", 400, RETRY),
    dynamodb_error("ThrottlingException", 400, RETRY),
    dynamodb_error("RequestLimitExceeded", 400, RETRY),
    dynamodb_error("InternalServerError", 500, RETRY),
    dynamodb_error("AccessDeniedException", 400, FINAL),
    dynamodb_error("ValidationException", 400, FINAL),
    dynamodb_error("ResourceNotFoundException", 400, FINAL),
]
SAGEMAKER_RUNTIME_FAULTS = [
    rest_json_error("ThrottlingException", 400, RETRY),
    rest_json_error("ServiceUnavailable", 503, RETRY),
    rest_json_error("InternalFailure", 500, RETRY),
    rest_json_error("ModelNotReadyException", 429, RETRY),
    rest_json_error("InternalDependencyException", 530, RETRY),
    # The container answered 503 (overloaded) or 500 (fails on this input).
    rest_json_error("ModelError", 424, RETRY, OriginalStatusCode=503),
    rest_json_error("ModelError", 424, FINAL, OriginalStatusCode=500),
    rest_json_error("ValidationError", 400, FINAL),
    rest_json_error("AccessDeniedException", 400, FINAL),
]
BEDROCK_RUNTIME_FAULTS = [
    rest_json_error("ThrottlingException", 429, RETRY),
    rest_json_error("ServiceUnavailableException", 503, RETRY),
    rest_json_error("InternalServerException", 500, RETRY),
    rest_json_error("ModelTimeoutException", 408, RETRY),
    rest_json_error("ModelNotReadyException", 429, RETRY),
    rest_json_error("ValidationException", 400, FINAL),
    rest_json_error("AccessDeniedException", 403, FINAL),
    rest_json_error("ResourceNotFoundException", 404, FINAL),
    rest_json_error("ModelErrorException", 424, FINAL),
]


@dataclass(frozen=True)
class Site:
    """Where a fault strikes: one operation of one client, for the requests `applies` picks
    (it reads botocore's serialized request: `url`, `body`)."""

    name: str
    client: str  # the name of the harness attribute that holds the client
    operation: str
    applies: Callable[[Mapping[str, Any]], bool] = lambda request: True


class FaultInjector:
    """Plants at most one fault at a time; other calls go on to moto, or get a canned answer."""

    def __init__(self) -> None:
        self._armed: tuple[Site, Fault] | None = None
        self.injected = 0
        # Successful answers for calls moto does not serve: (service, operation) → answer.
        self.answers: dict[tuple[str, str], Callable[[], AWSResponse]] = {}

    def attach(self, client: Any, name: str) -> None:
        service = client.meta.service_model.service_id.hyphenize()

        def before_call(
            model: OperationModel, params: Mapping[str, Any], **_: Any
        ) -> tuple[AWSResponse, dict[str, Any]] | None:
            respond = self.answers.get((service, model.name))
            if self._armed is not None:
                site, fault = self._armed
                if site.client == name and site.operation == model.name and site.applies(params):
                    self.injected += 1
                    respond = fault.respond
            if respond is None:
                return None
            http = respond()  # a connection fault raises here, as botocore's sender would
            return http, _parse(http, model)

        client.meta.events.register_first(f"before-call.{service}", before_call)

    @contextmanager
    def armed(self, site: Site, fault: Fault) -> Iterator[None]:
        self._armed = (site, fault)
        try:
            yield
        finally:
            self._armed = None

    def is_armed_at(self, client: str) -> bool:
        return self._armed is not None and self._armed[0].client == client


def _parse(http: AWSResponse, model: OperationModel) -> dict[str, Any]:
    """What botocore's endpoint makes of an HTTP answer (botocore.endpoint: the response dict,
    the protocol's parser, and an error's modeled fields)."""
    response = convert_to_response_dict(http, model)
    parser = create_parser(model.service_model.resolved_protocol)
    parsed: dict[str, Any] = parser.parse(response, model.output_shape)
    if http.status_code >= 300:
        error_shape = model.service_model.shape_for_error_code(parsed.get("Error", {}).get("Code"))
        if error_shape is not None:
            parsed.update(parser.parse(response, error_shape))
    return parsed


def cases(site: Site, faults: list[Fault]) -> list[tuple[Site, Fault]]:
    return [(site, fault) for fault in faults]


def case_id(case: Any) -> str:
    if isinstance(case, Site):
        return case.name
    if isinstance(case, Fault):
        return case.label
    return str(case)
