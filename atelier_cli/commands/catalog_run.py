"""`atelier describe-catalog SOURCE`: describe a whole catalog with the Catalog stack's workflow
(Batch Transform and Bedrock batch inference), and optionally wait for its summary."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console

from atelier_cli.errors import UsageError
from atelier_cli.executions import watch_and_report
from atelier_cli.output import escape
from atelier_cli.runtime import JsonFlag, Run, command
from atelier_cli.workflows import start_execution

# lambdas/catalog/logic/sources.py: a prefix (ending in '/') or a manifest.
MANIFEST_SUFFIXES = (".csv", ".jsonl")
# The buckets the workflow may read (infra/stacks/catalog.py grants exactly these).
SOURCE_BUCKETS = ("uploads-bucket", "datasets-bucket", "results-bucket")


def register(root: typer.Typer) -> None:
    root.command("describe-catalog")(describe_catalog)


def catalog_input(
    source: str,
    languages: list[str],
    attribute_set: str | None,
    force: bool,
    allowed_buckets: dict[str, str],
) -> dict[str, Any]:
    if not source.startswith("s3://"):
        raise UsageError(
            f"SOURCE {source!r} is not an s3:// URI",
            fix="pass s3://bucket/prefix/ (images) or s3://bucket/manifest.csv|.jsonl; upload "
            "local files first with atelier upload",
        )
    bucket, _, path = source.removeprefix("s3://").partition("/")
    if bucket not in allowed_buckets.values():
        raise UsageError(
            f"SOURCE bucket {bucket!r} is not one the catalog workflow may read",
            fix="copy the images or manifest into the uploads, datasets or results bucket ("
            + ", ".join(allowed_buckets.values())
            + "), e.g. with atelier upload --to uploads",
            code="source_bucket_not_allowed",
        )
    if path and not path.endswith("/") and not path.lower().endswith(MANIFEST_SUFFIXES):
        raise UsageError(
            f"SOURCE {source!r} is neither a prefix (ending with '/') nor a .csv or .jsonl "
            "manifest",
            code="invalid_argument",
        )
    document: dict[str, Any] = {"source": source}
    if languages:
        document["languages"] = languages
    if attribute_set is not None:
        document["attributeSet"] = attribute_set
    if force:
        document["force"] = True
    return document


def describe_catalog(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Argument(help="s3://bucket/prefix/ of images, or a .csv/.jsonl manifest."),
    ],
    language: Annotated[
        list[str] | None, typer.Option("--language", "-l", help="Repeatable (default: stage's).")
    ] = None,
    attribute_set: Annotated[
        str | None,
        typer.Option("--attribute-set", help="descriptions.categories entry for products."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Describe again what is already described.")
    ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the run's summary.")] = False,
    interval: Annotated[float, typer.Option("--interval", min=1)] = 120,
    timeout: Annotated[float | None, typer.Option("--timeout", min=1)] = None,
    json_output: JsonFlag = False,
) -> None:
    """Describe every product of a catalog with the batch engines (hours; about half the price
    of the online path). Failures are reported in a manifest you can run again."""
    with command(ctx, "describe-catalog", json_output) as run:
        buckets = {name: run.resources.published("data", name) for name in SOURCE_BUCKETS}
        document = catalog_input(source, language or [], attribute_set, force, buckets)
        arn = run.resources.published("catalog", "describe-catalog-state-machine-arn")
        started = start_execution(
            run,
            state_machine_arn=arn,
            document=document,
            kind="catalog",
            what="start the describe-catalog workflow",
        )
        result: dict[str, Any] = dict(started)
        if wait:
            snapshot = watch_and_report(
                run, started["executionArn"], interval=interval, timeout=timeout
            )
            result["summary"] = snapshot.to_dict().get("output")
        _done(run, result)


def _done(run: Run, result: dict[str, Any]) -> None:
    def human(console: Console) -> None:
        console.print(f"Execution: {escape(result['executionArn'])}")
        console.print(f"Console:   {escape(result['consoleUrl'])}")
        summary = result.get("summary")
        if summary is None:
            console.print(f"Follow it: [bold]{escape(result['watch'])}[/]")
            return
        if isinstance(summary, dict):
            for key, value in summary.items():
                console.print(f"{key}: {escape(str(value))}")

    run.done(result, human)
