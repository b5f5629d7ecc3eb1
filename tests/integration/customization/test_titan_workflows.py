"""The synthesized customize and release workflows, run state by state (tests/sfn_support.py).

Every expression is the deployed one, taken from the variant template (the dev stage with a base
model configured: the shipped `titan.base_model_id: null` builds no customize workflow). The calls
go where moto can take them, with the exact arguments the state machine sends (converted to the
API's member names as Step Functions converts them):

- moto: the manifest check (the real handler, on moto S3), createModelCustomizationJob,
  getModelCustomizationJob and stopModelCustomizationJob (moto 5.2's Bedrock; its jobs stay
  InProgress, so the test moves them on), SSM, SNS and the release workflow's start;
- botocore Stubber: create/get/delete provisioned throughput and listTagsForResource (moto 5.2
  has no provisioned throughput). The Stubber checks each call against Bedrock's API model.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws
from moto.bedrock.models import bedrock_backends

from customization.handlers.manifest import check
from customization.logic.manifest import ManifestChecker
from infra.config import load_stage_config
from infra.workflows.states import jsonata
from infra.workflows.titan_common import commitment_is_valid, model_units_are_valid
from shared.adapters.datasets import S3Datasets
from tests.sfn_support import (
    Clock,
    Interpreter,
    Outcome,
    TaskFailedError,
    call_aws_sdk,
    definition_with,
    to_api,
)
from tests.support import SynthesizedApp, cdk_json_context
from tests.templates import one, render_definition

pytestmark = [pytest.mark.integration, pytest.mark.infra]

ACCOUNT = "123456789012"
REGION = "us-east-1"
DATASETS = "atelier-dev-datasets"
MODELS = "atelier-dev-models"
KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/12345678-1234-1234-1234-123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/atelier-dev-titan-customization"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:atelier-dev-manifest-check"
PARAMETER = "/atelier/dev/titan/provisioned-model-arn"
# moto's ARNs for the release workflow and topic the Cloud creates (checked there).
RELEASE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:atelier-dev-titan-release"
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT}:atelier-dev-titan-notifications"
TOKENS = {
    r"AWS::Partition": "aws",
    r"AWS::Region": REGION,
    r"AWS::AccountId": ACCOUNT,
    r"import:.*ExportsOutputRefDatasets.*": DATASETS,
    r"import:.*ExportsOutputRefModels.*": MODELS,
    r"import:.*DataKey.*Arn.*": KEY_ARN,
    r"TitanCustomizationRole[0-9A-F]{8}\.Arn": ROLE_ARN,
    r"ManifestCheckFunction[0-9A-F]{8}\.Arn": FUNCTION_ARN,
    r"TitanRelease[0-9A-F]{8}": RELEASE_ARN,
    r"TitanRelease[0-9A-F]{8}\.Name": "atelier-dev-titan-release",
    r"Notifications[0-9A-F]{8}": TOPIC_ARN,
}
CUSTOM_MODEL = (
    f"arn:aws:bedrock:{REGION}:{ACCOUNT}:custom-model/amazon.titan-image-generator-v2:0/"
    "abcdefghijkl"
)
THROUGHPUT = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:provisioned-model/mnopqrstuvwx"
OTHER_THROUGHPUT = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:provisioned-model/yyyyyyyyyyyy"
# The test clock starts at 2026-07-25T17:20:00Z; the job name takes the first UUID's 8 hex.
JOB_NAME = "atelier-dev-titan-20260725172000-00000000"
DEPLOYMENT_TAGS = [
    {"key": "project", "value": "atelier"},
    {"key": "atelier:stage", "value": "dev"},
    {"key": "atelier:deployment", "value": "atelier-dev"},
]


class Cloud:
    """moto for what it has, a Stubber-backed Bedrock client for provisioned throughput."""

    def __init__(self, definitions: dict[str, dict[str, Any]]) -> None:
        self.definitions = definitions
        self.s3 = boto3.client("s3")
        for bucket in (DATASETS, MODELS):
            self.s3.create_bucket(Bucket=bucket)
        self.ssm = boto3.client("ssm")
        self.sns = boto3.client("sns")
        self.sqs = boto3.client("sqs")
        self.sfn = boto3.client("stepfunctions")
        self.jobs = boto3.client("bedrock")
        self.throughputs = boto3.client("bedrock")
        self.stubber = Stubber(self.throughputs)
        self.release_arn = self.sfn.create_state_machine(
            name="atelier-dev-titan-release",
            definition=json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}),
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/release",
        )["stateMachineArn"]
        self.topic_arn = self.sns.create_topic(Name="atelier-dev-titan-notifications")["TopicArn"]
        self.queue_url = self.sqs.create_queue(QueueName="notices")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        self.sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn)
        self.checker = ManifestChecker(store=S3Datasets(DATASETS, s3=self.s3), bucket=DATASETS)
        assert (self.release_arn, self.topic_arn) == (RELEASE_ARN, TOPIC_ARN)
        self.clock = Clock()
        # Moves a moto job on: called before each getModelCustomizationJob with the poll count.
        self.on_job_poll = self.complete_job_on_second_poll
        self.job_polls = 0
        # How many SNS publishes fail (with an error of SNS's own) before they work again.
        self.publish_failures = 0
        # What GetFoundationModel says of the base model (moto 5.2 has no such call: each answer
        # goes through a Stubber, which checks it against Bedrock's API model); None: not found.
        self.base_model_lifecycle: dict[str, Any] | None = {"status": "ACTIVE"}
        self.base_model_checks = 0

    # --- the workflows -------------------------------------------------------------------------

    def run(self, prefix: str, execution_input: Any) -> Outcome:
        interpreter = Interpreter(self.definitions[prefix], self.task, clock=self.clock)
        return interpreter.run(execution_input)

    def task(self, resource: str, arguments: Any) -> Any:
        integration = resource.split(":::", 1)[1]
        if integration == "lambda:invoke":
            assert arguments["FunctionName"] == FUNCTION_ARN
            return {"StatusCode": 200, "Payload": check(arguments["Payload"], self.checker)}
        if integration == "sns:publish":
            if self.publish_failures > 0:
                self.publish_failures -= 1
                raise TaskFailedError("SNS.InternalErrorException", "try again")
            return {"MessageId": self.sns.publish(**arguments)["MessageId"]}
        if integration == "states:startExecution":
            started = self.sfn.start_execution(
                stateMachineArn=arguments["StateMachineArn"], input=json.dumps(arguments["Input"])
            )
            return {"ExecutionArn": started["executionArn"], "StartDate": "2026-07-25"}
        _, service, action = integration.split(":")
        if service == "ssm":
            return call_aws_sdk(self.ssm, action, arguments)
        assert service == "bedrock", integration
        if action == "getFoundationModel":
            return self.foundation_model(arguments)
        if action in ("createModelCustomizationJob", "stopModelCustomizationJob"):
            return call_aws_sdk(self.jobs, action, arguments)
        if action == "getModelCustomizationJob":
            self.job_polls += 1
            self.on_job_poll(self.job_polls)
            return call_aws_sdk(self.jobs, action, arguments)
        return call_aws_sdk(self.throughputs, action, arguments)

    def foundation_model(self, arguments: Any) -> Any:
        self.base_model_checks += 1
        model_id = "amazon.titan-image-generator-v2:0"
        client = boto3.client("bedrock")
        with Stubber(client) as stubber:
            if self.base_model_lifecycle is None:
                stubber.add_client_error(
                    "get_foundation_model",
                    service_error_code="ResourceNotFoundException",
                    expected_params={"modelIdentifier": model_id},
                )
            else:
                stubber.add_response(
                    "get_foundation_model",
                    {
                        "modelDetails": {
                            "modelArn": f"arn:aws:bedrock:{REGION}::foundation-model/{model_id}",
                            "modelId": model_id,
                            "modelLifecycle": self.base_model_lifecycle,
                        }
                    },
                    {"modelIdentifier": model_id},
                )
            return call_aws_sdk(client, "getFoundationModel", arguments)

    # --- moto's jobs -------------------------------------------------------------------------

    def job(self) -> Any:
        return bedrock_backends[ACCOUNT][REGION].model_customization_jobs[JOB_NAME]

    def complete_job_on_second_poll(self, poll: int) -> None:
        if poll == 2:
            self.job().status = "Completed"
            self.job().output_model_arn = CUSTOM_MODEL

    # --- data and observations ---------------------------------------------------------------

    def upload_dataset(self, count: int = 8, folder: str = "titan/cats/") -> str:
        lines = []
        for index in range(count):
            key = f"{folder}smila_{index:02}.png"
            self.s3.put_object(Bucket=DATASETS, Key=key, Body=b"\x89PNG" + bytes(1000))
            lines.append(
                json.dumps(
                    {"image-ref": f"s3://{DATASETS}/{key}", "caption": "Smila the cat asleep"}
                )
            )
        manifest = f"{folder}manifest.jsonl"
        self.s3.put_object(Bucket=DATASETS, Key=manifest, Body="\n".join(lines).encode())
        return manifest

    def releases(self) -> list[dict[str, Any]]:
        listed = self.sfn.list_executions(stateMachineArn=self.release_arn)["executions"]
        return [
            json.loads(self.sfn.describe_execution(executionArn=e["executionArn"])["input"])
            for e in listed
        ]

    def notices(self) -> list[dict[str, Any]]:
        answer = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
        return [json.loads(m["Body"]) for m in answer.get("Messages", [])]

    def recorded(self) -> str | None:
        try:
            return str(self.ssm.get_parameter(Name=PARAMETER)["Parameter"]["Value"])
        except self.ssm.exceptions.ParameterNotFound:
            return None


MANIFEST = "titan/c/m.jsonl"


def given(**fields: Any) -> dict[str, Any]:
    return {"manifest": MANIFEST, **fields}


def throughput(status: str, **extra: Any) -> dict[str, Any]:
    moment = datetime(2026, 7, 25, 18, tzinfo=UTC)
    return {
        "modelUnits": 1,
        "desiredModelUnits": 1,
        "provisionedModelName": JOB_NAME,
        "provisionedModelArn": THROUGHPUT,
        "modelArn": CUSTOM_MODEL,
        "desiredModelArn": CUSTOM_MODEL,
        "foundationModelArn": "arn:aws:bedrock:us-east-1::foundation-model/"
        "amazon.titan-image-generator-v2:0",
        "status": status,
        "creationTime": moment,
        "lastModifiedTime": moment,
        **extra,
    }


@pytest.fixture(scope="module")
def variant_definitions(variant_app: SynthesizedApp) -> dict[str, dict[str, Any]]:
    """Both workflows of the variant's template (the dev stage with a base model, Titan Image
    Generator G1 v2: the shipped null builds no customize workflow), tokens replaced by the test
    values; a OneMonth term and 2 model units are allowed there (VARIANT_OVERRIDES)."""
    found = {}
    for prefix in ("TitanCustomize", "TitanRelease"):
        _, properties = one(
            variant_app.template("-bedrock"), "AWS::StepFunctions::StateMachine", prefix
        )
        found[prefix] = definition_with(render_definition(properties["DefinitionString"]), TOKENS)
    return found


@pytest.fixture(scope="module")
def definitions(variant_definitions: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The variant's workflows with the shipped limits on terms and model units put back: its
    "Validate input" conditions for them rebuilt from the shipped dev config by the stack's own
    expression builders, so the flow under test is the one a stage with a base model and the
    shipped titan.allowed_commitments / titan.max_model_units deploys."""
    shipped = load_stage_config(cdk_json_context(), "dev").titan
    assert shipped.allowed_commitments == ("none",)
    assert shipped.max_model_units == 1
    found = copy.deepcopy(variant_definitions)
    rules = {
        rule["Next"]: rule
        for rule in found["TitanCustomize"]["States"]["Validate input"]["Choices"]
    }
    rules["InvalidCommitment"]["Condition"] = jsonata(
        f"$not({commitment_is_valid(shipped.allowed_commitments)})"
    )
    rules["InvalidModelUnits"]["Condition"] = jsonata(
        f"$not({model_units_are_valid(shipped.max_model_units)})"
    )
    return found


