"""The stage dashboard against the metrics the functions really write.

The dashboard's application widgets are built from `lambdas/shared/metric_names.py`, the module the
emitters use; these tests do not trust that link. They run the real emitters (the telemetry
recorders, the sweeper's and the lifecycle check's metrics) under the service and namespace the
synthesized templates give each function, parse the embedded-metric-format lines they print, and
require every Atelier metric the synthesized dashboard shows (name, namespace, dimension names and
fixed values, SEARCH expressions included) to be one of them. A renamed emitter fails it (shown
below), as does a widget for a metric nothing emits.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest

from customization.handlers import sweep
from customization.logic.expiry import SweepReport
from descriptions.handlers import telemetry as descriptions_telemetry
from diffusion.handlers import telemetry as diffusion_telemetry
from images.handlers import telemetry as images_telemetry
from infra.config import load_stage_config
from infra.constructs.dashboard import configured_endpoints, deployment_name, workflow_names
from lifecycle.handlers.check import EmfMetrics
from lifecycle.logic.assessment import Assessment, Phase
from shared import metric_names, telemetry
from tests.support import SynthesizedApp, cdk_json_context
from tests.templates import render_definition, resources

pytestmark = pytest.mark.infra

STAGES = ("dev", "prod")
ANY = "*"


@dataclass(frozen=True)
class ShownMetric:
    """One metric a widget draws: fixed dimension values, or ANY for a SEARCH's open dimension."""

    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]

    def matches(self, emitted: ShownMetric) -> bool:
        mine, theirs = dict(self.dimensions), dict(emitted.dimensions)
        return (
            (self.namespace, self.name) == (emitted.namespace, emitted.name)
            and set(mine) == set(theirs)
            and all(value in (ANY, theirs[key]) for key, value in mine.items())
        )


# --- the dashboard side -------------------------------------------------------------------------

_SEARCH = re.compile(r"SEARCH\('\{(?P<schema>[^}]*)\}(?P<terms>[^']*)'")
_TERM = re.compile(r'"?(?P<key>[A-Za-z]+)"?="(?P<value>[^"]*)"')


def dashboard_body(template: dict[str, Any]) -> dict[str, Any]:
    (dashboard,) = resources(template, "AWS::CloudWatch::Dashboard").values()
    body: dict[str, Any] = json.loads(render_definition(dashboard["Properties"]["DashboardBody"]))
    return body


def shown_metrics(body: dict[str, Any]) -> list[ShownMetric]:
    shown: list[ShownMetric] = []
    for widget in body["widgets"]:
        for entry in widget.get("properties", {}).get("metrics", []):
            if isinstance(entry[0], str):
                namespace, name, *rest = entry
                pairs = [part for part in rest if isinstance(part, str)]
                dimensions = tuple(sorted(zip(pairs[::2], pairs[1::2], strict=True)))
                shown.append(ShownMetric(namespace, name, dimensions))
            elif (search := _SEARCH.search(entry[0].get("expression", ""))) is not None:
                namespace, *keys = (part.strip(' "') for part in search["schema"].split(","))
                terms = {m["key"]: m["value"] for m in _TERM.finditer(search["terms"])}
                name = terms.pop("MetricName")
                fixed = {key: terms.get(key, ANY) for key in keys}
                shown.append(ShownMetric(namespace, name, tuple(sorted(fixed.items()))))
    return shown


def application_metrics(shown: list[ShownMetric]) -> list[ShownMetric]:
    return [metric for metric in shown if metric.namespace == metric_names.NAMESPACE]


# --- the emitter side ---------------------------------------------------------------------------


def function_settings(app: SynthesizedApp, handler: str) -> tuple[str, str]:
    """(service, namespace) the synthesized app gives the function whose handler is `handler`."""
    for template in app.templates.values():
        for function in resources(template, "AWS::Lambda::Function").values():
            properties = function["Properties"]
            if properties.get("Handler") == handler:
                variables = properties["Environment"]["Variables"]
                return variables["POWERTOOLS_SERVICE_NAME"], variables[
                    "POWERTOOLS_METRICS_NAMESPACE"
                ]
    raise AssertionError(f"no function runs {handler}")


