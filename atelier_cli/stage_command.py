"""`atelier status`: which of the stage's stacks are deployed and what they publish. The first
command to run after `make deploy`, and the one that explains every "not deployed" error."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from atelier_cli.errors import AccessError
from atelier_cli.output import escape
from atelier_cli.registry import MODEL_DATA_URL, trained_models
from atelier_cli.runtime import JsonFlag, command

# The stacks in deployment order, by the section their names are published under.
SECTIONS = ("data", "training", "hosting", "bedrock", "api", "catalog")
# Values the workflows record at run time (not stack resources): each trained model's archive,
# and the customized image model's throughput.
RECORDED = (
    *(
        (model.key, MODEL_DATA_URL, f"atelier train {model.training.command}")
        for model in trained_models()
        if model.training is not None
    ),
    ("titan", "provisioned-model-arn", "atelier customize titan"),
)


def register(app: typer.Typer) -> None:
    app.command("status")(status)


def status(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """Show the stage's stacks, the names they publish, and the models the workflows recorded."""
    with command(ctx, "status", json_output) as run:
        stage = run.stage
        resources = run.resources
        stacks: list[dict[str, Any]] = []
        for section in SECTIONS:
            names = resources.section_values(section)
            stacks.append(
                {
                    "stack": stage.stack_name(section),
                    "deployed": bool(names),
                    "published": names,
                }
            )
        warnings: list[str] = []
        try:
            recorded = {
                f"{section}/{name}": resources.recorded(section, name)
                for section, name, _ in RECORDED
            }
        except AccessError as error:
            # The stacks' names came from their outputs; only SSM holds what workflows record.
            recorded = {f"{section}/{name}": None for section, name, _ in RECORDED}
            warnings.append(f"{error.message} ({error.fix})")
        result = {
            "prefix": stage.prefix,
            "stage": stage.name,
            "region": stage.region,
            "stacks": stacks,
            "recorded": recorded,
            "warnings": warnings,
        }

        def human(console: Console) -> None:
            table = Table(title=f"Atelier {stage.name} in {stage.region}")
            table.add_column("stack")
            table.add_column("deployed")
            table.add_column("publishes")
            for entry in stacks:
                table.add_row(
                    entry["stack"],
                    "yes" if entry["deployed"] else "[red]no[/]",
                    "\n".join(f"{k} = {v}" for k, v in entry["published"].items()),
                )
            console.print(table)
            for (section, name, how), value in zip(RECORDED, recorded.values(), strict=True):
                shown = value or f"[dim]none yet ({how})[/]"
                console.print(f"{section}/{name}: {shown}")
            for warning in warnings:
                console.print(f"[yellow]Warning:[/] {escape(warning)}")

        run.done(result, human)