def no_task(resource: str, arguments: Any) -> Any:
    raise AssertionError(f"input checks must fail before any task; {resource} was called")


@pytest.fixture
def cloud(definitions: dict[str, dict[str, Any]]) -> Iterator[Cloud]:
    with mock_aws():
        cloud = Cloud(definitions)
        with cloud.stubber:
            yield cloud
        cloud.stubber.assert_no_pending_responses()


@pytest.fixture
def variant_cloud(variant_definitions: dict[str, dict[str, Any]]) -> Iterator[Cloud]:
    with mock_aws():
        cloud = Cloud(variant_definitions)
        with cloud.stubber:
            yield cloud
        cloud.stubber.assert_no_pending_responses()


def expect_provisioning(
    cloud: Cloud,
    *,
    expires_at: str,
    commitment: str | None = None,
    polls: int = 2,
    in_service_expires_at: str = ANY,
    tagging_fails: bool = False,
) -> None:
    """Creation (tagged `expires_at`), `polls` status reads, then the expiry moved to
    `in_service_expires_at` once in service."""
    expected: dict[str, Any] = {
        "modelId": CUSTOM_MODEL,
        "modelUnits": 1,
        "provisionedModelName": JOB_NAME,
        "clientRequestToken": ANY,
        "tags": [{"key": "atelier:expires-at", "value": expires_at}, *DEPLOYMENT_TAGS],
    }
    if commitment is not None:
        expected["commitmentDuration"] = commitment
    cloud.stubber.add_response(
        "create_provisioned_model_throughput", {"provisionedModelArn": THROUGHPUT}, expected
    )
    for poll in range(polls):
        status = "InService" if poll == polls - 1 else "Creating"
        cloud.stubber.add_response(
            "get_provisioned_model_throughput",
            throughput(status),
            {"provisionedModelId": THROUGHPUT},
        )
    tagging = {
        "resourceARN": THROUGHPUT,
        "tags": [{"key": "atelier:expires-at", "value": in_service_expires_at}],
    }
    if tagging_fails:
        cloud.stubber.add_client_error(
            "tag_resource", service_error_code="AccessDeniedException", expected_params=tagging
        )
    else:
        cloud.stubber.add_response("tag_resource", {}, tagging)