@pytest.fixture
def as_function(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Any]:
    """Run emitters as the function `handler` of `app` would, and collect what they print."""
    emitted: list[ShownMetric] = []

    def run(app: SynthesizedApp, handler: str, emit: Any) -> None:
        service, namespace = function_settings(app, handler)
        monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", service)
        monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", namespace)
        monkeypatch.setattr(telemetry.metrics.provider, "service", service)
        monkeypatch.setattr(telemetry.metrics.provider, "namespace", namespace)
        capsys.readouterr()
        emit()
        telemetry.metrics.flush_metrics()
        emitted.extend(parse_emf(capsys.readouterr().out))

    run.emitted = emitted  # type: ignore[attr-defined]
    yield run
    telemetry.metrics.clear_metrics()


def parse_emf(output: str) -> list[ShownMetric]:
    emitted = []
    for line in output.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        record = json.loads(line)
        for directive in record["_aws"]["CloudWatchMetrics"]:
            (keys,) = directive["Dimensions"]
            dimensions = tuple(sorted((key, record[key]) for key in keys))
            for metric in directive["Metrics"]:
                emitted.append(ShownMetric(directive["Namespace"], metric["Name"], dimensions))
    return emitted


def emit_everything(app: SynthesizedApp, stage: str, run: Any) -> list[ShownMetric]:
    """Every recorder once, with the stages and outcomes the services produce."""
    deployment = deployment_name(load_stage_config(cdk_json_context(), stage))

    def descriptions() -> None:
        descriptions_telemetry.record_described(
            product_id="p-1",
            result_key="results/p-1.json",
            timings_ms={"validate": 1, "attributes": 20, "description": 30, "total": 51},
            usage={"inputTokens": 10, "outputTokens": 5},
            path="api",
        )
        for status in metric_names.UPLOAD_STATUSES:
            descriptions_telemetry.metrics.add_metric(
                name=metric_names.upload_outcome(status), unit="Count", value=1
            )
        descriptions_telemetry.record_failure("image_truncated", path="uploads")

    def images() -> None:
        images_telemetry.record_generation(
            SimpleNamespace(
                job=SimpleNamespace(
                    number_of_images=2, width=512, height=512, quality="standard", prompt="a"
                ),
                timings_ms={"model": 10, "store": 2, "total": 12},
                answer=SimpleNamespace(request_id="r-1"),
                model_arn="arn:aws:bedrock:::provisioned-model/x",
            )
        )
        images_telemetry.record_failure("no_customized_model")

    def diffusion() -> None:
        for route, stages in (
            ("generations", ("model", "store", "total")),
            ("styling", ("inputs", "model", "store", "total")),
        ):
            diffusion_telemetry.record_outcome(
                SimpleNamespace(
                    route=route,
                    sampling=SimpleNamespace(
                        number_of_images=1, steps=20, guidance_scale=7.5, prompt="a"
                    ),
                    timings_ms=dict.fromkeys(stages, 5),
                    answer=SimpleNamespace(request_id="r-2"),
                    endpoint_name="e",
                    size="512x512",
                    inputs={},
                )
            )
            diffusion_telemetry.record_failure(route, "endpoint_not_deployed")

    def sweeper() -> None:
        sweep.record_actions(
            SweepReport(released=["a"], notified=["b"], errors=[]), deployment=deployment
        )

    def lifecycle() -> None:
        emf = EmfMetrics(deployment)
        emf.model(
            model_id="m",
            assessment=Assessment(
                lifecycle=None,  # type: ignore[arg-type]
                phase=Phase.ACTIVE,
                days_to_end_of_life=30.0,
                ends_soon=False,
            ),
        )
        emf.attention(1)

    run(app, "descriptions.handlers.api.handler", descriptions)
    run(app, "images.handlers.api.handler", images)
    run(app, "diffusion.handlers.api.handler", diffusion)
    run(app, "customization.handlers.sweep.handler", sweeper)
    run(app, "lifecycle.handlers.check.handler", lifecycle)
    return list(run.emitted)


def unexplained(shown: list[ShownMetric], emitted: list[ShownMetric]) -> list[ShownMetric]:
    """Dashboard metrics in the application namespace that no emitter writes."""
    return [metric for metric in shown if not any(metric.matches(e) for e in emitted)]


