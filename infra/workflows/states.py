"""What every Atelier workflow (JSONata state machines) builds its states with: the `{% %}`
expression wrapper, one retry policy, ONE list of transient errors per service, and the
wait-call-decide polling loop.

Transient errors, decided once per service with the rule the functions' own classifier uses
(lambdas/shared/adapters/aws.py `is_transient`): what botocore's standard retry mode retries
(throttling codes and server-side failures), checked against each service's model in botocore
(2026-12-07). Anything else (validation, not found, access denied, conflicts, quotas) is the
caller's or the resource's state: the workflow catches it and says what to change.

- Bedrock: `ThrottlingException` (429) and `InternalServerException` (500). Not
  `ServiceQuotaExceededException` (400, sender's fault): a quota on concurrent jobs or model units
  does not free itself within a retrier's minutes (a batch or customization job holds it for
  hours, a provisioned throughput quota starts at 0 until Service Quotas raises it), so retrying
  only delays the explanation: the Titan workflow ends in ThroughputNotCreated naming the quota,
  the catalog reports the group's products with Bedrock's reason. (The catalog retried it until
  this list was unified; the customize workflow did not.)
- SSM: `ThrottlingException` (what SSM answers when throttled, not in its model),
  `InternalServerError` and `TooManyUpdates` (PutParameter: "concurrent updates for a resource
  that supports one update at a time", a collision that the next attempt avoids). Step Functions
  names them with an `Exception` suffix. (The catalog, which only reads, lacked TooManyUpdates.)
- SageMaker: `ThrottlingException` and `InternalFailure` (the common errors of every SageMaker
  API; `ResourceLimitExceeded` is a quota, as above).
- Lambda: the invoke errors Step Functions documents as transient for `lambda:invoke`
  (service, SDK client and throttling errors).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

BEDROCK_TRANSIENT_ERRORS = ["Bedrock.ThrottlingException", "Bedrock.InternalServerException"]
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
# The one list of each service an AWS SDK task (`aws_call`) calls.
TRANSIENT_ERRORS_BY_SERVICE = {
    "bedrock": BEDROCK_TRANSIENT_ERRORS,
    "ssm": SSM_TRANSIENT_ERRORS,
    "sagemaker": SAGEMAKER_TRANSIENT_ERRORS,
}
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


def aws_call(
    scope: Construct,
    construct_id: str,
    *,
    state_name: str,
    service: str,
    action: str,
    iam_resources: Sequence[str],
    parameters: Mapping[str, Any],
    assign: Mapping[str, Any] | None = None,
    outputs: Any = None,
) -> tasks.CallAwsService:
    """An AWS SDK task that retries its service's transient errors (the one list, `retry()`);
    add a catch, and any retrier for errors of its own, to it."""
    task = tasks.CallAwsService.jsonata(
        scope,
        construct_id,
        state_name=state_name,
        service=service,
        action=action,
        iam_resources=list(iam_resources),
        parameters=dict(parameters),
        assign=dict(assign) if assign else None,
        outputs=outputs,
    )
    task.add_retry(errors=TRANSIENT_ERRORS_BY_SERVICE[service], **retry())
    return task


def error_output() -> dict[str, str]:
    """The error a catcher caught, as a value for its Assign: `{Error, Cause}`."""
    return {
        "Error": jsonata("$states.errorOutput.Error"),
        "Cause": jsonata("$states.errorOutput.Cause"),
    }


def catch_all(
    state: sfn.TaskStateBase | sfn.CustomState,
    handler: sfn.IChainable,
    *,
    assign: Mapping[str, Any] | None = None,
) -> None:
    """Any error of `state` (after its retriers) goes to `handler`."""
    state.add_catch(handler, errors=["States.ALL"], assign=dict(assign) if assign else None)


def caught_failure(
    fail: Callable[..., sfn.Fail], construct_id: str, context: str, *, note: str = ""
) -> sfn.Fail:
    """A `fail` state for a catch-all, under the caught error's own name: `context` (a JSONata
    expression ending where the error's name follows, e.g. `'could not read ' & $x & ': '`), the
    error and its cause, then `note` (plain text)."""
    if "'" in note:
        raise ValueError(f"note must not hold a single quote: {note!r}")
    tail = f" & '{note}'" if note else ""
    return fail(
        construct_id,
        jsonata(f"{context} & $states.input.Error & ': ' & $states.input.Cause{tail}"),
        error=jsonata("$states.input.Error"),
    )


def read_parameter(
    scope: Construct,
    construct_id: str,
    *,
    state_name: str,
    parameter: tuple[str, str],
    assign_to: str,
) -> tasks.CallAwsService:
    """An SSM GetParameter task (`parameter`: its ARN and name) that assigns the value to the
    variable `assign_to`."""
    arn, name = parameter
    return aws_call(
        scope,
        construct_id,
        state_name=state_name,
        service="ssm",
        action="getParameter",
        iam_resources=[arn],
        parameters={"Name": name},
        assign={assign_to: jsonata("$states.result.Parameter.Value")},
    )


def fail_states(scope: Construct, id_prefix: str) -> Callable[..., sfn.Fail]:
    """`fail(name, cause, error=None)`: a Fail state named `name` (its error too, unless given),
    under the construct id `<id_prefix><name>`."""

    def fail(construct_id: str, cause: str, error: str | None = None) -> sfn.Fail:
        return sfn.Fail.jsonata(
            scope,
            f"{id_prefix}{construct_id}",
            state_name=construct_id,
            error=error or construct_id,
            cause=cause,
        )

    return fail


def notify_task(
    scope: Construct,
    construct_id: str,
    *,
    topic: sns.ITopic,
    subject: str,
    message: str,
    outputs: Mapping[str, Any],
) -> tasks.SnsPublish:
    """A `Notify` state publishing `message` (a JSONata template, kept as written) to `topic`,
    retried on any failure up to 3 times: a lost notice is worth a few seconds' wait."""
    task = tasks.SnsPublish.jsonata(
        scope,
        construct_id,
        state_name="Notify",
        topic=topic,
        subject=subject,
        message=sfn.TaskInput.from_text(jsonata(message, compact=False)),
        outputs=dict(outputs),
    )
    task.add_retry(errors=["States.TaskFailed"], **retry(max_attempts=3))
    return task


