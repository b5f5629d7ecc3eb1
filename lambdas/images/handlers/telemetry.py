"""Logger, tracer and metrics of the images function, and what they record.

Never log prompts or image bytes: prompts describe customers' subjects; lengths are enough.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from images.logic.service import Generation

logger = Logger()
tracer = Tracer()
metrics = Metrics()


def record_generation(generation: Generation) -> None:
    """Metrics and a log line for one answered request. Call from the handler's thread only."""
    job = generation.job
    metrics.add_metric(name="ImageRequests", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="ImagesGenerated", unit=MetricUnit.Count, value=job.number_of_images)
    for stage, milliseconds in generation.timings_ms.items():
        metrics.add_metric(
            name=f"Image{stage.capitalize()}Latency",
            unit=MetricUnit.Milliseconds,
            value=milliseconds,
        )
    logger.info(
        "images generated",
        request_id=generation.answer.request_id,
        model_arn=generation.model_arn,
        images=job.number_of_images,
        size=f"{job.width}x{job.height}",
        quality=job.quality,
        prompt_characters=len(job.prompt),
        timings_ms=generation.timings_ms,
    )


def record_failure(cause: str) -> None:
    """One failed request, counted by cause (e.g. no_customized_model, image_model_unavailable)."""
    with single_metric(
        name="ImageFailures",
        unit=MetricUnit.Count,
        value=1,
        default_dimensions=metrics.default_dimensions,
    ) as metric:
        metric.add_dimension(name="cause", value=cause)
