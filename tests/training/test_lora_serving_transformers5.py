"""The adapter handler under each inference image's libraries: transformers 4.x and 5.x.

The 4.x image's libraries are `.dlc-venv` (`make install-dlc`, requirements/inference-dlc.txt:
transformers 4.51.3, diffusers 0.33.1, peft 0.14.0).

That image (`2.6.0-transformers5.5.3`) ships diffusers 0.38.0 and installs the inference toolkit
from its git repository, because the PyPI toolkit 2.6.0 does not import under transformers 5;
neither the image nor that toolkit can be installed here. What stands in for them:
- the libraries: `.dlc5-venv` (requirements/inference-dlc5.txt: transformers 5.5.3, diffusers
  0.38.0, peft 0.18.1, accelerate 1.12.0, huggingface_hub 1.10.0, as the image ships them), or an
  interpreter named by `LORA_DLC5_PYTHON`, with this machine's CPU torch (the image's CUDA torch
  is not pulled);
- the toolkit: the driver below calls the handler as the toolkit's handler service does: it puts
  the archive's `code/` first on `sys.path`, imports `inference`, and runs `model_fn(model_dir)`
  once, then `input_fn(body, content_type)`, `predict_fn(data, model)` and
  `output_fn(prediction, accept)` per request; an exception is what the toolkit answers as a 400.
The archive and the adapters are written here, by the training group's libraries, as an
endpoint would receive them.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from lora_serving.package import write_code_dir

from tests.dlc_support import DLC_PYTHON, pinned, pip_would_install, require_dlc_venv
from tests.sdxl_model_support import build_tiny_sdxl
from tests.training.test_lora_serving import FAST, save_adapter

ROOT = Path(__file__).resolve().parents[2]
PYTHON = Path(os.environ.get("LORA_DLC5_PYTHON", ROOT / ".dlc5-venv" / "bin" / "python"))

DRIVER = r"""
import json, os, sys
model_dir, adapters, fast = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
os.environ["LORA_ADAPTERS_DIR"] = adapters
sys.path.insert(0, os.path.join(model_dir, "code"))
import diffusers, peft, transformers
import inference

model = inference.model_fn(model_dir)

def ask(**fields):
    body = json.dumps({"prompt": "a product photo", **fast, **fields})
    data = inference.input_fn(body, "application/json")
    try:
        prediction = inference.predict_fn(data, model)
        return json.loads(inference.output_fn(prediction, "application/json"))
    except ValueError as error:
        return {"error": str(error)}

answers = {
    "base": ask(), "red": ask(adapter="red-mug"), "blue": ask(adapter="blue-vase"),
    "red_again": ask(adapter="red-mug"), "base_again": ask(), "unknown": ask(adapter="no-such-mug"),
}
versions = {m.__name__: m.__version__ for m in (transformers, diffusers, peft)}
print(json.dumps({"versions": versions, "answers": answers}))
"""


@pytest.mark.parametrize(
    ("python", "transformers", "diffusers"),
    [
        pytest.param(DLC_PYTHON, "4.", None, id="transformers-4-image"),
        pytest.param(PYTHON, "5.", "0.38.0", id="transformers-5-image"),
    ],
)
def test_the_handler_serves_adapters_under_each_images_libraries(
    python: Path, transformers: str, diffusers: str | None, tmp_path: Path
) -> None:
    if not python.exists():
        pytest.skip(
            f"{python} is missing: `make install-dlc` (and `make test`) builds .dlc-venv and "
            "the transformers 5.x stand-in .dlc5-venv; LORA_DLC5_PYTHON names another "
            "interpreter for the latter"
        )
    model_dir = build_tiny_sdxl(tmp_path / "endpoint")
    write_code_dir(model_dir)
    for seed, name in enumerate(("red-mug", "blue-vase"), start=1):
        save_adapter(model_dir, tmp_path / "adapters" / name, seed=seed)

    completed = subprocess.run(
        [str(python), "-c", DRIVER, str(model_dir), str(tmp_path / "adapters"), json.dumps(FAST)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["versions"]["transformers"].startswith(transformers)
    assert result["versions"]["diffusers"] == (diffusers or pinned("diffusers"))
    answers = result["answers"]
    images = {
        key: answer["generated_images"] for key, answer in answers.items() if key != "unknown"
    }
    assert [answers[key]["adapter"] for key in ("base", "red", "blue")] == [
        None, "red-mug", "blue-vase"
    ]  # fmt: skip
    assert len({images[key][0] for key in ("base", "red", "blue")}) == 3
    assert images["red_again"] == images["red"]
    assert images["base_again"] == images["base"]
    assert answers["unknown"] == {
        "error": 'unknown adapter "no-such-mug": no adapter_model.safetensors or model.tar.gz at '
        f"{tmp_path / 'adapters' / 'no-such-mug'}"
    }


def test_the_archive_requirements_need_nothing_the_4x_image_lacks(tmp_path: Path) -> None:
    # The toolkit pip-installs code/requirements.txt at start, where no index may be reachable.
    require_dlc_venv()
    code = write_code_dir(tmp_path)
    assert pip_would_install(code / "requirements.txt") == ""
