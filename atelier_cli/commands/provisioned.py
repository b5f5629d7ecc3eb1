"""`atelier throughput list|release|extend`: the customized Titan model's Provisioned Throughput,
which bills per model unit per hour from creation until deletion, used or not.

Ownership and expiry follow the Bedrock stack's rules (lambdas/customization/logic/expiry.py):
the customize workflow tags each throughput `atelier:deployment=<prefix>-<stage>` and
`atelier:expires-at=<ISO 8601, UTC>`, and the cost guard releases it once that time has passed.
`extend` moves that tag; `release` runs the stack's release workflow, which deletes it.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from atelier_cli.aws import translated_errors
from atelier_cli.checkout import use_lambdas_code
from atelier_cli.errors import NotDeployedError, UsageError
from atelier_cli.image_customization import CONFIG_KEY, base_model_left_null, not_configured
from atelier_cli.output import escape
from atelier_cli.runtime import JsonFlag, Run, command
from atelier_cli.workflows import start_execution

# lambdas/shared/models/customization.py (the tags the workflow and the sweeper agree on).
DEPLOYMENT_TAG = "atelier:deployment"
EXPIRES_AT_TAG = "atelier:expires-at"
# Statuses in which a throughput exists and bills (Bedrock's ProvisionedModelStatus).
BILLING = ("Creating", "InService", "Updating")

app = typer.Typer(
    help="Provisioned Throughput of the customized Titan model (billed per hour).",
    no_args_is_help=True,
)
ArnArgument = Annotated[
    str | None,
    typer.Argument(help="Provisioned model ARN (default: the one the workflow recorded)."),
]


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="throughput")


def parse_expiry(value: str | None) -> datetime | None:
    """The sweeper's own reading of an expiry tag (any ISO 8601 time, UTC when it has no offset;
    else None), from the checkout's function code, so the two never disagree."""
    use_lambdas_code()
    from customization.logic.expiry import parse_expiry as sweeper_reading

    return sweeper_reading(value)


