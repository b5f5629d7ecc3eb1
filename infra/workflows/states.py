"""What every Atelier workflow (JSONata state machines) builds its states with: the `{% %}`
expression wrapper, one retry policy, ONE list of transient errors per service, and the
wait-call-decide polling loop.

Transient errors, decided once per service (checked against botocore's service models,
2026-12-07). An error is transient when the service documents it as "retry" or "resubmit your
request later"; anything else (validation, not found, access denied, conflicts) is the caller's or
the resource's state and is caught by the workflow instead:

- Bedrock: `ThrottlingException` (429, "resubmit your request later"), `InternalServerException`
  (500, "retry your request") and `ServiceQuotaExceededException` ("the number of requests exceeds
  the service quota. Resubmit your request later"): CreateModelInvocationJob,
  CreateModelCustomizationJob and CreateProvisionedModelThroughput raise it while other jobs or
  throughputs of the account hold the quota, which they give back when they end. The calls that
  cannot raise it (Get*, Delete*, TagResource) list it harmlessly.
- SSM: `ThrottlingException` (not modelled, but what SSM answers when throttled),
  `InternalServerError` and `TooManyUpdates` ("concurrent updates for a resource that supports one
  update at a time", PutParameter only). Step Functions names them with an `Exception` suffix.
- SageMaker: `ThrottlingException` and `InternalFailure` (the common errors of every SageMaker
  API; `ResourceLimitExceeded` is a quota that does not free itself within minutes).
- Lambda: the invoke errors Step Functions documents as transient for `lambda:invoke`
  (service, SDK client and throttling errors).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

BEDROCK_TRANSIENT_ERRORS = [
    "Bedrock.ThrottlingException",
    "Bedrock.InternalServerException",
    "Bedrock.ServiceQuotaExceededException",
]
SSM_TRANSIENT_ERRORS = [
    "Ssm.ThrottlingException",
    "Ssm.TooManyUpdatesException",
    "Ssm.InternalServerErrorException",
]
SAGEMAKER_TRANSIENT_ERRORS = ["SageMaker.ThrottlingException", "SageMaker.InternalFailure"]
LAMBDA_TRANSIENT_ERRORS = [
    "Lambda.ClientExecutionTimeoutException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]
# What the functions raise when S3 or DynamoDB kept failing after their own retries
# (lambdas/shared/models/errors.py): worth another attempt a little later.
FUNCTION_DEPENDENCY_ERRORS = ["DependencyError"]


def jsonata(expression: str, *, compact: bool = True) -> str:
    """`{% expression %}`; compact folds the source's indentation onto one line (never use it on
    expressions whose string literals hold runs of spaces, such as notification messages)."""
    text = " ".join(expression.split()) if compact else expression
    return "{% " + text + " %}"


def literal(text: str) -> str:
    """A JSONata string literal (JSON's escapes are JSONata's), for concatenations with `&`."""
    return json.dumps(text)


def json_list(values: Iterable[str]) -> str:
    """A JSONata array of double-quoted strings: `["a", "b"]`."""
    return json.dumps(list(values))


def quoted_list(values: Iterable[str]) -> str:
    """A JSONata array of single-quoted strings: `['string', 'number']`."""
    return "[" + ", ".join(f"'{value}'" for value in values) + "]"


def retry(*, max_attempts: int = 6, interval: Duration | None = None) -> Mapping[str, Any]:
    """`add_retry` arguments: exponential backoff from 5 s (or `interval`), at most 2 minutes
    apart, with full jitter so that throttled callers do not retry in step."""
    return {
        "interval": interval or Duration.seconds(5),
        "max_attempts": max_attempts,
        "backoff_rate": 2,
        "max_delay": Duration.minutes(2),
        "jitter_strategy": sfn.JitterType.FULL,
    }


def dependency_retry() -> Mapping[str, Any]:
    """For a function whose S3 or DynamoDB calls kept failing: 15 s, 30 s, 60 s later."""
    return retry(max_attempts=3, interval=Duration.seconds(15))


def retry_json(errors: list[str], policy: Mapping[str, Any]) -> dict[str, Any]:
    """A retrier written out, for states given as JSON (`sfn.CustomState`, Map children)."""
    return {
        "ErrorEquals": errors,
        "IntervalSeconds": int(policy["interval"].to_seconds()),
        "MaxAttempts": policy["max_attempts"],
        "BackoffRate": policy["backoff_rate"],
        "MaxDelaySeconds": int(policy["max_delay"].to_seconds()),
        "JitterStrategy": "FULL",
    }


class PollUntil:
    """Wait, call `poll`, then let a Choice decide: each of its `when`s ends the loop, and its
    `otherwise` waits again. `wait` is the loop's first state (chain into it):

        loop = PollUntil(scope, "WaitForJob", state_name="Wait for job", every=..., poll=get_job)
        ended = sfn.Choice.jsonata(...).when(done, next_state).otherwise(loop.wait)
        start_job.next(loop.until(ended))

    Every turn adds about ten history events: the configuration bounds how many turns fit in an
    execution (infra/config.py, MAX_WORKFLOW_POLLS)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        state_name: str,
        every: Duration,
        poll: sfn.TaskStateBase,
    ) -> None:
        self.poll = poll
        self.wait = sfn.Wait.jsonata(
            scope, construct_id, state_name=state_name, time=sfn.WaitTime.duration(every)
        )

    def until(self, decide: sfn.Choice) -> sfn.Wait:
        """Close the loop through `decide` (whose `otherwise` must be `self.wait`)."""
        self.wait.next(self.poll).next(decide)
        return self.wait