# ---------------------------------------------------------------------------------------------
# customize
# ---------------------------------------------------------------------------------------------


def test_a_customization_trains_provisions_records_and_notifies(cloud: Cloud) -> None:
    # Given a good dataset, and a job that completes on its second poll
    manifest = cloud.upload_dataset(8)
    # The job completes after two 5-minute polls; the throughput is asked for then, tagged to
    # last 6 hours plus titan.max_throughput_wait_hours (3) while it is created ...
    start = cloud.clock.now()
    created_until = (start + timedelta(minutes=10, hours=9)).strftime("%Y-%m-%dT%H:%M:%SZ")
    # ... and is in service after two 1-minute polls: its 6 hours count from then.
    expires = (start + timedelta(minutes=12, hours=6)).strftime("%Y-%m-%dT%H:%M:%SZ")
    expect_provisioning(cloud, expires_at=created_until, in_service_expires_at=expires)
    # When the workflow runs
    outcome = cloud.run(
        "TitanCustomize",
        {"manifest": manifest, "hyperparameters": {"stepCount": 2000}, "ttlHours": 6},
    )
    # Then it succeeds, having polled the job and the throughput
    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
    assert outcome.path.count("Get job status") == 2
    assert outcome.path.count("Get throughput status") == 2
    # And moto's Bedrock holds the job exactly as the state machine asked for it
    job = cloud.job()
    assert job.custom_model_name == JOB_NAME
    assert job.role_arn == ROLE_ARN
    assert job.base_model_identifier == "amazon.titan-image-generator-v2:0"
    assert job.customization_type == "FINE_TUNING"
    assert job.custom_model_kms_key_id == KEY_ARN
    assert job.training_data_config == {"s3Uri": f"s3://{DATASETS}/{manifest}"}
    assert job.output_data_config == {"s3Uri": f"s3://{MODELS}/titan/{JOB_NAME}/"}
    assert job.hyper_parameters == {
        "batchSize": "8",
        "learningRate": "0.00001",
        "stepCount": "2000",
    }
    assert job.job_tags == DEPLOYMENT_TAGS
    # The run's second UUID (the first named the job): retries reuse it.
    assert job.client_request_token == str(uuid.UUID(int=2))
    # And the throughput is recorded for POST /images and announced
    assert cloud.recorded() == THROUGHPUT
    (notice,) = cloud.notices()
    assert notice["Subject"] == f"[atelier-dev] Titan model ready: {JOB_NAME}"
    message = notice["Message"]
    assert f"Provisioned throughput: {THROUGHPUT} (1 model unit(s), no commitment term)" in message
    assert f"releases it after {expires}" in message
    assert (
        f"aws stepfunctions start-execution --state-machine-arn {cloud.release_arn} "
        f'--input \'{{"provisionedModelArn": "{THROUGHPUT}"}}\''
    ) in message
    assert (
        f"aws bedrock tag-resource --resource-arn {THROUGHPUT} --tags key=atelier:expires-at"
        in (message)
    )
    assert outcome.output == {
        "jobName": JOB_NAME,
        "customModelName": JOB_NAME,
        "customModelArn": CUSTOM_MODEL,
        "provisionedModelArn": THROUGHPUT,
        "expiresAt": expires,
        "provisionedModelParameter": PARAMETER,
        "hyperParameters": {"batchSize": "8", "learningRate": "0.00001", "stepCount": "2000"},
        "records": 8,
    }
    assert cloud.releases() == []


