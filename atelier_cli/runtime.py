"""What every command shares: the global options, the AWS session, the stage's resources, and
the one place errors become output and exit statuses.

A command body runs inside `command(ctx, "train vqa", json_flag)`, which yields a `Run`:

    with command(ctx, "train vqa", json_output) as run:
        arn = run.resources.published("training", "vqa-state-machine-arn")
        ...
        run.done({"executionArn": arn}, human=f"Started {arn}")
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

from atelier_cli.aws import Aws, ClientFactory
from atelier_cli.errors import CliError, ExitCode
from atelier_cli.output import Human, Printer
from atelier_cli.resources import Resources, Stage

JsonFlag = Annotated[
    bool,
    typer.Option(
        "--json", help="Print one JSON document (the result, or the error) instead of text."
    ),
]


@dataclass
class Hooks:
    """What tests swap: AWS clients, the HTTP sender of the API commands, the clock."""

    client_factory: ClientFactory | None = None
    # (method, url, headers, body) -> (status, headers, body); None: a real HTTPS request.
    http_send: Callable[[str, str, Mapping[str, str], bytes | None], Any] | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time


@dataclass
class GlobalOptions:
    prefix: str
    stage: str
    region: str | None
    profile: str | None
    json: bool
    hooks: Hooks = field(default_factory=Hooks)


class Run:
    """One command's session: created lazily so that argument errors need no AWS at all."""

    def __init__(self, command: str, options: GlobalOptions, printer: Printer) -> None:
        self.command = command
        self.options = options
        self.printer = printer
        self.hooks = options.hooks
        self._aws: Aws | None = None
        self._resources: Resources | None = None

    @property
    def aws(self) -> Aws:
        if self._aws is None:
            self._aws = Aws(
                region=self.options.region,
                profile=self.options.profile,
                client_factory=self.hooks.client_factory,
            )
        return self._aws

    @property
    def stage(self) -> Stage:
        return self.resources.stage

    @property
    def resources(self) -> Resources:
        if self._resources is None:
            stage = Stage(
                prefix=self.options.prefix, name=self.options.stage, region=self.aws.region
            )
            self._resources = Resources(self.aws, stage)
        return self._resources

    @property
    def json_mode(self) -> bool:
        return self.printer.json_mode

    def note(self, message: str) -> None:
        self.printer.note(message)

    def done(self, result: Mapping[str, Any], human: Human = None) -> None:
        """The command's answer. Call once, last."""
        self.printer.result(self.command, result, human)


def global_options(ctx: typer.Context) -> GlobalOptions:
    root = ctx.find_root()
    if not isinstance(root.obj, GlobalOptions):  # a command invoked without the root callback
        root.obj = GlobalOptions(
            prefix="atelier", stage="dev", region=None, profile=None, json=False
        )
    return root.obj


@contextmanager
def command(ctx: typer.Context, name: str, json_flag: bool = False) -> Iterator[Run]:
    """Run a command body; a `CliError` is printed (text or JSON) and exits with its status."""
    options = global_options(ctx)
    printer = Printer(json_mode=json_flag or options.json)
    run = Run(name, options, printer)
    try:
        yield run
    except CliError as error:
        printer.error(name, error)
        raise typer.Exit(int(error.exit_code)) from error
    except KeyboardInterrupt:
        interrupted = CliError(
            "interrupted; anything already started in AWS keeps running",
            code="interrupted",
            fix=f"see it with: atelier --stage {options.stage} jobs list",
        )
        printer.error(name, interrupted)
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
