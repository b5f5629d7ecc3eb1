"""What the images function records, through the shared telemetry setup (`shared.telemetry`;
metric names from `shared.metric_names`, which the stage dashboard reads too).

Never log prompts or image bytes: prompts describe customers' subjects; lengths are enough.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit

from images.logic.service import Generation
from shared import metric_names as names
from shared.telemetry import emit_count, get_tracer, logger, metrics

__all__ = ["logger", "metrics", "record_failure", "record_generation", "tracer"]

tracer = get_tracer()


def record_generation(generation: Generation) -> None:
    """Metrics and a log line for one answered request. Call from the handler's thread only."""
    job = generation.job
    metrics.add_metric(name=names.IMAGE_REQUESTS, unit=MetricUnit.Count, value=1)
    metrics.add_metric(
        name=names.IMAGES_GENERATED, unit=MetricUnit.Count, value=job.number_of_images
    )
    for stage, milliseconds in generation.timings_ms.items():
        metrics.add_metric(
            name=names.image_latency(stage),
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
    emit_count(names.IMAGE_FAILURES, cause=cause)
