"""`catalog`: the `describe-catalog` workflow (Distributed Map fan-out, Batch Transform, Bedrock
batch inference, and the online path for catalogs too small for a batch job)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationInfo, model_validator

from infra.config.constants import (
    BEDROCK_BATCH_TIMEOUT_HOURS,
    MAX_MAP_CONCURRENCY,
    MAX_ONLINE_THRESHOLD,
    MAX_RECORDS_PER_PART,
    MAX_TRANSFORM_INVOCATION_RETRIES,
    MAX_TRANSFORM_INVOCATION_SECONDS,
    MAX_TRANSFORM_PAYLOAD_MB,
    MAX_WORKFLOW_POLLS,
    ML_INSTANCE_TYPE_PATTERN,
)
from infra.config.hosting import INSTANCE_TYPE_TEXT
from infra.config.rules import HERE, is_loading, matching, refuse_section, section, whole


@section
class CatalogTransformConfig:
    """The SageMaker Batch Transform job of each catalog group (the VQA attribute model)."""

    instance_type: str = matching(
        ML_INSTANCE_TYPE_PATTERN, INSTANCE_TYPE_TEXT, "Batch Transform instance type"
    )
    instance_count: int = whole(1, 100, "instances per group job")
    # Requests in flight per instance; max_payload_mb times this may not exceed 100 MB.
    max_concurrent_transforms: int = whole(
        1, MAX_TRANSFORM_PAYLOAD_MB, "parallel requests per instance"
    )
    # One request: one JSON line with its base64 image (SageMaker's default is 6 MB).
    max_payload_mb: int = whole(
        1,
        MAX_TRANSFORM_PAYLOAD_MB,
        "one request's limit; must carry the largest `descriptions.image.max_bytes` as base64",
    )
    invocation_timeout_seconds: int = whole(
        1, MAX_TRANSFORM_INVOCATION_SECONDS, "per-request timeout of the job's calls to the model"
    )
    invocation_max_retries: int = whole(
        0, MAX_TRANSFORM_INVOCATION_RETRIES, "retries of the job's calls to the model"
    )

    @model_validator(mode="after")
    def _payload_in_flight(self, info: ValidationInfo) -> CatalogTransformConfig:
        product = self.max_payload_mb * self.max_concurrent_transforms
        if is_loading(info) and product > MAX_TRANSFORM_PAYLOAD_MB:
            raise refuse_section(
                f"{HERE}max_payload_mb = {self.max_payload_mb} times "
                f"{HERE}max_concurrent_transforms = {self.max_concurrent_transforms} is "
                f"{product} MB; Batch Transform allows at most {MAX_TRANSFORM_PAYLOAD_MB} MB in "
                "flight per instance: lower one of them"
            )
        return self


def _records(description: str) -> Any:
    return whole(1, 1_000_000, description)


def _megabytes(description: str) -> Any:
    return whole(1, 100 * 1024, description)


@section
class CatalogBedrockConfig:
    """Bedrock batch inference quotas (Service Quotas, per model) and the job's polling."""

    min_records_per_job: int = _records("Bedrock's minimum records per batch job (a quota)")
    max_records_per_job: int = _records("Bedrock's maximum records per batch job (a quota)")
    max_records_per_file: int = _records("Bedrock's maximum records per input file (a quota)")
    max_file_mb: int = _megabytes("Bedrock's input file size quota (MB of 2^20 bytes)")
    max_job_mb: int = _megabytes("Bedrock's job size quota (MB of 2^20 bytes)")
    # CreateModelInvocationJob's timeoutDurationInHours (24-168).
    timeout_hours: int = whole(*BEDROCK_BATCH_TIMEOUT_HOURS, "batch job timeout")
    poll_seconds: int = whole(60, 3600, "how often the workflow checks a batch job")

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> CatalogBedrockConfig:
        if not is_loading(info):
            return self
        for low, high in (
            ("min_records_per_job", "max_records_per_job"),
            ("max_records_per_file", "max_records_per_job"),
            ("max_file_mb", "max_job_mb"),
        ):
            if getattr(self, low) > getattr(self, high):
                raise refuse_section(
                    f"{HERE}{low} = {getattr(self, low)} is larger than "
                    f"{HERE}{high} = {getattr(self, high)}"
                )
        polls = self.timeout_hours * 3600 // self.poll_seconds
        if polls > MAX_WORKFLOW_POLLS:
            raise refuse_section(
                f"{HERE}timeout_hours = {self.timeout_hours} at {HERE}poll_seconds = "
                f"{self.poll_seconds} makes {polls} polls; at most {MAX_WORKFLOW_POLLS} fit in a "
                "Step Functions execution's history (25,000 events): poll less often"
            )
        return self


