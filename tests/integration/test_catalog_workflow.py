"""The synthesized describe-catalog workflow, run state by state (tests/sfn_support.py).

The definition is the dev template's. The functions are fakes that answer with the contracts'
shapes (docs: /work/notes/catalog-contracts.md) and record what they were sent; the Distributed
Maps read their items from moto S3; SSM is moto; SageMaker and Bedrock are botocore Stubbers, so
every CreateModel, CreateTransformJob and CreateModelInvocationJob the workflow sends is
validated against the services' API models.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.model import ListShape, MapShape, Shape, StructureShape
from botocore.stub import Stubber
from moto import mock_aws

from catalog.logic.sources import ProductRef, product_from_row
from catalog.logic.transform_records import INPUT_FILTER, OUTPUT_FILTER
from tests.sfn_support import (
    Clock,
    Interpreter,
    Outcome,
    TaskFailedError,
    call_aws_sdk,
    to_api,
)
from tests.sfn_support import definition_with as _definition_with
from tests.support import SynthesizedApp
from tests.templates import one, render_definition

pytestmark = [pytest.mark.integration, pytest.mark.infra]

ACCOUNT = "123456789012"
REGION = "us-east-1"
RESULTS = "atelier-dev-results"
UPLOADS = "atelier-dev-uploads"
KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/12345678-1234-1234-1234-123456789012"
TRANSFORM_ROLE = f"arn:aws:iam::{ACCOUNT}:role/atelier-dev-catalog-transform"
BEDROCK_ROLE = f"arn:aws:iam::{ACCOUNT}:role/atelier-dev-catalog-bedrock"
FUNCTIONS = ("Start", "TransformInput", "Plan", "BedrockInput", "Results", "Online", "Finalize")
TOKENS = {
    r"AWS::Partition": "aws",
    r"AWS::Region": REGION,
    r"AWS::URLSuffix": "amazonaws.com",
    r"import:.*ExportsOutputRefResults.*": RESULTS,
    r"import:.*DataKey.*Arn.*": KEY_ARN,
    r"TransformModelRole[0-9A-F]{8}\.Arn": TRANSFORM_ROLE,
    r"BedrockBatchRole[0-9A-F]{8}\.Arn": BEDROCK_ROLE,
    **{
        rf"{name}Function[0-9A-F]{{8}}\.Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
        for name in FUNCTIONS
    },
}
PARAMETER = "/atelier/dev/vqa/model-data-url"
ARCHIVE = "s3://atelier-dev-models/vqa/training/atelier-dev-vqa-1/output/model.tar.gz"
RUN_ID = "20260725172000-abcdef12"
MODEL_NAME = f"atelier-dev-catalog-{RUN_ID}"
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
TRANSFORM_SYNC = "arn:aws:states:::sagemaker:createTransformJob.sync"
RUN = f"s3://{RESULTS}/catalog/{RUN_ID}"


@pytest.fixture(scope="module")
def definition(variant_app: SynthesizedApp) -> dict[str, Any]:
    # The dev stage with a hosted VQA model: the endpoint attribute source, Batch Transform.
    template = variant_app.template("-catalog")
    _, properties = one(template, "AWS::StepFunctions::StateMachine", "DescribeCatalog")
    assert properties["StateMachineName"] == "atelier-dev-describe-catalog"
    text = render_definition(properties["DefinitionString"]).replace(
        "${HuggingFaceInferenceRegistries[${AWS::Region}].account}", "763104351884"
    )
    return _definition_with(text, TOKENS)


def group(name: str, records: int) -> dict[str, Any]:
    prefix = f"{RUN}/groups/{name}/"
    return {
        "group": name,
        "records": records,
        "manifestUri": f"{prefix}transform-manifest.json",
        "outputUri": f"{prefix}transform-output/",
        "bedrockInputUri": f"{prefix}bedrock-input/",
        "bedrockOutputUri": f"{prefix}bedrock-output/",
    }


def product(product_id: str) -> dict[str, Any]:
    return {"product_id": product_id, "image_key": f"s3://{UPLOADS}/p/{product_id}.jpg"}


def assert_constraints(shape: Shape, value: Any, where: str) -> None:
    """What botocore's client-side validation leaves out: string patterns, maximum lengths,
    enumerations (BatchStrategy, SplitType, ...) and integer ranges (the service refuses a job
    name, filter or strategy that breaks them)."""
    if isinstance(shape, StructureShape):
        for name, item in value.items():
            assert_constraints(shape.members[name], item, f"{where}.{name}")
    elif isinstance(shape, ListShape):
        for index, item in enumerate(value):
            assert_constraints(shape.member, item, f"{where}[{index}]")
    elif isinstance(shape, MapShape):
        for key, item in value.items():
            assert_constraints(shape.value, item, f"{where}.{key}")
    elif isinstance(value, bool):
        pass
    elif isinstance(value, int):
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        assert low is None or value >= low, f"{where} is below {low}"
        assert high is None or value <= high, f"{where} is above {high}"
    elif isinstance(value, str):
        assert not shape.enum or value in shape.enum, f"{where} is not one of {shape.enum}"
        maximum = shape.metadata.get("max")
        assert maximum is None or len(value) <= maximum, f"{where} is longer than {maximum}"
        pattern = _compiled(shape.metadata.get("pattern"))
        assert pattern is None or pattern.fullmatch(value), f"{where} breaks {pattern.pattern}"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("BatchStrategy", "MultiRecords", "BatchStrategy is not one of"),
        ("MaxConcurrentTransforms", -1, "MaxConcurrentTransforms is below 0"),
    ],
)
def test_the_constraint_check_refuses_what_the_api_model_forbids(
    field: str, value: Any, message: str
) -> None:
    # The gate the workflow's CreateTransformJob arguments pass, seen failing on broken ones.
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    shape = sagemaker.meta.service_model.operation_model("CreateTransformJob").input_shape
    good = {"BatchStrategy": "MultiRecord", "MaxConcurrentTransforms": 1, "MaxPayloadInMB": 6}
    assert_constraints(shape, good, "createTransformJob")
    with pytest.raises(AssertionError, match=message):
        assert_constraints(shape, {**good, field: value}, "createTransformJob")


def _compiled(pattern: str | None) -> re.Pattern[str] | None:
    """The API model's pattern, or None where it is Java syntax Python cannot read (`\\p{..}`)."""
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error:
        return None


