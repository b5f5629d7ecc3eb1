"""Every SageMaker job and model Atelier defines runs without internet access, and nothing a
training job is given points at the Hugging Face Hub: base models come from the stage's models
bucket (docs/base-models.md), code and packages from the code archive.

Read from every synthesized template of every stage, Map children included, so a new workflow or
model that forgets isolation fails here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from infra.models import trained_models
from tests.support import SynthesizedApp
from tests.templates import render_definition, resources

pytestmark = pytest.mark.infra

TRAINING_JOB = ":states:::sagemaker:createTrainingJob"
# The catalog creates its transform model through the AWS SDK integration.
CREATE_MODEL = ":sagemaker:createModel"
HUB_MARKERS = ("huggingface.co", "hf.co/", "https://", "http://")


def _states(states: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for state in states.values():
        yield state
        for nested in (state.get("ItemProcessor"), state.get("Iterator")):
            if nested:
                yield from _states(nested["States"])
        for branch in state.get("Branches", []):
            yield from _states(branch["States"])


def _tasks(app: SynthesizedApp, marker: str) -> Iterator[tuple[str, dict[str, Any], str]]:
    """(where, the task's arguments, its whole state machine's definition as text)."""
    for stack, template in app.templates.items():
        for logical_id, machine in resources(template, "AWS::StepFunctions::StateMachine").items():
            text = render_definition(machine["Properties"]["DefinitionString"])
            for state in _states(json.loads(text)["States"]):
                if marker in str(state.get("Resource", "")):
                    yield f"{stack}/{logical_id}", state["Arguments"], text


@pytest.fixture(params=["dev", "prod", "variant"])
def app(request: pytest.FixtureRequest, synthesized_apps: dict[str, SynthesizedApp]) -> Any:
    if request.param == "variant":
        return request.getfixturevalue("variant_app")
    return synthesized_apps[request.param]


def test_every_training_job_runs_isolated_from_the_bucket_only(app: SynthesizedApp) -> None:
    jobs = list(_tasks(app, TRAINING_JOB))
    # One per trained model of the registry.
    assert len(jobs) == len(trained_models()), [where for where, _, _ in jobs]
    for where, arguments, definition in jobs:
        assert arguments["EnableNetworkIsolation"] is True, where
        assert arguments["Environment"]["HF_HUB_OFFLINE"] == "1", where
        channels = {c["ChannelName"]: c for c in arguments["InputDataConfig"]}
        assert {"model", "code"} <= set(channels), where
        # The code comes as a channel: the toolkit extracts a local file, it downloads nothing.
        submit = r"sagemaker_submit_directory\W+/opt/ml/input/data/code/"
        assert re.search(submit, definition), where
        # Nothing the workflow gives a job names a web address (the Hub or any other).
        assert not [marker for marker in HUB_MARKERS if marker in definition], where


def _models(app: SynthesizedApp) -> list[tuple[str, dict[str, Any]]]:
    """Endpoint models, and the models the catalog workflow creates for Batch Transform."""
    models = [
        (f"{stack}/{logical_id}", model["Properties"])
        for stack, template in app.templates.items()
        for logical_id, model in resources(template, "AWS::SageMaker::Model").items()
    ]
    return models + [(where, arguments) for where, arguments, _ in _tasks(app, CREATE_MODEL)]


def test_every_model_runs_isolated(app: SynthesizedApp) -> None:
    for where, properties in _models(app):
        assert properties.get("EnableNetworkIsolation") is True, where


def test_the_variant_stage_has_models_to_check(variant_app: SynthesizedApp) -> None:
    # The shipped stages host nothing yet; the variant hosts every endpoint and runs the
    # catalog's transform, so the check above has models to read.
    wheres = [where for where, _ in _models(variant_app)]
    assert len([w for w in wheres if "hosting" in w]) >= 3, wheres
    assert [w for w in wheres if "catalog" in w], wheres
