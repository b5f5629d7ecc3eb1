"""The attribute model's whole offline path on CPU: prepare → train → export → serve."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.toolkit_support import invoke, served
from tests.vqa_data_support import make_fashion_dataset
from vqa import prepare, train


@pytest.mark.slow
def test_a_prepared_dataset_trains_into_an_archive_the_endpoint_serves(
    tiny_blip2: Path, tmp_path: Path
) -> None:
    # Given a Kaggle-layout catalogue turned into question/answer rows by the dataset builder
    source = make_fashion_dataset(tmp_path / "kaggle", products=12)
    dataset = tmp_path / "dataset"
    report = prepare.build_dataset(source, dataset, validation_fraction=0.25, seed=7)
    assert report.products_kept == 12

    # When the training script runs two epochs on it, as SageMaker would call it
    out = tmp_path / "job"
    exit_code = train.run(
        [
            "--base_model", str(tiny_blip2),
            "--train_dir", str(dataset / "train"),
            "--validation_dir", str(dataset / "validation"),
            "--model_dir", str(out / "model"),
            "--output_data_dir", str(out / "output"),
            "--checkpoint_dir", str(out / "checkpoints"),
            "--failure_file", str(out / "failure"),
            "--epochs", "2",
            "--learning_rate", "0.01",
        ]
    )  # fmt: skip

    # Then the loss falls from epoch to epoch
    assert exit_code == 0
    summary = json.loads((out / "model" / "training_summary.json").read_text())
    first, second = summary["epochs"]
    assert second["train_loss"] < first["train_loss"]
    assert second["validation_loss"] < first["validation_loss"]
    assert set(first["per_attribute"]) <= set(prepare.DEFAULT_QUESTIONS)

    # And the exported archive, served by the inference toolkit, answers every question the
    # description pipeline asks about a catalogue image
    questions = [{"name": name, "text": text} for name, text in prepare.DEFAULT_QUESTIONS.items()]
    image = next((source / "images").iterdir()).read_bytes()
    body = json.dumps({"image": base64.b64encode(image).decode(), "questions": questions})
    with served(out / "model") as service:
        attributes = json.loads(invoke(service, body.encode()))["attributes"]
    assert list(attributes) == list(prepare.DEFAULT_QUESTIONS)
    assert all(isinstance(answer, str) for answer in attributes.values())