@section
class CatalogConfig:
    """The `describe-catalog` workflow: Distributed Map fan-out, Batch Transform, Bedrock batch
    inference, and the online path for catalogs too small for a batch job."""

    transform: CatalogTransformConfig
    bedrock: CatalogBedrockConfig
    # Products per Batch Transform input part (one Distributed Map child batch).
    records_per_part: int = whole(
        1, MAX_RECORDS_PER_PART, "products per Batch Transform input part"
    )
    # Products per group: one Batch Transform job and one Bedrock job.
    max_records_per_group: int = whole(
        1, 1_000_000, "products per group (one Batch Transform job and one Bedrock job)"
    )
    max_concurrent_groups: int = whole(1, 100, "groups processed at once")
    # MaxConcurrency of the Distributed Map children that build the transform input.
    build_concurrency: int = whole(
        1, MAX_MAP_CONCURRENCY, "parallel Distributed Map children building the input"
    )
    # Fewer pending products than this take the online path (endpoint + Converse).
    online_threshold: int = whole(
        0, MAX_ONLINE_THRESHOLD, "fewer pending products than this take the online path"
    )
    online_concurrency: int = whole(1, 100, "products described at once on the online path")
    # Threads for the many small S3/DynamoDB calls inside one function.
    io_concurrency: int = whole(1, 64, "threads for the small S3 and DynamoDB calls")
    # The state machine's timeout; a standard execution runs at most a year; a week covers the
    # longest Bedrock job.
    max_run_hours: int = whole(1, 720, "the state machine's timeout: a whole run")

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> CatalogConfig:
        if not is_loading(info):
            return self
        bedrock = f"{HERE}bedrock"
        if self.max_records_per_group > self.bedrock.max_records_per_job:
            raise refuse_section(
                f"{HERE}max_records_per_group = {self.max_records_per_group} is larger than "
                f"{bedrock}.max_records_per_job = {self.bedrock.max_records_per_job}; a group is "
                "one Bedrock job"
            )
        if self.online_threshold < self.bedrock.min_records_per_job:
            raise refuse_section(
                f"{HERE}online_threshold = {self.online_threshold} is smaller than "
                f"{bedrock}.min_records_per_job = {self.bedrock.min_records_per_job}; a catalog "
                "too small for a Bedrock batch job must take the online path"
            )
        # Groups are cut at part boundaries (lambdas/catalog/logic/groups.py): each group then
        # holds at least Bedrock's minimum whenever the run holds it, if a group has room for
        # three parts and two minimums.
        smallest_group = 3 * self.records_per_part + 2 * self.bedrock.min_records_per_job
        if self.max_records_per_group < smallest_group:
            raise refuse_section(
                f"{HERE}max_records_per_group = {self.max_records_per_group} is smaller than 3 x "
                f"{HERE}records_per_part + 2 x {bedrock}.min_records_per_job = {smallest_group}; "
                "groups cut at part boundaries could then fall below the Bedrock job minimum: "
                "raise max_records_per_group or lower records_per_part"
            )
        if self.max_run_hours <= self.bedrock.timeout_hours:
            raise refuse_section(
                f"{HERE}max_run_hours = {self.max_run_hours} is not more than "
                f"{bedrock}.timeout_hours = {self.bedrock.timeout_hours}; a run must outlast its "
                "Bedrock jobs and the Batch Transform before them"
            )
        return self
