r"""Metric log lines of the training scripts: `[metric] epoch=1 train_loss=0.25 step=40`.

SageMaker reads a training job's metrics from its log with the job's MetricDefinitions; the infra
code defines each as ` <name>=(\S+)`, so every value here is one token with a space before its
name. Tests run the synthesized regexes against lines made here, so the two cannot drift apart.
"""

from __future__ import annotations

import math

# Every metric line starts with this tag, so a grep of the job's log finds them all.
METRIC_TAG = "[metric]"


def format_value(value: float) -> str:
    """Six significant digits; NaN and infinities as `nan`/`inf`/`-inf` so a bad value shows as
    itself instead of the previous good one."""
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
