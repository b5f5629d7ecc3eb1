"""The training code's Python packages, as wheels inside its own archive.

The SageMaker training toolkit pip-installs `requirements.txt` from the code folder when a job
starts. Training jobs run with network isolation, so that install cannot reach PyPI: the packages
travel with the code instead. At synth, `pip download` fetches the pinned wheels for the training
image's Python and platform (no Docker, no compiling: `--only-binary`), and the archive's
`requirements.txt` gets `--no-index` and `--find-links wheels` in front of the pins, so the
job's pip installs from the archive or fails at start with pip's own message: it never goes to
the internet.

Only the pins themselves are fetched (`--no-deps`): what they depend on (torch, tokenizers,
huggingface_hub, safetensors ...) is already in the Hugging Face training image, and a CUDA torch
in the archive would be gigabytes. If the image lacks a dependency, the offline install names it
when the job starts.

Downloads are cached per requirements content, platform and Python (`~/.cache/atelier/`), so only
the first synth on a machine fetches them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from infra.constructs.local_bundling import BundlingError

WHEELS_FOLDER = "wheels"
# What the archive's requirements.txt starts with: install only what the archive carries.
OFFLINE_OPTIONS = (
    "# Written at synth (infra/constructs/training_wheels.py): the job has no internet, so pip\n"
    "# installs these pins from the wheels shipped in this archive, and from nowhere else.\n"
    "--no-index\n"
    f"--find-links {WHEELS_FOLDER}\n"
)
# Marks a cache folder whose download finished.
COMPLETE_MARKER = ".complete"


def default_cache_root() -> Path:
    root = os.environ.get("ATELIER_WHEEL_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "atelier" / "training-wheels"


@dataclass(frozen=True)
class TrainingWheels:
    """The wheels of `requirements_file` for CPython `python_version` on `platform`."""

    requirements_file: Path
    # The training image's Python ("3.12" for a `...-py312-...` image tag).
    python_version: str
    platform: str = "manylinux2014_x86_64"
    cache_root: Path = field(default_factory=default_cache_root)

    def describe(self) -> list[str]:
        """Words for the asset hash: another platform or Python is another archive."""
        return ["vendored-wheels", self.platform, f"python={self.python_version}"]

    def cache_key(self) -> str:
        digest = hashlib.sha256(self.requirements_file.read_bytes())
        digest.update(f"\n{self.platform}\n{self.python_version}".encode())
        return digest.hexdigest()[:32]

    def download_command(self, destination: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--requirement",
            str(self.requirements_file),
            "--dest",
            str(destination),
            "--no-deps",
            "--only-binary=:all:",
            "--platform",
            self.platform,
            "--implementation",
            "cp",
            "--python-version",
            self.python_version,
            "--disable-pip-version-check",
            "--quiet",
        ]

    def fetch(self) -> list[Path]:
        """The wheel files, downloaded once per cache key."""
        folder = self.cache_root / self.cache_key()
        if not (folder / COMPLETE_MARKER).is_file():
            self.cache_root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=self.cache_root) as scratch:
                result = subprocess.run(  # noqa: S603
                    self.download_command(Path(scratch)),
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if result.returncode != 0:
                    details = (result.stderr or result.stdout).strip().splitlines()[-15:]
                    raise BundlingError(
                        f"pip could not download the training wheels of "
                        f"{self.requirements_file.name} for {self.platform} / Python "
                        f"{self.python_version}:\n" + "\n".join(details)
                    )
                (Path(scratch) / COMPLETE_MARKER).touch()
                shutil.rmtree(folder, ignore_errors=True)
                Path(scratch).rename(folder)
                # TemporaryDirectory would remove the renamed folder's old name only.
                Path(scratch).mkdir()
        wheels = sorted(folder.glob("*.whl"))
        if not wheels:
            raise BundlingError(f"no wheels in {folder}: remove it and synthesize again")
        return wheels

    def archive_requirements(self) -> bytes:
        return (OFFLINE_OPTIONS + self.requirements_file.read_text()).encode("utf-8")
