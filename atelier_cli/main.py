"""The `atelier` command: global options, the command groups, and the exit-status contract."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Annotated

import typer
from typer._click.exceptions import ClickException, UsageError

from atelier_cli import stage_command
from atelier_cli.commands import (
    attributes,
    catalog_run,
    datasets,
    descriptions,
    doctor,
    endpoint,
    models,
    pictures,
    provisioned,
    runs,
    training,
    uploads,
)
from atelier_cli.errors import ExitCode
from atelier_cli.output import JSON_SCHEMA_VERSION
from atelier_cli.resources import DEFAULT_PREFIX, DEFAULT_STAGE
from atelier_cli.runtime import GlobalOptions, Hooks

app = typer.Typer(
    name="atelier",
    help="Datasets, training, customization, descriptions and images for a deployed Atelier "
    "stage. Resources are found from the stage's SSM parameters (or stack outputs).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Docstrings wrap at 100 columns; markdown mode joins their lines into paragraphs.
    rich_markup_mode="markdown",
)


@app.callback()
def root(
    ctx: typer.Context,
    stage: Annotated[
        str, typer.Option("--stage", "-s", envvar="ATELIER_STAGE", help="cdk.json stage.")
    ] = DEFAULT_STAGE,
    region: Annotated[
        str | None,
        typer.Option(
            "--region",
            envvar="ATELIER_REGION",
            help="AWS region of the stage (default: AWS_DEFAULT_REGION, else your profile's).",
        ),
    ] = None,
    profile: Annotated[
        str | None, typer.Option("--profile", envvar="AWS_PROFILE", help="AWS profile.")
    ] = None,
    prefix: Annotated[
        str,
        typer.Option("--prefix", envvar="ATELIER_PREFIX", help="cdk.json name_prefix."),
    ] = DEFAULT_PREFIX,
    json_output: Annotated[
        bool, typer.Option("--json", help="Every command: one JSON document on stdout.")
    ] = False,
) -> None:
    hooks = ctx.obj if isinstance(ctx.obj, Hooks) else Hooks()
    ctx.obj = GlobalOptions(
        prefix=prefix,
        stage=stage,
        region=region,
        profile=profile,
        json=json_output,
        hooks=hooks,
    )


stage_command.register(app)
datasets.register(app)
uploads.register(app)
endpoint.register(app)
training.register(app)
models.register(app)
runs.register(app)
provisioned.register(app)
descriptions.register(app)
catalog_run.register(app)
attributes.register(app)
pictures.register(app)
doctor.register(app)


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point. Argument errors exit 2; with --json they are also printed
    as a JSON error document on stdout, like every other failure."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = app(args=args, prog_name="atelier", standalone_mode=False)
    except UsageError as error:
        error.show()
        if "--json" in args:
            command = " ".join(error.ctx.command_path.split()[1:]) if error.ctx else ""
            document = {
                "version": JSON_SCHEMA_VERSION,
                "command": command,
                "ok": False,
                "error": {"code": "usage", "message": error.format_message()},
            }
            sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return int(ExitCode.USAGE)
    except ClickException as error:
        error.show()
        return error.exit_code
    except typer.Abort:
        return int(ExitCode.INTERRUPTED)
    return result if isinstance(result, int) else int(ExitCode.OK)


if __name__ == "__main__":
    raise SystemExit(main())