def checked_call(client: Any, action: str, arguments: Any) -> Any:
    """`call_aws_sdk`, after checking the arguments against the operation's constraints."""
    operation = client.meta.service_model.operation_model(action[:1].upper() + action[1:])
    assert_constraints(operation.input_shape, to_api(operation.input_shape, arguments), action)
    return call_aws_sdk(client, action, arguments)


@dataclass
class Catalog:
    """Fake functions (contract-shaped answers) and the AWS clients the tasks go to."""

    plan: dict[str, Any]
    # Records the bedrock input step reports for each group (default: the group's records).
    bedrock_records: dict[str, int] = field(default_factory=dict)
    events: dict[str, list[Any]] = field(default_factory=dict)
    failing: dict[str, TaskFailedError] = field(default_factory=dict)
    s3: Any = None
    ssm: Any = None
    sagemaker: Any = None
    bedrock: Any = None

    def function(self, name: str, event: Any) -> Any:
        self.events.setdefault(name, []).append(event)
        if name in self.failing:
            raise self.failing[name]
        answers: dict[str, Callable[[Any], Any]] = {
            "Start": self._start,
            "TransformInput": lambda e: {
                "batchId": f"{len(self.events['TransformInput']):016x}",
                "records": len(e["Items"]),
                "skipped": 0,
                "failed": 0,
            },
            "Plan": lambda e: self.plan,
            "BedrockInput": lambda e: {
                "group": e["group"]["group"],
                "records": self.bedrock_records.get(e["group"]["group"], e["group"]["records"]),
                "failed": 0,
            },
            "Results": lambda e: {"described": e["group"]["records"], "failed": 0},
            "Online": lambda e: {"described": True},
            "Finalize": lambda e: {
                "runId": e["runId"],
                "route": e["route"],
                "records": e["plan"]["records"],
                "failuresReport": None,
            },
        }
        return answers[name](event)

    def _start(self, event: Any) -> Any:
        source = event["input"].get("source")
        if not isinstance(source, str) or not source.startswith("s3://"):
            message = "source must be an s3:// URI of a prefix or a .csv/.jsonl manifest"
            raise TaskFailedError(
                "CatalogInputError",
                json.dumps({"errorMessage": message, "errorType": "CatalogInputError"}),
            )
        bucket, _, key = source.removeprefix("s3://").partition("/")
        kind = "prefix" if key.endswith("/") else key.rsplit(".", 1)[-1]
        where = {"prefix": key} if kind == "prefix" else {"key": key}
        return {
            "runId": RUN_ID,
            "kind": kind,
            "bucket": bucket,
            **where,
            "languages": event["input"].get("languages", ["en"]),
            "attributeSet": "default",
            "force": False,
        }

    def tasks(self, resource: str, arguments: Any) -> Any:
        if resource == LAMBDA_INVOKE:
            name = arguments["FunctionName"].rsplit(":", 1)[1]
            return {"Payload": self.function(name, arguments["Payload"])}
        if resource == TRANSFORM_SYNC:
            # The optimized integration: create the job, then wait for its description.
            checked_call(self.sagemaker, "createTransformJob", arguments)
            described = call_aws_sdk(
                self.sagemaker,
                "describeTransformJob",
                {"TransformJobName": arguments["TransformJobName"]},
            )
            if described["TransformJobStatus"] != "Completed":
                raise TaskFailedError("States.TaskFailed", json.dumps(described, default=str))
            return described
        match = re.fullmatch(r"arn:aws:states:::aws-sdk:(\w+):(\w+)", resource)
        assert match, resource
        return checked_call(getattr(self, match[1]), match[2], arguments)

    def run(self, definition: dict[str, Any], execution_input: Any) -> Outcome:
        return Interpreter(definition, self.tasks, clock=Clock(), s3=self.s3).run(execution_input)


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=UPLOADS)
        ssm = boto3.client("ssm", region_name=REGION)
        ssm.put_parameter(Name=PARAMETER, Value=ARCHIVE, Type="String")
        yield {"s3": s3, "ssm": ssm}


