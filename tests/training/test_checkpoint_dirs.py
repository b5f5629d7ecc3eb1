"""The checkpoint folders and job helpers every training script shares (`checkpoint_dirs`,
`sagemaker_job`): atomic writes, rotation, fallback, SageMaker's keys and the failure file."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from checkpoint_dirs import atomic_checkpoint, complete_checkpoints, restore_newest
from sagemaker_job import parse_ignoring_sagemaker_keys, write_failure

MARKER = "state.txt"


def save(directory: Path, step: int, keep: int = 2) -> None:
    with atomic_checkpoint(directory, step, marker=MARKER, keep=keep) as partial:
        (partial / MARKER).write_text(str(step))


def test_rotation_keeps_the_newest_and_never_touches_other_folders(tmp_path: Path) -> None:
    # Given generated data kept beside the checkpoints
    (tmp_path / "class_images").mkdir()
    (tmp_path / "class_images" / "class-00000.png").write_bytes(b"png")

    # When five checkpoints are written, keeping two
    for step in range(1, 6):
        save(tmp_path, step)

    # Then the two newest remain, in step order, and the data is untouched
    assert [p.name for p in complete_checkpoints(tmp_path, MARKER)] == [
        "step-000000004",
        "step-000000005",
    ]
    assert (tmp_path / "class_images" / "class-00000.png").is_file()


def test_a_write_that_dies_leaves_no_checkpoint(tmp_path: Path) -> None:
    save(tmp_path, 1)

    def dies_mid_write() -> None:
        with atomic_checkpoint(tmp_path, 2, marker=MARKER, keep=2) as partial:
            (partial / "half.bin").write_bytes(b"half")
            raise KeyboardInterrupt("spot instance reclaimed")

    with pytest.raises(KeyboardInterrupt):
        dies_mid_write()
    assert [p.name for p in tmp_path.iterdir()] == ["step-000000001"]


def test_a_checkpoint_without_its_marker_is_refused(tmp_path: Path) -> None:
    with (
        pytest.raises(RuntimeError, match=r"without its state\.txt"),
        atomic_checkpoint(tmp_path, 1, marker=MARKER, keep=2),
    ):
        pass
    assert complete_checkpoints(tmp_path, MARKER) == []


def test_restore_falls_back_to_the_newest_checkpoint_that_loads(tmp_path: Path) -> None:
    for step in (1, 2, 3):
        save(tmp_path, step, keep=3)
    (tmp_path / "step-000000003" / MARKER).write_text("cut short")

    def load(path: Path) -> int:
        return int((path / MARKER).read_text())

    restored = restore_newest(tmp_path, MARKER, load)
    assert restored == (tmp_path / "step-000000002", 2)
    assert restore_newest(tmp_path / "nothing", MARKER, load) is None


def test_sagemaker_keys_are_dropped_and_other_unknowns_fail(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--epochs", type=int)
    args = parse_ignoring_sagemaker_keys(
        parser, ["--sagemaker_program", "x.py", "--epochs", "2", "--sagemaker_region=eu-west-1"]
    )
    assert vars(args) == {"epochs": 2}
    with pytest.raises(SystemExit):
        parse_ignoring_sagemaker_keys(parser, ["--sagemaker_job_name", "j", "--epoch", "2"])
    assert "unrecognized arguments: --epoch 2" in capsys.readouterr().err


def test_the_failure_reason_is_cut_to_what_sagemaker_shows(tmp_path: Path) -> None:
    path = tmp_path / "output" / "failure"
    write_failure(path, "x" * 5000)
    assert path.read_text() == "x" * 1000
    # A failure file that cannot be written must not hide the original error.
    write_failure(tmp_path / "output" / "failure" / "nested", "reason")
