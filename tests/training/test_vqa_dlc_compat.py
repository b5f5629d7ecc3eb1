"""Archives exported by train.py load and answer under the inference container's transformers.

Training runs the training group's transformers (4.57); the endpoint runs the Hugging Face
inference container's (infra/constructs/hf_images.py). `.dlc-venv` (`make install-dlc`, a
prerequisite of `make test`) holds the container's release; the archive is served there through
the real toolkit and must answer exactly as it does here.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path

import pytest
import transformers

from infra.constructs.hf_images import TAGS
from tests.toolkit_support import invoke, served
from tests.vqa_data_support import make_fashion_dataset
from vqa import prepare, train

ROOT = Path(__file__).resolve().parents[2]
DLC_PYTHON = ROOT / ".dlc-venv" / "bin" / "python"
DLC_REQUIREMENTS = ROOT / "requirements" / "inference-dlc.txt"


def pinned_transformers() -> str:
    match = re.search(r"^transformers==(\S+)$", DLC_REQUIREMENTS.read_text(), re.M)
    assert match, f"{DLC_REQUIREMENTS} pins no transformers"
    return match.group(1)


def test_the_stand_in_venv_pins_the_inference_images_transformers() -> None:
    match = re.search(r"transformers(\d+\.\d+\.\d+)", TAGS["inference"])
    assert match
    assert pinned_transformers() == match.group(1)
    assert transformers.__version__ != match.group(1), "the check would compare a version to itself"


@pytest.mark.slow
def test_an_exported_archive_answers_the_same_under_the_inference_images_transformers(
    tiny_blip2: Path, tmp_path: Path
) -> None:
    if not DLC_PYTHON.exists():
        pytest.skip(f"{DLC_PYTHON} is missing: `make install-dlc` builds it (make test does)")
    # Given an archive exported by train.py with the training group's transformers
    source = make_fashion_dataset(tmp_path / "kaggle", products=6)
    prepare.build_dataset(source, tmp_path / "data", validation_fraction=0.34, seed=1)
    args = train.parse_args(
        [
            "--base_model", str(tiny_blip2),
            "--train_dir", str(tmp_path / "data" / "train"),
            "--validation_dir", str(tmp_path / "data" / "validation"),
            "--model_dir", str(tmp_path / "model"),
            "--output_data_dir", str(tmp_path / "output"),
            "--checkpoint_dir", str(tmp_path / "checkpoints"),
            "--epochs", "1",
        ],
        env={},
    )  # fmt: skip
    train.main(args)
    image = next((source / "images").iterdir()).read_bytes()
    questions = [{"name": name, "text": text} for name, text in prepare.DEFAULT_QUESTIONS.items()]
    body = json.dumps({"image": base64.b64encode(image).decode(), "questions": questions})

    # When the toolkit serves it here and under the container's transformers
    with served(args.model_dir) as service:
        here = json.loads(invoke(service, body.encode()))
    completed = subprocess.run(
        [str(DLC_PYTHON), str(ROOT / "tests" / "dlc_serve.py"), str(args.model_dir)],
        input=body.encode(),
        capture_output=True,
        timeout=300,
        check=False,
    )

    # Then both answer every question with the same text
    assert completed.returncode == 0, completed.stderr.decode()[-3000:]
    there = json.loads(completed.stdout.decode().strip().splitlines()[-1])
    assert there["transformers"] == pinned_transformers()
    assert there["response"] == here
    assert list(here["attributes"]) == list(prepare.DEFAULT_QUESTIONS)