def catalog(aws: dict[str, Any], plan: dict[str, Any], **kwargs: Any) -> Catalog:
    return Catalog(plan=plan, s3=aws["s3"], ssm=aws["ssm"], **kwargs)


NONE_PLAN = {"route": "none", "records": 0, "skipped": 3, "failed": 0}


# ---------------------------------------------------------------------------------------------
# Sources: the three Distributed Maps
# ---------------------------------------------------------------------------------------------


def test_a_prefix_source_lists_the_objects_into_batches(
    definition: dict[str, Any], aws: dict[str, Any]
) -> None:
    # Given three images under a prefix (and one elsewhere)
    for key in ("shirts/a.jpg", "shirts/b.png", "shirts/sub/c.jpg", "other/d.jpg"):
        aws["s3"].put_object(Bucket=UPLOADS, Key=key, Body=b"x")
    fake = catalog(aws, NONE_PLAN)
    # When the workflow runs on the prefix
    outcome = fake.run(definition, {"source": f"s3://{UPLOADS}/shirts/", "languages": ["de"]})
    # Then one child got the listing with the run's batch input, and nothing was left undone
    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
    (batch,) = fake.events["TransformInput"]
    assert [item["Key"] for item in batch["Items"]] == [
        "shirts/a.jpg",
        "shirts/b.png",
        "shirts/sub/c.jpg",
    ]
    assert {"Key", "Size", "Etag", "LastModified"} <= set(batch["Items"][0])
    assert batch["BatchInput"] == {
        "runId": RUN_ID,
        "kind": "prefix",
        "bucket": UPLOADS,
        "languages": ["de"],
        "attributeSet": "default",
        "force": False,
    }
    (start,) = fake.events["Start"]
    assert start["executionName"] == "test"
    assert start["startTime"] == "2026-07-25T17:20:00Z"
    assert (
        "arn:aws:states:::s3:listObjectsV2",
        {"Bucket": UPLOADS, "Prefix": "shirts/"},
    ) in outcome.calls
    writer = [arguments for resource, arguments in outcome.calls if resource.endswith("putObject")]
    assert writer == [{"Bucket": RESULTS, "Prefix": f"catalog/{RUN_ID}/map-results/"}]
    assert fake.events["Finalize"] == [
        {"runId": RUN_ID, "route": "none", "plan": {"records": 0, "skipped": 3, "failed": 0}}
    ]
    assert outcome.output["route"] == "none"


