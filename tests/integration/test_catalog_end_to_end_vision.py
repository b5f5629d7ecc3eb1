"""describe-catalog end to end with the vision attribute source (the dev stage as shipped): the
synthesized dev state machine with the REAL step functions, run state by state.

As in test_catalog_end_to_end.py every Lambda task calls the real step on moto S3/DynamoDB, and
Bedrock's batch jobs are the double behind a real boto3 client (tests/catalog_e2e_support.py):
the attributes job answers each photo's questions (validated as a Converse request with its
image), the description job answers as Claude would, each with one error record, one malformed
line and one record left out. There is no SSM parameter and no SageMaker double: the run must
need neither.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from catalog.handlers.attribute_input import AttributeInputStep
from catalog.handlers.bedrock_input import BedrockInputStep
from catalog.handlers.environment import CatalogEnvironment
from catalog.handlers.finalize import FinalizeStep
from catalog.handlers.plan import Planner
from catalog.handlers.results import ResultsStep
from catalog.handlers.start import Starter
from catalog.handlers.transform_input import BatchBuilder
from catalog.logic import layout
from descriptions.logic.pipeline import result_document, result_key
from descriptions.logic.requests import questions_for
from shared.adapters.catalog_runs import RunReader
from shared.adapters.catalog_sources import S3CatalogSource, StoredLanguages
from shared.adapters.dynamo_batch import DynamoBatchWriter
from shared.adapters.run_files import RunFiles
from shared.adapters.storage import DynamoDescriptionTable, S3ResultsArchive
from shared.models.attributes import AttributeSourceSettings, AttributesSource
from shared.models.catalog import BedrockBatchLimits, FailureRecord
from shared.models.descriptions import StoredDescription
from tests.catalog_batch_support import batch_settings
from tests.catalog_e2e_support import BedrockBatchDouble, photo_answer
from tests.catalog_support import (
    BEDROCK_LIMITS,
    RESULTS_BUCKET,
    TABLE_NAME,
    UPLOADS_BUCKET,
    catalog_settings,
    create_catalog_resources,
    list_keys,
    make_jpeg,
    read_json,
    read_jsonl,
    store_description,
)
from tests.integration.test_catalog_end_to_end import (
    ACCOUNT,
    BAD_ROWS,
    ENGLISH_ONLY,
    FUNCTIONS,
    GOOD,
    KEY_ARN,
    LAMBDA_INVOKE,
    LANGUAGES,
    MANIFEST_KEY,
    RECORDS_PER_FILE,
    REGION,
    SABOTAGE,
    SHIRTS,
    SKIPPED,
    lambda_error,
    manifest_csv,
    own_bullets,
)
from tests.integration.test_catalog_workflow import checked_call
from tests.sfn_support import Clock, Interpreter, Outcome
from tests.sfn_support import definition_with as _definition_with
from tests.support import SynthesizedApp
from tests.templates import one, render_definition

pytestmark = [pytest.mark.integration, pytest.mark.infra, pytest.mark.slow]

VISION_MODEL = "global.anthropic.claude-sonnet-4-6"
VISION = AttributeSourceSettings(
    kind="vision-llm", model_id=VISION_MODEL, structured_output="json_schema"
)
TOKENS = {
    r"AWS::Partition": "aws",
    r"AWS::Region": REGION,
    r"AWS::URLSuffix": "amazonaws.com",
    r"import:.*ExportsOutputRefResults.*": RESULTS_BUCKET,
    r"import:.*DataKey.*Arn.*": KEY_ARN,
    r"BedrockBatchRole[0-9A-F]{8}\.Arn": f"arn:aws:iam::{ACCOUNT}:role/catalog-bedrock",
    **{
        rf"{name}Function[0-9A-F]{{8}}\.Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
        for name in (*FUNCTIONS, "AttributeInput")
    },
}


@pytest.fixture(scope="module")
def definition(synthesized_apps: dict[str, SynthesizedApp]) -> dict[str, Any]:
    template = synthesized_apps["dev"].template("-catalog")
    _, properties = one(template, "AWS::StepFunctions::StateMachine", "DescribeCatalog")
    return _definition_with(render_definition(properties["DefinitionString"]), TOKENS)


@dataclass
class VisionRun:
    s3: Any
    dynamodb: Any
    bedrock: BedrockBatchDouble
    outcome: Outcome
    run_id: str
    stored: dict[str, StoredDescription]


def _steps(s3: Any, dynamodb: Any, ledger_directory: str) -> dict[str, Any]:
    limits = BedrockBatchLimits.model_validate(
        {**BEDROCK_LIMITS, "maxRecordsPerFile": RECORDS_PER_FILE}
    )
    catalog = catalog_settings(bedrock=limits)
    descriptions = batch_settings()
    files = RunFiles(catalog.results_bucket, s3=s3)
    environment = CatalogEnvironment(catalog=catalog, descriptions=descriptions, attributes=VISION)
    return {
        "Start": Starter(
            environment=environment, sources=S3CatalogSource(s3=s3), files=files
        ).handle,
        "TransformInput": BatchBuilder(
            environment=environment,
            sources=S3CatalogSource(s3=s3),
            stored=StoredLanguages(catalog.table_name, dynamodb=dynamodb, sleep=lambda _: None),
            files=files,
        ).handle,
        "Plan": Planner(
            environment=environment,
            files=RunReader(files, io_concurrency=catalog.io_concurrency),
        ).handle,
        "AttributeInput": AttributeInputStep(
            settings=catalog, descriptions=descriptions, attributes=VISION, files=files
        ).run,
        "BedrockInput": BedrockInputStep(
            settings=catalog, descriptions=descriptions, files=files, attributes=VISION
        ).run,
        "Results": ResultsStep(
            settings=catalog,
            descriptions=descriptions,
            files=files,
            archive=S3ResultsArchive(catalog.results_bucket, s3=s3),
            table=DynamoBatchWriter(
                catalog.table_name,
                dynamodb=dynamodb,
                concurrency=4,
                sleep=lambda _: None,
                max_attempts=3,
            ),
            ledger_directory=ledger_directory,
        ).run,
        "Finalize": FinalizeStep(settings=catalog, files=files).run,
    }


@pytest.fixture(scope="module")
def vision_run(
    definition: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VisionRun]:
    with mock_aws():
        s3, dynamodb = boto3.client("s3", region_name=REGION), boto3.client("dynamodb")
        create_catalog_resources(s3, dynamodb, catalog_settings())
        for number, product in enumerate(GOOD):
            s3.put_object(
                Bucket=UPLOADS_BUCKET, Key=f"images/{product}.jpg", Body=make_jpeg(seed=number)
            )
        s3.put_object(Bucket=UPLOADS_BUCKET, Key=MANIFEST_KEY, Body=manifest_csv())
        for product in SKIPPED:
            store_description(dynamodb, TABLE_NAME, product, LANGUAGES)
        store_description(dynamodb, TABLE_NAME, ENGLISH_ONLY, ["en"])
        bedrock = BedrockBatchDouble(s3=s3, sabotage=dict(SABOTAGE))
        steps = _steps(s3, dynamodb, str(tmp_path_factory.mktemp("ledger")))

        def tasks(resource: str, arguments: Any) -> Any:
            if resource == LAMBDA_INVOKE:
                name = arguments["FunctionName"].rsplit(":", 1)[1]
                event = json.loads(json.dumps(arguments["Payload"]))
                try:
                    result = steps[name](event)
                except Exception as error:  # Lambda reports every exception
                    raise lambda_error(error) from error
                return {"Payload": json.loads(json.dumps(result))}
            service, _, action = resource.removeprefix("arn:aws:states:::aws-sdk:").partition(":")
            # Only Bedrock: an SSM or SageMaker call fails the run (KeyError).
            return checked_call({"bedrock": bedrock.service.client}[service], action, arguments)

        source = f"s3://{UPLOADS_BUCKET}/{MANIFEST_KEY}"
        interpreter = Interpreter(definition, tasks, clock=Clock(), s3=s3, max_steps=2000)
        outcome = interpreter.run({"source": source, "languages": LANGUAGES})
        assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
        table = DynamoDescriptionTable(TABLE_NAME, dynamodb=dynamodb)
        stored = {p: d for p in GOOD if (d := table.get(p)) is not None}
        yield VisionRun(s3, dynamodb, bedrock, outcome, outcome.output["runId"], stored)


def test_a_vision_catalog_run_describes_every_good_product_from_its_photo(
    vision_run: VisionRun,
) -> None:
    run, s3 = vision_run, vision_run.s3
    to_describe = set(GOOD) - SKIPPED
    # Then two Bedrock jobs ran, the vision model's first, and no SageMaker or SSM call
    attributes_job, description_job = run.bedrock.jobs.values()
    assert attributes_job["modelId"] == VISION_MODEL
    assert attributes_job["jobName"].endswith("-a0000")
    assert description_job["jobName"].endswith("-g0000")
    assert not [r for r, _ in run.outcome.calls if ":ssm:" in r or ":sagemaker:" in r]
    # and each job lost three records to sabotage: at the attributes or the description stage
    assert [len(kinds) for kinds in run.bedrock.sabotaged_by_job.values()] == [3, 3]
    report = [
        FailureRecord.model_validate(line)
        for line in read_jsonl(s3, RESULTS_BUCKET, layout.report_key(run.run_id))
    ]
    stages = {failure.product_id: str(failure.stage) for failure in report}
    assert sorted(stages.values()).count("attributes") == 3
    assert sorted(stages.values()).count("description") == 3
    assert {p for p, stage in stages.items() if stage == "input"} == set(BAD_ROWS)
    # And every other product is described from what the vision model read in its own photo
    described = to_describe - set(stages)
    assert len(described) == len(to_describe) - 6
    # (the English-only product keeps its earlier description if it was lost)
    assert set(run.stored) == described | SKIPPED | {ENGLISH_ONLY}
    for product in described:
        stored = run.stored[product]
        category = "Shirts" if product in SHIRTS else "default"
        _, questions = questions_for(batch_settings(), category)
        image = make_jpeg(seed=GOOD.index(product))
        assert stored.attributes == {q.name: photo_answer(image, q.name) for q in questions}
        assert stored.attributes_source == AttributesSource(kind="vision-llm", model=VISION_MODEL)
        assert stored.attribute_model == VISION_MODEL
        assert stored.descriptions["en"].bullets == own_bullets(stored)
        assert read_json(s3, RESULTS_BUCKET, result_key(product)) == result_document(stored)
    # And the summary adds up, and no copy of a photo is left
    summary = read_json(s3, RESULTS_BUCKET, layout.summary_key(run.run_id))
    assert summary["described"] == len(described)
    assert summary["failuresByStage"] == {"attributes": 3, "description": 3, "input": 3}
    assert list_keys(s3, RESULTS_BUCKET, layout.transform_input_prefix(run.run_id)) == []
    left = list_keys(s3, RESULTS_BUCKET, layout.groups_prefix(run.run_id))
    assert not [key for key in left if layout.holds_photos(key)]
