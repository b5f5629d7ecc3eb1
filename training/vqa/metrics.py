r"""Metric log lines of `train.py`: `[metric] epoch=1 train_loss=0.25 validation_loss=0.31`.

The training job's MetricDefinitions (infra) read every value as ` <name>=(\S+)`; a test runs the
synthesized regexes against lines made here, so the two cannot drift apart.
"""

from __future__ import annotations

# The line format is shared by every training script; these names stay importable from here.
from metric_lines import METRIC_TAG, format_value, metric_line

__all__ = [
    "BATCH_LOSS",
    "EPOCH_METRICS",
    "METRIC_TAG",
    "TRAIN_LOSS",
    "VALIDATION_EXACT_MATCH",
    "VALIDATION_LOSS",
    "attribute_metric_name",
    "format_value",
    "metric_line",
]


# Names of the metrics the script logs, in the order a reader meets them.
BATCH_LOSS = "batch_loss"
TRAIN_LOSS = "train_loss"
VALIDATION_LOSS = "validation_loss"
VALIDATION_EXACT_MATCH = "validation_exact_match"
EPOCH_METRICS = (TRAIN_LOSS, VALIDATION_LOSS, VALIDATION_EXACT_MATCH)


def attribute_metric_name(attribute: str) -> str:
    return f"validation_exact_match_{attribute}"
