"""Logger, tracer and metrics of every function: one setup, the same service and namespace rules.

The service (`POWERTOOLS_SERVICE_NAME`) and namespace (`POWERTOOLS_METRICS_NAMESPACE`, always
`shared.metric_names.NAMESPACE`) come from the environment PythonFunction sets; Powertools adds the
service as the `service` dimension of every metric. Metric names live in `shared.metric_names`,
which the stage dashboard reads too.

The tracer is built on first use: creating a Powertools Tracer imports the X-Ray SDK and patches
botocore, so modules that only log stay as cheap to import as before. Where Powertools would
disable tracing (`POWERTOOLS_TRACE_DISABLED`, or outside Lambda) the tracer is `TracingOff`, the
same decorators doing nothing, and the X-Ray SDK is never imported: a Powertools Tracer imports it
even when disabled. Deployed functions trace (X-Ray active), so there they get Powertools' Tracer.
Never log image bytes, prompts or request bodies.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

logger = Logger()
metrics = Metrics()

_Handler = TypeVar("_Handler", bound=Callable[..., Any])

# Powertools' own rule for when its Tracer disables itself (a static method, pinned with the layer
# version in cdk.json): fail loudly if an upgrade moves it, never guess the rule.
if not callable(getattr(Tracer, "_is_tracer_disabled", None)):
    raise RuntimeError("Powertools moved Tracer._is_tracer_disabled: update shared/telemetry.py")


class TracingOff:
    """The tracer where tracing is off: Powertools' decorators and calls, doing nothing (what a
    disabled Tracer does too, less the X-Ray SDK import)."""

    disabled = True

    def capture_lambda_handler(
        self,
        lambda_handler: Callable[..., Any] | None = None,
        capture_response: bool | None = None,
        capture_error: bool | None = None,
    ) -> Callable[..., Any]:
        del capture_response, capture_error
        return _unchanged if lambda_handler is None else lambda_handler

    def capture_method(
        self,
        method: Callable[..., Any] | None = None,
        capture_response: bool | None = None,
        capture_error: bool | None = None,
    ) -> Callable[..., Any]:
        del capture_response, capture_error
        return _unchanged if method is None else method

    def put_annotation(self, key: str, value: str | float | bool) -> None:
        del key, value

    def put_metadata(self, key: str, value: Any, namespace: str | None = None) -> None:
        del key, value, namespace


def _unchanged(function: Callable[..., Any]) -> Callable[..., Any]:
    return function


@functools.cache
def get_tracer() -> Tracer | TracingOff:
    """The function's Tracer (one per process; Powertools shares its state between instances),
    or `TracingOff` where Powertools would disable it."""
    if Tracer._is_tracer_disabled():
        return TracingOff()
    return Tracer()


def emit_count(name: str, value: float = 1, **dimensions: str) -> None:
    """One metric with its own dimensions beside `service`, written at once (embedded metric
    format on stdout), so it needs no flush decorator and never mixes with the batch buffer."""
    emit(name, value, MetricUnit.Count, **dimensions)


def emit(name: str, value: float, unit: MetricUnit, **dimensions: str) -> None:
    with single_metric(
        name=name, unit=unit, value=value, default_dimensions=metrics.default_dimensions
    ) as metric:
        for key, dimension in dimensions.items():
            metric.add_dimension(name=key, value=dimension)


def step_handler(handler: _Handler) -> _Handler:
    """A workflow step's entry point: the Lambda context in every log line and the invocation
    traced (subsegment per call, AWS SDK calls patched). The tracer is built at the first
    invocation, not at import, so the module's import time does not grow."""
    wrapped: list[Callable[..., Any]] = []

    @functools.wraps(handler)
    def entry(event: Any, context: Any) -> Any:
        if not wrapped:
            traced = get_tracer().capture_lambda_handler(handler, capture_response=False)
            wrapped.append(logger.inject_lambda_context(traced))
        return wrapped[0](event, context)

    # What tests look for to tell a traced step from a bare function.
    entry.traced_step = True  # type: ignore[attr-defined]
    return entry  # type: ignore[return-value]
