"""describe-catalog end to end: the synthesized dev state machine with the REAL step functions.

The definition is the dev template's, run state by state by tests/sfn_support.py. Every Lambda
task calls the real step (catalog.handlers.*) built as its integration test builds it, on moto
S3/DynamoDB/SSM. The batch engines are doubles behind real boto3 clients
(tests/catalog_e2e_support.py): Batch Transform runs the REAL VQA serving handler on a tiny
BLIP-2 for every line, Bedrock batch inference answers as Claude would (with one error record,
one malformed line and one record left out); the online route's endpoint and Converse calls go
to the same handler and text double. A second execution resumes from the failures report.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from catalog.handlers.bedrock_input import BedrockInputStep
from catalog.handlers.environment import CatalogEnvironment
from catalog.handlers.finalize import FinalizeStep
from catalog.handlers.online import OnlineStep
from catalog.handlers.plan import Planner
from catalog.handlers.results import ResultsStep
from catalog.handlers.start import Starter
from catalog.handlers.transform_input import BatchBuilder
from catalog.logic import layout
from descriptions.logic.pipeline import DescriptionPipeline, result_document, result_key
from descriptions.logic.requests import answered, questions_for
from shared.adapters.bedrock_runtime import BedrockTextModel
from shared.adapters.catalog_runs import RunReader
from shared.adapters.catalog_sources import S3CatalogSource, StoredLanguages
from shared.adapters.dynamo_batch import DynamoBatchWriter
from shared.adapters.run_files import RunFiles
from shared.adapters.sagemaker_runtime import SageMakerAttributeModel
from shared.adapters.storage import DynamoDescriptionTable, S3ResultsArchive
from shared.adapters.uploads import S3Uploads
from shared.models.catalog import BedrockBatchLimits, CatalogSettings, FailureRecord
from shared.models.descriptions import PipelineSettings, StoredDescription
from shared.retry import Deadline
from tests.catalog_batch_support import batch_settings
from tests.catalog_e2e_support import BatchTransformDouble, BedrockBatchDouble, OnlineModels
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
from tests.integration.test_catalog_workflow import checked_call
from tests.sfn_support import Clock, Interpreter, Outcome, TaskFailedError, call_aws_sdk
from tests.sfn_support import definition_with as _definition_with
from tests.support import SynthesizedApp
from tests.templates import one, render_definition

pytestmark = [pytest.mark.integration, pytest.mark.infra, pytest.mark.slow]

ACCOUNT = "123456789012"
REGION = "us-east-1"
KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/12345678-1234-1234-1234-123456789012"
FUNCTIONS = ("Start", "TransformInput", "Plan", "BedrockInput", "Results", "Online", "Finalize")
TOKENS = {
    r"AWS::Partition": "aws",
    r"AWS::Region": REGION,
    r"AWS::URLSuffix": "amazonaws.com",
    r"import:.*ExportsOutputRefResults.*": RESULTS_BUCKET,
    r"import:.*DataKey.*Arn.*": KEY_ARN,
    r"TransformModelRole[0-9A-F]{8}\.Arn": f"arn:aws:iam::{ACCOUNT}:role/catalog-transform",
    r"BedrockBatchRole[0-9A-F]{8}\.Arn": f"arn:aws:iam::{ACCOUNT}:role/catalog-bedrock",
    **{
        rf"{name}Function[0-9A-F]{{8}}\.Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
        for name in FUNCTIONS
    },
}
PARAMETER = "/atelier/dev/vqa/model-data-url"
ARCHIVE = "s3://atelier-dev-models/vqa/training/atelier-dev-vqa-1/output/model.tar.gz"
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
TRANSFORM_SYNC = "arn:aws:states:::sagemaker:createTransformJob.sync"
LANGUAGES = ["en", "de"]
MANIFEST_KEY = "manifests/spring.csv"

# The catalog: 126 good rows (every 7th a Shirts product), three bad rows, three products
# already described in both languages (skipped) and one described in English only (redone).
GOOD = [f"P{number:05d}" for number in range(126)]
SHIRTS = set(GOOD[::7])
SKIPPED = {"P00010", "P00020", "P00030"}
ENGLISH_ONLY = "P00040"
BAD_ROWS = {
    "P90001": ("images/P90001.jpg", "", "input"),  # no such image
    "bad id!": ("images/P00001.jpg", "", "input"),  # not a product id
    "P90002": ("images/P00002.jpg", "Spaceships", "input"),  # no such category
}
# Positions in the Bedrock job: an error record, a cut-off line, a record never answered.
SABOTAGE = {5: "error", 17: "malformed", 42: "drop"}
# Several Bedrock input files per job.
RECORDS_PER_FILE = 50


@pytest.fixture(scope="module")
def definition(variant_app: SynthesizedApp) -> dict[str, Any]:
    # The dev stage with a hosted VQA model: the endpoint attribute source, Batch Transform.
    template = variant_app.template("-catalog")
    _, properties = one(template, "AWS::StepFunctions::StateMachine", "DescribeCatalog")
    text = render_definition(properties["DefinitionString"]).replace(
        "${HuggingFaceInferenceRegistries[${AWS::Region}].account}", "763104351884"
    )
    return _definition_with(text, TOKENS)


# Tokens the served model generates per answer (the endpoint's VQA_MAX_NEW_TOKENS; 16 by
# default): 8 keep 120 products by 8 questions on a CPU within seconds, and are enough for the
# random tiny model to answer about half the images differently (so a product given another's
# answers would mostly be noticed; the text check below catches the rest).
MAX_NEW_TOKENS = 8


@pytest.fixture(scope="module")
def vqa_model(tiny_blip2: Path) -> Iterator[Callable[[bytes, str], bytes]]:
    """The VQA serving handler on the tiny BLIP-2: (request body, content type) → response body
    (JSON Lines answered as JSON Lines, as Batch Transform's MultiRecord requests are)."""
    from vqa import inference

    loaded = inference.model_fn(str(tiny_blip2))

    def serve(body: bytes, content_type: str) -> bytes:
        request = inference.input_fn(body, content_type)
        prediction = inference.predict_fn(request, loaded)
        return inference.output_fn(prediction, content_type).encode()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inference, "DEFAULT_MAX_NEW_TOKENS", MAX_NEW_TOKENS)
        yield serve


