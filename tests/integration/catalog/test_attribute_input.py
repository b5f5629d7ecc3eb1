"""The vision attribute source's batch steps against moto S3: a group's transform input parts →
the attributes job's input and ledger (attribute input step), and that job's output → the
description job's input (the Bedrock input step), down to the stored description's source."""

from __future__ import annotations

import base64
import io
import json
import random
from collections.abc import Iterator, Sequence
from typing import Any

import boto3
import pytest
from moto import mock_aws
from PIL import Image

from catalog.handlers.attribute_input import AttributeInputStep, NotVisionSourceError
from catalog.handlers.bedrock_input import (
    ATTRIBUTE_MODEL_METADATA,
    ATTRIBUTE_SOURCE_METADATA,
    BedrockInputStep,
)
from catalog.handlers.results import attributes_source
from catalog.logic import layout
from catalog.logic.bedrock_records import record_id
from catalog.logic.transform_records import build_transform_record
from descriptions.logic.images import ImageLimits, inspect_image
from descriptions.logic.requests import questions_for
from descriptions.logic.vision import batch_input, check_image
from shared.adapters.run_files import RunFiles
from shared.models.attributes import AttributeSourceSettings, AttributesSource
from shared.models.catalog import BedrockBatchLimits, FailureRecord, LedgerRecord, Stage
from tests.catalog_batch_support import SHIRT_QUESTIONS, batch_settings, put_lines
from tests.catalog_support import (
    BEDROCK_LIMITS,
    RESULTS_BUCKET,
    UPLOADS_BUCKET,
    catalog_settings,
    create_catalog_resources,
    list_keys,
    make_jpeg,
    make_png,
    read_jsonl,
)
from tests.vision_support import refusal_reply, vision_reply

pytestmark = pytest.mark.integration

RUN = "20261207230000-abcdef12"
GROUP = "g0003"
VISION_MODEL = "global.anthropic.claude-sonnet-4-6"
DESCRIPTIONS = batch_settings()
VISION = AttributeSourceSettings(
    kind="vision-llm", model_id=VISION_MODEL, structured_output="json_schema"
)
SHIRT_ANSWERS = {"fabric": "Cotton", "sleeve_length": "Long Sleeves", "colour": "Navy"}


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        s3 = boto3.client("s3")
        create_catalog_resources(s3, boto3.client("dynamodb"), catalog_settings())
        yield s3


def _limits(**bedrock: int) -> BedrockBatchLimits:
    return BedrockBatchLimits.model_validate({**BEDROCK_LIMITS, **bedrock})


def _attribute_step(
    s3: Any, attributes: AttributeSourceSettings = VISION, **bedrock: int
) -> AttributeInputStep:
    return AttributeInputStep(
        settings=catalog_settings(bedrock=_limits(**bedrock)),
        descriptions=DESCRIPTIONS,
        attributes=attributes,
        files=RunFiles(RESULTS_BUCKET, s3=s3),
    )


def _bedrock_input_step(s3: Any, **bedrock: int) -> BedrockInputStep:
    return BedrockInputStep(
        settings=catalog_settings(bedrock=_limits(**bedrock)),
        descriptions=DESCRIPTIONS,
        files=RunFiles(RESULTS_BUCKET, s3=s3),
        attributes=VISION,
    )


def _noise_png(width: int, height: int) -> bytes:
    """A PNG that does not compress: random pixels."""
    pixels = random.Random(7).randbytes(width * height * 3)  # noqa: S311 - test pixels
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _product(number: int) -> str:
    return f"V{number:05d}"


def _transform_line(number: int, image: bytes, *, category: str = "Shirts") -> bytes:
    """A line of the build step's transform input, as transform_input.py writes it."""
    _, questions = questions_for(DESCRIPTIONS, category)
    return build_transform_record(
        product_id=_product(number),
        image_key=f"s3://{UPLOADS_BUCKET}/catalog/{_product(number)}.jpg",
        category=category,
        questions=questions,
        image=image,
    ).line


def _put_group(s3: Any, parts: dict[str, Sequence[bytes]]) -> dict[str, Any]:
    """The planned group: its manifest naming the parts, and each part's transform input."""
    manifest: list[Any] = [
        {"prefix": f"s3://{RESULTS_BUCKET}/{layout.transform_input_prefix(RUN)}"}
    ]
    for batch_id, lines in parts.items():
        manifest.append(f"{batch_id}.jsonl")
        put_lines(s3, RESULTS_BUCKET, layout.transform_input_key(RUN, batch_id), list(lines))
    s3.put_object(
        Bucket=RESULTS_BUCKET,
        Key=layout.transform_manifest_key(RUN, GROUP),
        Body=json.dumps(manifest).encode(),
    )
    return {"group": GROUP, "records": sum(len(lines) for lines in parts.values())}


