"""Gate: each transient AWS failure is retried and each permanent one is final, and no upload is
lost either way.

Every fault of the tables in tests/fault_injection.py (HTTP error answers of S3, DynamoDB,
SageMaker runtime and Bedrock runtime in each service's own protocol, connection failures, and
response bodies that break off) is injected into every call of the path that can meet it:
- the upload worker (moto S3, SQS, DynamoDB): a transient fault returns the record to SQS and
  the next delivery describes it; a permanent one parks it in the dead-letter queue at once;
- the API: a transient fault is a 503 with a Retry-After hint, a permanent one a 502; neither
  stores a row.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from moto import mock_aws

from descriptions.handlers import api
from descriptions.handlers.uploads import Outcome
from shared.adapters import aws
from shared.adapters.bedrock_runtime import BedrockTextModel
from shared.adapters.sagemaker_runtime import SageMakerAttributeModel
from shared.models.descriptions import TextModelReply
from shared.retry import Deadline
from tests.descriptions_support import (
    ATTRIBUTES,
    FakeContext,
    FakeTextModel,
    api_event,
    describe_body,
    image_bytes,
    settings,
)
from tests.fault_injection import (
    BEDROCK_RUNTIME_FAULTS,
    BODY_FAULTS,
    DYNAMODB_FAULTS,
    FINAL,
    NETWORK_FAULTS,
    RETRY,
    S3_FAULTS,
    SAGEMAKER_RUNTIME_FAULTS,
    Fault,
    FaultInjector,
    Site,
    case_id,
    cases,
    http_response,
    one_attempt_client,
)
from tests.uploads_support import RESULTS, UPLOADS, Harness

pytestmark = pytest.mark.integration


def _attributes_answer() -> Any:
    return http_response(
        200, json.dumps({"attributes": ATTRIBUTES}).encode(), {"content-type": "application/json"}
    )


class SwitchingTextModel:
    """Bedrock through the real adapter while a fault is planted on its client; otherwise the
    fake model answers (its reply format is not what this gate is about)."""

    def __init__(self, injector: FaultInjector, bedrock_runtime: Any) -> None:
        self._injector = injector
        self._real = BedrockTextModel(bedrock_runtime=bedrock_runtime)
        self.fake = FakeTextModel()

    def converse(self, request: Mapping[str, Any]) -> TextModelReply:
        if self._injector.is_armed_at("bedrock"):
            return self._real.converse(request)
        return self.fake.converse(request)


def _is_product_row(request: Mapping[str, Any]) -> bool:
    # The description's row, not the worker's idempotency record in the same table.
    body = request.get("body") or b""
    return b'"PRODUCT#' in (body if isinstance(body, bytes) else str(body).encode())


UPLOAD_READ = Site("uploads-GetObject", "s3", "GetObject", lambda r: UPLOADS in r["url"])
ENDPOINT = Site("endpoint-InvokeEndpoint", "sagemaker", "InvokeEndpoint")
TEXT_MODEL = Site("bedrock-Converse", "bedrock", "Converse")
ARCHIVE = Site("results-PutObject", "s3", "PutObject", lambda r: RESULTS in r["url"])
ROW = Site("table-PutItem", "dynamodb", "PutItem", _is_product_row)
ROW_READ = Site("table-GetItem", "dynamodb", "GetItem")

# Every call a POST /descriptions makes, with every fault it can meet.
DESCRIBE_CASES = [
    *cases(ENDPOINT, SAGEMAKER_RUNTIME_FAULTS + NETWORK_FAULTS + BODY_FAULTS),
    *cases(TEXT_MODEL, BEDROCK_RUNTIME_FAULTS + NETWORK_FAULTS),
    *cases(ARCHIVE, S3_FAULTS + NETWORK_FAULTS),
    *cases(ROW, DYNAMODB_FAULTS + NETWORK_FAULTS),
]
UPLOAD_CASES = [*cases(UPLOAD_READ, S3_FAULTS + NETWORK_FAULTS + BODY_FAULTS), *DESCRIBE_CASES]


class FaultyUploads(Harness):
    """The upload worker with the real model adapters, on clients that faults can be planted on."""

    def __init__(self) -> None:
        self.injector = FaultInjector()
        self.injector.answers[("sagemaker-runtime", "InvokeEndpoint")] = _attributes_answer
        self.sagemaker = one_attempt_client("sagemaker-runtime")
        self.bedrock = one_attempt_client("bedrock-runtime")
        self.text = SwitchingTextModel(self.injector, self.bedrock)
        super().__init__(
            attribute_model=SageMakerAttributeModel(
                settings().endpoint_name, sagemaker_runtime=self.sagemaker
            ),
            text_model=self.text,
            client=one_attempt_client,
        )
        for name in ("s3", "dynamodb", "sagemaker", "bedrock"):
            self.injector.attach(getattr(self, name), name)
        # Each record's outcome as the worker decided it (handle() answers SQS with them).
        self.outcomes: list[Outcome] = []
        process = self.worker.process

        def recording_process(record: dict[str, Any], deadline: Deadline) -> Outcome:
            outcome = process(record, deadline)
            self.outcomes.append(outcome)
            return outcome

        self.worker.process = recording_process  # type: ignore[method-assign]

    def start_case(self) -> str:
        """A product id of its own for each case: the environment is shared by the module."""
        self.outcomes.clear()
        self.injector.injected = 0
        return f"p{uuid.uuid4().hex[:12]}"

    def parked_codes(self, event: str) -> list[str]:
        """The error codes `event` was parked with (those messages are taken off the queue)."""
        codes = []
        for message in self.dead_letters():
            if message["Body"] == event:
                codes.append(message["MessageAttributes"]["errorCode"]["StringValue"])
                self.sqs.delete_message(
                    QueueUrl=self.dlq_url, ReceiptHandle=message["ReceiptHandle"]
                )
        return codes

    def call_api(self, event: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        """The API handler, on the same pipeline, clients and faults as the worker."""
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(api, "pipeline", lambda: self.worker.pipeline)
            response = api.handler(event, FakeContext())
        headers = {
            name.lower(): values[-1]
            for name, values in response.get("multiValueHeaders", {}).items()
        }
        return response["statusCode"], json.loads(response["body"]), headers


@pytest.fixture(scope="module")
def faults() -> Iterator[FaultyUploads]:
    # One moto environment for the module's ~130 cases (each uses its own product id): building
    # one per case would take most of the gate's time.
    with mock_aws():
        yield FaultyUploads()


def check_upload(faults: FaultyUploads, site: Site, fault: Fault) -> None:
    """One upload meets `fault` at `site`: retried by SQS and then described, or parked."""
    product = faults.start_case()
    event = faults.upload(f"incoming/{product}.jpg", image_bytes())
    try:
        with faults.injector.armed(site, fault):
            result = faults.handle(event)

        assert faults.injector.injected >= 1, "the fault never struck"
        assert faults.description(product) is None
        [outcome] = faults.outcomes
        if fault.outcome == RETRY:
            # A dependency's own transient failure, not an unexpected error that also retries.
            assert (outcome.status, str(outcome.cause).endswith("_unavailable")) == (
                "retry",
                True,
            ), outcome
            assert len(result["batchItemFailures"]) == 1, "a transient fault goes back to SQS"
            assert faults.parked_codes(event) == []
            # Nothing lost: SQS delivers it again, and with the dependency back it is described.
            assert faults.handle(event) == {"batchItemFailures": []}
            assert faults.description(product) is not None
            assert faults.parked_codes(event) == []
        else:
            assert fault.outcome == FINAL
            assert outcome.status == "parked", outcome
            assert result == {"batchItemFailures": []}, "a permanent fault is not retried"
            # Nothing lost: it waits in the dead-letter queue, with the reason.
            assert faults.parked_codes(event) == [outcome.cause]
            assert str(outcome.cause).endswith(("_failed", "_missing")), outcome
    finally:
        faults.parked_codes(event)  # leave the shared dead-letter queue empty for the next case


def check_describe_request(faults: FaultyUploads, site: Site, fault: Fault) -> None:
    """POST /descriptions meets `fault` at `site`: 503 with a hint, or 502; nothing stored."""
    product = faults.start_case()
    request = api_event("POST", "/descriptions", describe_body(productId=product))

    with faults.injector.armed(site, fault):
        status, body, headers = faults.call_api(request)

    assert faults.injector.injected >= 1, "the fault never struck"
    _assert_outcome_class(fault, status, body, headers)
    assert body["error"]["message"]
    assert faults.description(product) is None  # nothing half-stored


def _assert_outcome_class(
    fault: Fault, status: int, body: dict[str, Any], headers: dict[str, str]
) -> None:
    if fault.outcome == RETRY:
        assert status == 503, body
        assert body["error"]["code"].endswith("_unavailable"), body
        assert headers["retry-after"] == str(body["error"]["retryAfterSeconds"])
    else:
        assert fault.outcome == FINAL
        assert status == 502, body
        assert "retry-after" not in headers
        assert "retryAfterSeconds" not in body["error"]


@pytest.mark.parametrize(("site", "fault"), UPLOAD_CASES, ids=case_id)
def test_the_upload_worker_retries_transient_faults_and_parks_permanent_ones(
    faults: FaultyUploads, site: Site, fault: Fault
) -> None:
    check_upload(faults, site, fault)


@pytest.mark.parametrize(("site", "fault"), DESCRIBE_CASES, ids=case_id)
def test_the_api_answers_503_for_transient_faults_and_502_for_permanent_ones(
    faults: FaultyUploads, site: Site, fault: Fault
) -> None:
    check_describe_request(faults, site, fault)


@pytest.mark.parametrize(
    ("site", "fault"), cases(ROW_READ, DYNAMODB_FAULTS + NETWORK_FAULTS), ids=case_id
)
def test_reading_a_description_answers_503_or_502_by_fault_class(
    faults: FaultyUploads, site: Site, fault: Fault
) -> None:
    faults.start_case()

    with faults.injector.armed(site, fault):
        status, body, headers = faults.call_api(api_event("GET", "/descriptions/38642"))

    assert faults.injector.injected >= 1, "the fault never struck"
    _assert_outcome_class(fault, status, body, headers)


# The gate bites: with the classification turned round, a transient and a permanent fault of
# each site (and a connection failure) must each fail both checks.
_BITE_CASES = [
    (site, fault)
    for site, table in (
        (UPLOAD_READ, S3_FAULTS),
        (ENDPOINT, SAGEMAKER_RUNTIME_FAULTS),
        (TEXT_MODEL, BEDROCK_RUNTIME_FAULTS),
        (ARCHIVE, S3_FAULTS),
        (ROW, DYNAMODB_FAULTS),
    )
    for fault in (
        next(f for f in table if f.outcome == RETRY),
        next(f for f in table if f.outcome == FINAL),
        NETWORK_FAULTS[0],
    )
]


@pytest.mark.parametrize(("site", "fault"), _BITE_CASES, ids=case_id)
def test_the_gate_fails_on_a_turned_round_classification(
    faults: FaultyUploads, site: Site, fault: Fault, monkeypatch: pytest.MonkeyPatch
) -> None:
    classify = aws.is_transient
    monkeypatch.setattr(aws, "is_transient", lambda error, **kw: not classify(error, **kw))

    with pytest.raises(AssertionError):
        check_upload(faults, site, fault)
    if site is not UPLOAD_READ:  # the API reads no uploads
        with pytest.raises(AssertionError):
            check_describe_request(faults, site, fault)
