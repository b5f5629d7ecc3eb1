"""The describe-catalog workflow of a stage that reads attributes with the vision model (the dev
stage as shipped), run state by state by the reference interpreter (tests/sfn_support.py).

The functions are the fakes of test_catalog_workflow.py plus the attribute input step; Bedrock is
a botocore Stubber, so every CreateModelInvocationJob is validated against the service's API
model (and its name and URI patterns by `checked_call`). SSM and SageMaker are not stubbed at
all: a call to either fails the test, which is how these tests show that the vision path needs
no VQA archive, SageMaker model or transform job.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from tests.integration.test_catalog_workflow import (
    ACCOUNT,
    BATCH_PLAN,
    BEDROCK_ROLE,
    KEY_ARN,
    REGION,
    RUN,
    RUN_ID,
    TOKENS,
    UPLOADS,
    Catalog,
    _prefix_source,
    _stub_bedrock_job,
    group,
)
from tests.sfn_support import Outcome, TaskFailedError
from tests.sfn_support import definition_with as _definition_with
from tests.support import SynthesizedApp
from tests.templates import one, render_definition

pytestmark = [pytest.mark.integration, pytest.mark.infra]

VISION_MODEL = "global.anthropic.claude-sonnet-4-6"
JOB_PREFIX = f"atelier-dev-catalog-{RUN_ID}"


@pytest.fixture(scope="module")
def definition(synthesized_apps: dict[str, SynthesizedApp]) -> dict[str, Any]:
    template = synthesized_apps["dev"].template("-catalog")
    _, properties = one(template, "AWS::StepFunctions::StateMachine", "DescribeCatalog")
    tokens = {
        **TOKENS,
        r"AttributeInputFunction[0-9A-F]{8}\.Arn": (
            f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:AttributeInput"
        ),
    }
    return _definition_with(render_definition(properties["DefinitionString"]), tokens)


def attribute_input(name: str) -> dict[str, str]:
    prefix = f"{RUN}/groups/{name}/"
    return {"inputUri": f"{prefix}attribute-input/", "outputUri": f"{prefix}attribute-output/"}


@dataclass
class VisionCatalog(Catalog):
    """The fakes, plus the attribute input step: it reports `attribute_records` (default: the
    group's records) and where the attributes job reads and writes."""

    attribute_records: dict[str, int] | None = None

    def function(self, name: str, event: Any) -> Any:
        if name != "AttributeInput":
            return super().function(name, event)
        self.events.setdefault(name, []).append(event)
        if name in self.failing:
            raise self.failing[name]
        group_name = event["group"]["group"]
        records = (self.attribute_records or {}).get(group_name, event["group"]["records"])
        return {
            "group": group_name,
            "records": records,
            "failed": 0,
            **attribute_input(group_name),
        }


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    """The uploads bucket; no SSM parameter and no SageMaker: the vision path needs neither
    (a call would fail the test)."""
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=UPLOADS)
        yield {"s3": s3}


@pytest.fixture
def bedrock() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("bedrock", region_name=REGION)
    with Stubber(client) as stub:
        yield client, stub


def _jobs(outcome: Outcome) -> list[dict[str, Any]]:
    return [a for r, a in outcome.calls if r.endswith("bedrock:createModelInvocationJob")]


