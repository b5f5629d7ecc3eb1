r"""Metric log lines of `train.py`: `[metric] epoch=1 train_loss=0.25 validation_loss=0.31`.

The training job's MetricDefinitions (infra) read every value as ` <name>=(\S+)`; a test runs the
synthesized regexes against lines made here, so the two cannot drift apart.
"""

from __future__ import annotations

import math

# Every metric line starts with this tag, so a grep of the job's log finds them all.
METRIC_TAG = "[metric]"


# Names of the metrics the script logs, in the order a reader meets them.
BATCH_LOSS = "batch_loss"
TRAIN_LOSS = "train_loss"
VALIDATION_LOSS = "validation_loss"
VALIDATION_EXACT_MATCH = "validation_exact_match"
EPOCH_METRICS = (TRAIN_LOSS, VALIDATION_LOSS, VALIDATION_EXACT_MATCH)


def format_value(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.6g}"


def metric_line(**values: float | int | str) -> str:
    """`[metric] epoch=1 train_loss=0.25 ...`: keys in the order given, floats in `format_value`."""
    parts = [
        f"{key}={format_value(value) if isinstance(value, float) else value}"
        for key, value in values.items()
    ]
    return " ".join([METRIC_TAG, *parts])


def attribute_metric_name(attribute: str) -> str:
    return f"validation_exact_match_{attribute}"
