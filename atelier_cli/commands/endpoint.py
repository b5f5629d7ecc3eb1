"""`atelier endpoint list|use|remove`: which model archive each SageMaker endpoint serves.

An endpoint exists while its `<model>.hosting.model_data_url` is set in cdk.json for the stage
(the Hosting stack reads it at synthesis), so putting a trained model into service is: record
the archive in cdk.json, then `make deploy`. `use` writes the archive the training workflow
recorded (or one you name) and `remove` sets it back to null, which deletes the endpoint and its
hourly bill at the next deploy. The file stays the reviewed, version-controlled source of truth:
these commands only edit it and say what to deploy; they never deploy.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from botocore.exceptions import ClientError
from rich.console import Console
from rich.table import Table

from atelier_cli.aws import error_code, translated_errors
from atelier_cli.errors import NotDeployedError, UsageError
from atelier_cli.output import escape
from atelier_cli.registry import MODEL_DATA_URL, choices, hosted_models
from atelier_cli.registry import model as registry_model
from atelier_cli.runtime import JsonFlag, Run, command

# The hosted models of the registry, by key: each is `<key>.hosting` in cdk.json.
MODELS = tuple(entry.key for entry in hosted_models())


def trained_by(key: str) -> str:
    """The command whose workflow records the model's archives."""
    training = registry_model(key).training
    return f"atelier train {training.command}" if training else f"the {key} training"


if TYPE_CHECKING:
    ModelChoice = str
else:
    ModelChoice = choices("ModelChoice", MODELS)
ModelArgument = Annotated[ModelChoice, typer.Argument(help="Which endpoint.")]
CHECKOUT_CDK_JSON = Path(__file__).resolve().parents[2] / "cdk.json"

app = typer.Typer(
    help="The model archive each SageMaker endpoint serves (cdk.json), and their state.",
    no_args_is_help=True,
)

CdkJsonOption = Annotated[
    Path | None,
    typer.Option(
        "--cdk-json",
        help="The app's cdk.json (default: ./cdk.json, else the checkout's).",
        dir_okay=False,
    ),
]
ArchiveOption = Annotated[
    str | None,
    typer.Option(
        "--archive",
        help="s3://.../model.tar.gz to serve (default: the archive training last recorded).",
    ),
]


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="endpoint")


# --- cdk.json ------------------------------------------------------------------------------------


def cdk_json_path(option: Path | None) -> Path:
    if option is not None:
        return option
    local = Path("cdk.json")
    return local if local.is_file() else CHECKOUT_CDK_JSON


def read_cdk_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(
            f"{path} does not exist",
            fix="run the command in the Atelier checkout, or pass --cdk-json",
            code="cdk_json_missing",
        ) from None
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read {path}: {error}", code="cdk_json_unreadable") from error
    if not isinstance(document, dict) or not isinstance(
        document.get("context", {}).get("atelier"), dict
    ):
        raise UsageError(
            f"{path} has no context.atelier section: it is not an Atelier app's cdk.json",
            fix="pass --cdk-json with the Atelier checkout's cdk.json",
            code="cdk_json_unreadable",
        )
    return document


def stage_section(document: dict[str, Any], stage: str, path: Path) -> dict[str, Any]:
    stages = document["context"]["atelier"].get("stages", {})
    if stage not in stages:
        raise UsageError(
            f"stage {stage!r} is not in {path} (stages: {', '.join(sorted(stages))})",
            fix="pass --stage with one of those, or add the stage to cdk.json",
            code="unknown_stage",
        )
    section: dict[str, Any] = stages[stage]
    return section


def configured_archive(document: dict[str, Any], stage: str, model: str) -> str | None:
    """The stage's archive for `model`, its own setting over the defaults (as infra/config/
    merges them)."""
    atelier = document["context"]["atelier"]
    for source in (atelier.get("stages", {}).get(stage, {}), atelier.get("defaults", {})):
        section = source.get(model) if isinstance(source, dict) else None
        hosting = section.get("hosting") if isinstance(section, dict) else None
        if isinstance(hosting, dict) and "model_data_url" in hosting:
            value = hosting["model_data_url"]
            return value if isinstance(value, str) else None
    return None