def _event(group: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"runId": RUN, "group": group, "languages": ["en", "de"], **fields}


def _lines(s3: Any, key: str) -> list[dict[str, Any]]:
    return read_jsonl(s3, RESULTS_BUCKET, key)


def _failures(s3: Any, step: str) -> list[FailureRecord]:
    return [
        FailureRecord.model_validate(line)
        for line in _lines(s3, layout.failures_key(RUN, step, GROUP))
    ]


def test_a_group_becomes_vision_records_of_its_photos_in_rotated_files(s3: Any) -> None:
    # Given a group of two parts: 4 JPEG and PNG shirts, a product whose category is gone, and
    # a photo the stage takes (at most 4 MiB) but over Bedrock's 3.75 MB per image
    jpeg, png = make_jpeg(seed=1), make_png(seed=2)
    large = _noise_png(1200, 1100)
    assert 3_932_160 < len(large) <= DESCRIPTIONS.image.max_bytes
    group = _put_group(
        s3,
        {
            "a": [_transform_line(0, jpeg), _transform_line(1, png)],
            "b": [
                _transform_line(2, jpeg),
                _transform_line(3, jpeg, category="default").replace(
                    b'"category":"default"', b'"category":"Gone"'
                ),
                _transform_line(4, large),
                _transform_line(5, png),
            ],
        },
    )

    # When the step runs with files of at most 3 records and a job minimum of 2
    result = _attribute_step(s3, maxRecordsPerFile=3, minRecordsPerJob=2).run(_event(group))

    # Then 4 records go to files of 3 and 1, and the job's URIs come back for the workflow
    prefix = f"s3://{RESULTS_BUCKET}/catalog/{RUN}/groups/{GROUP}/"
    assert result == {
        "group": GROUP,
        "records": 4,
        "failed": 2,
        "inputUri": f"{prefix}attribute-input/",
        "outputUri": f"{prefix}attribute-output/",
    }
    keys = list_keys(s3, RESULTS_BUCKET, layout.attribute_input_prefix(RUN, GROUP))
    assert keys == [layout.attribute_input_key(RUN, GROUP, n) for n in range(2)]
    records = [line for key in keys for line in _lines(s3, key)]
    assert [len(_lines(s3, key)) for key in keys] == [3, 1]
    assert [line["recordId"] for line in records] == [record_id(n) for n in range(4)]
    # and each model input is the online vision call's, the photo as base64
    _, shirt_questions = questions_for(DESCRIPTIONS, "Shirts")
    for line, image in zip(records, [jpeg, png, jpeg, png], strict=True):
        info = inspect_image(image, ImageLimits(4 * 2**20, 40_000_000, 10_000, 1))
        expected = batch_input(
            image=image,
            image_format=check_image(info),
            questions=shirt_questions,
            structured_output="json_schema",
        )
        assert line["modelInput"] == expected
        block = line["modelInput"]["messages"][0]["content"][0]["image"]["source"]["bytes"]
        assert base64.b64decode(block) == image
    # and the ledger names each record's product, in order, without its image
    ledger = [
        LedgerRecord.model_validate(line)
        for line in _lines(s3, layout.attribute_ledger_key(RUN, GROUP))
    ]
    assert [(entry.record_id, entry.product_id) for entry in ledger] == [
        (record_id(n), _product(p)) for n, p in enumerate((0, 1, 2, 5))
    ]
    assert all(entry.languages == ("en", "de") for entry in ledger)
    # and the two products that cannot be asked are failures at stage attributes, saying why
    failures = {f.product_id: f for f in _failures(s3, "attribute-input")}
    assert set(failures) == {_product(3), _product(4)}
    assert {f.stage for f in failures.values()} == {Stage.ATTRIBUTES}
    assert "'Gone' is no longer configured" in failures[_product(3)].reason
    assert "Bedrock's limit for one image" in failures[_product(4)].reason
    assert "(image_too_large)" in failures[_product(4)].reason