def test_a_legacy_base_model_is_refused_before_anything_is_paid_for(cloud: Cloud) -> None:
    # Given a good dataset, and a base model Bedrock reports as Legacy
    manifest = cloud.upload_dataset(8)
    cloud.base_model_lifecycle = {
        "status": "LEGACY",
        "legacyTime": datetime(2025, 12, 31, tzinfo=UTC),
        "endOfLifeTime": datetime(2026, 6, 30, tzinfo=UTC),
    }
    # When the workflow runs
    outcome = cloud.run("TitanCustomize", {"manifest": manifest})
    # Then it fails at the lifecycle check, naming the model, its end of life and the key
    assert outcome.status == "FAILED"
    assert outcome.error == "BaseModelLegacy"
    assert outcome.cause is not None
    assert outcome.cause.startswith(
        "amazon.titan-image-generator-v2:0 (Titan Image Generator G1 v2) is Legacy on Bedrock "
        "(end of life 2026-06-30"
    )
    assert "Set titan.base_model_id in cdk.json" in outcome.cause
    assert "Nothing was started or billed." in outcome.cause
    # ... before the manifest check, any job or any throughput
    called = [resource.rsplit(":", 1)[-1] for resource, _ in outcome.calls]
    assert called == ["getFoundationModel"]
    assert bedrock_backends[ACCOUNT][REGION].model_customization_jobs == {}
    assert cloud.notices() == []


def test_a_base_model_past_its_end_of_life_is_refused(cloud: Cloud) -> None:
    cloud.base_model_lifecycle = None  # Bedrock no longer knows it
    outcome = cloud.run("TitanCustomize", {"manifest": cloud.upload_dataset(8)})
    assert (outcome.status, outcome.error) == ("FAILED", "BaseModelEndOfLife")
    assert outcome.cause is not None
    assert "past its end of life" in outcome.cause
    assert "titan.base_model_id" in outcome.cause
    assert len(outcome.calls) == 1


def test_an_active_base_model_is_checked_once_then_the_run_goes_on(cloud: Cloud) -> None:
    manifest = cloud.upload_dataset(8)
    expect_provisioning(cloud, expires_at=ANY)
    outcome = cloud.run("TitanCustomize", {"manifest": manifest})
    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
    assert cloud.base_model_checks == 1
    assert outcome.path.index("Check base model lifecycle") < outcome.path.index("Check manifest")