def set_archive(path: Path, stage: str, model: str, archive: str | None) -> str | None:
    """Write `stages.<stage>.<model>.hosting.model_data_url`; returns the value it replaced."""
    document = read_cdk_json(path)
    previous = configured_archive(document, stage, model)
    section: Any = stage_section(document, stage, path)
    where = f"stages.{stage}"
    for name in (model, "hosting"):
        where += f".{name}"
        child = section.setdefault(name, {})
        if not isinstance(child, dict):
            raise UsageError(
                f"{path}: {where} holds {json.dumps(child)}, not an object",
                fix="make it an object (or remove it) in cdk.json, then run the command again",
                code="cdk_json_unreadable",
            )
        section = child
    section["model_data_url"] = archive
    # cdk.json is kept in json.dumps(indent=2) form (a test checks it), so this rewrite changes
    # exactly the one value.
    write_file(path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return previous


def write_file(path: Path, text: str) -> None:
    """Replace `path` with `text` whole or not at all: a temporary file beside it, flushed to
    disk, given the file's permissions, then renamed over it."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".cdk.json.", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(text)
                stream.flush()
                os.fsync(stream.fileno())
            os.chmod(temporary, mode)
            os.replace(temporary, path)
        finally:
            Path(temporary).unlink(missing_ok=True)
    except OSError as error:
        raise UsageError(
            f"cannot write {path}: {error}",
            fix="check the file's and its folder's permissions and free space",
            code="cdk_json_unwritable",
        ) from error


def setting_name(stage: str, model: str) -> str:
    return f"stages.{stage}.{model}.hosting.model_data_url"


# --- AWS -----------------------------------------------------------------------------------------


def check_archive(run: Run, archive: str) -> None:
    """The archive must be an s3:// .tar.gz that exists (a typo would fail the deploy 10 minutes
    in, when SageMaker cannot download it)."""
    if not archive.startswith("s3://") or not archive.endswith(".tar.gz"):
        raise UsageError(
            f"--archive {archive!r} is not an s3://bucket/key.tar.gz URI",
            fix="pass the model.tar.gz a training run wrote (atelier jobs list shows the runs)",
        )
    bucket, _, key = archive.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise UsageError(f"--archive {archive!r} names no object", code="invalid_argument")
    s3 = run.aws.client("s3")
    with translated_errors(f"check {archive}"):
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if error_code(error) in ("404", "NoSuchKey", "NotFound"):
                raise NotDeployedError(
                    f"{archive} does not exist",
                    fix="pass the archive of a finished training run",
                    code="archive_missing",
                ) from error
            raise


def endpoint_state(run: Run, name: str) -> dict[str, Any]:
    sagemaker = run.aws.client("sagemaker")
    with translated_errors(f"describe endpoint {name}"):
        try:
            answer = sagemaker.describe_endpoint(EndpointName=name)
        except ClientError as error:
            if error_code(error) == "ValidationException" and "Could not find" in str(error):
                return {"status": None, "instances": 0}
            raise
    variants = answer.get("ProductionVariants", [])
    return {
        "status": answer["EndpointStatus"],
        "instances": sum(v.get("CurrentInstanceCount", 0) for v in variants),
        "failureReason": answer.get("FailureReason"),
    }


# --- commands ------------------------------------------------------------------------------------


@app.command("list")
def list_endpoints(
    ctx: typer.Context, cdk_json: CdkJsonOption = None, json_output: JsonFlag = False
) -> None:
    """Every endpoint: archive configured in cdk.json, archive last trained, live state."""
    with command(ctx, "endpoint list", json_output) as run:
        path = cdk_json_path(cdk_json)
        document = read_cdk_json(path)
        stage = run.options.stage
        stage_section(document, stage, path)
        endpoints = []
        for model in MODELS:
            name = run.resources.published("hosting", f"{model}-endpoint-name")
            endpoints.append(
                {
                    "model": model,
                    "endpointName": name,
                    "configuredArchive": configured_archive(document, stage, model),
                    "recordedArchive": run.resources.recorded(model, MODEL_DATA_URL),
                    **endpoint_state(run, name),
                }
            )

        def human(console: Console) -> None:
            table = Table(title=f"Endpoints of {stage} ({path})")
            for column in ("model", "endpoint", "state", "instances", "cdk.json archive"):
                table.add_column(column)
            for entry in endpoints:
                configured = entry["configuredArchive"]
                recorded = entry["recordedArchive"]
                archive = escape(configured or "null")
                if recorded and recorded != configured:
                    archive += f"\n[yellow]newer trained: {escape(recorded)}[/]"
                table.add_row(
                    entry["model"],
                    entry["endpointName"],
                    entry["status"] or "[dim]not deployed[/]",
                    str(entry["instances"]),
                    archive,
                )
            console.print(table)
            console.print("Endpoints bill per instance-hour while they exist, used or not.")

        run.done({"cdkJson": str(path), "endpoints": endpoints}, human)


@app.command("use")
def use(
    ctx: typer.Context,
    model: ModelArgument,
    archive: ArchiveOption = None,
    cdk_json: CdkJsonOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Serve a trained archive: write it into cdk.json for the stage; `make deploy` then creates
    or updates the endpoint."""
    with command(ctx, "endpoint use", json_output) as run:
        path = cdk_json_path(cdk_json)
        stage = run.options.stage
        stage_section(read_cdk_json(path), stage, path)
        if archive is None:
            archive = run.resources.recorded(model, MODEL_DATA_URL)
            if archive is None:
                raise NotDeployedError(
                    f"no {model} archive recorded: SSM has no "
                    f"{run.stage.parameter(model, MODEL_DATA_URL)}",
                    fix=f"train one first ({trained_by(model)} --wait), or pass --archive",
                    code="nothing_recorded",
                )
        check_archive(run, archive)
        write_setting(
            run, path, model, archive,
            "Deploy it: [bold]{deploy}[/] (a GPU endpoint takes 10-15 minutes and then bills per "
            "instance-hour).",
        )  # fmt: skip


@app.command("remove")
def remove(
    ctx: typer.Context,
    model: ModelArgument,
    cdk_json: CdkJsonOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Stop serving: set the archive to null in cdk.json; `make deploy` then deletes the
    endpoint (and its bill). Trained archives stay in the models bucket."""
    with command(ctx, "endpoint remove", json_output) as run:
        path = cdk_json_path(cdk_json)
        write_setting(run, path, model, None, "Delete the endpoint: [bold]{deploy}[/]")


def write_setting(run: Run, path: Path, model: str, archive: str | None, then: str) -> None:
    """Write the stage's archive setting and answer with what changed and what to deploy."""
    stage = run.options.stage
    previous = set_archive(path, stage, model, archive)
    deploy = f"make deploy STAGE={stage}"
    run.done(
        {
            "model": model,
            "cdkJson": str(path),
            "setting": setting_name(stage, model),
            "archive": archive,
            "previousArchive": previous,
            "next": deploy,
        },
        f"{escape(str(path))}: {setting_name(stage, model)} = {escape(archive or 'null')}\n"
        + then.format(deploy=deploy),
    )