def format_expiry(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def deployment(run: Run) -> str:
    return f"{run.options.prefix}-{run.options.stage}"


def tags_of(run: Run, arn: str) -> dict[str, str]:
    with translated_errors(f"read the tags of {arn}"):
        answer = run.aws.client("bedrock").list_tags_for_resource(resourceARN=arn)
    return {tag["key"]: tag["value"] for tag in answer.get("tags", [])}


def throughputs(run: Run) -> list[dict[str, Any]]:
    """Every provisioned throughput of the account and region, with its tags."""
    bedrock = run.aws.client("bedrock")
    found: list[dict[str, Any]] = []
    with translated_errors(
        "list provisioned throughputs (bedrock:ListProvisionedModelThroughputs)"
    ):
        token = None
        while True:
            arguments: dict[str, str] = {"nextToken": token} if token else {}
            page = bedrock.list_provisioned_model_throughputs(**arguments)
            found.extend(page.get("provisionedModelSummaries", []))
            token = page.get("nextToken")
            if not token:
                break
    return [{**summary, "tags": tags_of(run, summary["provisionedModelArn"])} for summary in found]


def describe_entry(
    summary: dict[str, Any], *, ours: str, recorded: str | None, now: datetime
) -> dict[str, Any]:
    tags = summary["tags"]
    expires = parse_expiry(tags.get(EXPIRES_AT_TAG))
    created: Any = summary.get("creationTime")
    return {
        "provisionedModelArn": summary["provisionedModelArn"],
        "name": summary.get("provisionedModelName"),
        "status": summary.get("status"),
        "modelArn": summary.get("modelArn"),
        "modelUnits": summary.get("modelUnits"),
        "commitment": summary.get("commitmentDuration"),
        "createdAt": created.isoformat() if hasattr(created, "isoformat") else created,
        "ours": tags.get(DEPLOYMENT_TAG) == ours,
        "recorded": summary["provisionedModelArn"] == recorded,
        "expiresAt": format_expiry(expires) if expires else None,
        # What the cost guard reads: a missing or unreadable tag counts as expired.
        "hoursLeft": round((expires - now).total_seconds() / 3600, 2) if expires else 0.0,
    }


@app.command("list")
def list_throughput(
    ctx: typer.Context,
    show_all: Annotated[
        bool, typer.Option("--all", help="Also other deployments' and untagged ones.")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """This deployment's throughputs: status, model units, expiry and time left."""
    with command(ctx, "throughput list", json_output) as run:
        ours = deployment(run)
        recorded = run.resources.recorded("titan", "provisioned-model-arn")
        now = datetime.fromtimestamp(run.hooks.clock(), UTC)
        entries = [
            describe_entry(summary, ours=ours, recorded=recorded, now=now)
            for summary in throughputs(run)
        ]
        if not show_all:
            entries = [entry for entry in entries if entry["ours"]]
        billing = [entry for entry in entries if entry["status"] in BILLING]
        customizable = not base_model_left_null(run)
        result = {"deployment": ours, "recorded": recorded, "throughputs": entries,
                  "billing": len(billing), "customizable": customizable}  # fmt: skip

        def human(console: Console) -> None:
            table = Table(title=f"Provisioned throughput of {ours}")
            for column in ("name", "status", "units", "commitment", "expires (UTC)", "left"):
                table.add_column(column)
            for entry in entries:
                name = entry["name"] or entry["provisionedModelArn"]
                if entry["recorded"]:
                    name += " [green](recorded)[/]"
                if not entry["ours"]:
                    name += " [yellow](not this deployment's)[/]"
                table.add_row(
                    name,
                    entry["status"] or "?",
                    str(entry["modelUnits"]),
                    entry["commitment"] or "none",
                    entry["expiresAt"] or "[red]none: counts as expired[/]",
                    f"{entry['hoursLeft']:g} h",
                )
            console.print(table)
            if billing:
                console.print(
                    f"[bold yellow]{len(billing)} throughput(s) bill per model unit per hour "
                    "until released[/] (atelier throughput release)."
                )
            else:
                console.print("Nothing provisioned bills by the hour.")
            if not customizable:
                console.print(
                    f"This stage customizes no image model ({CONFIG_KEY} is null: none can be "
                    "fine-tuned today), so atelier customize titan provisions none."
                )

        run.done(result, human)


def target(run: Run, arn: str | None) -> str:
    if arn is not None:
        if ":provisioned-model/" not in arn:
            raise UsageError(
                f"{arn!r} is not a provisioned model ARN",
                fix="pass an ARN atelier throughput list shows",
            )
        return arn
    recorded = run.resources.recorded("titan", "provisioned-model-arn")
    if recorded is None and base_model_left_null(run):
        # Nothing will ever be recorded; a throughput left from when a model was configured can
        # still be named (the release workflow and the cost guard stay deployed).
        error = not_configured(run, "find a recorded throughput")
        error.fix = (
            "pass the ARN of a throughput left from an earlier configuration (atelier throughput "
            f"list --all shows them); {error.fix}"
        )
        raise error
    if recorded is None:
        raise NotDeployedError(
            f"no throughput recorded: SSM has no "
            f"{run.stage.parameter('titan', 'provisioned-model-arn')}",
            fix="pass the ARN (atelier throughput list --all shows them), or provision one "
            "with atelier customize titan",
            code="nothing_recorded",
        )
    return recorded


def require_ours(run: Run, arn: str) -> dict[str, str]:
    tags = tags_of(run, arn)
    ours = deployment(run)
    if tags.get(DEPLOYMENT_TAG) != ours:
        raise UsageError(
            f"{arn} is not tagged {DEPLOYMENT_TAG}={ours}: it is not this deployment's, and the "
            "release workflow would refuse it",
            fix="pass --stage/--prefix of the deployment that created it, or manage it in the "
            "Bedrock console",
            code="not_this_deployment",
        )
    return tags


@app.command("release")
def release(
    ctx: typer.Context,
    arn: ArnArgument = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    json_output: JsonFlag = False,
) -> None:
    """Delete a throughput now (its hourly bill stops): starts the release workflow."""
    with command(ctx, "throughput release", json_output) as run:
        chosen = target(run, arn)
        require_ours(run, chosen)
        if not yes:
            if run.json_mode or not sys.stdin.isatty():
                raise UsageError(
                    "releasing deletes the throughput; confirm with --yes",
                    fix="add --yes (needed without a terminal, and with --json)",
                    code="confirmation_required",
                )
            typer.confirm(f"Release {chosen}?", abort=True, err=True)
        state_machine = run.resources.published("bedrock", "titan-release-state-machine-arn")
        document: dict[str, Any] = {} if arn is None else {"provisionedModelArn": chosen}
        started = start_execution(
            run,
            state_machine_arn=state_machine,
            document=document,
            kind="release",
            what="start the release workflow",
        )
        started["provisionedModelArn"] = chosen
        run.done(
            started,
            f"Releasing {escape(chosen)}\nFollow it: [bold]{escape(started['watch'])}[/]",
        )


@app.command("extend")
def extend(
    ctx: typer.Context,
    arn: ArnArgument = None,
    hours: Annotated[
        float | None, typer.Option("--hours", min=0.1, help="Keep it this long from now.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Keep it until this ISO 8601 time (UTC default).")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Keep a throughput longer: move its atelier:expires-at tag (the cost guard reads it)."""
    with command(ctx, "throughput extend", json_output) as run:
        now = datetime.fromtimestamp(run.hooks.clock(), UTC)
        if (hours is None) == (until is None):
            raise UsageError("give exactly one of --hours and --until", code="invalid_argument")
        if until is not None:
            expires = parse_expiry(until)
            if expires is None:
                raise UsageError(
                    f"--until {until!r} is not an ISO 8601 time",
                    fix="e.g. --until 2026-08-02T18:00:00Z",
                )
        else:
            assert hours is not None
            expires = now + timedelta(hours=hours)
        if expires <= now:
            raise UsageError(
                f"--until {format_expiry(expires)} has passed",
                fix="give a time in the future; release it instead if you are done",
            )
        chosen = target(run, arn)
        tags = require_ours(run, chosen)
        bedrock = run.aws.client("bedrock")
        with translated_errors(f"read {chosen}"):
            status = bedrock.get_provisioned_model_throughput(provisionedModelId=chosen)["status"]
        if status not in BILLING:
            raise UsageError(
                f"{chosen} is {status}: there is nothing to keep",
                fix="provision a new one with atelier customize titan",
                code="not_in_service",
            )
        value = format_expiry(expires)
        with translated_errors(f"tag {chosen}"):
            bedrock.tag_resource(resourceARN=chosen, tags=[{"key": EXPIRES_AT_TAG, "value": value}])
        result = {
            "provisionedModelArn": chosen,
            "previousExpiresAt": tags.get(EXPIRES_AT_TAG),
            "expiresAt": value,
            "hoursFromNow": round((expires - now).total_seconds() / 3600, 2),
        }
        run.done(
            result,
            f"{escape(chosen)} now expires at {value} "
            f"({result['hoursFromNow']:g} h from now, billed per model unit per hour).",
        )