def test_an_expiry_that_cannot_be_moved_keeps_and_reports_the_creation_one(cloud: Cloud) -> None:
    manifest = cloud.upload_dataset(8)
    created_until = (cloud.clock.now() + timedelta(minutes=10, hours=7)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    expect_provisioning(cloud, expires_at=created_until, tagging_fails=True)
    outcome = cloud.run("TitanCustomize", {"manifest": manifest})
    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
    assert outcome.path.count("(retry Set expiry)") == 0
    assert outcome.output["expiresAt"] == created_until
    assert cloud.recorded() == THROUGHPUT
    (notice,) = cloud.notices()
    assert f"releases it after {created_until}" in notice["Message"]


def test_steps_follow_the_dataset_size_when_not_given(cloud: Cloud) -> None:
    manifest = cloud.upload_dataset(32)
    expect_provisioning(cloud, expires_at=ANY)
    outcome = cloud.run(
        "TitanCustomize",
        {"manifest": manifest, "customModelName": "smila_v2", "hyperparameters": {"batchSize": 16}},
    )
    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
    # Recommended steps: 32 images → 4,000 steps
    assert cloud.job().hyper_parameters == {
        "batchSize": "16",
        "learningRate": "0.00001",
        "stepCount": "4000",
    }
    assert cloud.job().custom_model_name == "smila_v2"


@pytest.mark.parametrize(
    ("commitment", "sent"), [("OneMonth", "OneMonth"), (None, None), ("none", None)]
)
def test_a_commitment_is_sent_only_when_asked_for(
    variant_cloud: Cloud, commitment: str | None, sent: str | None
) -> None:
    # (titan.allowed_commitments: ["none", "OneMonth"] in the variant)
    cloud = variant_cloud
    manifest = cloud.upload_dataset(5)
    expect_provisioning(cloud, expires_at=ANY, commitment=sent)
    outcome = cloud.run("TitanCustomize", {"manifest": manifest, "commitment": commitment})
    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)


@pytest.mark.parametrize(
    ("execution_input", "error", "key"),
    [
        (given(commitment="OneMonth"), "InvalidCommitment", "titan.allowed_commitments"),
        (given(commitment="SixMonths"), "InvalidCommitment", "titan.allowed_commitments"),
        (given(modelUnits=2), "InvalidModelUnits", "titan.max_model_units"),
    ],
)
def test_the_shipped_config_refuses_terms_and_units_the_cost_guard_cannot_undo(
    definitions: dict[str, dict[str, Any]], execution_input: Any, error: str, key: str
) -> None:
    outcome = Interpreter(definitions["TitanCustomize"], no_task).run(execution_input)
    assert outcome.path == ["Validate input", error]
    assert outcome.cause is not None
    assert key in outcome.cause


@pytest.mark.parametrize(
    ("execution_input", "error"),
    [
        (given(commitment="SixMonths"), "InvalidCommitment"),
        (given(commitment=3), "InvalidCommitment"),
        (given(modelUnits=3), "InvalidModelUnits"),
    ],
)
def test_a_config_that_allows_more_still_bounds_them(
    variant_definitions: dict[str, dict[str, Any]], execution_input: Any, error: str
) -> None:
    outcome = Interpreter(variant_definitions["TitanCustomize"], no_task).run(execution_input)
    assert outcome.path == ["Validate input", error]


@pytest.mark.parametrize(
    ("execution_input", "error"),
    [
        ([], "InvalidInput"),
        (given(epochs=3), "InvalidInput"),
        ({}, "InvalidManifest"),
        ({"manifest": "vqa/cats/manifest.jsonl"}, "InvalidManifest"),
        ({"manifest": "titan/manifest.jsonl"}, "InvalidManifest"),
        ({"manifest": "titan/cats/manifest.json"}, "InvalidManifest"),
        ({"manifest": "titan/cats/../x.jsonl"}, "InvalidManifest"),
        (given(customModelName="a--b"), "InvalidCustomModelName"),
        (given(customModelName="x" * 64), "InvalidCustomModelName"),
        (given(hyperparameters=[]), "InvalidHyperparameters"),
        (given(hyperparameters={"epochs": 1}), "InvalidHyperparameters"),
        (given(hyperparameters={"stepCount": 9}), "InvalidHyperparameters"),
        (given(hyperparameters={"stepCount": 10.5}), "InvalidHyperparameters"),
        (given(hyperparameters={"batchSize": "8"}), "InvalidHyperparameters"),
        (given(hyperparameters={"batchSize": 193}), "InvalidHyperparameters"),
        (given(hyperparameters={"learningRate": 2}), "InvalidHyperparameters"),
        (given(modelUnits=0), "InvalidModelUnits"),
        (given(commitment="OneYear"), "InvalidCommitment"),
        (given(ttlHours=0), "InvalidTtlHours"),
        (given(ttlHours=169), "InvalidTtlHours"),
    ],
)
def test_a_bad_input_fails_at_once_with_its_reason(
    definitions: dict[str, dict[str, Any]], execution_input: Any, error: str
) -> None:
    outcome = Interpreter(definitions["TitanCustomize"], no_task).run(execution_input)
    assert (outcome.status, outcome.error) == ("FAILED", error)
    assert outcome.path == ["Validate input", error]
    assert outcome.cause


