"""Logger, tracer and metrics of the diffusion function, and what they record.

Never log prompts or image bytes: prompts describe customers' subjects and products; lengths are
enough. Request and failure counts carry the route (`generations` or `styling`) as a dimension;
latencies are named after it (`GenerationsModelLatency`, `StylingInputsLatency`, ...).
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from diffusion.logic.service import Outcome

logger = Logger()
tracer = Tracer()
metrics = Metrics()


def record_outcome(outcome: Outcome) -> None:
    """Metrics and a log line for one answered request. Call from the handler's thread only."""
    sampling = outcome.sampling
    with single_metric(
        name="DiffusionRequests",
        unit=MetricUnit.Count,
        value=1,
        default_dimensions=metrics.default_dimensions,
    ) as metric:
        metric.add_dimension(name="route", value=outcome.route)
    metrics.add_metric(
        name="DiffusionImagesGenerated", unit=MetricUnit.Count, value=sampling.number_of_images
    )
    for stage, milliseconds in outcome.timings_ms.items():
        metrics.add_metric(
            name=f"{outcome.route.capitalize()}{stage.capitalize()}Latency",
            unit=MetricUnit.Milliseconds,
            value=milliseconds,
        )
    logger.info(
        "images generated",
        route=outcome.route,
        request_id=outcome.answer.request_id,
        endpoint=outcome.endpoint_name,
        images=sampling.number_of_images,
        steps=sampling.steps,
        guidance_scale=sampling.guidance_scale,
        size=outcome.size,
        inputs=dict(outcome.inputs),
        prompt_characters=len(sampling.prompt),
        timings_ms=outcome.timings_ms,
    )


def record_failure(route: str, cause: str) -> None:
    """One failed request, counted by route and cause (e.g. endpoint_not_deployed)."""
    with single_metric(
        name="DiffusionFailures",
        unit=MetricUnit.Count,
        value=1,
        default_dimensions=metrics.default_dimensions,
    ) as metric:
        metric.add_dimension(name="route", value=route)
        metric.add_dimension(name="cause", value=cause)