def test_the_vision_batch_route_reads_attributes_with_a_bedrock_job_per_group(
    definition: dict[str, Any], aws: dict[str, Any], bedrock: tuple[Any, Stubber]
) -> None:
    client, stub = bedrock
    # Given two groups, and no VQA model recorded anywhere (the vision source needs none)
    first_attributes = _stub_bedrock_job(stub, "a0000", ["InProgress", "Completed"])
    first_texts = _stub_bedrock_job(stub, "g0000", ["Completed"])
    second_attributes = _stub_bedrock_job(stub, "a0001", ["PartiallyCompleted"])
    _stub_bedrock_job(stub, "g0001", ["Completed"])
    fake = VisionCatalog(plan=BATCH_PLAN, s3=aws["s3"], bedrock=client)

    # When the workflow runs
    outcome = fake.run(definition, _prefix_source(aws))

    # Then it succeeds without SSM or SageMaker, every Bedrock call stubbed and valid
    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
    stub.assert_no_pending_responses()
    assert not [r for r, _ in outcome.calls if ":ssm:" in r or ":sagemaker:" in r]
    # And each group asked the vision model first, then the text model, its jobs named apart
    jobs = _jobs(outcome)
    assert [job["JobName"] for job in jobs] == [
        f"{JOB_PREFIX}-a0000",
        f"{JOB_PREFIX}-g0000",
        f"{JOB_PREFIX}-a0001",
        f"{JOB_PREFIX}-g0001",
    ]
    assert all(len(job["JobName"]) <= 63 for job in jobs)
    attributes_job = jobs[0]
    assert attributes_job["ClientRequestToken"] == attributes_job["JobName"]
    assert attributes_job["ModelId"] == VISION_MODEL
    # (the vision model in json_schema mode: Converse records)
    assert attributes_job["ModelInvocationType"] == "Converse"
    assert attributes_job["RoleArn"] == BEDROCK_ROLE
    assert attributes_job["InputDataConfig"] == {
        "S3InputDataConfig": {
            "S3Uri": attribute_input("g0000")["inputUri"],
            "S3InputFormat": "JSONL",
        }
    }
    assert attributes_job["OutputDataConfig"]["S3OutputDataConfig"] == {
        "S3Uri": attribute_input("g0000")["outputUri"],
        "S3EncryptionKeyId": KEY_ARN,
    }
    assert (
        jobs[1]["InputDataConfig"]["S3InputDataConfig"]["S3Uri"]
        == (group("g0000", 1)["bedrockInputUri"])
    )
    # And the steps got what their contracts say: the attribute input step the group, the
    # Bedrock input step how the attributes job ended (its outputs are its to read)
    assert fake.events["AttributeInput"][0] == {
        "runId": RUN_ID,
        "group": group("g0000", 150),
        "languages": ["en", "fr"],
    }
    assert [event["attributesJob"] for event in fake.events["BedrockInput"]] == [
        {"arn": first_attributes, "status": "Completed", "message": None},
        {
            "arn": second_attributes,
            "status": "PartiallyCompleted",
            "message": "PartiallyCompleted: some records could not be processed",
        },
    ]
    assert "transformJob" not in fake.events["BedrockInput"][0]
    assert fake.events["Results"][0]["job"]["arn"] == first_texts
    # One more poll of the first attributes job: Wait, Get, Choice twice.
    assert sum(1 for name in outcome.path if name.endswith("Wait for attributes job")) == 3
    assert outcome.output == {
        "runId": RUN_ID,
        "route": "batch",
        "records": 250,
        "failuresReport": None,
    }


def test_an_attributes_job_bedrock_refuses_reaches_the_bedrock_input_step_with_the_reason(
    definition: dict[str, Any], aws: dict[str, Any], bedrock: tuple[Any, Stubber]
) -> None:
    client, stub = bedrock
    stub.add_client_error(
        "create_model_invocation_job",
        service_error_code="ServiceQuotaExceededException",
        service_message="too many batch jobs in progress",
        http_status_code=400,
    )
    plan = {**BATCH_PLAN, "groups": [group("g0000", 150)]}
    # (with no attributes, the step reports every product and no description record)
    fake = VisionCatalog(
        plan=plan,
        s3=aws["s3"],
        bedrock=client,
        bedrock_records={"g0000": 0},
    )

    outcome = fake.run(definition, _prefix_source(aws))

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
    (event,) = fake.events["BedrockInput"]
    job = event["attributesJob"]
    assert (job["arn"], job["status"]) == (None, "Failed")
    assert job["message"].startswith(
        "the Bedrock batch job for the attributes could not be created: "
        "Bedrock.ServiceQuotaExceededException"
    )
    assert "too many batch jobs in progress" in job["message"]
    # No description job for a group without records
    assert len(_jobs(outcome)) == 1
    assert fake.events["Results"][0]["job"] == {"arn": None, "status": None, "message": None}
    stub.assert_no_pending_responses()


def test_a_group_with_nothing_for_the_vision_model_starts_no_attributes_job(
    definition: dict[str, Any], aws: dict[str, Any], bedrock: tuple[Any, Stubber]
) -> None:
    client, _ = bedrock
    plan = {**BATCH_PLAN, "groups": [group("g0000", 40)]}
    fake = VisionCatalog(
        plan=plan,
        s3=aws["s3"],
        bedrock=client,
        attribute_records={"g0000": 0},
        bedrock_records={"g0000": 0},
    )

    outcome = fake.run(definition, _prefix_source(aws))

    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
    assert any(name.endswith("/No attributes job") for name in outcome.path)
    (event,) = fake.events["BedrockInput"]
    assert event["attributesJob"] == {"arn": None, "status": None, "message": None}
    assert not [r for r, _ in outcome.calls if ":bedrock:" in r]


def test_a_failing_vision_group_fails_the_run_after_the_report(
    definition: dict[str, Any], aws: dict[str, Any], bedrock: tuple[Any, Stubber]
) -> None:
    client, _ = bedrock
    plan = {**BATCH_PLAN, "groups": [group("g0000", 150)]}
    failure = TaskFailedError("BedrockLimitError", "the group exceeds one Bedrock batch job")
    fake = VisionCatalog(
        plan=plan,
        s3=aws["s3"],
        bedrock=client,
        failing={"AttributeInput": failure},
    )

    outcome = fake.run(definition, _prefix_source(aws))

    assert outcome.status == "FAILED"
    # (no model to delete on the way out)
    assert outcome.path[-2:] == ["Write report (failed groups)", "GroupsFailed"]
    assert "the group exceeds one Bedrock batch job" in outcome.cause
    (report,) = fake.events["Finalize"]
    assert report["route"] == "batch"
    assert report["runId"] == RUN_ID