def test_a_group_below_the_job_minimum_sends_nothing_and_reports_every_product(
    s3: Any,
) -> None:
    # Given a group of 3 good products, and an earlier attempt's ledger and input
    group = _put_group(s3, {"a": [_transform_line(n, make_jpeg(seed=n)) for n in range(3)]})
    put_lines(s3, RESULTS_BUCKET, layout.attribute_ledger_key(RUN, GROUP), [b"{}"])
    put_lines(s3, RESULTS_BUCKET, layout.attribute_input_key(RUN, GROUP, 7), [b"{}"])

    # When the step runs with Bedrock's minimum of 100 records per job
    result = _attribute_step(s3).run(_event(group))

    # Then no job input or ledger is left, and each product says to re-run online
    assert (result["records"], result["failed"]) == (0, 3)
    assert list_keys(s3, RESULTS_BUCKET, layout.group_prefix(RUN, GROUP)) == [
        layout.transform_manifest_key(RUN, GROUP)
    ]
    failures = _failures(s3, "attribute-input")
    assert [f.product_id for f in failures] == [_product(n) for n in range(3)]
    assert all(
        "fewer than a Bedrock batch inference job accepts (100)" in f.reason for f in failures
    )
    assert all("takes the online path" in f.reason for f in failures)


def test_the_attribute_input_step_refuses_to_run_for_the_endpoint_source(s3: Any) -> None:
    group = _put_group(s3, {"a": [_transform_line(0, make_jpeg())]})
    with pytest.raises(NotVisionSourceError, match="ATTRIBUTE_SOURCE is 'endpoint'"):
        _attribute_step(s3, AttributeSourceSettings()).run(_event(group))


def _output_line(identifier: str, output: dict[str, Any]) -> bytes:
    return json.dumps(
        {"recordId": identifier, "modelInput": {"messages": []}, "modelOutput": output}
    ).encode()


def test_the_attributes_jobs_answers_become_the_description_jobs_input(s3: Any) -> None:
    # Given a group the attribute step sent: 6 Shirts products
    group = _put_group(s3, {"a": [_transform_line(n, make_jpeg(seed=n)) for n in range(6)]})
    _attribute_step(s3, minRecordsPerJob=2).run(_event(group))
    # and the attributes job's output (in two files, in no particular order): two answers, a
    # refusal, an error record, an answer in the wrong shape, and a record never answered
    output = layout.attribute_output_prefix(RUN, GROUP) + "job123/"
    put_lines(
        s3,
        RESULTS_BUCKET,
        f"{output}records-0000.jsonl.out",
        [
            _output_line(record_id(3), vision_reply(SHIRT_ANSWERS, "json_schema")),
            _output_line(record_id(0), vision_reply(SHIRT_ANSWERS, "json_schema")),
            _output_line(record_id(1), refusal_reply()),
        ],
    )
    put_lines(
        s3,
        RESULTS_BUCKET,
        f"{output}records-0001.jsonl.out",
        [
            json.dumps(
                {
                    "recordId": record_id(2),
                    "modelInput": {},
                    "error": {"errorCode": 400, "errorMessage": "Malformed input request"},
                }
            ).encode(),
            _output_line(record_id(4), vision_reply({"fabric": 3}, "json_schema")),
        ],
    )
    s3.put_object(Bucket=RESULTS_BUCKET, Key=f"{output}manifest.json.out", Body=b"{}")
    job = {"arn": "arn:aws:bedrock:us-east-1:1:model-invocation-job/x", "status": "Completed"}

    # When the Bedrock input step runs, told how the attributes job ended
    result = _bedrock_input_step(s3, minRecordsPerJob=2).run(_event(group, attributesJob=job))

    # Then the two answered products go to the description job with their cleaned answers
    assert (result["records"], result["failed"]) == (2, 4)
    ledger = [
        LedgerRecord.model_validate(line) for line in _lines(s3, layout.ledger_key(RUN, GROUP))
    ]
    assert [(entry.record_id, entry.product_id) for entry in ledger] == [
        (record_id(0), _product(3)),
        (record_id(1), _product(0)),
    ]
    assert all(entry.attributes == SHIRT_ANSWERS for entry in ledger)
    assert list(ledger[0].attributes) == list(SHIRT_QUESTIONS)
    inputs = _lines(s3, layout.bedrock_input_key(RUN, GROUP, 0))
    assert [line["recordId"] for line in inputs] == [record_id(0), record_id(1)]
    # and the ledger records the vision source for the results step
    metadata = s3.head_object(Bucket=RESULTS_BUCKET, Key=layout.ledger_key(RUN, GROUP))["Metadata"]
    assert metadata == {
        ATTRIBUTE_SOURCE_METADATA: "vision-llm",
        ATTRIBUTE_MODEL_METADATA: VISION_MODEL,
    }
    assert attributes_source(metadata, endpoint_name="unused") == AttributesSource(
        kind="vision-llm", model=VISION_MODEL
    )
    # and every other product is a failure at stage attributes that says why
    reasons = {f.product_id: f.reason for f in _failures(s3, "bedrock-input")}
    assert {f.stage for f in _failures(s3, "bedrock-input")} == {Stage.ATTRIBUTES}
    assert set(reasons) == {_product(n) for n in (1, 2, 4, 5)}
    assert "declined to answer" in reasons[_product(1)]
    assert "error 400: Malformed input request" in reasons[_product(2)]
    assert "attribute_model_bad_response" in reasons[_product(4)]
    assert "no answer for record R0000000005 in the attributes job's output" in reasons[_product(5)]
    assert job["arn"] in reasons[_product(5)]


