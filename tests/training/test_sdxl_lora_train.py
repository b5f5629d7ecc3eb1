"""SDXL DreamBooth-LoRA training on a tiny SDXL built from config, on CPU: only adapter weights
train, resume is exact, the NaN guard keeps the last good adapter, and the archive is the
adapter (megabytes), its metadata, the sample grid and the manifest, which loads into an SDXL
pipeline and changes what it draws."""

from __future__ import annotations

import argparse
import io
import json
import math
import re
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from accelerate.state import AcceleratorState
from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file
from sdxl_lora import train
from sdxl_lora.checkpoints import CHECKPOINT_FILE
from sdxl_lora.data import make_batch
from sdxl_lora.export import ADAPTER_METADATA, ADAPTER_WEIGHTS, SAMPLE_GRID
from transformers import CLIPTextModel, CLIPTextModelWithProjection

from common.manifest import verify_folder
from dreambooth.data import Examples
from dreambooth.steps import Losses
from tests.dreambooth_data_support import make_dataset
from tests.sd_model_support import build_tiny_stable_diffusion
from tests.sdxl_model_support import IMAGE_SIZE, tiny_sdxl_pipeline

ARCHIVE_FILES = {
    ADAPTER_WEIGHTS,
    ADAPTER_METADATA,
    SAMPLE_GRID,
    "training_summary.json",
    "atelier-manifest.json",
}
STEP_LINE = re.compile(
    r"^\[metric\] epoch=(\d+) step=(\d+) step_loss=(\S+) instance_loss=(\S+)"
    r"(?: prior_loss=(\S+))? learning_rate=(\S+)$",
    re.M,
)


@pytest.fixture(scope="module")
def tiny_sdxl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_sdxl_pipeline(tmp_path_factory.mktemp("sdxl-base"))


def dataset(folder: Path, *, class_images: int = 0) -> Path:
    # 40x48: not square, so the crop (and its add_time_ids) matter.
    return make_dataset(folder, 3, class_count=class_images, size=(40, 48))


def arguments(base: Path, data: Path, out: Path, *extra: str) -> argparse.Namespace:
    return train.parse_args(
        [
            "--base_model",
            str(base),
            "--dataset_dir",
            str(data),
            "--model_dir",
            str(out / "model"),
            "--output_data_dir",
            str(out / "data"),
            "--checkpoint_dir",
            str(out / "checkpoints"),
            "--failure_file",
            str(out / "failure"),
            "--resolution",
            str(IMAGE_SIZE),
            # A rate that moves the tiny LoRA visibly in a few steps.
            "--learning_rate",
            "1e-2",
            "--gradient_accumulation_steps",
            "1",
            "--gradient_checkpointing",
            "false",
            "--checkpoint_steps",
            "0",
            "--sample_steps",
            "1",
            "--class_image_inference_steps",
            "1",
            *extra,
        ],
        env={},
    )