def test_good_optional_inputs_pass_the_checks(variant_cloud: Cloud) -> None:
    # A manifest that does not exist gets past the input checks and fails on its contents.
    outcome = variant_cloud.run(
        "TitanCustomize",
        {
            "manifest": "titan/cats/2026-08/manifest.jsonl",
            "customModelName": "smila_cat-v2",
            "hyperparameters": {"stepCount": 5000, "batchSize": 8, "learningRate": 0.00001},
            "modelUnits": 2,
            "commitment": None,
            "ttlHours": 168,
        },
    )
    assert outcome.path[:5] == [
        "Validate input",
        "Prepare run",
        "Check base model lifecycle",
        "Base model usable?",
        "Check manifest",
    ]
    assert outcome.error == "ManifestRejected"
    assert outcome.cause == (
        f"s3://{DATASETS}/titan/cats/2026-08/manifest.jsonl has 1 problem(s): "
        f"s3://{DATASETS}/titan/cats/2026-08/manifest.jsonl does not exist"
    )


def test_a_bad_manifest_is_rejected_with_its_problems_before_any_job(cloud: Cloud) -> None:
    manifest = cloud.upload_dataset(6)
    cloud.s3.delete_object(Bucket=DATASETS, Key="titan/cats/smila_02.png")
    outcome = cloud.run("TitanCustomize", {"manifest": manifest})
    assert outcome.error == "ManifestRejected"
    assert outcome.cause == (
        f"s3://{DATASETS}/{manifest} has 1 problem(s): "
        f"line 3: s3://{DATASETS}/titan/cats/smila_02.png does not exist"
    )
    assert bedrock_backends[ACCOUNT][REGION].model_customization_jobs == {}


def test_a_failed_job_ends_the_run_with_bedrocks_message(cloud: Cloud) -> None:
    manifest = cloud.upload_dataset(5)

    def fail_job(poll: int) -> None:
        cloud.job().status = "Failed"
        cloud.job().failure_message = "Training data validation failed: image too small"

    cloud.on_job_poll = fail_job
    outcome = cloud.run("TitanCustomize", {"manifest": manifest})
    assert outcome.error == "JobFailed"
    assert outcome.cause == (
        f"customization job {JOB_NAME} ended Failed: Training data validation failed: image too "
        "small"
    )


def test_a_job_past_its_runtime_is_stopped(cloud: Cloud) -> None:
    manifest = cloud.upload_dataset(5)

    def slow(poll: int) -> None:
        cloud.clock.millis += 49 * 3_600_000  # titan.max_job_runtime_hours is 48

    cloud.on_job_poll = slow
    outcome = cloud.run("TitanCustomize", {"manifest": manifest})
    assert outcome.path[-3:] == ["Job finished?", "Stop job", "JobStopped"]
    assert outcome.error == "JobTimedOut"
    assert cloud.job().status == "Stopped"
    assert outcome.cause == (
        f"customization job {JOB_NAME} ran longer than titan.max_job_runtime_hours (48 h) and was "
        "stopped"
    )


def test_a_job_whose_status_cannot_be_read_is_stopped(cloud: Cloud) -> None:
    manifest = cloud.upload_dataset(5)
    real_task = cloud.task

    def task(resource: str, arguments: Any) -> Any:
        if resource.endswith(":getModelCustomizationJob"):
            raise TaskFailedError("Bedrock.AccessDeniedException", "not allowed")
        return real_task(resource, arguments)

    outcome = Interpreter(cloud.definitions["TitanCustomize"], task, clock=cloud.clock).run(
        {"manifest": manifest}
    )
    assert outcome.path[-3:] == ["Get job status", "Stop job", "JobStopped"]
    assert cloud.job().status == "Stopped"
    assert outcome.error == "JobStatusUnknown"
    assert outcome.cause == (
        f"could not read the status of customization job {JOB_NAME} ("
        f"{cloud.job().job_arn}): Bedrock.AccessDeniedException: not allowed; as it may still "
        "be running, it was stopped"
    )


def test_a_job_that_cannot_be_stopped_says_how_to_stop_it(cloud: Cloud) -> None:
    manifest = cloud.upload_dataset(5)
    real_task = cloud.task

    def task(resource: str, arguments: Any) -> Any:
        if resource.endswith((":getModelCustomizationJob", ":stopModelCustomizationJob")):
            raise TaskFailedError("Bedrock.AccessDeniedException", "not allowed")
        return real_task(resource, arguments)

    outcome = Interpreter(cloud.definitions["TitanCustomize"], task, clock=cloud.clock).run(
        {"manifest": manifest}
    )
    assert outcome.path[-2:] == ["Stop job", "JobStopFailed"]
    assert outcome.cause is not None
    assert "as it may still be running, it could not be stopped" in outcome.cause
    assert f"--job-identifier {JOB_NAME}" in outcome.cause


def test_a_throughput_that_fails_is_handed_to_the_release_workflow(cloud: Cloud) -> None:
    manifest = cloud.upload_dataset(5)
    cloud.stubber.add_response(
        "create_provisioned_model_throughput", {"provisionedModelArn": THROUGHPUT}
    )
    cloud.stubber.add_response(
        "get_provisioned_model_throughput",
        throughput("Failed", failureMessage="Insufficient capacity"),
        {"provisionedModelId": THROUGHPUT},
    )
    outcome = cloud.run("TitanCustomize", {"manifest": manifest})
    assert outcome.path[-3:] == ["Throughput failed", "Release throughput", "ProvisioningFailed"]
    assert outcome.error == "ThroughputFailed"
    cause = f"provisioned throughput for {JOB_NAME} failed: Insufficient capacity"
    assert outcome.cause is not None
    assert outcome.cause.startswith(
        f"{cause} Throughput {THROUGHPUT}: It was handed to the release"
    )
    assert cloud.releases() == [{"provisionedModelArn": THROUGHPUT, "reason": cause}]
    assert cloud.recorded() is None


