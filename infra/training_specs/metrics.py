"""SageMaker metric definitions for the `[metric] name=value` lines the training scripts log."""

from __future__ import annotations

from collections.abc import Iterable

# A training job accepts at most 40 metric definitions.
MAX_METRIC_DEFINITIONS = 40


def definitions(names: Iterable[str]) -> list[dict[str, str]]:
    """One definition per logged metric: the value token after ` <name>=`, taken as it is.

    The leading space keeps `fit` from matching `fit_type=`, and `=` right after the name keeps
    `validation_exact_match` from matching `validation_exact_match_fabric`; a NaN loss shows as
    `nan` instead of the previous value.
    """
    return [{"Name": name, "Regex": rf" {name}=(\S+)"} for name in names]
