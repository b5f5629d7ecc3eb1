"""The SDXL LoRA trainer as a network-isolated SageMaker job runs it: the base is the staged
`model` channel, checked against its manifest before anything loads, and a Hub id without a
channel is refused. Sockets are refused (pytest-socket) and the Hub is offline, so a run that
trains proves nothing was fetched; and the script runs as SageMaker starts it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import huggingface_hub.constants
import pytest
from sdxl_lora import train
from sdxl_lora.base_models import SDXL_BASE_MODEL, SDXL_BASE_REVISION
from sdxl_lora.export import ADAPTER_WEIGHTS

from common.manifest import hub_source, verify_folder, write_manifest
from tests.dreambooth_data_support import make_dataset
from tests.sdxl_model_support import IMAGE_SIZE, tiny_sdxl_pipeline

TRAINING_ROOT = Path(train.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_sdxl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_sdxl_pipeline(tmp_path_factory.mktemp("sdxl-base"))


@pytest.fixture
def sagemaker_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment the SageMaker toolkit gives train.py, offline like an isolated job."""
    env = {
        "SM_TRAINING_ENV": "{}",
        "SM_CHANNELS": '["model","training"]',
        "TRAINING_JOB_NAME": "job-sdxl",
        "HF_HUB_OFFLINE": "1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return env


def hyperparameters(out: Path, *extra: str) -> list[str]:
    return [
        *("--model_dir", str(out / "model")),
        *("--output_data_dir", str(out / "data")),
        *("--checkpoint_dir", str(out / "checkpoints")),
        *("--failure_file", str(out / "failure")),
        *("--resolution", str(IMAGE_SIZE)),
        *("--max_steps", "1"),
        *("--gradient_accumulation_steps", "1"),
        *("--gradient_checkpointing", "false"),
        *("--checkpoint_steps", "0"),
        *("--sample_steps", "1"),
        *extra,
    ]


def stage(model_folder: Path, channel: Path) -> tuple[Path, str]:
    """The base as `atelier models stage` leaves it and SageMaker delivers it: the files plus
    the manifest; and the manifest hash the stage records."""
    shutil.copytree(model_folder, channel)
    manifest = write_manifest(channel, hub_source(SDXL_BASE_MODEL, SDXL_BASE_REVISION))
    return channel, manifest.sha256()


def flip_first_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))


def no_loading(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("nothing may load before the channel is checked")


def test_a_job_trains_from_the_staged_channel(
    tiny_sdxl: Path, tmp_path: Path, sagemaker_env: dict[str, str]
) -> None:
    channel, sha = stage(tiny_sdxl, tmp_path / "channel")
    data = make_dataset(tmp_path / "training", 2, size=(40, 48))
    env = {**sagemaker_env, "SM_CHANNEL_MODEL": str(channel), "SM_CHANNEL_TRAINING": str(data)}
    args = train.parse_args(hyperparameters(tmp_path, "--base_model_manifest_sha256", sha), env)

    summary = train.main(args)

    # The adapter records the staged base it was trained on, as the stage recorded it.
    assert summary["base_source"] == {
        "kind": "hub",
        "model": SDXL_BASE_MODEL,
        "revision": SDXL_BASE_REVISION,
    }
    metadata = json.loads((args.model_dir / "adapter.json").read_text())
    assert metadata["base_source"] == summary["base_source"]
    manifest = verify_folder(args.model_dir)
    assert manifest.source["job"] == "job-sdxl"
    assert manifest.source["base"]["model"] == SDXL_BASE_MODEL
    assert (args.model_dir / ADAPTER_WEIGHTS).is_file()


def test_a_changed_file_in_the_channel_stops_the_job_before_loading(
    tiny_sdxl: Path, tmp_path: Path, sagemaker_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    channel, sha = stage(tiny_sdxl, tmp_path / "channel")
    flip_first_byte(channel / "unet" / "diffusion_pytorch_model.safetensors")
    data = make_dataset(tmp_path / "training", 2, size=(40, 48))
    env = {**sagemaker_env, "SM_CHANNEL_MODEL": str(channel), "SM_CHANNEL_TRAINING": str(data)}
    args = train.parse_args(hyperparameters(tmp_path, "--base_model_manifest_sha256", sha), env)
    monkeypatch.setattr(train, "load_components", no_loading)

    assert train.run_with_args(args) == 1
    assert "unet/diffusion_pytorch_model.safetensors" in args.failure_file.read_text()


def test_a_job_without_the_channel_refuses_the_hub_id(
    tmp_path: Path, sagemaker_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_dataset(tmp_path / "training", 2, size=(40, 48))
    args = train.parse_args(
        hyperparameters(tmp_path), {**sagemaker_env, "SM_CHANNEL_TRAINING": str(data)}
    )
    monkeypatch.setattr(train, "load_components", no_loading)

    assert train.run_with_args(args) == 1
    reason = args.failure_file.read_text()
    assert "training jobs never download" in reason
    assert f"atelier models stage {SDXL_BASE_MODEL} --revision {SDXL_BASE_REVISION}" in reason


@pytest.mark.slow
def test_the_script_runs_as_sagemaker_starts_it(tiny_sdxl: Path, tmp_path: Path) -> None:
    # SageMaker copies training/ to /opt/ml/code and runs `python sdxl_lora/train.py --k v ...`
    # with hyperparameters as strings, plus keys of its own.
    data = make_dataset(tmp_path / "training", 2, size=(40, 48))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SM_", "PYTHON"))}
    env["HF_HUB_OFFLINE"] = "1"
    completed = subprocess.run(
        [
            sys.executable,
            "sdxl_lora/train.py",
            *hyperparameters(tmp_path, "--base_model", str(tiny_sdxl)),
            *("--dataset_dir", str(data)),
            *("--sagemaker_program", "sdxl_lora/train.py"),
        ],
        cwd=TRAINING_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "[metric] epoch=1 step=1 step_loss=" in completed.stdout
    summary = json.loads((tmp_path / "model" / "training_summary.json").read_text())
    assert summary["status"] == "completed"
