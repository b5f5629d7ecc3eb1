"""The test interpreter's Map states behave as Step Functions documents them (scoping,
batching, tolerated failures), so the workflow tests built on it can be trusted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.sfn_support import Interpreter, TaskFailedError

ECHO = "arn:aws:states:::lambda:invoke"


def _machine(map_state: dict[str, Any]) -> dict[str, Any]:
    return {
        "QueryLanguage": "JSONata",
        "StartAt": "Setup",
        "States": {
            "Setup": {"Type": "Pass", "Assign": {"outer": "seen"}, "Next": "Map"},
            "Map": {**map_state, "End": True},
        },
    }


def _echo_processor(mode: str) -> dict[str, Any]:
    return {
        "ProcessorConfig": {"Mode": mode},
        "StartAt": "Echo",
        "States": {
            "Echo": {
                "Type": "Task",
                "Resource": ECHO,
                "Arguments": {
                    "input": "{% $states.input %}",
                    "outer": "{% $exists($outer) ? $outer : 'unseen' %}",
                },
                "Assign": {"outer": "overwritten"},
                "Output": "{% $states.result %}",
                "End": True,
            }
        },
    }


def _echo(resource: str, arguments: Any) -> Any:
    assert resource == ECHO
    if arguments["input"] == "boom" or arguments["input"].get("value") == "boom":
        raise TaskFailedError("Boom", "asked to fail")
    return arguments


def test_inline_iterations_read_outer_variables_but_do_not_change_them() -> None:
    machine = _machine(
        {
            "Type": "Map",
            "Items": "{% ['a', 'b'] %}",
            "ItemSelector": {
                "value": "{% $states.context.Map.Item.Value %}",
                "index": "{% $states.context.Map.Item.Index %}",
            },
            "ItemProcessor": _echo_processor("INLINE"),
        }
    )
    outcome = Interpreter(machine, _echo).run({})
    assert outcome.status == "SUCCEEDED"
    assert outcome.output == [
        {"input": {"value": "a", "index": 0}, "outer": "seen"},
        {"input": {"value": "b", "index": 1}, "outer": "seen"},
    ]
    assert outcome.variables["outer"] == "seen"


def test_distributed_children_see_no_outer_variables_and_failures_are_tolerated_as_asked() -> None:
    state = {
        "Type": "Map",
        "Items": "{% ['a', 'boom'] %}",
        "ItemSelector": {"value": "{% $states.context.Map.Item.Value %}"},
        "ItemProcessor": _echo_processor("DISTRIBUTED"),
    }
    tolerant = Interpreter(_machine({**state, "ToleratedFailurePercentage": 50}), _echo).run({})
    assert tolerant.status == "SUCCEEDED"
    assert tolerant.output[0] == {"input": {"value": "a"}, "outer": "unseen"}
    strict = Interpreter(_machine({**state, "ToleratedFailurePercentage": 0}), _echo).run({})
    assert strict.status == "FAILED"
    assert strict.error == "States.ExceedToleratedFailureThreshold"
    assert "Boom: asked to fail" in str(strict.cause)


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="items")
        yield client


def test_an_item_reader_feeds_batches_of_items_with_their_batch_input(s3: Any) -> None:
    s3.put_object(Bucket="items", Key="m.jsonl", Body=b'{"n": 1}\n{"n": 2}\n\n{"n": 3}\n')
    machine = _machine(
        {
            "Type": "Map",
            "ItemReader": {
                "Resource": "arn:aws:states:::s3:getObject",
                "ReaderConfig": {"InputType": "JSONL"},
                "Arguments": {"Bucket": "items", "Key": "m.jsonl"},
            },
            "ItemBatcher": {"MaxItemsPerBatch": 2, "BatchInput": {"tag": "{% $outer %}"}},
            "ItemProcessor": _echo_processor("DISTRIBUTED"),
            "ResultWriter": {
                "Resource": "arn:aws:states:::s3:putObject",
                "Arguments": {"Bucket": "items", "Prefix": "out/"},
            },
        }
    )
    outcome = Interpreter(machine, _echo, s3=s3).run({})
    assert outcome.status == "SUCCEEDED"
    inputs = [arguments["input"] for resource, arguments in outcome.calls if resource == ECHO]
    assert inputs == [
        {"Items": [{"n": 1}, {"n": 2}], "BatchInput": {"tag": "seen"}},
        {"Items": [{"n": 3}], "BatchInput": {"tag": "seen"}},
    ]
    assert outcome.output == {
        "ResultWriterDetails": {"Bucket": "items", "Key": "out/manifest.json"}
    }
    assert ("arn:aws:states:::s3:putObject", {"Bucket": "items", "Prefix": "out/"}) in outcome.calls