def test_a_csv_manifest_is_read_with_its_header_and_batched_by_records_per_part(
    definition: dict[str, Any], aws: dict[str, Any]
) -> None:
    # Given a CSV manifest of 1,201 rows (records_per_part is 500)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["product_id", "image_key", "category"])
    for index in range(1201):
        writer.writerow([f"p{index}", f"images/p{index}.jpg", "" if index % 2 else "Shirts"])
    aws["s3"].put_object(Bucket=UPLOADS, Key="manifests/m.csv", Body=text.getvalue().encode())
    fake = catalog(aws, NONE_PLAN)
    # When the workflow runs on it
    outcome = fake.run(definition, {"source": f"s3://{UPLOADS}/manifests/m.csv"})
    # Then three children got the rows, as strings, in order
    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
    batches = fake.events["TransformInput"]
    assert [len(batch["Items"]) for batch in batches] == [500, 500, 201]
    assert batches[0]["Items"][0] == {
        "product_id": "p0",
        "image_key": "images/p0.jpg",
        "category": "Shirts",
    }
    assert batches[2]["Items"][-1] == {
        "product_id": "p1200",
        "image_key": "images/p1200.jpg",
        "category": "Shirts",
    }
    assert batches[0]["Items"][1]["category"] == ""
    assert {batch["BatchInput"]["kind"] for batch in batches} == {"csv"}


def test_a_jsonl_manifest_is_read_line_by_line(
    definition: dict[str, Any], aws: dict[str, Any]
) -> None:
    # Given a failures report as the manifest: its stage and reason are not for the children
    lines = [
        {"product_id": "a", "image_key": f"s3://{UPLOADS}/a.jpg", "category": None},
        {"product_id": "b", "image_key": "b.jpg", "category": "Shirts"},
    ]
    reasons = {"stage": "attributes", "reason": "the model could not read the image " * 20}
    body = "\n".join(json.dumps({**line, **reasons}) for line in lines) + "\n"
    aws["s3"].put_object(Bucket=UPLOADS, Key="m.jsonl", Body=body.encode())
    fake = catalog(aws, NONE_PLAN)
    outcome = fake.run(definition, {"source": f"s3://{UPLOADS}/m.jsonl"})
    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
    (batch,) = fake.events["TransformInput"]
    assert batch["Items"] == lines
    assert batch["BatchInput"]["kind"] == "jsonl"


def test_a_row_without_a_column_reaches_its_child_and_is_reported_there(
    definition: dict[str, Any], aws: dict[str, Any]
) -> None:
    # Given a CSV manifest without the optional category column, and JSON Lines whose rows
    # each lack a column (JavaScript JSONata reads a missing field as undefined, which fails the
    # ItemSelector in Step Functions unless it is guarded)
    aws["s3"].put_object(
        Bucket=UPLOADS, Key="m.csv", Body=b"product_id,image_key\np1,images/p1.jpg\n"
    )
    lines = [{"product_id": "b"}, {"image_key": "c.jpg", "category": "Shirts"}, "not an object"]
    body = "\n".join(json.dumps(line) for line in lines) + "\n"
    aws["s3"].put_object(Bucket=UPLOADS, Key="m.jsonl", Body=body.encode())
    items = []
    for key in ("m.csv", "m.jsonl"):
        fake = catalog(aws, NONE_PLAN)
        # When the workflow runs on it
        outcome = fake.run(definition, {"source": f"s3://{UPLOADS}/{key}"})
        # Then the run goes on, and the child gets every row, a missing column as null
        assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
        (batch,) = fake.events["TransformInput"]
        items += batch["Items"]
    assert items == [
        {"product_id": "p1", "image_key": "images/p1.jpg", "category": None},
        {"product_id": "b", "image_key": None, "category": None},
        {"product_id": None, "image_key": "c.jpg", "category": "Shirts"},
        {"product_id": None, "image_key": None, "category": None},
    ]
    # and the child's own row check takes the attribute set for the missing category and
    # reports each row that cannot be described, with its reason
    checked = [
        product_from_row(
            item, manifest_bucket=UPLOADS, source_buckets=[UPLOADS], attribute_set="default"
        )
        for item in items
    ]
    assert checked[0] == ProductRef(
        product_id="p1", image_key=f"s3://{UPLOADS}/images/p1.jpg", category="default"
    )
    reasons = [getattr(record, "reason", "") for record in checked[1:]]
    assert "the manifest row has no image_key" in reasons[0]
    assert "the manifest row has no product_id" in reasons[1]
    assert "the manifest row has no product_id" in reasons[2]


