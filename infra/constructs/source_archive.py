"""A folder's contents as a `.tar.gz` S3 asset, built without Docker.

SageMaker's framework containers (sagemaker-training-toolkit) fetch `sagemaker_submit_directory`
from S3 and open it with `tarfile.open(mode="r:gz")`: a zip, which is what CDK makes of a
directory asset, fails there. So the training code is bundled locally into one gzipped tar,
uploaded as a file asset (`BundlingOutput.SINGLE_FILE`), with the folder's contents at the archive
root (`vqa/train.py` extracts to `/opt/ml/code/vqa/train.py`).

The archive is reproducible (sorted entries, fixed times, owners and modes, no gzip timestamp), so
the same source always gives the same bytes.
"""

from __future__ import annotations

import fnmatch
import gzip
import io
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import BundlingOptions, BundlingOutput, DockerImage, ILocalBundling
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from infra.constructs.training_wheels import WHEELS_FOLDER, TrainingWheels

ARCHIVE_NAME = "sourcedir.tar.gz"
# Never shipped: caches and tests only make the archive larger.
IGNORED_PATTERNS = ("__pycache__", "*.pyc", "tests", ".pytest_cache", ".mypy_cache", ".ruff_cache")


def _included_files(source_dir: Path, ignored: Sequence[str]) -> Iterator[Path]:
    for path in sorted(source_dir.rglob("*")):
        relative = path.relative_to(source_dir)
        if any(fnmatch.fnmatch(part, pattern) for part in relative.parts for pattern in ignored):
            continue
        if path.is_file():
            yield path


def _add(tar: tarfile.TarFile, name: str, data: bytes, *, executable: bool = False) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o755 if executable else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data))


def write_archive(
    source_dir: Path,
    archive: Path,
    ignored: Sequence[str] = IGNORED_PATTERNS,
    wheels: TrainingWheels | None = None,
) -> None:
    """Write the files under `source_dir` (relative paths, no top folder) into a .tar.gz; with
    `wheels`, also the wheels under `wheels/` and a requirements.txt that installs from them
    only."""
    replaced: dict[str, bytes] = {}
    extra: list[tuple[str, bytes]] = []
    if wheels is not None:
        replaced[wheels.requirements_file.relative_to(source_dir).as_posix()] = (
            wheels.archive_requirements()
        )
        extra = [(f"{WHEELS_FOLDER}/{path.name}", path.read_bytes()) for path in wheels.fetch()]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in _included_files(source_dir, ignored):
            name = path.relative_to(source_dir).as_posix()
            data = replaced.get(name) or path.read_bytes()
            _add(tar, name, data, executable=bool(path.stat().st_mode & 0o111))
        for name, data in extra:
            _add(tar, name, data)
    with (
        archive.open("wb") as raw,
        gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as zipped,
    ):
        zipped.write(buffer.getvalue())


@jsii.implements(ILocalBundling)
class TarGzBundling:
    """Local bundler: `source_dir` → `<output>/sourcedir.tar.gz`."""

    def __init__(
        self,
        *,
        source_dir: Path,
        ignored: Sequence[str] = IGNORED_PATTERNS,
        wheels: TrainingWheels | None = None,
    ) -> None:
        self.source_dir = source_dir
        self.ignored = tuple(ignored)
        self.wheels = wheels

    def try_bundle(self, output_dir: str, *_args: Any, **_options: Any) -> bool:
        write_archive(
            self.source_dir, Path(output_dir) / ARCHIVE_NAME, self.ignored, wheels=self.wheels
        )
        return True


def source_archive_asset(
    scope: Construct,
    construct_id: str,
    *,
    source_dir: Path,
    ignored: Sequence[str] = IGNORED_PATTERNS,
    wheels: TrainingWheels | None = None,
) -> s3_assets.Asset:
    """`source_dir`'s files as one .tar.gz object in the CDK assets bucket (with `wheels`, the
    packages of its requirements.txt too, see training_wheels.py)."""
    return s3_assets.Asset(
        scope,
        construct_id,
        path=str(source_dir),
        # Also what the asset hash is computed from: a change to an ignored file is no change.
        exclude=[f"**/{pattern}" for pattern in ignored],
        bundling=BundlingOptions(
            # Required by the API but never pulled: the local bundler always does the work.
            image=DockerImage.from_registry("atelier-local-bundling-only"),
            local=TarGzBundling(source_dir=source_dir, ignored=ignored, wheels=wheels),
            output_type=BundlingOutput.SINGLE_FILE,
            # Never run; part of the asset hash, so a change of format gives a new asset.
            command=["tar-gz", ARCHIVE_NAME, *ignored, *(wheels.describe() if wheels else [])],
        ),
    )
