"""`atelier dataset vqa|titan|dreambooth`: the dataset builders of training/ (the same code as
`python -m vqa.prepare` etc.), their reports, and with `--upload NAME` the upload into the folder
of the datasets bucket that the matching workflow reads.

A builder's report with errors is exit 2 with the report in the error's details, and nothing is
uploaded; an upload failure is exit 5 (run the command again: unchanged files are skipped).
A build shows its progress on stderr (a catalog of 44k products takes a while), and the answer
says where report.json was written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from atelier_cli.checkout import use_training_code
from atelier_cli.commands.uploads import Bucket, send
from atelier_cli.errors import ServiceError, UsageError
from atelier_cli.output import escape
from atelier_cli.runtime import JsonFlag, Run, command

# What a builder's parse_s3_uri returns (each builder has its own location type).
Destination = TypeVar("Destination")
# Every builder writes its report here, in --out (vqa only when it built a dataset).
REPORT_FILE = "report.json"
# A dataset's folder name: one level below the workflow's prefix (`vqa/<name>/`).
DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

app = typer.Typer(
    help="Build (and upload) a training dataset with the builders of training/.",
    no_args_is_help=True,
)
UploadOption = Annotated[
    str | None,
    typer.Option(
        "--upload",
        help="Upload to vqa/NAME/, titan/NAME/ or dreambooth/NAME/ of the datasets bucket.",
    ),
]
OutOption = Annotated[Path, typer.Option("--out", help="Output folder.")]


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="dataset")


def checked_name(name: str | None) -> str | None:
    if name is not None and not DATASET_NAME.fullmatch(name):
        raise UsageError(
            f"--upload {name!r} is not a folder name (1-100 letters, digits, '.', '_', '-')",
            fix="e.g. --upload shirts-2026-11",
        )
    return name


def refused(
    kind: str, message: str, report: dict[str, Any] | None, report_file: Path | None = None
) -> UsageError:
    if report is None:
        fix = "correct the folder or option the message names"
    elif report_file is not None:
        fix = (
            f"fix what the report names ({report_file} lists every file and rule), then run the "
            "command again"
        )
    else:  # nothing was written: the report is only in the error's details
        fix = (
            "fix what the report names (run again with --json: the error's details list every "
            "skipped product and its reason), then run the command again"
        )
    return UsageError(
        f"the {kind} dataset is not valid: {message}", fix=fix, code="dataset_invalid",
        details=report,
    )  # fmt: skip


def finish(run: Run, result: dict[str, Any], summary: str) -> None:
    def human(console: Console) -> None:
        console.print(escape(summary))
        if "reportFile" in result:
            # Never wrapped: the path is for copying.
            console.print(f"Report: {escape(result['reportFile'])}", soft_wrap=True)
        if "upload" in result:
            upload = result["upload"]
            console.print(
                f"Uploaded {len(upload['uploaded'])}, unchanged {len(upload['unchanged'])}: "
                f"{escape(result['uri'])}"
            )
            console.print(f"Next: [bold]{escape(result['next'])}[/]")

    run.done(result, human)


# The steps a builder reports (vqa.prepare.READING, CHECKING, WRITING): what the bars say, and
# what they count.
BUILD_STEPS = {
    "reading": ("reading styles.csv", "lines"),
    "checking": ("checking images", "products"),
    "writing": ("writing dataset", "products"),
}


@contextmanager
def build_progress(run: Run) -> Iterator[Callable[[str, int, int | None], None]]:
    """A bar per step of a dataset build (BUILD_STEPS) on stderr, in the style of the upload
    bar; nothing in JSON mode."""
    if run.json_mode:
        yield lambda step, done, total: None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[unit]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=run.printer.err, transient=False) as bar:
        tasks: dict[str, TaskID] = {}

        def advance(step: str, done: int, total: int | None) -> None:
            if step not in tasks:
                description, unit = BUILD_STEPS.get(step, (step, ""))
                tasks[step] = bar.add_task(description, total=total, unit=unit)
            bar.update(tasks[step], completed=done, total=total)

        yield advance


# --- vqa -----------------------------------------------------------------------------------------


@app.command("vqa")
def vqa(
    ctx: typer.Context,
    source: Annotated[
        Path, typer.Option("--source", help="Kaggle layout: styles.csv, images/, styles/.")
    ],
    out: OutOption,
    questions: Annotated[
        Path | None,
        typer.Option("--questions", help="JSON question map (default: the pipeline's)."),
    ] = None,
    article_types: Annotated[
        str, typer.Option("--article-types", help="Comma-separated; '' or 'all' keeps every type.")
    ] = "Shirts,Tshirts",
    validation_fraction: Annotated[
        float, typer.Option("--validation-fraction", help="Share of products for validation, 0-1.")
    ] = 0.1,
    seed: Annotated[int, typer.Option("--seed", min=0)] = 42,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a dataset in --out.")
    ] = False,
    upload: UploadOption = None,
    json_output: JsonFlag = False,
) -> None:
    """The BLIP-2 attribute question/answer dataset from a Kaggle fashion layout."""
    with command(ctx, "dataset vqa", json_output) as run:
        name = checked_name(upload)
        use_training_code()
        from vqa import prepare

        try:
            question_map = prepare.load_question_map(questions) if questions else None
            with build_progress(run) as progress:
                report = prepare.build_dataset(
                    source,
                    out,
                    questions=question_map,
                    article_types=prepare.parse_article_types(article_types),
                    validation_fraction=validation_fraction,
                    seed=seed,
                    overwrite=overwrite,
                    progress=progress,
                )
        except prepare.NoUsableDataError as error:
            # Nothing is written then, report.json included: the details carry the report.
            raise refused("vqa", str(error), error.report.to_dict()) from error
        except prepare.PrepareError as error:
            raise refused("vqa", str(error), None) from error
        result = report_result(out, report.to_dict())
        if name is not None:
            prefix = f"vqa/{name}/"
            files = [
                (path, prefix + path.relative_to(out).as_posix())
                for path in prepare.dataset_files(out)
            ]
            result["upload"] = send(run, Bucket.datasets, files)
            result["uri"] = f"s3://{result['upload']['bucket']}/{prefix}"
            result["next"] = f"atelier train vqa --dataset {prefix} --wait"
        finish(run, result, report.summary())


# --- titan ---------------------------------------------------------------------------------------


@app.command("titan")
def titan(
    ctx: typer.Context,
    images: Annotated[Path, typer.Option("--images", help="Folder of JPEG/PNG images.")],
    out: OutOption,
    captions: Annotated[
        Path | None,
        typer.Option("--captions", help="CSV (filename,caption) or JSON; else .txt per image."),
    ] = None,
    fix: Annotated[
        bool, typer.Option("--fix", help="Write repaired copies (format, mode, size) to OUT.")
    ] = False,
    upload: UploadOption = None,
    json_output: JsonFlag = False,
) -> None:
    """The Titan Image Generator fine-tuning manifest: every image and caption checked against
    Bedrock's limits, recommended hyperparameters, and the manifest for titan/NAME/."""
    with command(ctx, "dataset titan", json_output) as run:
        name = checked_name(upload)
        use_training_code()
        from titan import prepare

        destination = upload_destination(run, name, "titan", prepare.parse_s3_uri)
        try:
            report = prepare.prepare_dataset(
                images, out, captions=captions, apply_fixes=fix, destination=destination
            )
        except prepare.PrepareError as error:
            raise refused("titan", str(error), None) from error
        if not report.valid:
            raise refused(
                "titan", f"{len(report.failing)} of {len(report.records)} records fail",
                report.to_dict(), out / REPORT_FILE,
            )  # fmt: skip
        result = report_result(out, report.to_dict())
        if destination is not None:
            key_arn = run.resources.published("data", "kms-key-arn")
            manifest = out / prepare.MANIFEST_NAME
            try:
                uploaded = prepare.upload(
                    prepare.manifest_entries(report, destination),
                    manifest,
                    destination,
                    kms_key_id=key_arn,
                    client=run.aws.client("s3"),
                    progress=run.note,
                )
            except prepare.UploadError as error:
                raise upload_failed(str(error)) from error
            result["upload"] = {"uploaded": uploaded.uploaded, "unchanged": uploaded.unchanged}
            result["uri"] = destination.uri
            result["manifest"] = destination.manifest_key
            result["next"] = f"atelier customize titan --manifest {destination.manifest_key} --wait"
        summary = report.summary()
        if report.hyperparameters is not None:
            summary += "\n" + report.hyperparameters.summary()
        finish(run, result, summary)


