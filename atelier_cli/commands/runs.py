"""`atelier jobs list|watch`: the executions of the stage's workflows, and one followed live."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from botocore.exceptions import ClientError
from rich.console import Console
from rich.table import Table

from atelier_cli.aws import translated_errors
from atelier_cli.errors import NotDeployedError, UsageError
from atelier_cli.executions import watch_and_report
from atelier_cli.registry import choices, trained_models
from atelier_cli.runtime import JsonFlag, Run, command

ALL = "all"


class Status(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    ABORTED = "ABORTED"


# Each kind's workflow: the section and name its stack publishes the ARN under. A trained model's
# kind is its `atelier train` command.
WORKFLOWS = {
    **{
        model.training.command: ("training", f"{model.training.workflow}-state-machine-arn")
        for model in trained_models()
        if model.training is not None
    },
    "titan": ("bedrock", "titan-customize-state-machine-arn"),
    "release": ("bedrock", "titan-release-state-machine-arn"),
    "catalog": ("catalog", "describe-catalog-state-machine-arn"),
}
# Old kind names, still accepted for one release.
DEPRECATED_KINDS = {
    old: model.training.command
    for model in trained_models()
    if model.training is not None
    for old in model.training.deprecated_commands
}
KINDS = (ALL, *WORKFLOWS, *DEPRECATED_KINDS)
if TYPE_CHECKING:
    KindChoice = str
else:
    KindChoice = choices("KindChoice", KINDS)

app = typer.Typer(help="Workflow runs of the stage: list them, follow one.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="jobs")


def state_machines(run: Run, kind: str) -> tuple[dict[str, str], list[str]]:
    """The ARNs of the workflows asked for; with `all`, stacks not deployed are skipped (and
    named in the returned notes) instead of failing the listing."""
    if kind in DEPRECATED_KINDS:
        run.note(f"--kind {kind} is deprecated; use --kind {DEPRECATED_KINDS[kind]}")
        kind = DEPRECATED_KINDS[kind]
    kinds = list(WORKFLOWS) if kind == ALL else [kind]
    found: dict[str, str] = {}
    skipped: list[str] = []
    for each in kinds:
        section, name = WORKFLOWS[each]
        try:
            found[each] = run.resources.published(section, name)
        except NotDeployedError as error:
            if kind != ALL:
                raise
            skipped.append(f"{each}: {error.message}")
    return found, skipped


def list_runs(
    run: Run, arns: dict[str, str], status: Status | None, limit: int
) -> list[dict[str, Any]]:
    stepfunctions = run.aws.client("stepfunctions")
    runs: list[dict[str, Any]] = []
    for kind, arn in arns.items():
        arguments: dict[str, Any] = {"stateMachineArn": arn, "maxResults": limit}
        if status is not None:
            arguments["statusFilter"] = status.value
        with translated_errors(f"list the {kind} workflow's executions"):
            # The newest `limit` of each workflow are enough for the newest `limit` overall.
            executions = stepfunctions.list_executions(**arguments).get("executions", [])
        for execution in executions:
            runs.append(
                {
                    "kind": kind,
                    "name": execution["name"],
                    "executionArn": execution["executionArn"],
                    "status": execution["status"],
                    "startDate": execution["startDate"].isoformat(),
                    "stopDate": execution["stopDate"].isoformat()
                    if execution.get("stopDate")
                    else None,
                }
            )
    runs.sort(key=lambda entry: entry["startDate"], reverse=True)
    return runs[:limit]


@app.command("list")
def list_jobs(
    ctx: typer.Context,
    kind: Annotated[KindChoice, typer.Option("--kind", help="Which workflow.")] = ALL,
    status: Annotated[Status | None, typer.Option("--status", help="Only runs in it.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 20,
    json_output: JsonFlag = False,
) -> None:
    """The newest runs of the stage's workflows (training, customization, release, catalog)."""
    with command(ctx, "jobs list", json_output) as run:
        arns, skipped = state_machines(run, kind)
        runs = list_runs(run, arns, status, limit)
        for note in skipped:
            run.note(f"skipped {note}")

        def human(console: Console) -> None:
            table = Table(title=f"Runs of {run.options.stage}")
            for column in ("kind", "name", "status", "started", "ended"):
                table.add_column(column)
            for entry in runs:
                colour = {"SUCCEEDED": "green", "RUNNING": "cyan"}.get(entry["status"], "red")
                table.add_row(
                    entry["kind"],
                    entry["name"],
                    f"[{colour}]{entry['status']}[/]",
                    entry["startDate"],
                    entry["stopDate"] or "",
                )
            console.print(table)
            console.print("Follow one: atelier jobs watch <name or execution ARN>")

        run.done({"runs": runs, "skipped": skipped}, human)


def resolve_execution(run: Run, reference: str) -> str:
    """An execution ARN as it is, or an execution name looked up in the stage's workflows."""
    if reference.startswith("arn:"):
        if ":execution:" not in reference:
            raise UsageError(
                f"{reference!r} is not a Step Functions execution ARN",
                fix="pass an execution ARN or name (atelier jobs list shows them)",
            )
        return reference
    arns, _ = state_machines(run, ALL)
    for arn in arns.values():
        candidate = arn.replace(":stateMachine:", ":execution:") + f":{reference}"
        stepfunctions = run.aws.client("stepfunctions")
        try:
            stepfunctions.describe_execution(executionArn=candidate)
        except ClientError:
            continue
        return candidate
    raise NotDeployedError(
        f"no run named {reference!r} in the stage's workflows",
        fix="pass a name or ARN that atelier jobs list shows",
        code="execution_not_found",
    )


@app.command("watch")
def watch(
    ctx: typer.Context,
    execution: Annotated[str, typer.Argument(help="Execution ARN, or name from jobs list.")],
    interval: Annotated[float, typer.Option("--interval", min=1)] = 30,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=1, help="Stop watching after this many seconds (exit 5)."),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Follow a run until it ends: its step, and its training or customization job's status and
    metrics. Exit 0 if it succeeded, 6 if it failed, timed out or was aborted."""
    with command(ctx, "jobs watch", json_output) as run:
        arn = resolve_execution(run, execution)
        snapshot = watch_and_report(run, arn, interval=interval, timeout=timeout)
        result = snapshot.to_dict()
        run.done(result, f"[green]{snapshot.line()}[/]")