def lambda_error(error: Exception) -> TaskFailedError:
    """How Step Functions reports a function's unhandled exception."""
    name = type(error).__name__
    return TaskFailedError(name, json.dumps({"errorMessage": str(error), "errorType": name}))


@dataclass
class Workflow:
    """The real steps on moto, the service doubles, and the task dispatcher."""

    s3: Any
    dynamodb: Any
    ssm: Any
    catalog: CatalogSettings
    descriptions: PipelineSettings
    transform: BatchTransformDouble
    bedrock: BedrockBatchDouble
    online: OnlineModels
    ledger_directory: str

    def steps(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        catalog, descriptions, s3, dynamodb = (
            self.catalog,
            self.descriptions,
            self.s3,
            self.dynamodb,
        )
        files = RunFiles(catalog.results_bucket, s3=s3)
        environment = CatalogEnvironment(catalog=catalog, descriptions=descriptions)
        starter = Starter(environment=environment, sources=S3CatalogSource(s3=s3), files=files)
        builder = BatchBuilder(
            environment=environment,
            sources=S3CatalogSource(s3=s3),
            stored=StoredLanguages(catalog.table_name, dynamodb=dynamodb, sleep=lambda _: None),
            files=files,
        )
        planner = Planner(
            environment=environment,
            files=RunReader(files, io_concurrency=catalog.io_concurrency),
        )
        bedrock_input = BedrockInputStep(settings=catalog, descriptions=descriptions, files=files)
        results = ResultsStep(
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
            ledger_directory=self.ledger_directory,
        )
        online = OnlineStep(
            settings=catalog,
            pipeline=DescriptionPipeline(
                settings=descriptions,
                attribute_model=SageMakerAttributeModel(
                    descriptions.endpoint_name, sagemaker_runtime=self.online.endpoint.client
                ),
                text_model=BedrockTextModel(bedrock_runtime=self.online.text.client),
                archive=S3ResultsArchive(catalog.results_bucket, s3=s3),
                table=DynamoDescriptionTable(catalog.table_name, dynamodb=dynamodb),
                sleep=lambda _: None,
            ),
            images=S3Uploads(s3=s3),
            files=files,
        )
        return {
            "Start": starter.handle,
            "TransformInput": builder.handle,
            "Plan": planner.handle,
            "BedrockInput": bedrock_input.run,
            "Results": results.run,
            "Online": lambda event: online.run(event, Deadline(60)),
            "Finalize": FinalizeStep(settings=catalog, files=files).run,
        }

    def run(self, definition: dict[str, Any], execution_input: Any, *, clock: Clock) -> Outcome:
        steps = self.steps()

        def tasks(resource: str, arguments: Any) -> Any:
            if resource == LAMBDA_INVOKE:
                name = arguments["FunctionName"].rsplit(":", 1)[1]
                event = json.loads(json.dumps(arguments["Payload"]))
                try:
                    result = steps[name](event)
                except Exception as error:  # Lambda reports every exception
                    raise lambda_error(error) from error
                return {"Payload": json.loads(json.dumps(result))}
            if resource == TRANSFORM_SYNC:
                # The optimized integration: create the job, then wait for its description.
                sagemaker = self.transform.service.client
                checked_call(sagemaker, "createTransformJob", arguments)
                name = {"TransformJobName": arguments["TransformJobName"]}
                return call_aws_sdk(sagemaker, "describeTransformJob", name)
            service, _, action = resource.removeprefix("arn:aws:states:::aws-sdk:").partition(":")
            clients = {
                "ssm": self.ssm,
                "sagemaker": self.transform.service.client,
                "bedrock": self.bedrock.service.client,
            }
            # Patterns and lengths too (botocore's own validation leaves them out).
            return checked_call(clients[service], action, arguments)

        interpreter = Interpreter(definition, tasks, clock=clock, s3=self.s3, max_steps=2000)
        return interpreter.run(execution_input)

    def stored(self) -> dict[str, StoredDescription]:
        table = DynamoDescriptionTable(self.catalog.table_name, dynamodb=self.dynamodb)
        found: dict[str, StoredDescription] = {}
        for product in [*GOOD, *BAD_ROWS]:
            description = table.get(product) if product != "bad id!" else None
            if description is not None:
                found[product] = description
        return found


def manifest_csv() -> bytes:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["product_id", "image_key", "category"])
    for product in GOOD:
        writer.writerow([product, f"images/{product}.jpg", "Shirts" if product in SHIRTS else ""])
    for product, (image, category, _) in BAD_ROWS.items():
        writer.writerow([product, image, category])
    return text.getvalue().encode()