def test_a_batch_of_manifest_rows_stays_under_the_child_input_limit(
    definition: dict[str, Any],
) -> None:
    readers = [
        state
        for state in definition["States"].values()
        if "ReaderConfig" in state.get("ItemReader", {})
    ]
    assert {state["ItemReader"]["ReaderConfig"]["InputType"] for state in readers} == {
        "CSV",
        "JSONL",
    }
    for state in readers:
        # Step Functions refuses a child's input over 256 KiB; the batch input needs some room
        assert state["ItemBatcher"]["MaxInputBytesPerBatch"] <= 256 * 1024 - 16 * 1024
        assert set(state["ItemSelector"]) == {"product_id", "image_key", "category"}


def test_a_failing_child_fails_the_build_and_the_run(
    definition: dict[str, Any], aws: dict[str, Any]
) -> None:
    aws["s3"].put_object(Bucket=UPLOADS, Key="m.jsonl", Body=b'{"product_id": "a"}\n')
    fake = catalog(
        aws, NONE_PLAN, failing={"TransformInput": TaskFailedError("DependencyError", "S3 down")}
    )
    outcome = fake.run(definition, {"source": f"s3://{UPLOADS}/m.jsonl"})
    assert outcome.status == "FAILED"
    assert outcome.path[-2:] == ["Write report (failed build)", "BuildFailed"]
    assert outcome.error == "States.ExceedToleratedFailureThreshold"
    assert "DependencyError" in outcome.cause
    assert "Plan" not in fake.events
    # S3 or DynamoDB that kept failing gets three more attempts before the child gives up
    assert len(fake.events["TransformInput"]) == 4
    # and what the build refused is still reported, its image copies deleted
    (report,) = fake.events["Finalize"]
    assert report["route"] == "none"


def test_invalid_input_ends_in_its_fail_state_with_the_functions_message(
    definition: dict[str, Any], aws: dict[str, Any]
) -> None:
    fake = catalog(aws, NONE_PLAN)
    outcome = fake.run(definition, {"source": "bucket/prefix/"})
    assert outcome.status == "FAILED"
    assert outcome.path[-1] == "InvalidInput"
    assert outcome.error == "CatalogInputError"
    assert outcome.cause == "source must be an s3:// URI of a prefix or a .csv/.jsonl manifest"
    assert list(fake.events) == ["Start"]


# ---------------------------------------------------------------------------------------------
# Routes
# ---------------------------------------------------------------------------------------------


def _prefix_source(aws: dict[str, Any]) -> dict[str, Any]:
    aws["s3"].put_object(Bucket=UPLOADS, Key="p/a.jpg", Body=b"x")
    return {"source": f"s3://{UPLOADS}/p/", "languages": ["en", "fr"]}


def test_the_online_route_describes_each_product_with_the_online_function(
    definition: dict[str, Any], aws: dict[str, Any]
) -> None:
    plan = {
        "route": "online",
        "records": 2,
        "skipped": 0,
        "failed": 1,
        "products": [product("a"), product("b")],
    }
    fake = catalog(aws, plan)
    outcome = fake.run(definition, _prefix_source(aws))
    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
    assert fake.events["Online"] == [
        {"runId": RUN_ID, "product": product("a"), "languages": ["en", "fr"]},
        {"runId": RUN_ID, "product": product("b"), "languages": ["en", "fr"]},
    ]
    assert fake.events["Finalize"][0]["plan"] == {"records": 2, "skipped": 0, "failed": 1}
    assert "BedrockInput" not in fake.events
    # No AWS SDK call: no model, no job.
    assert not [resource for resource, _ in outcome.calls if "aws-sdk" in resource]


