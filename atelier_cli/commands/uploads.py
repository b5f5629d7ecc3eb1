"""`atelier upload PATH... --to datasets|uploads|models`: files into the stage's buckets with a
progress bar, skipping unchanged files and resuming interrupted large ones (s3_transfer)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from atelier_cli.errors import UsageError
from atelier_cli.output import escape
from atelier_cli.runtime import JsonFlag, Run, command
from atelier_cli.s3_transfer import Settings, upload_files


class Bucket(StrEnum):
    datasets = "datasets"
    uploads = "uploads"
    models = "models"


def register(root: typer.Typer) -> None:
    root.command("upload")(upload)


def normalized_prefix(prefix: str) -> str:
    prefix = prefix.strip()
    if prefix.startswith("/") or ".." in PurePosixPath(prefix).parts or "\\" in prefix:
        raise UsageError(
            f"--prefix {prefix!r} must be a relative S3 folder (no leading '/', no '..')",
            fix="e.g. --prefix vqa/shirts/",
        )
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def planned_files(paths: list[Path], prefix: str) -> list[tuple[Path, str]]:
    """(file, key) for every file named or inside a named folder; hidden ones are skipped.
    Keys keep the layout below each named folder."""
    files: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_file():
            files.append((path, prefix + path.name))
        elif path.is_dir():
            for found in sorted(path.rglob("*")):
                relative = found.relative_to(path)
                if found.is_file() and not any(part.startswith(".") for part in relative.parts):
                    files.append((found, prefix + relative.as_posix()))
        else:
            raise UsageError(f"PATH {path}: no such file or folder", code="file_not_found")
    keys = [key for _, key in files]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise UsageError(
            f"two files would go to the same key {repeated[0]}",
            fix="upload them with different --prefix values",
            code="duplicate_key",
        )
    if not files:
        raise UsageError("nothing to upload: the folders hold no files", code="nothing_to_upload")
    return files


@contextmanager
def progress_bar(run: Run, total: int) -> Iterator[Callable[[int], None]]:
    """A bytes progress bar on stderr; nothing in JSON mode."""
    if run.json_mode:
        yield lambda done: None
        return
    columns = (
        TextColumn("[bold]uploading"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=run.printer.err, transient=False) as bar:
        task = bar.add_task("upload", total=total)
        yield lambda done: bar.advance(task, done)


def send(
    run: Run, bucket_kind: Bucket, files: list[tuple[Path, str]], settings: Settings | None = None
) -> dict[str, Any]:
    """Upload with the stage's data key; the result document of `upload` (and `dataset`)."""
    bucket = run.resources.published("data", f"{bucket_kind.value}-bucket")
    key_arn = run.resources.published("data", "kms-key-arn")
    chosen = settings or Settings(kms_key_id=key_arn)
    total = sum(path.stat().st_size for path, _ in files)
    with progress_bar(run, total) as advance:
        result = upload_files(
            run.aws.client("s3"), bucket, files, settings=chosen, progress=advance
        )
    return {"bucket": bucket, **result.to_dict()}


def upload(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Files and folders (folders recurse).")],
    to: Annotated[Bucket, typer.Option("--to", help="Which of the stage's buckets.")],
    prefix: Annotated[str, typer.Option("--prefix", help="Folder in the bucket.")] = "",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would go where; send nothing.")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Upload files to the stage's datasets, uploads or models bucket (SSE-KMS with the data
    key). Unchanged files are skipped; an interrupted large file resumes where it stopped."""
    with command(ctx, "upload", json_output) as run:
        files = planned_files(paths, normalized_prefix(prefix))
        if dry_run:
            bucket = run.resources.published("data", f"{to.value}-bucket")
            planned = [{"path": str(path), "uri": f"s3://{bucket}/{key}"} for path, key in files]
            run.done(
                {"bucket": bucket, "planned": planned},
                "\n".join(f"{escape(p['path'])} -> {escape(p['uri'])}" for p in planned),
            )
            return
        result = send(run, to, files)
        run.done(
            result,
            f"{len(result['uploaded'])} uploaded ({len(result['resumed'])} resumed), "
            f"{len(result['unchanged'])} unchanged, to s3://{result['bucket']}/{escape(prefix)}",
        )