# --- the tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
def test_every_application_metric_on_the_dashboard_is_emitted(
    synthesized_apps: dict[str, SynthesizedApp], stage: str, as_function: Any
) -> None:
    app = synthesized_apps[stage]
    shown = application_metrics(shown_metrics(dashboard_body(app.template("-api"))))
    emitted = emit_everything(app, stage, as_function)
    # The dashboard shows each family: counts, failures by cause (SEARCH), latencies, the
    # cost guard and the lifecycle attention count
    names = {metric.name for metric in shown}
    assert {
        metric_names.DESCRIPTIONS_CREATED,
        metric_names.DESCRIPTION_FAILURES,
        metric_names.IMAGE_REQUESTS,
        metric_names.IMAGE_FAILURES,
        metric_names.DIFFUSION_REQUESTS,
        metric_names.DIFFUSION_FAILURES,
        metric_names.THROUGHPUTS_RELEASED,
        metric_names.THROUGHPUT_SWEEP_ERRORS,
        metric_names.MODELS_NEEDING_ATTENTION,
        "TotalLatency",
        "GenerationsTotalLatency",
    } <= names
    assert any(ANY in dict(metric.dimensions).values() for metric in shown)
    assert unexplained(shown, emitted) == []


def test_a_renamed_emitter_fails_the_cross_check(
    dev_app: SynthesizedApp, as_function: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown = application_metrics(shown_metrics(dashboard_body(dev_app.template("-api"))))
    # The broken fixture: the images function writes its request count under another name
    monkeypatch.setattr(metric_names, "IMAGE_REQUESTS", "ImageRequestsRenamed")
    emitted = emit_everything(dev_app, "dev", as_function)
    missing = unexplained(shown, emitted)
    assert [metric.name for metric in missing] == ["ImageRequests"]


def test_a_dimension_the_emitter_does_not_write_fails_the_cross_check() -> None:
    emitted = [ShownMetric("Atelier", "ImageFailures", (("cause", "x"), ("service", "images")))]
    right = ShownMetric("Atelier", "ImageFailures", (("cause", ANY), ("service", "images")))
    wrong_service = ShownMetric("Atelier", "ImageFailures", (("cause", ANY), ("service", "img")))
    extra_dimension = ShownMetric(
        "Atelier", "ImageFailures", (("cause", ANY), ("route", ANY), ("service", "images"))
    )
    assert unexplained([right, wrong_service, extra_dimension], emitted) == [
        wrong_service,
        extra_dimension,
    ]


@pytest.mark.parametrize("stage", STAGES)
def test_the_dashboard_covers_the_stage(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    config = load_stage_config(cdk_json_context(), stage)
    shown = shown_metrics(dashboard_body(synthesized_apps[stage].template("-api")))
    by_namespace: dict[str, set[str]] = {}
    for metric in shown:
        by_namespace.setdefault(metric.namespace, set()).add(metric.name)
    # API latency and errors, queue depth and age (the uploads queue and its dead-letter queue)
    assert {"Latency", "4XXError", "5XXError"} <= by_namespace["AWS/ApiGateway"]
    assert {
        "ApproximateNumberOfMessagesVisible",
        "ApproximateAgeOfOldestMessage",
    } <= by_namespace["AWS/SQS"]
    assert {"Errors", "Duration"} <= by_namespace["AWS/Lambda"]
    # Every workflow's failures, by the name its construct gives it
    arns = {
        dict(metric.dimensions)["StateMachineArn"]
        for metric in shown
        if metric.namespace == "AWS/States" and metric.name == "ExecutionsFailed"
    }
    assert {arn.rsplit(":", 1)[1] for arn in arns} == set(workflow_names(config))
    # Bedrock throttles per configured model
    assert "InvocationThrottles" in by_namespace["AWS/Bedrock"]
    # Endpoints only where the stage configures one
    endpoints = {
        dict(metric.dimensions)["EndpointName"]
        for metric in shown
        if metric.namespace == "AWS/SageMaker"
    }
    assert endpoints == {endpoint.name for endpoint in configured_endpoints(config)}


def test_endpoint_widgets_appear_for_hosted_endpoints(variant_app: SynthesizedApp) -> None:
    shown = shown_metrics(dashboard_body(variant_app.template("-api")))
    gpu = {m.name for m in shown if m.namespace == "/aws/sagemaker/Endpoints"}
    assert gpu == {"GPUUtilization", "GPUMemoryUtilization"}
    assert {"Invocations", "ModelLatency", "Invocation5XXErrors"} <= {
        m.name for m in shown if m.namespace == "AWS/SageMaker"
    }


def test_the_state_machine_names_exist(synthesized_apps: dict[str, SynthesizedApp]) -> None:
    """The dashboard names the workflows rather than referencing them: each name it uses is a
    state machine the app really builds."""
    for stage in STAGES:
        app = synthesized_apps[stage]
        built = {
            machine["Properties"]["StateMachineName"]
            for template in app.templates.values()
            for machine in resources(template, "AWS::StepFunctions::StateMachine").values()
        }
        config = load_stage_config(cdk_json_context(), stage)
        assert set(workflow_names(config)) == built
