"""Every workflow retries the same transient errors of a service: the one list per service in
infra/workflows/states.py, never a copy that drifts (the catalog once retried Bedrock quota errors
that the customize workflow explained instead)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from infra.workflows.states import (
    BEDROCK_TRANSIENT_ERRORS,
    LAMBDA_TRANSIENT_ERRORS,
    SAGEMAKER_TRANSIENT_ERRORS,
    SSM_TRANSIENT_ERRORS,
)
from tests.support import SynthesizedApp
from tests.templates import render_definition, resources

pytestmark = pytest.mark.infra

TRANSIENT_LISTS = {
    "Bedrock": BEDROCK_TRANSIENT_ERRORS,
    "Ssm": SSM_TRANSIENT_ERRORS,
    "SageMaker": SAGEMAKER_TRANSIENT_ERRORS,
    "Lambda": LAMBDA_TRANSIENT_ERRORS,
}
# Error names any transient list of any service holds (what marks a retrier as "transient").
TRANSIENT_NAMES = {name.split(".", 1)[1] for names in TRANSIENT_LISTS.values() for name in names}


def _states(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state, the states of Map and Parallel states included."""
    for name, state in states.items():
        yield name, state
        for key in ("ItemProcessor", "Iterator"):
            if key in state:
                yield from _states(state[key]["States"])
        for branch in state.get("Branches", []):
            yield from _states(branch["States"])


def transient_retriers(
    templates: dict[str, dict[str, Any]],
) -> Iterator[tuple[str, str, list[str]]]:
    """(state machine, state, ErrorEquals) of each retrier that names a transient error."""
    for template in templates.values():
        for logical_id, machine in resources(template, "AWS::StepFunctions::StateMachine").items():
            definition = json.loads(render_definition(machine["Properties"]["DefinitionString"]))
            for name, state in _states(definition["States"]):
                for retrier in state.get("Retry", []):
                    errors = retrier["ErrorEquals"]
                    if any(error.split(".", 1)[-1] in TRANSIENT_NAMES for error in errors):
                        yield logical_id, name, errors


def drifted(templates: dict[str, dict[str, Any]]) -> list[str]:
    """The retriers whose transient errors are not exactly their service's one list."""
    problems = []
    for machine, state, errors in transient_retriers(templates):
        service = errors[0].split(".", 1)[0]
        if errors != TRANSIENT_LISTS.get(service):
            problems.append(f"{machine} / {state}: {errors}")
    return problems


def test_every_workflow_retries_each_services_one_transient_list(
    dev_app: SynthesizedApp, variant_app: SynthesizedApp
) -> None:
    for app in (dev_app, variant_app):
        retriers = list(transient_retriers(app.templates))
        # The catalog, Titan and training workflows call all four services (the check is not
        # vacuous): SageMaker in every stage since a training run may start from an earlier job
        # (DescribeTrainingJob), and in the catalog's Batch Transform where it runs.
        services = {errors[0].split(".", 1)[0] for _, _, errors in retriers}
        assert services == set(TRANSIENT_LISTS), services
        assert drifted(app.templates) == []


SDK_SERVICES = {"bedrock": "Bedrock", "ssm": "Ssm", "sagemaker": "SageMaker"}


def unretried_sdk_calls(templates: dict[str, dict[str, Any]]) -> list[str]:
    """The AWS SDK tasks whose first retrier is not their service's one transient list."""
    problems = []
    for template in templates.values():
        for logical_id, machine in resources(template, "AWS::StepFunctions::StateMachine").items():
            definition = json.loads(render_definition(machine["Properties"]["DefinitionString"]))
            for name, state in _states(definition["States"]):
                resource = state.get("Resource", "")
                if ":aws-sdk:" not in resource:
                    continue
                service = SDK_SERVICES[resource.split(":aws-sdk:", 1)[1].split(":", 1)[0]]
                retriers = state.get("Retry", [])
                if not retriers or retriers[0]["ErrorEquals"] != TRANSIENT_LISTS[service]:
                    problems.append(f"{logical_id} / {name}")
    return problems


def test_every_sdk_call_of_every_workflow_retries_its_services_transient_errors(
    dev_app: SynthesizedApp, variant_app: SynthesizedApp
) -> None:
    for app in (dev_app, variant_app):
        assert unretried_sdk_calls(app.templates) == []


def test_a_drifted_list_is_found() -> None:
    # Given a state machine whose Bedrock retrier holds one error more than the shared list
    definition = {
        "States": {
            "Group": {
                "Type": "Map",
                "ItemProcessor": {
                    "States": {
                        "Create job": {
                            "Retry": [
                                {
                                    "ErrorEquals": [
                                        *BEDROCK_TRANSIENT_ERRORS,
                                        "Bedrock.ServiceQuotaExceededException",
                                    ]
                                },
                                {"ErrorEquals": ["Bedrock.ConflictException"]},
                            ]
                        }
                    }
                },
            }
        }
    }
    template = {
        "Resources": {
            "Machine": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {"DefinitionString": json.dumps(definition)},
            }
        }
    }
    # Then the check names it, and only it (the conflict retrier is no transient list)
    assert drifted({"stack": template}) == [
        "Machine / Create job: ['Bedrock.ThrottlingException', "
        "'Bedrock.InternalServerException', 'Bedrock.ServiceQuotaExceededException']"
    ]
