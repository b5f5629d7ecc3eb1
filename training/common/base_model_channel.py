"""Where a training job loads a model from: a verified local folder, never the Hub.

A training job runs network isolated, so every model it loads arrives as an input channel:

- a staged base model (`atelier models stage <hub-id> --revision <commit>`): the Hub files plus
  `atelier-manifest.json`, checked with `verify_folder` against the manifest hash the stage
  recorded (the `*_manifest_sha256` hyperparameter) before anything is loaded;
- for sequential fine-tuning (`start_from=<earlier job>`), that job's `model.tar.gz`, the only
  file of the channel: extracted (regular files and folders only) beside the channel and checked
  against the manifest every training archive carries.

Inside a SageMaker job (its toolkit sets `SM_TRAINING_ENV` and `SM_CHANNELS`) a Hub id without
a channel is refused with the staging command: jobs never download. Run by hand, a pinned Hub id
(hub_pins.py) or a local folder still works; a folder with a manifest is checked too.

`write_archive_manifest` is the other end: every training archive gets a manifest naming the job
and the manifest source it started from, so it can be the `model` channel of a later run.

Errors are `TrainingError`s, so their message becomes the job's FailureReason; a mismatch names
the file first, since SageMaker shows only the reason's first 1,000 characters.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from hub_pins import HUB_ID_PATTERN, UnpinnedModelError, hub_revision

from common.manifest import (
    MANIFEST_NAME,
    Manifest,
    ManifestError,
    ManifestMismatchError,
    hub_source,
    verify_folder,
    write_manifest,
)
from sagemaker_job import TrainingError

# Set by the SageMaker training toolkit for the script it starts; absent in a run by hand.
SAGEMAKER_ENV_MARKERS = ("SM_TRAINING_ENV", "SM_CHANNELS")
# What SageMaker names a training job's output archive, and so the start_from channel's file.
ARCHIVE_NAME = "model.tar.gz"
TRAINING_JOB_KIND = "training-job"
FOLDER_SOURCE: Mapping[str, str] = {"kind": "folder"}


def add_model_channel_arguments(
    parser: argparse.ArgumentParser, env: Mapping[str, str], *, companion: str | None = None
) -> None:
    """The arguments every train.py takes for its `model` channel (and, with `companion`, for a
    second staged model's channel of that name): the manifest hash the workflow passes, the
    sequential fine-tuning job, and the channels' folders from SageMaker's environment."""
    names = ["model", *([companion] if companion else [])]
    for name in names:
        flag = "base_model" if name == "model" else f"{name}_model"
        parser.add_argument(
            f"--{flag}_manifest_sha256",
            default=None,
            help=f"the staged manifest's SHA-256 (its SSM record's manifestSha256); the `{name}` "
            "channel is checked against it before anything loads",
        )
        folder = env.get(f"SM_CHANNEL_{name.upper()}")
        parser.add_argument(
            f"--{name}_channel", type=Path, default=Path(folder) if folder else None
        )
    parser.add_argument(
        "--start_from",
        default=None,
        help="sequential fine-tuning: the earlier training job whose model.tar.gz is the only "
        "file of the `model` channel",
    )


def in_sagemaker_job(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return any(env.get(name) for name in SAGEMAKER_ENV_MARKERS)


def stage_command(model: str, revision: str | None) -> str:
    return f"atelier models stage {model} --revision {revision or '<40-hex commit>'}"


@dataclass(frozen=True)
class ModelInput:
    """What to pass to `from_pretrained`: `location` (a folder, or a Hub id only in a run by
    hand) at `revision` (None for a folder), and `source`, the manifest source it came from, for
    the manifest of the archive trained from it."""

    location: str
    revision: str | None
    source: Mapping[str, Any]


@dataclass(frozen=True)
class ModelRequest:
    """One model a job needs. `role` names it in messages ("base model", "CLIPSeg model"),
    `channel_name` is its input channel, `flag` the hyperparameter holding the model id."""

    role: str
    channel_name: str
    channel: Path | None
    model: str
    revision: str | None
    manifest_sha256: str | None
    flag: str

    @property
    def revision_flag(self) -> str:
        return f"{self.flag}_revision"

    @property
    def sha_flag(self) -> str:
        return f"{self.flag}_manifest_sha256"


def resolve_model_input(
    request: ModelRequest,
    *,
    start_from: str | None = None,
    env: Mapping[str, str] | None = None,
) -> ModelInput:
    """The verified folder (or, by hand, pinned Hub id) to load `request`'s model from.

    Raises TrainingError before anything is loaded when the channel's files differ from their
    manifest, when a job would download, or when the channel does not hold what was asked."""
    sagemaker = in_sagemaker_job(env)
    if request.channel is not None:
        if start_from:
            return _from_archive_channel(request, start_from)
        return _from_staged_channel(request, sagemaker=sagemaker)
    if start_from:
        raise TrainingError(
            f"start_from={start_from} needs that job's {ARCHIVE_NAME} as the "
            f"`{request.channel_name}` channel, and none is attached"
        )
    folder = Path(request.model)
    if folder.is_dir():
        return _from_local_folder(request, folder, sagemaker=sagemaker)
    if sagemaker and HUB_ID_PATTERN.match(request.model):
        raise TrainingError(
            f"{request.model} is a Hugging Face Hub id and training jobs never download (they "
            f"run network isolated): stage it once with "
            f"`{stage_command(request.model, request.revision)}` and attach it as the "
            f"`{request.channel_name}` channel (the training workflow does so for a staged model)"
        )
    try:
        pinned = hub_revision(request.model, request.revision, flag=request.revision_flag)
    except UnpinnedModelError as error:
        raise TrainingError(str(error)) from error
    if pinned is None:  # hub_revision returns None only for a folder, handled above
        raise TrainingError(f"{request.model} is not a folder")
    return ModelInput(
        location=request.model, revision=pinned, source=hub_source(request.model, pinned)
    )


def _from_staged_channel(request: ModelRequest, *, sagemaker: bool) -> ModelInput:
    channel = _channel_folder(request)
    names = sorted(path.name for path in channel.iterdir())
    if names == [ARCHIVE_NAME]:
        raise TrainingError(
            f"the `{request.channel_name}` channel holds {ARCHIVE_NAME}, an earlier run's "
            "archive: set start_from to that training job's name to fine-tune from it, or "
            "attach a staged base model folder instead"
        )
    if sagemaker and not request.manifest_sha256:
        raise TrainingError(
            f"{request.sha_flag} is not set: the `{request.channel_name}` channel is checked "
            "against the manifest hash recorded when the model was staged (its SSM record's "
            "manifestSha256); the training workflow passes it"
        )
    expected: dict[str, str] = {}
    if HUB_ID_PATTERN.match(request.model):
        expected["model"] = request.model
        if request.revision:
            expected["revision"] = request.revision
    fix = (
        f"Stage it again with `{stage_command(request.model, request.revision)}` (it uploads "
        "the files that differ), then rerun the job"
    )
    manifest = _verified(
        channel,
        what=f"the {request.role} in the `{request.channel_name}` channel",
        fix=fix,
        expected_sha256=request.manifest_sha256,
        expected_source=expected,
    )
    return ModelInput(location=str(channel), revision=None, source=manifest.source)


def _from_archive_channel(request: ModelRequest, start_from: str) -> ModelInput:
    channel = _channel_folder(request)
    names = sorted(path.name for path in channel.iterdir())
    if names != [ARCHIVE_NAME]:
        shown = ", ".join(names[:5]) or "nothing"
        raise TrainingError(
            f"start_from={start_from} needs the `{request.channel_name}` channel to hold only "
            f"that job's {ARCHIVE_NAME}; it holds {shown}"
        )
    folder = extract_archive(channel / ARCHIVE_NAME, extraction_folder(channel))
    manifest = _verified(
        folder,
        what=f"the archive of training job {start_from} ({ARCHIVE_NAME})",
        fix="It changed after that job wrote it: start from another run, or train that one again",
        expected_source={"kind": TRAINING_JOB_KIND, "job": start_from},
    )
    return ModelInput(location=str(folder), revision=None, source=manifest.source)


def _from_local_folder(request: ModelRequest, folder: Path, *, sagemaker: bool) -> ModelInput:
    """A folder named by the hyperparameter itself: checked when it has a manifest; inside a job
    it must have one (nothing unverified is trained on)."""
    if (folder / MANIFEST_NAME).is_file():
        if sagemaker and not request.manifest_sha256:
            raise TrainingError(
                f"{request.sha_flag} is not set: {folder} is checked against the manifest hash "
                "recorded when the model was staged"
            )
        manifest = _verified(
            folder,
            what=f"the {request.role} in {folder}",
            fix="Copy or stage it again",
            expected_sha256=request.manifest_sha256,
        )
        return ModelInput(location=str(folder), revision=None, source=manifest.source)
    if sagemaker:
        raise TrainingError(
            f"{request.flag} {folder} has no {MANIFEST_NAME}, so its files cannot be checked: "
            f"attach a staged model as the `{request.channel_name}` channel instead"
        )
    return ModelInput(location=str(folder), revision=None, source=dict(FOLDER_SOURCE))


def _channel_folder(request: ModelRequest) -> Path:
    channel = request.channel
    if channel is None or not channel.is_dir():
        raise TrainingError(f"the `{request.channel_name}` channel {channel} is not a folder")
    return channel


def _verified(
    folder: Path,
    *,
    what: str,
    fix: str,
    expected_sha256: str | None = None,
    expected_source: Mapping[str, Any] | None = None,
) -> Manifest:
    try:
        return verify_folder(
            folder, expected_sha256=expected_sha256, expected_source=expected_source or None
        )
    except ManifestMismatchError as error:
        # The file first: SageMaker cuts the failure reason at 1,000 characters.
        raise TrainingError(
            f"{error.path}: {error.reason}. {what[:1].upper()}{what[1:]} does not match its "
            f"manifest, so nothing was loaded. {fix}."
        ) from error
    except ManifestError as error:
        raise TrainingError(f"{what} cannot be checked: {error}. {fix}.") from error


def extraction_folder(channel: Path) -> Path:
    """Beside the channel, on the job's storage volume (the channel itself stays as delivered)."""
    return channel.parent / f"{channel.name}-extracted"


def extract_archive(archive: Path, destination: Path) -> Path:
    """Extract `archive` into a fresh `destination`: regular files and folders only, every path
    inside it. A link, device or a path leaving the folder fails the job before anything is
    written (the archive comes from S3, where anyone with write access could have replaced it)."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(archive, member)
            if destination.exists():
                shutil.rmtree(destination)
            destination.mkdir(parents=True)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(destination, members=members, filter="data")
            else:  # Python before 3.10.12/3.11.4: the checks above are the filter
                tar.extractall(destination, members=members)  # noqa: S202
    except (tarfile.TarError, OSError) as error:
        raise TrainingError(f"cannot extract {archive}: {error}") from error
    return destination


def _check_member(archive: Path, member: tarfile.TarInfo) -> None:
    name = member.name
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or "\\" in name:
        raise TrainingError(f"{archive}: {name!r} points outside the archive's folder: refused")
    if not (member.isfile() or member.isdir()):
        raise TrainingError(
            f"{archive}: {name!r} is a link or special file, not a regular file: refused"
        )


def training_job_source(
    base: Mapping[str, Any], env: Mapping[str, str] | None = None, **extra: Mapping[str, Any]
) -> dict[str, Any]:
    """The manifest source of an archive this job writes: the job, and what it started from."""
    env = os.environ if env is None else env
    return {
        "kind": TRAINING_JOB_KIND,
        "job": env.get("TRAINING_JOB_NAME", "local"),
        "base": dict(base),
        **{name: dict(value) for name, value in extra.items()},
    }


def write_archive_manifest(model_dir: Path, source: Mapping[str, Any]) -> Manifest:
    """List every file of `model_dir` in its manifest: call it last, after every other file."""
    return write_manifest(model_dir, source)
