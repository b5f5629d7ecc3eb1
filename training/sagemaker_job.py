"""What every training script needs from SageMaker's side of the job (`vqa.train`,
`dreambooth.train`): hyperparameter types, tolerance for SageMaker's own keys, the output paths,
logging, and the failure error and file.

SageMaker passes each hyperparameter as `--name value` with the value a string, so booleans and
"no value" need parsing here rather than `type=bool`. The job's `FailureReason` is whatever the
script wrote to `/opt/ml/output/failure`.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

LOG = logging.getLogger("sagemaker_job")

# Keys SageMaker itself may add to the hyperparameters (sagemaker_program,
# sagemaker_submit_directory, sagemaker_region, ...): accepted and ignored.
SAGEMAKER_KEY_PREFIX = "--sagemaker_"
# SageMaker shows at most this much of the failure file as the job's FailureReason.
FAILURE_REASON_LIMIT = 1000
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")
_UNSET = ("", "none", "null")


class TrainingError(RuntimeError):
    """A problem the job cannot continue past; its message becomes the job's failure reason."""


def configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def optional_positive_int(value: str) -> int | None:
    """A positive integer, or unset when SageMaker sends `None`, `none` or an empty string."""
    if value.strip().lower() in _UNSET:
        return None
    return positive_int(value)


def non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {number}")
    return number


def positive_float(value: str) -> float:
    number = float(value)
    if not number > 0 or not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value!r}")
    return number


def non_negative_float(value: str) -> float:
    number = float(value)
    if not number >= 0 or not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"must be 0 or a positive number, got {value!r}")
    return number


def fraction(value: str) -> float:
    number = float(value)
    if not 0 <= number < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value!r}")
    return number


def hyperparameter_parser(description: str) -> argparse.ArgumentParser:
    """A training script's parser: SageMaker passes hyperparameters as `--name value`, and a
    misspelt one must fail the job, not silently match a longer name."""
    return argparse.ArgumentParser(description=description, allow_abbrev=False)


def parse_ignoring_sagemaker_keys(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> argparse.Namespace:
    """`parser.parse_args`, except that `--sagemaker_<key> [value]` pairs are dropped; any other
    unknown argument still fails with argparse's `unrecognized arguments` (exit code 2)."""
    args, extras = parser.parse_known_args(argv)
    unknown: list[str] = []
    index = 0
    while index < len(extras):
        token = extras[index]
        index += 1
        if token.startswith(SAGEMAKER_KEY_PREFIX):
            if "=" not in token and index < len(extras) and not extras[index].startswith("--"):
                index += 1  # its value
            continue
        unknown.append(token)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def add_output_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """`--model_dir`, `--output_data_dir`, `--checkpoint_dir` and `--failure_file`: where the job's
    outputs go, from SageMaker's environment with the /opt/ml defaults."""
    parser.add_argument("--model_dir", type=Path, default=env.get("SM_MODEL_DIR", "/opt/ml/model"))
    parser.add_argument(
        "--output_data_dir",
        type=Path,
        default=env.get("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"),
    )
    parser.add_argument("--checkpoint_dir", type=Path, default=Path("/opt/ml/checkpoints"))
    parser.add_argument(
        "--failure_file",
        type=Path,
        default=Path(env.get("SM_OUTPUT_DIR", "/opt/ml/output")) / "failure",
        help="where the failure reason goes; SageMaker shows it as the job's FailureReason",
    )


def write_failure(path: Path, message: str) -> None:
    """Record why the job failed where SageMaker looks for it; never raises."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(message[:FAILURE_REASON_LIMIT], encoding="utf-8")
    except OSError:
        LOG.warning("could not write the failure reason to %s", path)


def run_job(
    main: Callable[[argparse.Namespace], Mapping[str, Any]],
    args: argparse.Namespace,
    log: logging.Logger,
) -> int:
    """Run a training script's `main`: 0 when a model was saved (its summary's `stopped_reason`,
    if any, logged as a warning), 1 and SageMaker's failure file on a `TrainingError`."""
    try:
        summary = main(args)
    except TrainingError as error:
        log.error("%s", error)
        write_failure(args.failure_file, str(error))
        return 1
    if summary["stopped_reason"]:
        log.warning("model saved from the last good step: %s", summary["stopped_reason"])
    return 0