@dataclass
class FirstRun:
    workflow: Workflow
    outcome: Outcome
    run_id: str
    stored: dict[str, StoredDescription]
    ledger: dict[str, str]  # record id → product id
    answers: dict[str, Any]


@pytest.fixture(scope="module")
def first_run(
    definition: dict[str, Any],
    vqa_model: Callable[[bytes], bytes],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FirstRun]:
    with mock_aws():
        s3, dynamodb = boto3.client("s3", region_name=REGION), boto3.client("dynamodb")
        ssm = boto3.client("ssm", region_name=REGION)
        limits = BedrockBatchLimits.model_validate(
            {**BEDROCK_LIMITS, "maxRecordsPerFile": RECORDS_PER_FILE}
        )
        catalog = catalog_settings(bedrock=limits)
        descriptions = batch_settings()
        create_catalog_resources(s3, dynamodb, catalog)
        ssm.put_parameter(Name=PARAMETER, Value=ARCHIVE, Type="String")
        for number, product in enumerate(GOOD):
            s3.put_object(
                Bucket=UPLOADS_BUCKET, Key=f"images/{product}.jpg", Body=make_jpeg(seed=number)
            )
        s3.put_object(Bucket=UPLOADS_BUCKET, Key=MANIFEST_KEY, Body=manifest_csv())
        for product in SKIPPED:
            store_description(dynamodb, TABLE_NAME, product, LANGUAGES)
        store_description(dynamodb, TABLE_NAME, ENGLISH_ONLY, ["en"])
        workflow = Workflow(
            s3=s3,
            dynamodb=dynamodb,
            ssm=ssm,
            catalog=catalog,
            descriptions=descriptions,
            transform=BatchTransformDouble(s3=s3, model=vqa_model),
            bedrock=BedrockBatchDouble(s3=s3, sabotage=dict(SABOTAGE)),
            online=OnlineModels(
                endpoint_name=descriptions.endpoint_name,
                model_id=descriptions.model_id,
                model=vqa_model,
            ),
            ledger_directory=str(tmp_path_factory.mktemp("ledger")),
        )
        source = f"s3://{UPLOADS_BUCKET}/{MANIFEST_KEY}"
        outcome = workflow.run(
            definition, {"source": source, "languages": LANGUAGES}, clock=Clock()
        )
        assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
        run_id = outcome.output["runId"]
        ledger = {
            line["record_id"]: line["product_id"]
            for line in read_jsonl(s3, RESULTS_BUCKET, layout.ledger_key(run_id, "g0000"))
        }
        yield FirstRun(
            workflow=workflow,
            outcome=outcome,
            run_id=run_id,
            stored=workflow.stored(),
            ledger=ledger,
            answers=dict(workflow.transform.answers),
        )


