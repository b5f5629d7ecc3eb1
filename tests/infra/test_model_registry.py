"""A fifth model added through the registry alone: `register` one `Model` (its own workflow spec
here, its hosting section from the stage config) and the app creates its endpoint, its training
workflow and their SSM names, and the command line offers it, with no other module edited."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from infra.config import StageConfig
from infra.constructs.training_workflow import TrainingWorkflowSpec
from infra.models import (
    VQA,
    Model,
    Training,
    hosted_models,
    models,
    register,
    trained_models,
    unregister,
)
from infra.training_specs import vqa
from tests.support import ROOT as REPO_ROOT
from tests.support import SynthesizedApp, synthesize
from tests.templates import one, resources, ssm_parameters

TOY_ARCHIVE = "s3://atelier-toy-models/toy/model.tar.gz"


def toy_hosting(config: StageConfig) -> Any:
    """The VQA hosting settings with an archive: a toy needs no config section of its own."""
    hosting = config.vqa.hosting
    if hasattr(hosting, "model_copy"):
        return hosting.model_copy(update={"model_data_url": TOY_ARCHIVE, "endpoint_name": None})
    return dataclasses.replace(hosting, model_data_url=TOY_ARCHIVE)


def toy_workflow_spec(config: StageConfig) -> TrainingWorkflowSpec:
    """The model's own code: here the VQA job under the toy's names."""
    return dataclasses.replace(
        vqa.workflow_spec(config),
        id_prefix="Toy",
        name="toy",
        job_name_prefix=config.resource_name("toy"),
        title="Toy",
        model_data_parameter=TOY.model_data_parameter(config),
    )


TOY = Model(
    key="toy",
    title="toy model",
    construct_id="Toy",
    label="toy endpoint",
    hosting_from=toy_hosting,
    training_from=lambda config: config.vqa.training,
    training=Training(
        workflow="toy",
        construct_id="Toy",
        title="Toy",
        summary="Train the toy model.",
        dataset_prefix="vqa/",
        spec=f"{__name__}:toy_workflow_spec",
        hyperparameters=VQA.training.hyperparameters if VQA.training else (),
        command="toy",
    ),
)


@pytest.fixture(scope="module")
def toy_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynthesizedApp]:
    register(TOY)
    try:
        yield synthesize("dev", tmp_path_factory.mktemp("toy-app"))
    finally:
        unregister(TOY.key)


def test_the_registry_knows_the_built_in_models() -> None:
    assert [model.key for model in models()] == ["vqa", "dreambooth", "styling", "lora"]
    # The LoRA adapters have a training workflow and no endpoint in the app yet.
    assert [model.key for model in hosted_models()] == ["vqa", "dreambooth", "styling"]
    assert [m.training.workflow for m in trained_models() if m.training] == [
        "vqa",
        "dreambooth",
        "inpainting",
        "lora",
    ]


@pytest.mark.parametrize(
    "clash",
    [
        {"key": "vqa"},
        {"construct_id": "Dreambooth"},
        {"training": dataclasses.replace(TOY.training, workflow="inpainting")}
        if TOY.training
        else {},
    ],
)
def test_a_model_that_would_share_resources_is_refused(clash: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="has the same"):
        register(dataclasses.replace(TOY, **clash))
    assert [model.key for model in models()] == ["vqa", "dreambooth", "styling", "lora"]


def test_a_registered_model_gets_its_endpoint(toy_app: SynthesizedApp) -> None:
    hosting = toy_app.templates["atelier-dev-hosting"]
    logical_id, endpoint = one(hosting, "AWS::SageMaker::Endpoint", "ToyEndpoint")
    assert endpoint["EndpointName"] == "atelier-dev-toy"
    # The other models stay unhosted in dev: the toy's endpoint is the only one.
    assert list(resources(hosting, "AWS::SageMaker::Endpoint")) == [logical_id]
    assert "atelier-dev-toy on ml." in hosting["Description"]


def test_a_registered_model_gets_its_training_workflow(toy_app: SynthesizedApp) -> None:
    training = toy_app.templates["atelier-dev-training"]
    machines = resources(training, "AWS::StepFunctions::StateMachine")
    names = sorted(machine["Properties"]["StateMachineName"] for machine in machines.values())
    assert names == [
        "atelier-dev-dreambooth-training",
        "atelier-dev-inpainting-training",
        "atelier-dev-lora-training",
        "atelier-dev-toy-training",
        "atelier-dev-vqa-training",
    ]
    assert "Toy training workflows" in training["Description"]


def test_a_registered_model_publishes_its_names(toy_app: SynthesizedApp) -> None:
    published = {
        name
        for stack in ("atelier-dev-hosting", "atelier-dev-training")
        for name in ssm_parameters(toy_app.templates[stack])
    }
    assert {
        "/atelier/dev/hosting/toy-endpoint-name",
        "/atelier/dev/hosting/toy-model-data-url",
        "/atelier/dev/hosting/toy-model-role-arn",
        "/atelier/dev/training/toy-state-machine-arn",
        "/atelier/dev/training/toy-execution-role-arn",
        "/atelier/dev/training/toy-model-data-url-parameter",
    } <= published


def test_a_registered_model_is_on_the_dashboard_and_in_the_lifecycle_inventory(
    toy_app: SynthesizedApp,
) -> None:
    api = json.dumps(toy_app.templates["atelier-dev-api"])
    assert "atelier-dev-toy" in api
    assert "atelier-dev-toy-training" in api
    bedrock = json.dumps(toy_app.templates["atelier-dev-bedrock"])
    assert '\\"configKey\\":\\"toy.hosting\\"' in bedrock.replace(" ", "")


TOY_CLI = f"""
import sys
sys.path.insert(0, {str(REPO_ROOT)!r})
from infra.models import register
from tests.infra.test_model_registry import TOY
register(TOY)
from typer.testing import CliRunner
from atelier_cli.main import app
runner = CliRunner()
for args in (["train", "--help"], ["endpoint", "use", "--help"], ["jobs", "list", "--help"]):
    result = runner.invoke(app, args)
    print("###", " ".join(args))
    print(result.output)
"""


def cli_help(script: str) -> str:
    # A fresh interpreter: the commands read the registry when they are imported. Wide enough
    # for rich not to wrap a list of choices.
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
        env={**os.environ, "COLUMNS": "300"},
        timeout=120,
    ).stdout


def test_a_registered_model_is_offered_by_the_command_line() -> None:
    output = cli_help(TOY_CLI)
    train, endpoint, jobs = output.split("###")[1:]
    assert "Train the toy model." in train
    # The deprecated name of the styling command is hidden from the list.
    assert "│ inpainting" not in train
    assert "vqa|dreambooth|styling|toy" in endpoint
    assert "styling|lora|toy|titan" in jobs


def test_without_registration_the_command_line_has_no_toy() -> None:
    output = cli_help(TOY_CLI.replace("register(TOY)", ""))
    assert "Train the toy model." not in output
    assert "styling|toy" not in output