def test_throttling_is_retried_and_a_quota_error_is_explained(cloud: Cloud) -> None:
    manifest = cloud.upload_dataset(5)
    # The run's third UUID (job name, job token, then this): the retry sends the same one, so
    # Bedrock creates one throughput however often the call is repeated.
    token = {"clientRequestToken": str(uuid.UUID(int=3))}
    cloud.stubber.add_client_error(
        "create_provisioned_model_throughput",
        service_error_code="ThrottlingException",
        expected_params={**token, "modelId": ANY, "modelUnits": 1,
                         "provisionedModelName": ANY, "tags": ANY},
    )  # fmt: skip
    cloud.stubber.add_client_error(
        "create_provisioned_model_throughput",
        service_error_code="ServiceQuotaExceededException",
        service_message="no model units",
        expected_params={**token, "modelId": ANY, "modelUnits": 1,
                         "provisionedModelName": ANY, "tags": ANY},
    )  # fmt: skip
    outcome = cloud.run("TitanCustomize", {"manifest": manifest})
    assert "(retry Provision throughput)" in outcome.path
    sent = [
        arguments["ClientRequestToken"]
        for resource, arguments in outcome.calls
        if resource.endswith(":createProvisionedModelThroughput")
    ]
    assert sent == [token["clientRequestToken"]] * 2
    assert outcome.error == "Bedrock.ServiceQuotaExceededException"
    assert outcome.path[-1] == "ThroughputNotCreated"
    assert outcome.cause is not None
    assert "ask for a Provisioned Throughput quota" in outcome.cause
    assert cloud.releases() == []


def test_a_failed_notice_is_retried(cloud: Cloud) -> None:
    manifest = cloud.upload_dataset(5)
    expect_provisioning(cloud, expires_at=ANY)
    cloud.publish_failures = 2
    outcome = cloud.run("TitanCustomize", {"manifest": manifest})
    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
    assert outcome.path.count("(retry Notify)") == 2
    assert len(cloud.notices()) == 1


def test_a_notice_that_keeps_failing_fails_the_run_after_its_retries(cloud: Cloud) -> None:
    manifest = cloud.upload_dataset(5)
    expect_provisioning(cloud, expires_at=ANY)
    cloud.publish_failures = 4
    outcome = cloud.run("TitanCustomize", {"manifest": manifest})
    assert outcome.path.count("(retry Notify)") == 3
    assert (outcome.error, outcome.path[-1]) == ("SNS.InternalErrorException", "NotificationFailed")
    assert outcome.cause is not None
    assert outcome.cause.startswith(f"throughput {THROUGHPUT} is in service and recorded")
    # The throughput stays: it is recorded and works; only the notice is missing.
    assert cloud.recorded() == THROUGHPUT
    assert cloud.releases() == []


def test_arguments_must_name_api_members_exactly() -> None:
    # Step Functions takes `ModelId` for Bedrock's `modelId`, never `ModelID`.
    shape = (
        boto3.client("bedrock", region_name=REGION)
        .meta.service_model.operation_model("GetProvisionedModelThroughput")
        .input_shape
    )
    assert to_api(shape, {"ProvisionedModelId": "x"}) == {"provisionedModelId": "x"}
    with pytest.raises(AssertionError, match="has no member 'ProvisionedModelID'"):
        to_api(shape, {"ProvisionedModelID": "x"})


# ---------------------------------------------------------------------------------------------
# release
# ---------------------------------------------------------------------------------------------


def owner_tags(deployment: str = "atelier-dev") -> dict[str, Any]:
    return {
        "tags": [
            {"key": "atelier:deployment", "value": deployment},
            {"key": "atelier:expires-at", "value": "2026-07-25T23:00:00Z"},
        ]
    }


def test_release_deletes_the_recorded_throughput_and_clears_the_record(cloud: Cloud) -> None:
    cloud.ssm.put_parameter(Name=PARAMETER, Value=THROUGHPUT, Type="String")
    cloud.stubber.add_response("list_tags_for_resource", owner_tags(), {"resourceARN": THROUGHPUT})
    cloud.stubber.add_response(
        "delete_provisioned_model_throughput", {}, {"provisionedModelId": THROUGHPUT}
    )
    outcome = cloud.run("TitanRelease", {})
    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
    assert outcome.output == {
        "provisionedModelArn": THROUGHPUT,
        "outcome": "released",
        "parameterCleared": True,
    }
    assert cloud.recorded() is None
    (notice,) = cloud.notices()
    assert notice["Subject"] == "[atelier-dev] Titan throughput released"
    assert (
        f"Provisioned throughput {THROUGHPUT} of Atelier atelier-dev: released."
        in (notice["Message"])
    )
    assert "Why: asked for." in notice["Message"]


