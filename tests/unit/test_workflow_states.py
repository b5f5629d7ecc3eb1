"""The Step Functions helpers every workflow builds with (infra/workflows/states.py): what a
catch-all failure, a caught error and a parameter read render to, in a bare stack."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_stepfunctions as sfn

from infra.workflows.states import (
    caught_failure,
    error_output,
    fail_states,
    read_parameter,
)


def _state(state: sfn.State) -> dict[str, Any]:
    rendered: dict[str, Any] = Stack.of(state).resolve(state.to_state_json())
    return rendered


def test_caught_failure_names_context_error_cause_and_note() -> None:
    stack = Stack(App(), "Test")
    failed = caught_failure(
        fail_states(stack, "Test"), "Failed", "'could not read ' & $x & ': '", note=" (try later)"
    )
    rendered = _state(failed)
    assert rendered["Cause"] == (
        "{% 'could not read ' & $x & ': ' & $states.input.Error & ': ' & $states.input.Cause "
        "& ' (try later)' %}"
    )
    assert rendered["Error"] == "{% $states.input.Error %}"


def test_caught_failure_refuses_a_note_that_would_end_its_literal() -> None:
    stack = Stack(App(), "Test")
    with pytest.raises(ValueError, match="single quote"):
        caught_failure(fail_states(stack, "Test"), "Failed", "'x: '", note=" (it's late)")


def test_read_parameter_assigns_the_value_and_catches_nothing_itself() -> None:
    stack = Stack(App(), "Test")
    task = read_parameter(
        stack,
        "Read",
        state_name="Read it",
        parameter=("arn:aws:ssm:eu-west-1:111122223333:parameter/a/b", "/a/b"),
        assign_to="value",
    )
    rendered = _state(task)
    assert rendered["Arguments"] == {"Name": "/a/b"}
    assert rendered["Assign"] == {"value": "{% $states.result.Parameter.Value %}"}
    assert json.dumps(rendered["Resource"]).endswith(':states:::aws-sdk:ssm:getParameter"]]}')
    assert [retrier["ErrorEquals"] for retrier in rendered["Retry"]] == [
        [
            "Ssm.ThrottlingException",
            "Ssm.TooManyUpdatesException",
            "Ssm.InternalServerErrorException",
        ]
    ]
    assert "Catch" not in rendered


def test_error_output_keeps_both_fields_of_the_caught_error() -> None:
    assert error_output() == {
        "Error": "{% $states.errorOutput.Error %}",
        "Cause": "{% $states.errorOutput.Cause %}",
    }
