"""Following a workflow execution: its status, the step it is in, and the SageMaker training job
or Bedrock customization job it runs, until it ends.

The job is found in the execution's history: the task-scheduled event of the step that creates
it carries the job's name in its parameters (`TrainingJobName` for SageMaker, `jobName` for
Bedrock), so this works for every workflow without knowing its definition.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from atelier_cli.aws import translated_errors
from atelier_cli.errors import FailedError, ServiceError
from atelier_cli.runtime import Run

TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
# Enough of the newest history to find the current step and the job in every Atelier workflow
# (a training run has tens of events; a long Titan run's polling loop is the newest part).
HISTORY_PAGE = 200


@dataclass
class Job:
    kind: str  # "training-job" or "model-customization-job"
    name: str
    status: str | None = None
    detail: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "metrics": self.metrics,
        }


@dataclass
class Snapshot:
    """One look at an execution."""

    execution_arn: str
    status: str
    step: str | None
    job: Job | None
    description: dict[str, Any]

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def line(self) -> str:
        parts = [self.status]
        if self.step and not self.done:
            parts.append(f"step {self.step}")
        if self.job is not None:
            job = f"{self.job.kind} {self.job.name}: {self.job.status or '?'}"
            if self.job.detail:
                job += f" ({self.job.detail})"
            parts.append(job)
            if self.job.metrics:
                parts.append(
                    " ".join(
                        f"{name}={value:g}" for name, value in sorted(self.job.metrics.items())
                    )
                )
        return " | ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "executionArn": self.execution_arn,
            "name": self.description.get("name"),
            "stateMachineArn": self.description.get("stateMachineArn"),
            "status": self.status,
            "step": self.step,
            "startDate": _iso(self.description.get("startDate")),
            "stopDate": _iso(self.description.get("stopDate")),
            "job": self.job.to_dict() if self.job else None,
        }
        if self.status == "SUCCEEDED":
            document["output"] = _json(self.description.get("output"))
        if self.status in ("FAILED", "TIMED_OUT", "ABORTED"):
            document["error"] = self.description.get("error")
            document["cause"] = self.description.get("cause")
        return document


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return str(value.isoformat()) if hasattr(value, "isoformat") else str(value)


def _json(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def current_step(events: Iterable[Mapping[str, Any]]) -> str | None:
    """The newest state entered (events newest first)."""
    for event in events:
        details = event.get("stateEnteredEventDetails")
        if details:
            return str(details["name"])
    return None


def job_in(events: Iterable[Mapping[str, Any]]) -> Job | None:
    """The newest training or customization job a step scheduled (events newest first)."""
    for event in events:
        details = event.get("taskScheduledEventDetails")
        if not details:
            continue
        parameters = _json(details.get("parameters"))
        if not isinstance(parameters, dict):
            continue
        # SDK integrations name parameters in PascalCase: CreateTrainingJob's TrainingJobName,
        # CreateModelCustomizationJob's JobName (with CustomModelName, which tells it apart).
        if "TrainingJobName" in parameters:
            return Job("training-job", str(parameters["TrainingJobName"]))
        if "JobName" in parameters and "CustomModelName" in parameters:
            return Job("model-customization-job", str(parameters["JobName"]))
    return None


def look(run: Run, execution_arn: str) -> Snapshot:
    stepfunctions = run.aws.client("stepfunctions")
    with translated_errors(f"describe execution {execution_arn}"):
        description = stepfunctions.describe_execution(executionArn=execution_arn)
        events = stepfunctions.get_execution_history(
            executionArn=execution_arn, reverseOrder=True, maxResults=HISTORY_PAGE
        ).get("events", [])
    job = job_in(events)
    if job is not None:
        _fill_job(run, job)
    return Snapshot(
        execution_arn=execution_arn,
        status=description["status"],
        step=current_step(events),
        job=job,
        description=description,
    )


def _fill_job(run: Run, job: Job) -> None:
    """Status and metrics of the job; a job not created yet (or already gone, or not readable
    with the caller's permissions) stays unknown: the workflow's own status is what counts."""

    try:
        if job.kind == "training-job":
            answer = run.aws.client("sagemaker").describe_training_job(TrainingJobName=job.name)
            job.status = answer.get("TrainingJobStatus")
            job.detail = answer.get("SecondaryStatus")
            job.metrics = {
                metric["MetricName"]: float(metric["Value"])
                for metric in answer.get("FinalMetricDataList", [])
            }
            if not job.metrics and job.status == "InProgress":
                job.metrics = latest_metrics(run, answer)
        else:
            answer = run.aws.client("bedrock").get_model_customization_job(jobIdentifier=job.name)
            job.status = answer.get("status")
            job.detail = answer.get("failureMessage")
    except (ClientError, BotoCoreError):
        job.status = None


# Where SageMaker publishes the metric definitions' values while a job runs; one series per
# instance, `<job>/algo-<n>`. Atelier's training jobs run on one instance.
TRAINING_METRICS_NAMESPACE = "/aws/sagemaker/TrainingJobs"
METRIC_PERIOD_SECONDS = 60
MAX_METRIC_QUERIES = 500


def latest_metrics(run: Run, training_job: Mapping[str, Any]) -> dict[str, float]:
    """The newest value of each of the job's metric definitions in CloudWatch (SageMaker fills
    FinalMetricDataList only at the end). Unreadable metrics leave the dict empty."""
    definitions = training_job.get("AlgorithmSpecification", {}).get("MetricDefinitions", [])
    names = [definition["Name"] for definition in definitions][:MAX_METRIC_QUERIES]
    if not names:
        return {}
    started = training_job.get("TrainingStartTime") or training_job["CreationTime"]
    queries = [
        {
            "Id": f"m{index}",
            "Label": name,
            "MetricStat": {
                "Metric": {
                    "Namespace": TRAINING_METRICS_NAMESPACE,
                    "MetricName": name,
                    "Dimensions": [
                        {"Name": "Host", "Value": f"{training_job['TrainingJobName']}/algo-1"}
                    ],
                },
                "Period": METRIC_PERIOD_SECONDS,
                "Stat": "Average",
            },
        }
        for index, name in enumerate(names)
    ]
    try:
        answer = run.aws.client("cloudwatch").get_metric_data(
            MetricDataQueries=queries,
            StartTime=started,
            EndTime=datetime.fromtimestamp(run.hooks.clock(), UTC),
            ScanBy="TimestampDescending",
        )
    except (ClientError, BotoCoreError):
        return {}
    return {
        result["Label"]: float(result["Values"][0])
        for result in answer.get("MetricDataResults", [])
        if result.get("Values")
    }


def follow(
    run: Run,
    execution_arn: str,
    *,
    interval: float,
    timeout: float | None,
    on_change: Callable[[Snapshot], None],
) -> Snapshot:
    """Look every `interval` seconds until the execution ends; report each changed line."""
    started = run.hooks.clock()
    last_line = None
    while True:
        snapshot = look(run, execution_arn)
        if snapshot.line() != last_line:
            on_change(snapshot)
            last_line = snapshot.line()
        if snapshot.done:
            return snapshot
        if timeout is not None and run.hooks.clock() - started >= timeout:
            raise ServiceError(
                f"execution {execution_arn} is still {snapshot.status} after {timeout:g} s of "
                "watching; it keeps running",
                fix=f"watch it again: atelier --stage {run.options.stage} jobs watch "
                f"{execution_arn}",
                code="watch_timeout",
                details=snapshot.to_dict(),
            )
        run.hooks.sleep(interval)


def require_success(snapshot: Snapshot) -> None:
    """A run that ended any other way than SUCCEEDED is exit 6, with its error and cause."""
    if snapshot.status == "SUCCEEDED":
        return
    description = snapshot.description
    raise FailedError(
        f"execution {snapshot.execution_arn} ended {snapshot.status}: "
        f"{description.get('error') or 'no error'}: {description.get('cause') or 'no cause'}",
        fix="read the cause above; the execution's log group has every state's input and output",
        code=f"execution_{snapshot.status.lower()}",
        details=snapshot.to_dict(),
    )


def watch_and_report(
    run: Run, execution_arn: str, *, interval: float, timeout: float | None
) -> Snapshot:
    """`follow` with progress lines on stderr (none in JSON mode), then `require_success`."""
    snapshot = follow(
        run,
        execution_arn,
        interval=interval,
        timeout=timeout,
        on_change=lambda current: run.note(current.line()),
    )
    require_success(snapshot)
    return snapshot