# --- dreambooth ----------------------------------------------------------------------------------


@app.command("dreambooth")
def dreambooth(
    ctx: typer.Context,
    images: Annotated[Path, typer.Option("--images", help="Folder of the subject's photos.")],
    out: OutOption,
    instance_prompt: Annotated[
        str | None, typer.Option("--instance-prompt", help='e.g. "a photo of sks dog".')
    ] = None,
    class_prompt: Annotated[
        str | None, typer.Option("--class-prompt", help='e.g. "a photo of a dog".')
    ] = None,
    class_images: Annotated[
        Path | None, typer.Option("--class-images", help="Folder of class images.")
    ] = None,
    prior_preservation: Annotated[
        bool, typer.Option("--prior-preservation", help="Check for a prior-preservation run.")
    ] = False,
    resolution: Annotated[int, typer.Option("--resolution", min=64)] = 512,
    fix: Annotated[bool, typer.Option("--fix", help="Write repaired copies into OUT.")] = False,
    upload: UploadOption = None,
    prune: Annotated[
        bool,
        typer.Option("--prune", help="With --upload: delete images left from earlier uploads."),
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """A DreamBooth dataset in JumpStart's layout (images + dataset_info.json) for
    dreambooth/NAME/: the text-to-image, inpainting (styling) and SDXL LoRA workflows read it
    (the LoRA trains at --resolution 1024)."""
    with command(ctx, "dataset dreambooth", json_output) as run:
        name = checked_name(upload)
        if prune and name is None:
            raise UsageError("--prune applies to --upload", fix="add --upload NAME")
        use_training_code()
        from dreambooth import prepare

        destination = upload_destination(run, name, "dreambooth", prepare.parse_s3_uri)
        try:
            report = prepare.build_dataset(
                images,
                out,
                instance_prompt=instance_prompt,
                class_prompt=class_prompt,
                class_images_dir=class_images,
                prior_preservation=prior_preservation,
                fix=fix,
                resolution=resolution,
                destination=destination,
            )
        except prepare.PrepareError as error:
            raise refused("dreambooth", str(error), None) from error
        if not report.valid:
            raise refused(
                "dreambooth", f"{len(report.errors)} errors", report.to_dict(), out / REPORT_FILE
            )
        result = report_result(out, report.to_dict())
        if destination is not None:
            key_arn = run.resources.published("data", "kms-key-arn")
            try:
                uploaded = prepare.upload_dataset(
                    report,
                    destination,
                    kms_key_id=key_arn,
                    prune=prune,
                    client=run.aws.client("s3"),
                    progress=run.note,
                )
            except prepare.UploadError as error:
                raise upload_failed(str(error)) from error
            result["upload"] = {
                "uploaded": uploaded.uploaded,
                "unchanged": uploaded.unchanged,
                "stale": uploaded.stale,
                "deleted": uploaded.deleted,
            }
            result["uri"] = destination.uri
            prefix = destination.prefix
            result["next"] = (
                f"atelier train dreambooth --dataset {prefix} --wait "
                f"(or atelier train styling --dataset {prefix} --wait for styling)"
            )
        finish(run, result, report.summary())


def report_result(out: Path, report: dict[str, Any]) -> dict[str, Any]:
    """The start of every builder's result: where it wrote, and its report."""
    return {"out": str(out), "reportFile": str(out / REPORT_FILE), "report": report}


def upload_destination(
    run: Run, name: str | None, folder: str, parse: Callable[[str], Destination]
) -> Destination | None:
    """`--upload NAME`: s3://<datasets bucket>/<folder>/NAME/, parsed by the builder's own
    `parse_s3_uri`; None without `--upload`."""
    if name is None:
        return None
    bucket = run.resources.published("data", "datasets-bucket")
    return parse(f"s3://{bucket}/{folder}/{name}/")


def upload_failed(message: str) -> ServiceError:
    return ServiceError(
        message,
        fix="run the command again: files already uploaded unchanged are skipped",
        code="upload_failed",
    )
