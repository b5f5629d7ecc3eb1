"""Logger, tracer and metrics shared by the description handlers, and what they record.

Never log image bytes or request bodies: they are customers' photos.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from shared.models.descriptions import StoredDescription

logger = Logger()
tracer = Tracer()
metrics = Metrics()


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
    metrics.add_metric(name="DescriptionsCreated", unit=MetricUnit.Count, value=1)
    for stage, milliseconds in timings_ms.items():
        metrics.add_metric(
            name=f"{stage.capitalize()}Latency", unit=MetricUnit.Milliseconds, value=milliseconds
        )
    for name, count in usage.items():
        metrics.add_metric(name=name[0].upper() + name[1:], unit=MetricUnit.Count, value=count)
    logger.info(
        "description stored",
        product_id=product_id,
        path=path,
        result_key=result_key,
        timings_ms=dict(timings_ms),
    )


def record_failure(cause: str, *, path: str) -> None:
    """One failure, counted by cause (e.g. image_truncated, text_model_unavailable)."""
    with single_metric(
        name="DescriptionFailures",
        unit=MetricUnit.Count,
        value=1,
        default_dimensions=metrics.default_dimensions,
    ) as metric:
        metric.add_dimension(name="cause", value=cause)
        metric.add_dimension(name="path", value=path)
