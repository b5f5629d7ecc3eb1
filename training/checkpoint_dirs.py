"""Checkpoint folders that survive a spot interruption at any moment (`vqa.train`,
`dreambooth.train`).

SageMaker syncs `/opt/ml/checkpoints` to S3 while the job runs and copies it back when a
restarted job begins, so a checkpoint can be cut off at any point: mid-write when the instance
is reclaimed, or mid-sync. Each checkpoint is a folder `step-<n>` written under a temporary name
and renamed when complete; only folders holding their marker file count; the newest that loads
wins and an unreadable one falls back to the one before. The folder's layout inside is the
caller's.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, TypeVar

LOG = logging.getLogger("checkpoint_dirs")

CHECKPOINT_PREFIX = "step-"
PARTIAL_PREFIX = ".partial-"

T = TypeVar("T")


def checkpoint_name(step: int) -> str:
    # Zero-padded so that name order is step order.
    return f"{CHECKPOINT_PREFIX}{step:09d}"


def complete_checkpoints(directory: Path, marker: str) -> list[Path]:
    """Checkpoint folders holding `marker`, oldest first."""
    if not directory.is_dir():
        return []
    return sorted(
        path
        for path in directory.iterdir()
        if path.name.startswith(CHECKPOINT_PREFIX) and (path / marker).is_file()
    )


@contextmanager
def atomic_checkpoint(directory: Path, step: int, *, marker: str, keep: int) -> Iterator[Path]:
    """A scratch folder to write checkpoint `step` into; on a clean exit it becomes
    `step-<n>` and all but the newest `keep` checkpoints are deleted.

    A job killed mid-write leaves only a `.partial-` folder, which no restore considers and the
    next save of that step replaces. Folders other than `step-*` (e.g. generated data kept with
    the checkpoints) are never touched.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / checkpoint_name(step)
    partial = directory / f"{PARTIAL_PREFIX}{final.name}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if not (partial / marker).is_file():
        shutil.rmtree(partial, ignore_errors=True)
        raise RuntimeError(f"checkpoint {final.name} was written without its {marker}")
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    for old in complete_checkpoints(directory, marker)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def restore_newest(
    directory: Path, marker: str, load: Callable[[Path], T]
) -> tuple[Path, T] | None:
    """`load` the newest checkpoint it accepts, newest first; None when none loads.

    `load` raises for a checkpoint it cannot use (a file cut short by a sync, an older format, a
    different set of trainable weights); the previous checkpoint is tried next.
    """
    for path in reversed(complete_checkpoints(directory, marker)):
        try:
            return path, load(path)
        # Anything unreadable means "try an older one"; the warning says which and why.
        except Exception as error:
            LOG.warning("checkpoint %s is unusable (%s); trying an older one", path, error)
    return None


class Resumable(Protocol):
    """Where a training run stands, as its checkpoint records it."""

    epoch: int
    batch_in_epoch: int
    optimizer_steps: int


R = TypeVar("R", bound=Resumable)


def resume_progress(
    directory: Path, marker: str, load: Callable[[Path], R], log: logging.Logger
) -> R | None:
    """The progress of the newest checkpoint `load` accepts (see `restore_newest`), said on the
    training script's own logger `log`; None when there is none to resume from."""
    restored = restore_newest(directory, marker, load)
    if restored is None:
        return None
    path, progress = restored
    log.info(
        "resuming from %s: epoch %d, batch %d, %d optimizer steps done",
        path,
        progress.epoch,
        progress.batch_in_epoch,
        progress.optimizer_steps,
    )
    return progress