def test_release_of_a_named_throughput_keeps_another_record(cloud: Cloud) -> None:
    cloud.ssm.put_parameter(Name=PARAMETER, Value=OTHER_THROUGHPUT, Type="String")
    cloud.stubber.add_response("list_tags_for_resource", owner_tags(), {"resourceARN": THROUGHPUT})
    cloud.stubber.add_response(
        "delete_provisioned_model_throughput", {}, {"provisionedModelId": THROUGHPUT}
    )
    outcome = cloud.run(
        "TitanRelease", {"provisionedModelArn": THROUGHPUT, "reason": "cost guard: expired"}
    )
    assert outcome.output["parameterCleared"] is False
    assert cloud.recorded() == OTHER_THROUGHPUT
    assert "Why: cost guard: expired." in cloud.notices()[0]["Message"]


def test_a_throughput_already_gone_counts_as_released(cloud: Cloud) -> None:
    cloud.ssm.put_parameter(Name=PARAMETER, Value=THROUGHPUT, Type="String")
    cloud.stubber.add_client_error(
        "list_tags_for_resource",
        service_error_code="ResourceNotFoundException",
        http_status_code=404,
        expected_params={"resourceARN": THROUGHPUT},
    )
    outcome = cloud.run("TitanRelease", {"provisionedModelArn": THROUGHPUT})
    assert outcome.status == "SUCCEEDED"
    assert outcome.output["outcome"] == "already released"
    assert outcome.output["parameterCleared"] is True
    assert cloud.recorded() is None


def test_nothing_recorded_and_nothing_named_is_nothing_to_release(cloud: Cloud) -> None:
    outcome = cloud.run("TitanRelease", {})
    assert (outcome.status, outcome.path[-1]) == ("SUCCEEDED", "Nothing to release")
    assert outcome.output == {
        "released": False,
        "message": f"no provisionedModelArn given and none recorded in {PARAMETER}",
    }


def test_another_deployments_throughput_is_never_deleted(cloud: Cloud) -> None:
    cloud.stubber.add_response(
        "list_tags_for_resource", owner_tags("atelier-prod"), {"resourceARN": THROUGHPUT}
    )
    outcome = cloud.run("TitanRelease", {"provisionedModelArn": THROUGHPUT})
    # (the Stubber would refuse an unexpected delete call)
    assert outcome.error == "NotThisDeployment"
    assert outcome.cause is not None
    assert outcome.cause.startswith(f"{THROUGHPUT} is not tagged atelier:deployment=atelier-dev")


def test_a_committed_throughput_that_cannot_be_deleted_fails_with_the_reason(cloud: Cloud) -> None:
    cloud.stubber.add_response("list_tags_for_resource", owner_tags(), {"resourceARN": THROUGHPUT})
    cloud.stubber.add_client_error(
        "delete_provisioned_model_throughput",
        service_error_code="ValidationException",
        service_message="commitment term has not ended",
        expected_params={"provisionedModelId": THROUGHPUT},
    )
    outcome = cloud.run("TitanRelease", {"provisionedModelArn": THROUGHPUT})
    assert outcome.error == "Bedrock.ValidationException"
    assert outcome.cause is not None
    assert outcome.cause.startswith(f"could not release {THROUGHPUT}: Bedrock.ValidationException")
    assert "commitment term has not ended" in outcome.cause


@pytest.mark.parametrize(
    ("execution_input", "error"),
    [
        ("arn", "InvalidInput"),
        ({"arn": THROUGHPUT}, "InvalidInput"),
        ({"provisionedModelArn": CUSTOM_MODEL}, "InvalidProvisionedModelArn"),
        ({"provisionedModelArn": 3}, "InvalidProvisionedModelArn"),
        ({"reason": "x" * 1001}, "InvalidReason"),
    ],
)
def test_a_bad_release_input_fails_at_once(
    definitions: dict[str, dict[str, Any]], execution_input: Any, error: str
) -> None:
    outcome = Interpreter(definitions["TitanRelease"], no_task).run(execution_input)
    assert outcome.path == ["Validate input", error]


def test_a_task_failure_without_a_catch_would_show(cloud: Cloud) -> None:
    # The interpreter itself: an uncaught error fails the run with the error's name.
    definition = {
        "QueryLanguage": "JSONata",
        "StartAt": "T",
        "States": {"T": {"Type": "Task", "Resource": "x", "End": True}},
    }

    def boom(resource: str, arguments: Any) -> Any:
        raise TaskFailedError("Bedrock.AccessDeniedException", "no")

    outcome = Interpreter(definition, boom).run({})
    assert (outcome.status, outcome.error) == ("FAILED", "Bedrock.AccessDeniedException")


def test_a_failed_release_notice_is_retried(cloud: Cloud) -> None:
    cloud.stubber.add_response("list_tags_for_resource", owner_tags(), {"resourceARN": THROUGHPUT})
    cloud.stubber.add_response(
        "delete_provisioned_model_throughput", {}, {"provisionedModelId": THROUGHPUT}
    )
    cloud.publish_failures = 1
    outcome = cloud.run("TitanRelease", {"provisionedModelArn": THROUGHPUT})
    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
    assert outcome.path.count("(retry Notify)") == 1
    assert len(cloud.notices()) == 1