def input_has_only(keys: Iterable[str]) -> str:
    """A check (true or false) that the input is a JSON object whose keys are all in `keys`."""
    return f"""(
  $type($states.input) = 'object'
  and $count($keys($states.input)[$not($ in {json_list(keys)})]) = 0
)"""


def either(
    scope: Construct,
    construct_id: str,
    *,
    state_name: str,
    condition: str,
    then: sfn.IChainable,
    otherwise: sfn.IChainable,
) -> sfn.Choice:
    """A Choice that goes to `then` when the JSONata `condition` holds, else to `otherwise`."""
    return (
        sfn.Choice.jsonata(scope, construct_id, state_name=state_name)
        .when(sfn.Condition.jsonata(jsonata(condition)), then)
        .otherwise(otherwise)
    )


def input_checks(
    scope: Construct,
    construct_id: str,
    checks: Sequence[tuple[str, sfn.IChainable]],
    *,
    state_name: str = "Validate input",
) -> sfn.Choice:
    """A Choice that goes to the failure of the first check (a JSONata expression, true or false)
    that is false; the caller adds where a valid input goes (`otherwise`)."""
    choice = sfn.Choice.jsonata(scope, construct_id, state_name=state_name)
    for check, failure in checks:
        choice.when(sfn.Condition.jsonata(jsonata(f"$not({check})")), failure)
    return choice


def lambda_task(
    scope: Construct,
    construct_id: str,
    *,
    state_name: str,
    function: lambda_.IFunction,
    payload: Mapping[str, Any] | str,
    assign: Mapping[str, Any] | None = None,
    outputs: Any = None,
) -> tasks.LambdaInvoke:
    """A Lambda task with the one Lambda retrier (throttles included, not CDK's default one) and,
    for the functions' DependencyError (S3 or DynamoDB kept failing), a slower one."""
    task_input = (
        sfn.TaskInput.from_text(payload)
        if isinstance(payload, str)
        else sfn.TaskInput.from_object(dict(payload))
    )
    task = tasks.LambdaInvoke.jsonata(
        scope,
        construct_id,
        state_name=state_name,
        lambda_function=function,
        payload=task_input,
        retry_on_service_exceptions=False,
        assign=dict(assign) if assign else None,
        outputs=outputs,
    )
    task.add_retry(errors=LAMBDA_TRANSIENT_ERRORS, **retry())
    task.add_retry(errors=FUNCTION_DEPENDENCY_ERRORS, **dependency_retry())
    return task


class PollUntil:
    """Wait, call `poll`, then let a Choice decide: each of its `when`s ends the loop, and its
    `otherwise` waits again. `wait` is the loop's first state (chain into it):

        loop = PollUntil(scope, "WaitForJob", state_name="Wait for job", every=..., poll=get_job)
        ended = sfn.Choice.jsonata(...).when(done, next_state).otherwise(loop.wait)
        start_job.next(loop.until(ended))

    Every turn adds about ten history events: the configuration bounds how many turns fit in an
    execution (infra/config/constants.py, MAX_WORKFLOW_POLLS)."""

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
