"""Docker-free bundling of a Lambda asset with extra Python dependencies.

CDK bundles assets in a Docker container unless a local bundler says it did the work. Docker is
not available where this project is built (CI, developers' machines), so this bundler does the
same with the local pip: it installs the requirements for the *Lambda* platform (manylinux wheels
for the function's Python and architecture, binary only, so nothing compiles for the wrong OS)
into the asset folder, then lays the function source over them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import ILocalBundling

# Lambda's Amazon Linux 2023 images are glibc 2.34; manylinux2014 wheels (glibc 2.17) run there
# and are what almost every project publishes.
PIP_PLATFORMS = {
    "x86_64": "manylinux2014_x86_64",
    "arm64": "manylinux2014_aarch64",
}

# Never shipped: caches, tests and type stubs only make the package larger and cold starts slower.
IGNORED_SOURCE_PATTERNS = ("__pycache__", "*.pyc", "tests", ".pytest_cache", ".mypy_cache")


class BundlingError(RuntimeError):
    """Local bundling failed; the message carries pip's own explanation."""


def pip_install_command(
    *,
    requirements_file: Path,
    output_dir: Path,
    python_version: str,
    architecture: str,
    extra_pip_args: Sequence[str] = (),
) -> list[str]:
    if architecture not in PIP_PLATFORMS:
        raise BundlingError(
            f"unknown Lambda architecture {architecture!r}; allowed: {', '.join(PIP_PLATFORMS)}"
        )
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--requirement",
        str(requirements_file),
        "--target",
        str(output_dir),
        "--platform",
        PIP_PLATFORMS[architecture],
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        "--only-binary=:all:",
        # Lambda compiles on first import anyway; .pyc built for this machine's Python is waste.
        "--no-compile",
        "--disable-pip-version-check",
        "--quiet",
        *extra_pip_args,
    ]


@jsii.implements(ILocalBundling)
class LocalPipBundling:
    """Bundle `source_dir` plus the packages of `requirements_file` without Docker."""

    def __init__(
        self,
        *,
        source_dir: Path,
        requirements_file: Path,
        python_version: str,
        architecture: str,
        extra_pip_args: Sequence[str] = (),
    ) -> None:
        if not requirements_file.is_file():
            raise BundlingError(f"requirements file not found: {requirements_file}")
        self.source_dir = source_dir
        self.requirements_file = requirements_file
        self.python_version = python_version
        self.architecture = architecture
        self.extra_pip_args = tuple(extra_pip_args)

    def describe(self) -> list[str]:
        """What this bundler produces, as words; used to give each distinct bundle its own hash."""
        return [
            "local-pip-bundling",
            f"requirements={self.requirements_file.name}",
            f"platform={PIP_PLATFORMS.get(self.architecture, self.architecture)}",
            f"python={self.python_version}",
            *self.extra_pip_args,
        ]

    def try_bundle(self, output_dir: str, *_args: Any, **_options: Any) -> bool:
        output = Path(output_dir)
        command = pip_install_command(
            requirements_file=self.requirements_file,
            output_dir=output,
            python_version=self.python_version,
            architecture=self.architecture,
            extra_pip_args=self.extra_pip_args,
        )
        result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        if result.returncode != 0:
            # Returning False would fall back to Docker and fail with an unrelated message.
            details = (result.stderr or result.stdout).strip().splitlines()[-15:]
            raise BundlingError(
                f"pip could not bundle {self.requirements_file.name} for "
                f"{PIP_PLATFORMS[self.architecture]} / Python {self.python_version}:\n"
                + "\n".join(details)
            )
        # Source last, so a function module always wins over a same-named file from a package.
        shutil.copytree(
            self.source_dir,
            output,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns(*IGNORED_SOURCE_PATTERNS),
        )
        return True
