"""Staged base-model records, as `atelier models stage` writes them, for the training-workflow
tests: the workflow reads one per base model before it starts a job."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from infra.models import staged_base_model_prefix

GET_PARAMETER = "arn:aws:states:::aws-sdk:ssm:getParameter"
DESCRIBE_JOB = "arn:aws:states:::aws-sdk:sagemaker:describeTrainingJob"
BASE_MODELS_PATH = "/atelier/dev/base-models/"


def manifest_sha256(model: str, revision: str) -> str:
    """A stand-in manifest hash, different per model and commit."""
    return hashlib.sha256(f"{model}@{revision}".encode()).hexdigest()


def staged_record(model: str, revision: str, *, bucket: str) -> dict[str, Any]:
    return {
        "uri": f"s3://{bucket}/{staged_base_model_prefix(model, revision)}",
        "manifestSha256": manifest_sha256(model, revision),
        "files": 12,
        "bytes": 5_000_000_000,
        "model": model,
        "revision": revision,
    }


def record_parameter(name: str, *, bucket: str) -> dict[str, Any]:
    """GetParameter's answer (as Step Functions returns it) for a record name
    `/atelier/dev/base-models/<org>/<name>/<commit>`."""
    assert name.startswith(BASE_MODELS_PATH), name
    org, repository, revision = name.removeprefix(BASE_MODELS_PATH).split("/")
    record = staged_record(f"{org}/{repository}", revision, bucket=bucket)
    return {"Parameter": {"Name": name, "Type": "String", "Value": json.dumps(record)}}


def put_record(ssm: Any, model: str, revision: str, *, bucket: str) -> dict[str, Any]:
    """Write a record into (moto's) SSM, as the staging command does."""
    record = staged_record(model, revision, bucket=bucket)
    ssm.put_parameter(
        Name=f"{BASE_MODELS_PATH}{model}/{revision}",
        Value=json.dumps(record),
        Type="String",
        Overwrite=True,
    )
    return record
