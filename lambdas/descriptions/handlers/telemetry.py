"""What the description handlers record, through the shared telemetry setup (`shared.telemetry`;
metric names from `shared.metric_names`, which the stage dashboard reads too).

Never log image bytes or request bodies: they are customers' photos.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_lambda_powertools.metrics import MetricUnit

from shared import metric_names as names
from shared.models.descriptions import StoredDescription
from shared.telemetry import emit_count, get_tracer, logger, metrics

__all__ = [
    "logger",
    "metrics",
    "record_described",
    "record_description",
    "record_failure",
    "tracer",
]

tracer = get_tracer()


def record_description(stored: StoredDescription, *, path: str) -> None:
    record_described(
        product_id=stored.product_id,
        result_key=stored.result_key,
        timings_ms=stored.timings_ms,
        usage=stored.usage,
        path=path,
    )


def record_described(
    *,
    product_id: str,
    result_key: str,
    timings_ms: Mapping[str, int],
    usage: Mapping[str, int],
    path: str,
) -> None:
    """Metrics and a log line for one stored description. Call from the handler's thread only:
    Powertools' metric buffer is not thread-safe."""
    metrics.add_metric(name=names.DESCRIPTIONS_CREATED, unit=MetricUnit.Count, value=1)
    for stage, milliseconds in timings_ms.items():
        metrics.add_metric(
            name=names.description_latency(stage),
            unit=MetricUnit.Milliseconds,
            value=milliseconds,
        )
    for name, count in usage.items():
        metrics.add_metric(name=names.usage_metric(name), unit=MetricUnit.Count, value=count)
    logger.info(
        "description stored",
        product_id=product_id,
        path=path,
        result_key=result_key,
        timings_ms=dict(timings_ms),
    )


def record_failure(cause: str, *, path: str) -> None:
    """One failure, counted by cause (e.g. image_truncated, text_model_unavailable)."""
    emit_count(names.DESCRIPTION_FAILURES, cause=cause, path=path)