def _stub_model(stubber: Stubber) -> None:
    stubber.add_response(
        "create_model",
        {"ModelArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model/{MODEL_NAME}"},
        {
            "ModelName": MODEL_NAME,
            "PrimaryContainer": {
                "Image": "763104351884.dkr.ecr.us-east-1.amazonaws.com/"
                "huggingface-pytorch-inference:2.6.0-transformers4.51.3-gpu-py312-cu124-ubuntu22.04",
                "ModelDataUrl": ARCHIVE,
                "Environment": {
                    "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
                    "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
                    "HF_HUB_OFFLINE": "1",
                },
            },
            "ExecutionRoleArn": TRANSFORM_ROLE,
            "EnableNetworkIsolation": True,
            "Tags": [
                {"Key": "project", "Value": "atelier"},
                {"Key": "atelier:stage", "Value": "dev"},
                {"Key": "atelier:workflow", "Value": "catalog"},
            ],
        },
    )


def _stub_transform(stubber: Stubber, name: str, status: str) -> None:
    job = f"{MODEL_NAME}-{name}"
    stubber.add_response(
        "create_transform_job",
        {"TransformJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:transform-job/{job}"},
    )
    described: dict[str, Any] = {
        "TransformJobName": job,
        "TransformJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:transform-job/{job}",
        "TransformJobStatus": status,
        "ModelName": MODEL_NAME,
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "ManifestFile",
                    "S3Uri": group(name, 1)["manifestUri"],
                }
            }
        },
        "TransformResources": {"InstanceType": "ml.g5.2xlarge", "InstanceCount": 1},
        "CreationTime": datetime(2026, 7, 25, tzinfo=UTC),
    }
    if status == "Failed":
        described["FailureReason"] = "ClientError: 3 records failed the model"
    stubber.add_response("describe_transform_job", described, {"TransformJobName": job})


def _stub_bedrock_job(stubber: Stubber, name: str, statuses: list[str]) -> str:
    arn = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:model-invocation-job/{name}abcdefg"
    stubber.add_response("create_model_invocation_job", {"jobArn": arn})
    for status in statuses:
        answer: dict[str, Any] = {
            "jobArn": arn,
            "modelId": "anthropic.claude-3-sonnet-20240229-v1:0",
            "roleArn": BEDROCK_ROLE,
            "status": status,
            "submitTime": datetime(2026, 7, 25, tzinfo=UTC),
            "inputDataConfig": {"s3InputDataConfig": {"s3Uri": group(name, 1)["bedrockInputUri"]}},
            "outputDataConfig": {
                "s3OutputDataConfig": {"s3Uri": group(name, 1)["bedrockOutputUri"]}
            },
        }
        if status in ("Failed", "PartiallyCompleted"):
            answer["message"] = f"{status}: some records could not be processed"
        stubber.add_response("get_model_invocation_job", answer, {"jobIdentifier": arn})
    return arn


@pytest.fixture
def services() -> Iterator[tuple[Any, Stubber, Any, Stubber]]:
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    bedrock = boto3.client("bedrock", region_name=REGION)
    with Stubber(sagemaker) as sagemaker_stub, Stubber(bedrock) as bedrock_stub:
        yield sagemaker, sagemaker_stub, bedrock, bedrock_stub


BATCH_PLAN = {
    "route": "batch",
    "records": 250,
    "skipped": 10,
    "failed": 2,
    "groups": [group("g0000", 150), group("g0001", 100)],
}


def _transform_calls(outcome: Outcome) -> list[dict[str, Any]]:
    return [arguments for resource, arguments in outcome.calls if resource == TRANSFORM_SYNC]


