"""The workflow tests' interpreter evaluates JSONata as Step Functions does: with the reference
JavaScript implementation, where a missing field is undefined (not null) and a field that
evaluates to undefined fails the state. The interpreter turns that into a failed test."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.sfn_support import Clock, ExpressionError, Interpreter, reference_jsonata

TASK = "arn:aws:states:::lambda:invoke"


def _task_machine(arguments: Any, **extra: Any) -> dict[str, Any]:
    return {
        "QueryLanguage": "JSONata",
        "StartAt": "Call",
        "States": {
            "Call": {
                "Type": "Task",
                "Resource": TASK,
                "Arguments": arguments,
                "End": True,
                **extra,
            },
            "Caught": {"Type": "Succeed"},
        },
    }


def _echo(resource: str, arguments: Any) -> Any:
    assert resource == TASK
    return arguments


def test_a_field_that_evaluates_to_undefined_fails_the_test() -> None:
    # The catalog manifests' old defect: a row without `category`. The Python port answered
    # null and the run went on; JavaScript JSONata answers undefined, and Step Functions fails
    # the state with States.QueryEvaluationError.
    machine = _task_machine({"category": "{% $states.input.row.category %}"})
    with pytest.raises(ExpressionError) as failure:
        Interpreter(machine, _echo).run({"row": {"product_id": "p1"}})
    message = str(failure.value)
    assert "Call/Arguments/category" in message
    assert "'$states.input.row.category' returned nothing (undefined)" in message
    assert "States.QueryEvaluationError" in message


def test_a_catch_of_every_error_does_not_hide_an_undefined_field() -> None:
    machine = _task_machine(
        {"value": "{% $states.input.missing %}"},
        Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
    )
    with pytest.raises(ExpressionError):
        Interpreter(machine, _echo).run({})


def test_a_guarded_optional_field_is_null_and_present_values_pass_through() -> None:
    guarded = "{% $exists($states.input.row.category) ? $states.input.row.category : null %}"
    machine = _task_machine({"category": guarded, "id": "{% $states.input.row.product_id %}"})
    without = Interpreter(machine, _echo).run({"row": {"product_id": "p1"}})
    assert without.output == {"category": None, "id": "p1"}
    with_category = Interpreter(machine, _echo).run({"row": {"product_id": 7, "category": "x"}})
    assert with_category.output == {"category": "x", "id": 7}


def test_an_expression_jsonata_refuses_fails_the_test() -> None:
    machine = _task_machine({"n": "{% $number('twelve') %}"})
    with pytest.raises(ExpressionError, match=r"Call/Arguments/n: .*D3030"):
        Interpreter(machine, _echo).run({})


def test_a_choice_condition_must_be_a_boolean() -> None:
    machine = {
        "QueryLanguage": "JSONata",
        "StartAt": "Route",
        "States": {
            "Route": {
                "Type": "Choice",
                "Choices": [{"Condition": "{% $states.input.route %}", "Next": "Done"}],
                "Default": "Done",
            },
            "Done": {"Type": "Succeed"},
        },
    }
    assert Interpreter(machine, _echo).run({"route": True}).status == "SUCCEEDED"
    with pytest.raises(ExpressionError, match="not a boolean"):
        Interpreter(machine, _echo).run({"route": "batch"})


def test_the_step_functions_functions_and_the_test_clock() -> None:
    machine = _task_machine(
        {
            "name": "{% 'job-' & $now('[Y0001][M01][D01]-[H01][m01][s01]') & '-' "
            "& $substring($uuid(), 0, 8) %}",
            "second": "{% $uuid() %}",
            "now": "{% $now() %}",
            "millis": "{% $millis() %}",
            "parsed": "{% $parse($states.input.cause).errorMessage %}",
        }
    )
    uuids = iter(["aaaaaaaa-1", "bbbbbbbb-2", "cccccccc-3"])
    interpreter = Interpreter(machine, _echo, clock=Clock(millis=1_785_000_000_000), uuids=uuids)
    outcome = interpreter.run({"cause": '{"errorMessage": "boom"}'})
    assert outcome.output == {
        "name": "job-20260725-172000-aaaaaaaa",
        "second": "bbbbbbbb-2",
        "now": "2026-07-25T17:20:00.000Z",
        "millis": 1_785_000_000_000,
        "parsed": "boom",
    }


def test_a_states_data_is_never_evaluated_as_an_expression() -> None:
    # No Output field: the output is the result, even where it looks like an expression.
    machine = _task_machine({"text": "{% $states.input.text %}"})
    outcome = Interpreter(machine, _echo).run({"text": "{% $undefinedVariable %}"})
    assert outcome.output == {"text": "{% $undefinedVariable %}"}


def test_one_node_process_answers_every_interpreter_quickly() -> None:
    first = Interpreter(_task_machine({}), _echo)
    second = Interpreter(_task_machine({}), _echo)
    assert first._jsonata is second._jsonata is reference_jsonata()
    states = {"input": {"row": {"product_id": "p1", "image_key": "a.jpg"}}}
    started = time.perf_counter()
    for _ in range(500):
        first.evaluate({"id": "{% $states.input.row.product_id %}"}, {}, states)
    # Well under 1 ms each here; a process per expression would take tens of milliseconds each.
    assert time.perf_counter() - started < 5
