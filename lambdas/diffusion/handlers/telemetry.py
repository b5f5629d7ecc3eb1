"""What the diffusion function records, through the shared telemetry setup (`shared.telemetry`;
metric names from `shared.metric_names`, which the stage dashboard reads too).

Never log prompts or image bytes: prompts describe customers' subjects and products; lengths are
enough. Request and failure counts carry the route (`generations` or `styling`) as a dimension;
latencies are named after it (`GenerationsModelLatency`, `StylingInputsLatency`, ...).
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit

from diffusion.logic.service import Outcome
from shared import metric_names as names
from shared.telemetry import emit_count, get_tracer, logger, metrics

__all__ = ["logger", "metrics", "record_failure", "record_outcome", "tracer"]

tracer = get_tracer()


def record_outcome(outcome: Outcome) -> None:
    """Metrics and a log line for one answered request. Call from the handler's thread only."""
    sampling = outcome.sampling
    emit_count(names.DIFFUSION_REQUESTS, route=outcome.route)
    metrics.add_metric(
        name=names.DIFFUSION_IMAGES_GENERATED,
        unit=MetricUnit.Count,
        value=sampling.number_of_images,
    )
    for stage, milliseconds in outcome.timings_ms.items():
        metrics.add_metric(
            name=names.diffusion_latency(outcome.route, stage),
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
    emit_count(names.DIFFUSION_FAILURES, route=route, cause=cause)
