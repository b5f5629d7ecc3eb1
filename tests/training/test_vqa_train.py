"""LoRA fine-tuning of the tiny BLIP-2 on CPU: training, export, resume and the NaN guard."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from vqa import train
from vqa.metrics import attribute_metric_name

COLOURS = {"Red": (200, 30, 30), "Blue": (30, 30, 200), "Green": (30, 160, 30)}
QUESTION = {
    "colour": "What is the colour of the garment in this picture?",
    "sleeve_length": "What is the sleeve length of the garment in this picture?",
}


def write_split(directory: Path, product_ids: list[int]) -> Path:
    """A split as vqa.prepare writes it: rows.jsonl and images/<id>.jpg."""
    (directory / "images").mkdir(parents=True)
    lines = []
    for product_id in product_ids:
        colour = list(COLOURS)[product_id % 3]
        Image.new("RGB", (48, 48), COLOURS[colour]).save(directory / "images" / f"{product_id}.jpg")
        sleeves = "Long Sleeves" if product_id % 2 else "Short Sleeves"
        for attribute, answer in (
            ("colour", f"Colour: {colour}"),
            ("sleeve_length", f"Sleeve Length: {sleeves}"),
        ):
            lines.append(
                json.dumps(
                    {
                        "id": str(product_id),
                        "image": f"images/{product_id}.jpg",
                        "attribute": attribute,
                        "question": QUESTION[attribute],
                        "answer": answer,
                    }
                )
            )
    (directory / "rows.jsonl").write_text("\n".join(lines) + "\n")
    return directory


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "dataset"
    write_split(root / "train", [1, 2, 3, 4])  # 8 rows: 2 batches of 4 per epoch
    write_split(root / "validation", [10, 11])
    return root


def arguments(tiny_blip2: Path, dataset: Path, out: Path, *extra: str) -> argparse.Namespace:
    return train.parse_args(
        [
            "--base_model",
            str(tiny_blip2),
            "--train_dir",
            str(dataset / "train"),
            "--validation_dir",
            str(dataset / "validation"),
            "--model_dir",
            str(out / "model"),
            "--output_data_dir",
            str(out / "data"),
            "--checkpoint_dir",
            str(out / "checkpoints"),
            "--failure_file",
            str(out / "failure"),
            "--batch_size",
            "4",
            "--learning_rate",
            "0.01",
            "--log_every_steps",
            "1",
            *extra,
        ],
        env={},
    )


def exported_weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(model_dir / "model.safetensors")


# ---------------------------------------------------------------------------------------------
# Arguments and data


def test_sagemaker_environment_supplies_the_paths() -> None:
    env = {
        "SM_CHANNEL_TRAIN": "/data/train",
        "SM_CHANNEL_VALIDATION": "/data/validation",
        "SM_MODEL_DIR": "/model",
        "SM_OUTPUT_DATA_DIR": "/output/data",
        "SM_OUTPUT_DIR": "/output",
        "SM_CHANNEL_MODEL": "/data/model",
    }
    args = train.parse_args([], env=env)
    assert (args.train_dir, args.validation_dir, args.model_dir) == (
        Path("/data/train"),
        Path("/data/validation"),
        Path("/model"),
    )
    # The `model` channel is what loads (checked against its manifest, test_base_model_channel)
    assert args.model_channel == Path("/data/model")
    assert args.failure_file == Path("/output/failure")
    assert args.checkpoint_dir == Path("/opt/ml/checkpoints")


def test_defaults_follow_the_spec() -> None:
    args = train.parse_args([], env={})
    assert (args.base_model, args.base_model_revision) == (
        "Salesforce/blip2-flan-t5-xl",
        "0eb0d3b46c14c1f8c7680bca2693baafdb90bb28",
    )
    assert (args.lora_r, args.lora_alpha, args.lora_dropout) == (8, 32, 0.05)
    assert args.lora_target_modules == ["q", "v"]
    assert args.epochs == 10
    assert args.model_dir == Path("/opt/ml/model")


def test_hyperparameters_arrive_as_strings_like_sagemaker_sends_them() -> None:
    args = train.parse_args(
        ["--epochs", "3", "--learning_rate", "2e-5", "--lora_target_modules", "q, k ,v"], env={}
    )
    assert (args.epochs, args.learning_rate, args.lora_target_modules) == (3, 2e-5, ["q", "k", "v"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epochs", "0"], "must be at least 1"),
        (["--learning_rate", "-1"], "must be a positive number"),
        (["--lora_dropout", "1.5"], r"must be in \[0, 1\)"),
        (["--lora_target_modules", " , "], "name at least one module"),
        (["--precision", "fp16"], "invalid choice"),
        (["--lora_r", "64", "--lora_alpha", "16"], "did you swap them"),
        (["--learning_rat", "1e-4"], "unrecognized arguments"),
    ],
)
def test_bad_hyperparameters_stop_before_anything_loads(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train.parse_args(argv, env={})
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_a_malformed_row_fails_with_its_line_number(tmp_path: Path) -> None:
    split = write_split(tmp_path / "train", [1])
    with (split / "rows.jsonl").open("a") as rows:
        rows.write('{"id": "2", "image": "images/2.jpg"}\n')
    with pytest.raises(train.TrainingError, match=r"rows.jsonl:3: not a valid row"):
        train.read_rows(split)


def test_a_row_whose_image_is_missing_fails(tmp_path: Path) -> None:
    split = write_split(tmp_path / "train", [1])
    (split / "images" / "1.jpg").unlink()
    with pytest.raises(train.TrainingError, match=r"rows.jsonl:1: image .*1.jpg not found"):
        train.read_rows(split)


def test_an_empty_split_fails(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").write_text("\n")
    with pytest.raises(train.TrainingError, match="holds no rows"):
        train.read_rows(tmp_path)


def test_epoch_order_depends_only_on_seed_and_epoch() -> None:
    first = train.epoch_batches(10, 3, seed=1, epoch=2)
    assert first == train.epoch_batches(10, 3, seed=1, epoch=2)
    assert first != train.epoch_batches(10, 3, seed=1, epoch=3)
    assert sorted(i for batch in first for i in batch) == list(range(10))


@pytest.mark.parametrize("precision", ["bf16", "8bit"])
def test_gpu_precisions_are_refused_on_cpu(precision: str) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the CPU refusal cannot be observed")
    with pytest.raises(train.TrainingError, match="GPU"):
        train.resolve_precision(precision)


def test_lora_trains_only_adapters_on_the_t5_attention(tiny_blip2: Path) -> None:
    base = train.load_base_model(str(tiny_blip2), "fp32")
    model = train.add_lora(base, train.parse_args([], env={}))
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    assert names
    assert all("lora_" in name and "language_model" in name for name in names)
    assert {name.split(".lora_")[0].rsplit(".", 1)[1] for name in names} == {"q", "v"}


def test_unknown_lora_target_modules_fail_clearly(tiny_blip2: Path) -> None:
    base = train.load_base_model(str(tiny_blip2), "fp32")
    args = train.parse_args(["--lora_target_modules", "nonexistent"], env={})
    with pytest.raises(train.TrainingError, match=r"LoRA target modules \['nonexistent'\]"):
        train.add_lora(base, args)


# ---------------------------------------------------------------------------------------------
# Training runs


@pytest.mark.slow
def test_training_lowers_the_loss_and_exports_a_merged_model(
    tiny_blip2: Path, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # When two epochs run
    summary = train.main(arguments(tiny_blip2, dataset, tmp_path, "--epochs", "2"))

    # Then the loss falls and every epoch is logged in the metric format
    first, second = summary["epochs"]
    assert second["train_loss"] < first["train_loss"]
    assert second["validation_loss"] < first["validation_loss"]
    assert summary["status"] == "completed"
    log = capsys.readouterr().out
    assert re.search(
        r"^\[metric\] epoch=2 train_loss=\S+ validation_loss=\S+ validation_exact_match=\S+$",
        log,
        re.M,
    )
    for attribute in QUESTION:
        assert re.search(rf"^\[metric\] epoch=2 {attribute_metric_name(attribute)}=\S+$", log, re.M)
    assert len(re.findall(r"^\[metric\] epoch=\d step=\d+ batch_loss=\S+$", log, re.M)) == 4

    # And the archive is a plain BLIP-2 (LoRA merged into q and v), processor and code included
    model_dir = tmp_path / "model"
    weights = exported_weights(model_dir)
    assert not [name for name in weights if "lora" in name]
    base = load_file(tiny_blip2 / "model.safetensors")
    changed = {name for name in base if not torch.equal(base[name], weights[name])}
    assert changed
    assert all(re.search(r"\.(q|v)\.weight$", name) for name in changed)
    assert (model_dir / "code" / "inference.py").read_text() == (
        Path(train.__file__).parent / "inference.py"
    ).read_text()
    assert (model_dir / "code" / "requirements.txt").is_file()
    assert (model_dir / "preprocessor_config.json").is_file()
    assert json.loads((model_dir / "training_summary.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_a_job_interrupted_mid_epoch_resumes_to_the_same_weights(
    tiny_blip2: Path, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an uninterrupted reference run of two epochs
    train.main(arguments(tiny_blip2, dataset, tmp_path / "reference", "--epochs", "2"))

    # And a run checkpointing every step that dies in the middle of epoch 2 (a spot interruption)
    interrupted = arguments(
        tiny_blip2, dataset, tmp_path / "spot", "--epochs", "2", "--checkpoint_steps", "1"
    )
    real_step = train.training_step_loss
    calls = {"n": 0}

    def dies_on_fourth_batch(model: Any, batch: Any) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("spot instance reclaimed")
        return real_step(model, batch)

    monkeypatch.setattr(train, "training_step_loss", dies_on_fourth_batch)
    with pytest.raises(KeyboardInterrupt):
        train.main(interrupted)
    monkeypatch.setattr(train, "training_step_loss", real_step)
    assert [p.name for p in train.checkpoints(interrupted.checkpoint_dir)] == [
        "step-000000002",
        "step-000000003",
    ]

    # When the job restarts with the same checkpoint folder
    summary = train.main(interrupted)

    # Then it trains only the missing batch and ends where the reference ended
    assert summary["optimizer_steps"] == 4
    reference = exported_weights(tmp_path / "reference" / "model")
    resumed = exported_weights(tmp_path / "spot" / "model")
    for name, tensor in reference.items():
        torch.testing.assert_close(resumed[name], tensor, msg=name)


@pytest.mark.slow
def test_an_unreadable_newest_checkpoint_falls_back_to_the_previous_one(
    tiny_blip2: Path, dataset: Path, tmp_path: Path
) -> None:
    args = arguments(tiny_blip2, dataset, tmp_path, "--epochs", "1", "--checkpoint_steps", "1")
    train.main(args)
    newest = train.checkpoints(args.checkpoint_dir)[-1]
    (newest / train.CHECKPOINT_FILE).write_bytes(b"cut short by a sync")

    base = train.load_base_model(str(tiny_blip2), "fp32")
    model = train.add_lora(base, args)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    progress = train.restore_checkpoint(args.checkpoint_dir, model, optimizer)
    assert progress is not None
    assert progress.optimizer_steps == 1


def nan_on_call(number: int) -> Callable[[Any, Any], torch.Tensor]:
    real_step = train.training_step_loss
    calls = {"n": 0}

    def step(model: Any, batch: Any) -> torch.Tensor:
        calls["n"] += 1
        loss = real_step(model, batch)
        return loss * float("nan") if calls["n"] == number else loss

    return step


@pytest.mark.slow
def test_a_nan_loss_stops_training_and_keeps_the_last_good_weights(
    tiny_blip2: Path, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a reference run that stops after exactly two good steps (one epoch of two batches)
    train.main(arguments(tiny_blip2, dataset, tmp_path / "two-steps", "--epochs", "1"))

    # When a two-epoch run meets a NaN loss on its third batch
    monkeypatch.setattr(train, "training_step_loss", nan_on_call(3))
    summary = train.main(arguments(tiny_blip2, dataset, tmp_path / "nan", "--epochs", "2"))

    # Then it stops, says why, and exports the weights of the two good steps
    assert summary["status"] == "stopped_non_finite"
    assert "non-finite loss (nan) at epoch 2, batch 0" in summary["stopped_reason"]
    assert summary["optimizer_steps"] == 2
    good = exported_weights(tmp_path / "two-steps" / "model")
    kept = exported_weights(tmp_path / "nan" / "model")
    for name, tensor in good.items():
        torch.testing.assert_close(kept[name], tensor, msg=name)
    assert all(torch.isfinite(tensor).all() for tensor in kept.values())


def test_an_unpinned_hub_base_model_fails_the_job_before_it_loads(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given another hub id than the default, without a commit hash
    def no_loading(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("nothing may load before the pin is checked")

    monkeypatch.setattr(train, "load_base_model", no_loading)
    args = train.parse_args(
        [
            "--base_model",
            "Salesforce/blip2-opt-2.7b",
            "--train_dir",
            str(dataset / "train"),
            "--validation_dir",
            str(dataset / "validation"),
            "--failure_file",
            str(tmp_path / "failure"),
        ],
        env={},
    )

    # When the job runs, then it fails and SageMaker's failure reason says why and how to fix it
    assert train.run_with_args(args) == 1
    reason = args.failure_file.read_text()
    assert "Salesforce/blip2-opt-2.7b is a Hugging Face Hub id without a pinned revision" in reason
    assert "set base_model_revision" in reason


@pytest.mark.slow
def test_a_nan_gradient_is_never_applied(
    tiny_blip2: Path, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_clip = torch.nn.utils.clip_grad_norm_

    def nan_norm(parameters: Any, max_norm: float) -> torch.Tensor:
        real_clip(parameters, max_norm)
        return torch.tensor(float("inf"))

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", nan_norm)
    args = arguments(tiny_blip2, dataset, tmp_path, "--epochs", "1")
    assert train.run_with_args(args) == 1
    assert "non-finite gradient norm (inf) at epoch 1, batch 0" in args.failure_file.read_text()
    assert "nothing was learned" in args.failure_file.read_text()
    assert not (tmp_path / "model" / "model.safetensors").exists()