def test_a_group_whose_attribute_step_sent_nothing_builds_no_description_input(s3: Any) -> None:
    # Given a group the attribute step found too small (it reported every product)
    group = _put_group(s3, {"a": [_transform_line(0, make_jpeg())]})
    _attribute_step(s3).run(_event(group))
    # When the Bedrock input step runs with no attributes job
    result = _bedrock_input_step(s3).run(
        _event(group, attributesJob={"arn": None, "status": None, "message": None})
    )
    # Then it sends nothing and reports nothing twice
    assert result == {"group": GROUP, "records": 0, "failed": 0}
    assert list_keys(s3, RESULTS_BUCKET, layout.bedrock_input_prefix(RUN, GROUP)) == []


def test_a_ledger_from_before_the_vision_source_still_reads_as_the_endpoint() -> None:
    assert attributes_source({"transform-job": "job-7"}, endpoint_name="e") == AttributesSource(
        kind="endpoint", model="job-7"
    )
    assert attributes_source({}, endpoint_name="atelier-dev-vqa") == AttributesSource(
        kind="endpoint", model="atelier-dev-vqa"
    )
    with pytest.raises(ValueError, match="names no attribute model"):
        attributes_source({ATTRIBUTE_SOURCE_METADATA: "vision-llm"}, endpoint_name="e")


def test_in_tool_mode_the_records_are_anthropic_bodies_and_their_answers_are_read(
    s3: Any,
) -> None:
    # Given a vision model in tool mode (an InvokeModel job: Converse records may not carry tools)
    tool_mode = AttributeSourceSettings(
        kind="vision-llm", model_id=VISION_MODEL, structured_output="tool"
    )
    group = _put_group(s3, {"a": [_transform_line(n, make_jpeg(seed=n)) for n in range(2)]})
    step = _attribute_step(s3, tool_mode, minRecordsPerJob=2)
    # When the attribute input is written
    assert step.run(_event(group))["records"] == 2
    # Then each record is an Anthropic Messages body with the photo and the forced tool
    (line, _) = _lines(s3, layout.attribute_input_key(RUN, GROUP, 0))
    body = line["modelInput"]
    assert body["anthropic_version"] == "bedrock-2023-05-31"
    assert body["messages"][0]["content"][0]["type"] == "image"
    assert body["tool_choice"] == {"type": "tool", "name": "record_attributes"}
    assert "modelId" not in body
    # And the job's Anthropic answers (a tool call) are read like the online path's
    answer = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": [
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "record_attributes",
                "input": {"attributes": SHIRT_ANSWERS},
            }
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 1650, "output_tokens": 60},
    }
    output = layout.attribute_output_prefix(RUN, GROUP) + "job9/records-0000.jsonl.out"
    put_lines(s3, RESULTS_BUCKET, output, [_output_line(record_id(n), answer) for n in (0, 1)])
    reader = BedrockInputStep(
        settings=catalog_settings(bedrock=_limits(minRecordsPerJob=2)),
        descriptions=DESCRIPTIONS,
        files=RunFiles(RESULTS_BUCKET, s3=s3),
        attributes=tool_mode,
    )
    job = {"arn": "arn:aws:bedrock:us-east-1:1:model-invocation-job/y", "status": "Completed"}
    assert reader.run(_event(group, attributesJob=job))["records"] == 2
    ledger = _lines(s3, layout.ledger_key(RUN, GROUP))
    assert [entry["attributes"] for entry in ledger] == [SHIRT_ANSWERS, SHIRT_ANSWERS]