def test_the_batch_route_runs_a_transform_and_a_bedrock_job_per_group(
    definition: dict[str, Any],
    aws: dict[str, Any],
    services: tuple[Any, Stubber, Any, Stubber],
) -> None:
    sagemaker, sagemaker_stub, bedrock, bedrock_stub = services
    # Given a plan of two groups: the first job needs one more poll, the second ends partially
    _stub_model(sagemaker_stub)
    _stub_transform(sagemaker_stub, "g0000", "Completed")
    first = _stub_bedrock_job(bedrock_stub, "g0000", ["InProgress", "Completed"])
    _stub_transform(sagemaker_stub, "g0001", "Completed")
    second = _stub_bedrock_job(bedrock_stub, "g0001", ["PartiallyCompleted"])
    sagemaker_stub.add_response("delete_model", {}, {"ModelName": MODEL_NAME})
    fake = catalog(aws, BATCH_PLAN, sagemaker=sagemaker, bedrock=bedrock)

    # When the workflow runs
    outcome = fake.run(definition, _prefix_source(aws))

    # Then every stubbed call happened, in order, with valid arguments
    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
    sagemaker_stub.assert_no_pending_responses()
    bedrock_stub.assert_no_pending_responses()
    transform = _transform_calls(outcome)[0]
    assert transform["TransformJobName"] == f"{MODEL_NAME}-g0000"
    assert len(transform["TransformJobName"]) <= 63
    assert transform["ModelName"] == MODEL_NAME
    assert transform["TransformInput"] == {
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "ManifestFile",
                "S3Uri": group("g0000", 1)["manifestUri"],
            }
        },
        "ContentType": "application/jsonlines",
        "SplitType": "Line",
        "CompressionType": "None",
    }
    # Several lines per request: the handler batches their images (per-line errors inline).
    assert transform["BatchStrategy"] == "MultiRecord"
    assert transform["TransformOutput"] == {
        "S3OutputPath": group("g0000", 1)["outputUri"],
        "Accept": "application/jsonlines",
        "AssembleWith": "Line",
        "KmsKeyId": KEY_ARN,
    }
    # The filters the transform input lines are written for (one definition of the contract).
    assert transform["DataProcessing"] == {
        "InputFilter": INPUT_FILTER,
        "JoinSource": "Input",
        "OutputFilter": OUTPUT_FILTER,
    }
    assert transform["MaxPayloadInMB"] * transform["MaxConcurrentTransforms"] <= 100
    jobs = [a for r, a in outcome.calls if r.endswith("bedrock:createModelInvocationJob")]
    assert [job["JobName"] for job in jobs] == [f"{MODEL_NAME}-g0000", f"{MODEL_NAME}-g0001"]
    assert jobs[1]["ModelInvocationType"] == "Converse"
    assert jobs[1]["RoleArn"] == BEDROCK_ROLE
    assert (
        jobs[1]["InputDataConfig"]["S3InputDataConfig"]["S3Uri"]
        == (group("g0001", 1)["bedrockInputUri"])
    )
    assert jobs[1]["OutputDataConfig"]["S3OutputDataConfig"] == {
        "S3Uri": group("g0001", 1)["bedrockOutputUri"],
        "S3EncryptionKeyId": KEY_ARN,
    }
    # And the steps between got what the contracts say
    bedrock_inputs = fake.events["BedrockInput"]
    assert bedrock_inputs[0] == {
        "runId": RUN_ID,
        "group": group("g0000", 150),
        "languages": ["en", "fr"],
        "transformJob": f"{MODEL_NAME}-g0000",
        "transformError": None,
    }
    assert [event["job"] for event in fake.events["Results"]] == [
        {"arn": first, "status": "Completed", "message": None},
        {
            "arn": second,
            "status": "PartiallyCompleted",
            "message": "PartiallyCompleted: some records could not be processed",
        },
    ]
    # One poll more for the first job: Wait, Get, Choice twice.
    assert sum(1 for name in outcome.path if name.endswith("Wait for Bedrock job")) == 3
    assert fake.events["Finalize"] == [
        {"runId": RUN_ID, "route": "batch", "plan": {"records": 250, "skipped": 10, "failed": 2}}
    ]
    assert outcome.output == {
        "runId": RUN_ID,
        "route": "batch",
        "records": 250,
        "failuresReport": None,
    }


def test_a_failed_transform_is_handed_to_the_bedrock_input_step(
    definition: dict[str, Any],
    aws: dict[str, Any],
    services: tuple[Any, Stubber, Any, Stubber],
) -> None:
    sagemaker, sagemaker_stub, bedrock, bedrock_stub = services
    _stub_model(sagemaker_stub)
    _stub_transform(sagemaker_stub, "g0000", "Failed")
    _stub_bedrock_job(bedrock_stub, "g0000", ["Completed"])
    sagemaker_stub.add_response("delete_model", {}, {"ModelName": MODEL_NAME})
    plan = {**BATCH_PLAN, "groups": [group("g0000", 150)]}
    fake = catalog(aws, plan, sagemaker=sagemaker, bedrock=bedrock)

    outcome = fake.run(definition, _prefix_source(aws))

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
    (event,) = fake.events["BedrockInput"]
    assert event["transformError"]["Error"] == "States.TaskFailed"
    assert "ClientError: 3 records failed the model" in event["transformError"]["Cause"]
    sagemaker_stub.assert_no_pending_responses()


