"""`.dlc-venv`, the stand-in for the Hugging Face inference container (`make install-dlc`).

It holds the container's transformers, diffusers, accelerate and peft releases
(requirements/inference-dlc.txt). The tests use it twice for each handler: pip must find
`code/requirements.txt` satisfied without an index (the toolkit pip-installs that file at start and
the endpoints run with network isolation), and an archive must answer there as it does here.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DLC_PYTHON = ROOT / ".dlc-venv" / "bin" / "python"
DLC_REQUIREMENTS = ROOT / "requirements" / "inference-dlc.txt"


def require_dlc_venv() -> None:
    if not DLC_PYTHON.exists():
        pytest.skip(f"{DLC_PYTHON} is missing: `make install-dlc` builds it (make test does)")


def pinned(package: str) -> str:
    match = re.search(rf"^{re.escape(package)}==(\S+)$", DLC_REQUIREMENTS.read_text(), re.M | re.I)
    assert match, f"{DLC_REQUIREMENTS} pins no {package}"
    return match.group(1)


def dlc_version(package: str) -> str:
    completed = subprocess.run(
        [str(DLC_PYTHON), "-c", f"import importlib.metadata as m; print(m.version({package!r}))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return completed.stdout.strip()


def pip_would_install(requirements: Path) -> str:
    """What `pip install -r requirements` would add to `.dlc-venv` without a package index."""
    completed = subprocess.run(
        [str(DLC_PYTHON), "-m", "pip", "install", "--dry-run", "--no-index",
         "--disable-pip-version-check", "--requirement", str(requirements)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    return "\n".join(
        line for line in completed.stdout.splitlines() if line.startswith("Would install")
    )


def serve_under_dlc(model_dir: Path, body: str) -> dict[str, Any]:
    """The response of `tests/dlc_serve.py` run by `.dlc-venv`'s interpreter."""
    completed = subprocess.run(
        [str(DLC_PYTHON), str(ROOT / "tests" / "dlc_serve.py"), str(model_dir)],
        input=body.encode(),
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr.decode()[-3000:]
    served: dict[str, Any] = json.loads(completed.stdout.decode().strip().splitlines()[-1])
    return served
