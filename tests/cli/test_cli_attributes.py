"""`atelier attributes compare` on a tiny dataset that `vqa.prepare` built, with both sources on
Stubber-checked clients: the endpoint answers every question right, the vision model gets the
fabric wrong and refuses one photo."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto import mock_aws

from atelier_cli.commands.attributes import DEFAULT_INSTANCE_PRICE, Question, read_dataset
from tests.cli_support import REGION, default_hooks, invoke, json_document, publish
from tests.vision_support import expected_request, refusal_reply, vision_reply
from tests.vqa_data_support import make_fashion_dataset
from vqa.prepare import build_dataset

ENDPOINT = "atelier-dev-vqa"
MODEL = "global.anthropic.claude-sonnet-4-6"
STEP_SECONDS = 0.25  # every clock reading advances this much: each call "takes" 250 ms


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    source = make_fashion_dataset(tmp_path / "fashion", products=12)
    out = tmp_path / "prepared"
    build_dataset(source, out, article_types=None, validation_fraction=0.25, seed=1)
    return out


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        publish("hosting", "vqa-endpoint-name", ENDPOINT)
        yield


class _Stream:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self, *_: Any) -> bytes:
        data, self._data = self._data, b""
        return data


def _stubbed_clients(dataset: Path) -> tuple[Any, Any, Stubber, Stubber, int]:
    questions, examples = read_dataset(dataset, "validation", None)
    sagemaker = boto3.client("sagemaker-runtime", region_name=REGION)
    bedrock = boto3.client("bedrock-runtime", region_name=REGION)
    endpoint, vision = Stubber(sagemaker), Stubber(bedrock)
    for index, example in enumerate(examples):
        image = example.image.read_bytes()
        truth = {q.name: example.expected.get(q.name, "") for q in questions}
        payload = json.dumps({"attributes": truth}).encode()
        endpoint.add_response(
            "invoke_endpoint",
            {
                "Body": StreamingBody(_Stream(payload), len(payload)),
                "ContentType": "application/json",
            },
            expected_params={
                "EndpointName": ENDPOINT,
                "ContentType": "application/json",
                "Accept": "application/json",
                "Body": json.dumps(
                    {
                        "image": base64.b64encode(image).decode(),
                        "questions": [{"name": q.name, "text": q.text} for q in questions],
                    }
                ),
            },
        )
        request = expected_request(image, questions, "json_schema", model_id=MODEL)
        if index == 0:
            vision.add_response("converse", refusal_reply(), expected_params=request)
        else:
            # Right but for the fabric, and without the endpoint's "Fabric: " label style.
            answers = {name: value.split(": ")[-1] for name, value in truth.items()}
            answers["fabric"] = "Silk"
            vision.add_response(
                "converse", vision_reply(answers, "json_schema"), expected_params=request
            )
    return sagemaker, bedrock, endpoint, vision, len(examples)


def test_compare_prints_accuracy_cost_and_latency_side_by_side(aws: None, dataset: Path) -> None:
    sagemaker, bedrock, endpoint, vision, photos = _stubbed_clients(dataset)
    assert photos >= 3
    hooks = default_hooks(**{"sagemaker-runtime": sagemaker, "bedrock-runtime": bedrock})
    ticks = itertools.count(step=STEP_SECONDS)
    hooks.clock = lambda: next(ticks)

    with endpoint, vision:
        result = invoke(["--json", "attributes", "compare", "--dataset", str(dataset)], hooks=hooks)
        endpoint.assert_no_pending_responses()
        vision.assert_no_pending_responses()

    assert result.exit_code == 0, result.output
    document = json_document(result)["result"]
    assert document["images"] == photos
    ours, theirs = document["sources"]["endpoint"], document["sources"]["vision-llm"]
    assert ours["model"] == ENDPOINT
    assert theirs["model"] == MODEL
    # The endpoint is right everywhere; the vision model never on fabric, and on nothing for
    # the photo it refused.
    assert {entry["accuracy"] for entry in ours["accuracy"].values()} == {1.0}
    assert theirs["accuracy"]["fabric"]["correct"] == 0
    colour = theirs["accuracy"]["colour"]
    assert (colour["correct"], colour["total"]) == (photos - 1, photos)
    assert theirs["errors"] == {"attribute_model_refused": 1}
    # Cost: the tokens Bedrock counted at $3/$15 per million, per photo sent (1,650 in for
    # each, the refused one included; 110 out for each answer); endpoint: the instance-hour
    # over the measured 3600 / 0.25 s = 14,400 images per hour.
    tokens_cost = (photos * 1650 * 3 + (photos - 1) * 110 * 15) / 1e6
    assert theirs["costPer1000Images"] == pytest.approx(tokens_cost / photos * 1000, abs=1e-4)
    assert ours["costPer1000Images"] == pytest.approx(
        DEFAULT_INSTANCE_PRICE / 14_400 * 1000, abs=1e-4
    )
    assert ours["latencyMs"]["p50"] == theirs["latencyMs"]["p50"] == 250.0
    assert document["pricesChecked"] == "2026-12-07"


def test_compare_prints_a_table_for_people(aws: None, dataset: Path) -> None:
    sagemaker, bedrock, endpoint, vision, _ = _stubbed_clients(dataset)
    hooks = default_hooks(**{"sagemaker-runtime": sagemaker, "bedrock-runtime": bedrock})

    with endpoint, vision:
        result = invoke(
            ["attributes", "compare", "--dataset", str(dataset), "--images-per-hour", "3600"],
            hooks=hooks,
        )

    assert result.exit_code == 0, result.output
    assert "fabric" in result.stdout
    assert "cost / 1,000 images" in result.stdout
    assert "$0.42" in result.stdout  # $1.515 an hour over 3,600 images an hour, x 1,000
    assert "latency p95" in result.stdout
    assert "3600 images/hour (given)" in result.stdout.replace(",", "")


def test_compare_refuses_a_folder_that_is_not_a_prepared_dataset(tmp_path: Path) -> None:
    result = invoke(["--json", "attributes", "compare", "--dataset", str(tmp_path)])

    assert result.exit_code == 2
    assert json_document(result)["error"]["code"] == "dataset_invalid"


def test_compare_needs_prices_for_a_model_it_does_not_know(dataset: Path) -> None:
    result = invoke(
        ["--json", "attributes", "compare", "--dataset", str(dataset), "--model-id", "other.x"]
    )

    assert result.exit_code == 2
    assert json_document(result)["error"]["code"] == "price_unknown"


def test_the_dataset_reader_groups_rows_by_photo(dataset: Path) -> None:
    questions, examples = read_dataset(dataset, "validation", 2)

    assert Question("fabric", "What is the fabric of the garment in this picture?") in questions
    assert len(examples) == 2
    assert all(example.image.is_file() for example in examples)
    assert all("colour" in example.expected for example in examples)
