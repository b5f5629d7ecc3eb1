"""`atelier models stage|list|verify`: Hugging Face Hub models copied once, at a pinned commit,
into the stage's models bucket, so that training jobs load them from S3 with no internet
(`atelier_cli/base_models.py`; docs/base-models.md, "Staging a base model")."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from atelier_cli.errors import FailedError, NotDeployedError
from atelier_cli.output import escape
from atelier_cli.runtime import JsonFlag, Run, command

models_app = typer.Typer(
    help="Stage Hugging Face base models in the stage's models bucket (for training without "
    "internet).",
    no_args_is_help=True,
)

ModelArgument = Annotated[
    str, typer.Argument(help="Hugging Face model id, owner/name.", show_default=False)
]
RevisionOption = Annotated[
    str,
    typer.Option("--revision", help="The 40-hex Hub commit to stage (no branch or tag)."),
]


def register(root: typer.Typer) -> None:
    root.add_typer(models_app, name="models")


@contextmanager
def _bars(run: Run) -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """`bar(label, total)` → advance(bytes): one bytes progress bar per step on stderr;
    nothing in JSON mode."""
    if run.json_mode:
        yield lambda label, total: lambda done: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    # One bar at a time (rich shows one live display): a new step ends the previous bar.
    shown: list[Any] = []

    def bar(label: str, total: int) -> Callable[[int], None]:
        for previous in shown:
            previous.stop()
        progress = Progress(*columns, console=run.printer.err, transient=False)
        progress.start()
        shown.append(progress)
        task = progress.add_task(label, total=total)
        return lambda done: progress.advance(task, done)

    try:
        yield bar
    finally:
        for progress in shown:
            progress.stop()


@models_app.command("stage")
def stage(
    ctx: typer.Context,
    model: ModelArgument,
    revision: RevisionOption,
    from_folder: Annotated[
        Path | None,
        typer.Option(
            "--from-folder",
            help="Stage this local snapshot (huggingface-cli download --local-dir) instead of "
            "downloading from the Hub.",
        ),
    ] = None,
    download_dir: Annotated[
        Path | None,
        typer.Option(
            "--download-dir",
            help="Where the Hub snapshot is downloaded (kept, so a second run downloads "
            "nothing). Default: ~/.cache/atelier/base-models/OWNER/NAME/COMMIT.",
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude",
            help="Glob of repository files not to stage, repeatable (e.g. '*.ckpt' for "
            "single-file checkpoints diffusers does not load).",
        ),
    ] = None,
    all_files: Annotated[
        bool,
        typer.Option(
            "--all-files",
            help="Stage every file, also those from_pretrained never reads (pickled .bin "
            "beside .safetensors, fp16 variants, single-file checkpoints, Flax/TF/ONNX).",
        ),
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Copy a Hub model at a pinned commit into the models bucket (SSE-KMS), with a manifest of
    every file's size and SHA-256, and record it in SSM. Running it again sends nothing."""
    with command(ctx, "models stage", json_output) as run:
        from atelier_cli import base_models
        from atelier_cli.s3_transfer import Settings

        base_models.check_pin(model, revision)
        patterns = tuple(exclude or ())
        location = base_models.locate(run.resources, model, revision)

        def snapshot() -> Path:
            if from_folder is not None:
                return from_folder
            folder = download_dir or base_models.DEFAULT_DOWNLOAD_DIR / model / revision
            folder = folder.expanduser()
            run.note(f"Downloading {model}@{revision} from the Hub into {folder}")
            return base_models.download_snapshot(
                model, revision, folder, patterns, all_files=all_files, quiet=run.json_mode
            )

        with _bars(run) as bar:
            steps = base_models.Steps(
                hashing=lambda total: bar("hashing", total),
                uploading=lambda total: bar("uploading", total),
                note=run.note,
            )
            staged = base_models.stage(
                run.aws.client("s3"),
                run.aws.client("ssm"),
                location,
                snapshot,
                exclude=patterns,
                all_files=all_files,
                steps=steps,
                settings=Settings(kms_key_id=location.kms_key_arn),
            )
        result = staged.to_dict()

        def human(console: Console) -> None:
            if staged.already_staged:
                console.print(f"{escape(model)}@{revision} is already staged: nothing sent.")
            else:
                console.print(
                    f"Staged {staged.files} files ({staged.size:,} bytes, "
                    f"{staged.transfer.bytes_sent:,} sent) of {escape(model)}@{revision}."
                )
            if staged.left_out:
                console.print(
                    f"Left out {len(staged.left_out)} files training never reads "
                    "(--all-files keeps them; --json lists them)."
                )
            console.print(f"Files:     {escape(location.uri)}")
            console.print(f"Manifest:  sha256 {staged.manifest_sha256}")
            console.print(f"Record:    {escape(location.parameter)}")

        run.done(result, human)


@models_app.command("list")
def list_models(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """List the base models staged in the stage (their SSM records)."""
    with command(ctx, "models list", json_output) as run:
        from atelier_cli import base_models

        records = base_models.staged_records(run.aws.client("ssm"), run.stage.parameter_root)

        def human(console: Console) -> None:
            if not records:
                console.print("No base model is staged (atelier models stage --help).")
            for record in records:
                if "error" in record:
                    console.print(f"{escape(record['parameter'])}: [red]{record['error']}[/]")
                    continue
                console.print(
                    f"{escape(record['model'])}@{record['revision']}  {record['files']} files, "
                    f"{record['bytes']:,} bytes  {escape(record['uri'])}"
                )

        run.done({"models": records}, human)


@models_app.command("verify")
def verify(
    ctx: typer.Context,
    model: ModelArgument,
    revision: RevisionOption,
    json_output: JsonFlag = False,
) -> None:
    """Check that a staged model is complete: the manifest has the recorded hash and every file
    it lists is in the bucket with its size and the stage key (exit 6 naming each that is not).
    Training jobs check every file's SHA-256 before loading."""
    with command(ctx, "models verify", json_output) as run:
        from atelier_cli import base_models

        base_models.check_pin(model, revision)
        location = base_models.locate(run.resources, model, revision)
        record = base_models.read_record(run.aws.client("ssm"), location.parameter)
        if record is None:
            raise NotDeployedError(
                f"{model}@{revision} is not staged in this stage (no SSM parameter "
                f"{location.parameter})",
                fix=location.stage_command,
                code="not_staged",
            )
        differences = base_models.staged_differences(run.aws.client("s3"), location, record)
        if differences:
            raise FailedError(
                f"the staged copy of {model}@{revision} differs: " + "; ".join(differences),
                fix=f"stage it again: {location.stage_command}",
                code="staged_copy_differs",
                details={"differences": differences, "uri": location.uri},
            )
        result: dict[str, Any] = {
            "model": model,
            "revision": revision,
            "uri": location.uri,
            "parameter": location.parameter,
            "manifestSha256": record["manifestSha256"],
            "files": record["files"],
            "bytes": record["bytes"],
        }
        run.done(
            result,
            f"{escape(model)}@{revision}: {record['files']} files, {record['bytes']:,} bytes, "
            f"all there ({escape(location.uri)})",
        )