def expected_attributes(answer: Any, product: str) -> dict[str, str]:
    """What the description keeps of the model's answer: the category's non-empty answers."""
    category = "Shirts" if product in SHIRTS else "default"
    _, questions = questions_for(batch_settings(), category)
    return answered(answer["attributes"], questions)


def own_bullets(stored: StoredDescription) -> list[str]:
    """The bullets the text double writes for the attributes it is given."""
    return [f"{name.replace('_', ' ')}: {value}" for name, value in stored.attributes.items()]


def image_b64(product: str) -> str:
    return base64.b64encode(make_jpeg(seed=GOOD.index(product))).decode("ascii")


def test_the_batch_route_describes_every_good_product_with_the_models_answers(
    first_run: FirstRun,
) -> None:
    workflow, run_id = first_run.workflow, first_run.run_id
    s3 = workflow.s3
    sabotaged = {
        first_run.ledger[record]: kind for record, kind in workflow.bedrock.sabotaged.items()
    }
    assert sorted(sabotaged.values()) == ["drop", "error", "malformed"]
    to_describe = set(GOOD) - SKIPPED

    # Then the attribute model saw exactly the products to describe, once each, and told most
    # images apart (else comparing each product's attributes with its answers proves little)
    assert set(first_run.answers) == to_describe
    distinct = {json.dumps(answer, sort_keys=True) for answer in first_run.answers.values()}
    assert len(distinct) > len(to_describe) // 4
    assert workflow.transform.requests == len(to_describe)
    # in fewer model calls than products: MultiRecord sends each part's lines in mini-batches
    assert workflow.transform.calls < workflow.transform.requests
    # and Bedrock got one record per product, with the same prompt code as the online path
    assert set(first_run.ledger.values()) == to_describe
    assert len(workflow.bedrock.records) == len(to_describe)
    (job,) = workflow.bedrock.jobs.values()
    assert job["modelId"] == workflow.descriptions.model_id
    inputs = list_keys(s3, RESULTS_BUCKET, layout.bedrock_input_prefix(run_id, "g0000"))
    assert len(inputs) == -(-len(to_describe) // RECORDS_PER_FILE)

    # And every product but the sabotaged ones has its description, from the model's answers
    described = to_describe - set(sabotaged)
    assert set(first_run.stored) == described | SKIPPED
    for product in described:
        stored = first_run.stored[product]
        assert stored.attributes == expected_attributes(first_run.answers[product], product)
        assert set(stored.descriptions) == set(LANGUAGES)
        # The text stored is the one written for this product's own attributes.
        assert stored.descriptions["en"].bullets == own_bullets(stored)
        assert stored.category == ("Shirts" if product in SHIRTS else "default")
        assert stored.attribute_model.startswith("atelier-dev-catalog-")
        assert stored.text_model == workflow.descriptions.model_id
        document = read_json(s3, RESULTS_BUCKET, result_key(product))
        assert document == result_document(stored)
    assert first_run.stored[ENGLISH_ONLY].attribute_model != "endpoint"
    for product in SKIPPED:
        assert first_run.stored[product].attribute_model == "endpoint"  # untouched

    # And the failures report lists exactly the bad rows and the sabotaged records
    report = [
        FailureRecord.model_validate(line)
        for line in read_jsonl(s3, RESULTS_BUCKET, layout.report_key(run_id))
    ]
    stages = {failure.product_id: str(failure.stage) for failure in report}
    assert stages == {
        **{product: stage for product, (_, _, stage) in BAD_ROWS.items()},
        **dict.fromkeys(sabotaged, "description"),
    }
    assert len(report) == len(stages)
    reasons = {failure.product_id: failure.reason for failure in report}
    error_product = next(p for p, kind in sabotaged.items() if kind == "error")
    assert "400" in reasons[error_product]
    assert "Spaceships" in reasons["P90002"]
    assert f"s3://{UPLOADS_BUCKET}/images/P90001.jpg does not exist" in reasons["P90001"]
    assert "product_id 'bad id!' is not valid" in reasons["bad id!"]
    (job_arn,) = workflow.bedrock.jobs
    records = {product: record for record, product in first_run.ledger.items()}
    for product, kind in sabotaged.items():
        if kind != "error":  # never answered: the record and the job's end are the reason
            assert f"no answer for record {records[product]}" in reasons[product]
            ended = f"Bedrock job {job_arn} ended PartiallyCompleted: 3 records failed"
            assert ended in reasons[product]

    # And the summary adds up, is the execution's output, and the image copies are gone
    summary = read_json(s3, RESULTS_BUCKET, layout.summary_key(run_id))
    assert first_run.outcome.output == summary
    assert summary["route"] == "batch"
    assert summary["skipped"] == len(SKIPPED)
    assert summary["records"] == len(to_describe)
    assert summary["described"] == len(described)
    assert summary["failed"] == len(BAD_ROWS) + len(sabotaged)
    assert summary["failuresByStage"] == {"description": 3, "input": 3}
    # Every manifest row is counted once: sent to the models, skipped or refused at input...
    rows = len(GOOD) + len(BAD_ROWS)
    assert summary["records"] + summary["skipped"] + summary["failuresByStage"]["input"] == rows
    # ...and every product sent is described or reported.
    assert summary["described"] + summary["failuresByStage"]["description"] == summary["records"]
    assert summary["failuresReport"] == layout.s3_uri(RESULTS_BUCKET, layout.report_key(run_id))
    assert list_keys(s3, RESULTS_BUCKET, layout.transform_input_prefix(run_id)) == []
    # The model was created for the run and deleted after it.
    assert workflow.transform.deleted_models == list(workflow.transform.models)


def test_a_re_run_from_the_failures_report_retries_exactly_the_failed_products(
    definition: dict[str, Any], first_run: FirstRun
) -> None:
    workflow = first_run.workflow
    s3 = workflow.s3
    sabotaged = {first_run.ledger[record] for record in workflow.bedrock.sabotaged}
    before = workflow.stored()
    jobs_before = len(workflow.transform.jobs), len(workflow.bedrock.jobs)
    summary = first_run.outcome.output

    # When a second execution runs on the failures report (an hour later)
    later = Clock(millis=Clock().millis + 3_600_000)
    outcome = workflow.run(
        definition, {"source": summary["failuresReport"], "languages": LANGUAGES}, clock=later
    )

    # Then the three failed products go the online route, and nothing else is sent anywhere
    assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
    assert outcome.output["route"] == "online"
    assert (len(workflow.transform.jobs), len(workflow.bedrock.jobs)) == jobs_before
    endpoint_calls = workflow.online.endpoint.called("InvokeEndpoint")
    assert len(endpoint_calls) == len(sabotaged)
    sent = {json.loads(call["Body"])["image"] for call in endpoint_calls}
    assert sent == {image_b64(product) for product in sabotaged}
    assert len(workflow.online.text.called("Converse")) == len(sabotaged)

    # And exactly those are described now, with the endpoint's answers; the rest is untouched
    after = workflow.stored()
    assert set(after) - set(before) == sabotaged
    for product in set(before):
        assert after[product] == before[product]
    for product in sabotaged:
        stored = after[product]
        assert stored.attribute_model == workflow.descriptions.endpoint_name
        assert set(stored.descriptions) == set(LANGUAGES)
        assert stored.descriptions["en"].bullets == own_bullets(stored)
        # The same image gives the same answer as in the batch transform (greedy decoding).
        assert stored.attributes == expected_attributes(first_run.answers[product], product)

    # And the new report lists the rows no re-run can fix, and nothing else
    run_id = outcome.output["runId"]
    assert run_id != first_run.run_id
    report = read_jsonl(s3, RESULTS_BUCKET, layout.report_key(run_id))
    assert {line["product_id"] for line in report} == set(BAD_ROWS)
    assert outcome.output["described"] == len(sabotaged)
    assert outcome.output["failed"] == len(BAD_ROWS)