def adapter(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(model_dir / ADAPTER_WEIGHTS)


def assert_same(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> None:
    assert first.keys() == second.keys()
    for name, tensor in first.items():
        torch.testing.assert_close(second[name], tensor, rtol=0, atol=0, msg=name)


def base_name(name: str) -> str:
    """A PEFT-wrapped module's base weight under the unwrapped model's name."""
    return name.replace(".base_layer.", ".")


class Captured:
    """The pipeline the sample grid is drawn with: every module as training left it."""

    pipeline: Any = None


def run(args: argparse.Namespace, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], str]:
    captured = Captured()
    real_grid = train.sample_grid

    def capturing(pipeline: Any, *rest: Any) -> Image.Image:
        captured.pipeline = pipeline
        return real_grid(pipeline, *rest)

    monkeypatch.setattr(train, "sample_grid", capturing)
    log = io.StringIO()
    with redirect_stdout(log):
        summary = train.main(args)
    summary["pipeline"] = captured.pipeline
    return summary, log.getvalue()


@pytest.fixture(scope="module")
def three_steps(
    tiny_sdxl: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[argparse.Namespace, dict[str, Any], str]:
    root = tmp_path_factory.mktemp("three-steps")
    args = arguments(tiny_sdxl, dataset(root / "data"), root, "--max_steps", "3")
    with pytest.MonkeyPatch.context() as patch:
        summary, log = run(args, patch)
    return args, summary, log


# ---------------------------------------------------------------------------------------------
# Arguments and inputs


def test_defaults_are_the_sdxl_lora_recipe() -> None:
    args = train.parse_args([], env={})
    assert args.base_model == "stabilityai/stable-diffusion-xl-base-1.0"
    assert re.fullmatch(r"[0-9a-f]{40}", args.base_model_revision)
    assert (args.resolution, args.rank, args.lora_alpha, args.learning_rate) == (1024, 4, 4, 1e-4)
    assert (args.max_steps, args.gradient_accumulation_steps) == (500, 4)
    assert args.gradient_checkpointing is True
    assert args.train_text_encoder is False
    assert args.with_prior_preservation is False


def test_a_resolution_the_unet_cannot_take_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as raised:
        train.parse_args(["--resolution", "1000"], env={})
    assert raised.value.code == 2


def test_an_sd2_base_is_refused_before_training(tmp_path: Path) -> None:
    sd2 = build_tiny_stable_diffusion(tmp_path / "sd2")
    args = arguments(sd2, dataset(tmp_path / "data"), tmp_path)
    with pytest.raises(train.TrainingError, match="not a Stable Diffusion XL model"):
        train.main(args)


def test_start_from_is_refused(tiny_sdxl: Path, tmp_path: Path) -> None:
    args = arguments(tiny_sdxl, dataset(tmp_path / "data"), tmp_path, "--start_from", "job-1")
    assert train.run_with_args(args) == 1
    assert "trained on the base model, not on an earlier adapter" in args.failure_file.read_text()


def test_batches_carry_each_pictures_size_and_crop(tmp_path: Path) -> None:
    data = dataset(tmp_path / "data")
    examples = Examples(instance_images=sorted(data.glob("*.png")), class_images=[])
    ids = (torch.zeros(1, 77, dtype=torch.long), torch.ones(1, 77, dtype=torch.long))
    batch = make_batch(
        examples,
        [0, 1],
        epoch=1,
        seed=0,
        resolution=32,
        center_crop=True,
        instance_ids=ids,
        class_ids=None,
    )
    # 40 wide, 48 high: resized to 32x38, centre crop 3 rows down; target 32x32.
    assert batch.time_ids.tolist() == [[48, 40, 3, 0, 32, 32]] * 2
    assert batch.pixel_values.shape == (2, 3, 32, 32)
    assert torch.equal(batch.prompt_ids_2, torch.ones(2, 77, dtype=torch.long))


# ---------------------------------------------------------------------------------------------
# Training


def test_three_steps_train_only_the_lora_weights(
    three_steps: tuple[argparse.Namespace, dict[str, Any], str], tiny_sdxl: Path
) -> None:
    _, summary, log = three_steps
    assert summary["status"] == "completed"
    assert summary["optimizer_steps"] == 3
    assert [int(match[1]) for match in STEP_LINE.findall(log)] == [1, 2, 3]
    pipeline = summary["pipeline"]
    trained = pipeline.unet.state_dict()
    lora = {name for name in trained if "lora_" in name}
    assert lora, "no LoRA layers on the UNet"
    # Every LoRA B starts at zero; training moved them.
    assert all(trained[name].abs().sum() > 0 for name in lora if "lora_B" in name)
    # Every base weight is bitwise the base's.
    base = UNet2DConditionModel.from_pretrained(tiny_sdxl / "unet").state_dict()
    frozen = {base_name(name): tensor for name, tensor in trained.items() if name not in lora}
    assert_same(base, frozen)
    for folder, model_class, module in (
        ("text_encoder", CLIPTextModel, pipeline.text_encoder),
        ("text_encoder_2", CLIPTextModelWithProjection, pipeline.text_encoder_2),
    ):
        assert_same(
            model_class.from_pretrained(tiny_sdxl / folder).state_dict(), module.state_dict()
        )


def test_the_archive_is_the_adapter_its_metadata_grid_and_manifest(
    three_steps: tuple[argparse.Namespace, dict[str, Any], str],
) -> None:
    args, _, _ = three_steps
    model_dir = args.model_dir
    assert {path.name for path in model_dir.iterdir()} == ARCHIVE_FILES
    size = sum(path.stat().st_size for path in model_dir.iterdir())
    assert size < 1_000_000, f"{size} bytes"
    weights = adapter(model_dir)
    assert weights
    assert all(name.startswith("unet.") and ".lora." in name for name in weights)
    with safe_open(model_dir / ADAPTER_WEIGHTS, "pt") as handle:
        # The LoRA config travels in the file, so a loader scales by the trained alpha.
        config = json.loads(handle.metadata()["lora_adapter_metadata"])
    assert (config["unet.r"], config["unet.lora_alpha"]) == (4, 4)
    metadata = json.loads((model_dir / ADAPTER_METADATA).read_text())
    assert metadata["instance_prompt"] == "a photo of sks dog"
    assert metadata["trigger_words"] == ["sks"]
    assert (metadata["rank"], metadata["lora_alpha"], metadata["resolution"]) == (4, 4, 32)
    assert metadata["optimizer_steps"] == 3
    assert metadata["base_source"] == {"kind": "folder"}
    assert len(metadata["sample_prompts"]) == len(metadata["sample_seeds"]) == 4
    with Image.open(model_dir / SAMPLE_GRID) as grid:
        assert grid.size == (2 * IMAGE_SIZE, 2 * IMAGE_SIZE)
    manifest = verify_folder(model_dir)
    assert {entry.path for entry in manifest.files} == ARCHIVE_FILES - {"atelier-manifest.json"}


def test_the_adapter_loads_into_an_sdxl_pipeline_and_changes_its_image(
    three_steps: tuple[argparse.Namespace, dict[str, Any], str], tiny_sdxl: Path
) -> None:
    args, _, _ = three_steps
    metadata = json.loads((args.model_dir / ADAPTER_METADATA).read_text())
    pipeline = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl)
    pipeline.set_progress_bar_config(disable=True)

    def draw() -> np.ndarray:
        image = pipeline(
            prompt=metadata["sample_prompts"][0],
            height=IMAGE_SIZE,
            width=IMAGE_SIZE,
            num_inference_steps=metadata["sample_steps"],
            guidance_scale=metadata["sample_guidance_scale"],
            generator=torch.Generator("cpu").manual_seed(metadata["sample_seeds"][0]),
        ).images[0]
        return np.asarray(image, dtype=np.int16)

    without = draw()
    pipeline.load_lora_weights(args.model_dir, weight_name=ADAPTER_WEIGHTS, adapter_name="sks")
    with_adapter = draw()
    assert np.abs(with_adapter - without).max() > 0
    # And it draws what training drew in the grid's first cell, from the same prompt and seed.
    with Image.open(args.model_dir / SAMPLE_GRID) as grid:
        cell = np.asarray(grid.crop((0, 0, IMAGE_SIZE, IMAGE_SIZE)), dtype=np.int16)
    assert np.abs(with_adapter - cell).max() <= 1
    pipeline.unload_lora_weights()
    assert np.array_equal(draw(), without)


def interrupted_on_call(number: int) -> Callable[..., Any]:
    real_step = train.training_step_loss
    calls = {"n": 0}

    def step(*args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == number:
            raise KeyboardInterrupt("spot instance reclaimed")
        return real_step(*args)

    return step


@pytest.mark.slow
def test_an_interrupted_job_resumes_to_the_same_adapter(
    tiny_sdxl: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given four straight steps (over an epoch boundary: 3 images, batch 1) as the reference
    data = dataset(tmp_path / "data")
    straight = arguments(tiny_sdxl, data, tmp_path / "straight", "--max_steps", "4")
    train.main(straight)
    # And the same run, checkpointing every 2 steps, killed on its fourth batch
    args = arguments(
        tiny_sdxl, data, tmp_path / "resumed", "--max_steps", "4", "--checkpoint_steps", "2"
    )
    monkeypatch.setattr(train, "training_step_loss", interrupted_on_call(4))
    with pytest.raises(KeyboardInterrupt):
        train.main(args)
    monkeypatch.undo()
    assert sorted(path.name for path in args.checkpoint_dir.iterdir()) == ["step-000000002"]
    # The checkpoint holds the LoRA weights, not the base.
    state = torch.load(args.checkpoint_dir / "step-000000002" / CHECKPOINT_FILE, weights_only=True)
    assert state["lora"]["unet"]
    assert all("lora_" in name for name in state["lora"]["unet"])

    # When it restarts with the same checkpoint folder
    log = io.StringIO()
    with redirect_stdout(log):
        summary = train.main(args)

    # Then it trains steps 3 and 4 only and ends with exactly the reference adapter
    assert [int(match[1]) for match in STEP_LINE.findall(log.getvalue())] == [3, 4]
    assert summary["optimizer_steps"] == 4
    assert_same(adapter(straight.model_dir), adapter(args.model_dir))


@pytest.mark.slow
def test_a_checkpoint_of_another_lora_scale_is_not_resumed(
    tiny_sdxl: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a run (rank 4, alpha 4) killed after its first checkpoint
    data = dataset(tmp_path / "data")
    first = arguments(tiny_sdxl, data, tmp_path, "--max_steps", "2", "--checkpoint_steps", "1")
    monkeypatch.setattr(train, "training_step_loss", interrupted_on_call(2))
    with pytest.raises(KeyboardInterrupt):
        train.main(first)
    monkeypatch.undo()
    assert (first.checkpoint_dir / "step-000000001" / CHECKPOINT_FILE).is_file()

    # When a run with alpha 8 starts with the same checkpoint folder (the same weight shapes,
    # twice the scale)
    other = arguments(tiny_sdxl, data, tmp_path, "--max_steps", "2", "--lora_alpha", "8")
    log = io.StringIO()
    with redirect_stdout(log):
        summary = train.main(other)

    # Then it trains from the start: the checkpoint's weights were learnt at another scale
    assert [int(match[1]) for match in STEP_LINE.findall(log.getvalue())] == [1, 2]
    assert summary["optimizer_steps"] == 2


def nan_on_call(number: int) -> Callable[..., Any]:
    real_step = train.training_step_loss
    calls = {"n": 0}

    def step(*args: Any) -> Losses:
        calls["n"] += 1
        losses: Losses = real_step(*args)
        if calls["n"] == number:
            nan = losses.total * float("nan")
            return Losses(total=nan, instance=nan, prior=None)
        return losses

    return step


@pytest.mark.slow
def test_a_nan_loss_stops_training_and_exports_the_last_good_adapter(
    tiny_sdxl: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a run that checkpoints every step and meets a NaN loss on its third batch
    args = arguments(
        tiny_sdxl,
        dataset(tmp_path / "data"),
        tmp_path,
        "--max_steps",
        "3",
        "--checkpoint_steps",
        "1",
    )
    monkeypatch.setattr(train, "training_step_loss", nan_on_call(3))

    # When it trains
    log = io.StringIO()
    with redirect_stdout(log):
        assert train.run_with_args(args) == 0

    # Then it stops, says why, and exports the adapter of the two good steps
    summary = json.loads((args.model_dir / "training_summary.json").read_text())
    assert summary["status"] == "stopped_non_finite"
    assert "non-finite loss (nan) at epoch 1, batch 2" in summary["stopped_reason"]
    assert summary["optimizer_steps"] == 2
    assert re.search(r"^\[metric\] epoch=1 step=2 step_loss=nan$", log.getvalue(), re.M)
    assert json.loads((args.model_dir / ADAPTER_METADATA).read_text())["stopped_non_finite"]
    saved = torch.load(args.checkpoint_dir / "step-000000002" / CHECKPOINT_FILE, weights_only=True)[
        "lora"
    ]["unet"]
    exported = adapter(args.model_dir)
    assert len(exported) == len(saved)
    for name, tensor in saved.items():
        # peft's `…to_q.lora_A.default.weight` is diffusers' `unet.…to_q.lora.down.weight`
        # (lora_B: lora.up), the names diffusers' own SDXL script saves.
        diffusers_name = name.replace(".lora_A.default.", ".lora.down.").replace(
            ".lora_B.default.", ".lora.up."
        )
        torch.testing.assert_close(exported["unet." + diffusers_name], tensor, rtol=0, atol=0)
    assert not args.failure_file.exists()


def test_a_nan_on_the_first_step_fails_the_job_without_an_adapter(
    tiny_sdxl: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = arguments(tiny_sdxl, dataset(tmp_path / "data"), tmp_path, "--max_steps", "2")
    monkeypatch.setattr(train, "training_step_loss", nan_on_call(1))
    assert train.run_with_args(args) == 1
    assert "nothing was learned, no adapter saved" in args.failure_file.read_text()
    assert not (args.model_dir / ADAPTER_WEIGHTS).exists()


@pytest.mark.slow
def test_text_encoder_lora_and_prior_preservation(
    tiny_sdxl: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given prior preservation with no class images in the dataset, and text-encoder LoRAs
    args = arguments(
        tiny_sdxl,
        dataset(tmp_path / "data"),
        tmp_path,
        "--max_steps",
        "2",
        "--with_prior_preservation",
        "true",
        "--num_class_images",
        "2",
        "--train_text_encoder",
        "true",
    )
    summary, log = run(args, monkeypatch)

    # Then the base drew the class images, the loss has its prior part, and the adapter
    # carries both text encoders' LoRAs beside the UNet's
    assert summary["class_images"] == {"used": 2, "generated": 2}
    assert all(match[4] for match in STEP_LINE.findall(log))
    prefixes = {name.split(".", 1)[0] for name in adapter(args.model_dir)}
    assert prefixes == {"unet", "text_encoder", "text_encoder_2"}
    metadata = json.loads((args.model_dir / ADAPTER_METADATA).read_text())
    assert metadata["text_encoder_target_modules"] == ["q_proj", "k_proj", "v_proj", "out_proj"]
    pipeline = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl)
    pipeline.load_lora_weights(args.model_dir, weight_name=ADAPTER_WEIGHTS)
    for encoder in (pipeline.text_encoder, pipeline.text_encoder_2):
        assert any("lora_A" in name for name in encoder.state_dict())


@pytest.mark.slow
def test_reduced_precision_keeps_the_lora_and_the_vae_in_float32(
    tiny_sdxl: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    # Given the GPU's mixed precision, with bfloat16 standing in for fp16 on the CPU, gradient
    # checkpointing, and class images drawn by the base
    monkeypatch.setattr(train, "resolve_mixed_precision", lambda requested: "bf16")
    # Accelerate keeps one process-wide state and refuses another precision once set.
    request.addfinalizer(lambda: AcceleratorState._reset_state(reset_partial_state=True))
    AcceleratorState._reset_state(reset_partial_state=True)
    args = arguments(
        tiny_sdxl,
        dataset(tmp_path / "data"),
        tmp_path,
        "--max_steps",
        "2",
        "--gradient_checkpointing",
        "true",
        "--with_prior_preservation",
        "true",
        "--num_class_images",
        "2",
    )
    summary, log = run(args, monkeypatch)

    # Then the frozen base is stored in bfloat16, the trained LoRA and the VAE in float32, and
    # the run trains and exports a float32 adapter
    assert summary["status"] == "completed"
    assert summary["mixed_precision"] == "bf16"
    losses = [float(match[2]) for match in STEP_LINE.findall(log)]
    assert len(losses) == 2
    assert all(math.isfinite(loss) for loss in losses)
    unet = summary["pipeline"].unet
    dtypes = {("lora_" in name, parameter.dtype) for name, parameter in unet.named_parameters()}
    assert dtypes == {(True, torch.float32), (False, torch.bfloat16)}
    assert summary["pipeline"].vae.dtype == torch.float32
    assert {tensor.dtype for tensor in adapter(args.model_dir).values()} == {torch.float32}
    with Image.open(args.model_dir / SAMPLE_GRID) as grid:
        assert np.asarray(grid).std() > 0