def test_a_failed_bedrock_job_reaches_the_results_step_with_its_reason(
    definition: dict[str, Any],
    aws: dict[str, Any],
    services: tuple[Any, Stubber, Any, Stubber],
) -> None:
    sagemaker, sagemaker_stub, bedrock, bedrock_stub = services
    _stub_model(sagemaker_stub)
    _stub_transform(sagemaker_stub, "g0000", "Completed")
    arn = _stub_bedrock_job(bedrock_stub, "g0000", ["InProgress", "Failed"])
    sagemaker_stub.add_response("delete_model", {}, {"ModelName": MODEL_NAME})
    plan = {**BATCH_PLAN, "groups": [group("g0000", 150)]}
    fake = catalog(aws, plan, sagemaker=sagemaker, bedrock=bedrock)

    outcome = fake.run(definition, _prefix_source(aws))

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
    assert fake.events["Results"][0]["job"] == {
        "arn": arn,
        "status": "Failed",
        "message": "Failed: some records could not be processed",
    }
    bedrock_stub.assert_no_pending_responses()


def test_a_group_with_nothing_to_describe_starts_no_bedrock_job(
    definition: dict[str, Any],
    aws: dict[str, Any],
    services: tuple[Any, Stubber, Any, Stubber],
) -> None:
    sagemaker, sagemaker_stub, bedrock, _ = services
    _stub_model(sagemaker_stub)
    _stub_transform(sagemaker_stub, "g0000", "Completed")
    sagemaker_stub.add_response("delete_model", {}, {"ModelName": MODEL_NAME})
    plan = {**BATCH_PLAN, "groups": [group("g0000", 40)]}
    # Fewer good records than the Bedrock job minimum: the step reports 0 records
    fake = catalog(aws, plan, sagemaker=sagemaker, bedrock=bedrock, bedrock_records={"g0000": 0})

    outcome = fake.run(definition, _prefix_source(aws))

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
    assert fake.events["Results"][0]["job"] == {"arn": None, "status": None, "message": None}
    assert not [r for r, _ in outcome.calls if ":bedrock:" in r]
    sagemaker_stub.assert_no_pending_responses()


def test_a_failing_group_deletes_the_model_and_fails_the_run(
    definition: dict[str, Any],
    aws: dict[str, Any],
    services: tuple[Any, Stubber, Any, Stubber],
) -> None:
    sagemaker, sagemaker_stub, bedrock, _ = services
    _stub_model(sagemaker_stub)
    _stub_transform(sagemaker_stub, "g0000", "Completed")
    sagemaker_stub.add_response("delete_model", {}, {"ModelName": MODEL_NAME})
    plan = {**BATCH_PLAN, "groups": [group("g0000", 150)]}
    failure = TaskFailedError("BedrockInputTooLargeError", "group g0000 exceeds the job maximum")
    fake = catalog(
        aws, plan, sagemaker=sagemaker, bedrock=bedrock, failing={"BedrockInput": failure}
    )

    outcome = fake.run(definition, _prefix_source(aws))

    assert outcome.status == "FAILED"
    assert outcome.path[-3:] == [
        "Delete model (failed run)",
        "Write report (failed groups)",
        "GroupsFailed",
    ]
    assert outcome.error == "States.ExceedToleratedFailureThreshold"
    assert "group g0000 exceeds the job maximum" in outcome.cause
    sagemaker_stub.assert_no_pending_responses()
    # What the finished groups did is reported before the run fails.
    (report,) = fake.events["Finalize"]
    assert report["route"] == "batch"
    assert report["plan"]["records"] == plan["records"]


def test_without_a_trained_model_the_run_says_to_train_one_first(
    definition: dict[str, Any], aws: dict[str, Any]
) -> None:
    aws["ssm"].delete_parameter(Name=PARAMETER)
    fake = catalog(aws, BATCH_PLAN)
    outcome = fake.run(definition, _prefix_source(aws))
    assert outcome.status == "FAILED"
    assert outcome.path[-1] == "ModelNotTrained"
    assert outcome.error == "VqaModelNotTrained"
    assert PARAMETER in outcome.cause
    assert "run the VQA training workflow (atelier-dev-vqa-training) first" in outcome.cause
    assert not [r for r, _ in outcome.calls if "sagemaker" in r]
