"""The handler part of the SDXL adapter endpoint's model archive.

    python -m lora_serving.package --out MODEL_DIR

writes `MODEL_DIR/code/`: `inference.py` (this package's handler), `sd_serving.py` (what the
Stable Diffusion handlers share), `lora_serving/` (the store and cache it imports) and
`requirements.txt`. The inference toolkit puts `code/` on the import path, so the handler's
`lora_serving.*` and `sd_serving` imports resolve there as they do from the training code's root.
The SDXL base pipeline goes at MODEL_DIR's root (`save_pretrained`, or a staged copy); adapters
stay outside the archive, under the endpoint's `LORA_ADAPTERS_S3_URI`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
TRAINING_ROOT = PACKAGE_DIR.parent
HANDLER_MODULES = ("__init__.py", "adapter_store.py", "adapter_cache.py", "safe_tar.py")


def write_code_dir(model_dir: Path) -> Path:
    code = model_dir / "code"
    (code / "lora_serving").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PACKAGE_DIR / "inference.py", code / "inference.py")
    shutil.copyfile(TRAINING_ROOT / "sd_serving.py", code / "sd_serving.py")
    shutil.copyfile(PACKAGE_DIR / "serving-requirements.txt", code / "requirements.txt")
    for module in HANDLER_MODULES:
        shutil.copyfile(PACKAGE_DIR / module, code / "lora_serving" / module)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lora_serving.package",
        description="Write the SDXL adapter endpoint's handler into MODEL_DIR/code.",
    )
    parser.add_argument("--out", type=Path, required=True, help="the model archive's folder")
    args = parser.parse_args(argv)
    print(write_code_dir(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
