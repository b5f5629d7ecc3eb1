"""The stage's CloudWatch dashboard (`<prefix>-<stage>-operations`), built with
cdk-monitoring-constructs' MonitoringFacade: what an operator looks at first.

Sections: the REST API and its functions (latency, errors), the uploads queue and its dead-letter
queue (depth, age), each SageMaker endpoint the stage configures (invocations, latency, errors, GPU
use), workflow failures, Bedrock throttles per configured model, the throughput cost guard's actions
and the model lifecycle check's attention count.

It lives in the Api stack, which holds the API, queues and functions; everything else is named, not
referenced (state machines, endpoints and Bedrock models have names fixed by the config), so no
stack gains an export or a dependency and an endpoint can still be destroyed on its own.

The application metrics come from `lambdas/shared/metric_names.py`, the file the functions emit
with; tests/infra/test_dashboard.py cross-checks the synthesized body against what the emitters
write.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

import cdk_monitoring_constructs as monitoring
from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.model_lifecycle import SERVICE_NAME as LIFECYCLE_SERVICE
from infra.constructs.model_lifecycle import configured_bedrock_models
from infra.constructs.python_function import POWERTOOLS_METRICS_NAMESPACE
from infra.models import hosted_models, trained_models

METRIC_NAMES_FILE = Path(__file__).resolve().parents[2] / "lambdas" / "shared" / "metric_names.py"
SAGEMAKER_NAMESPACE = "AWS/SageMaker"
ENDPOINT_INSTANCE_NAMESPACE = "/aws/sagemaker/Endpoints"
STATES_NAMESPACE = "AWS/States"
BEDROCK_NAMESPACE = "AWS/Bedrock"
PERIOD = Duration.minutes(5)


@cache
def metric_names() -> ModuleType:
    """lambdas/shared/metric_names.py, loaded by path: the Lambda asset's `shared` package is not
    importable from the CDK app (and must not be: its other modules need the Lambda's libraries)."""
    spec = importlib.util.spec_from_file_location("atelier_metric_names", METRIC_NAMES_FILE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class DashedEndpoint:
    label: str
    name: str
    variant: str = "AllTraffic"


def configured_endpoints(config: StageConfig) -> list[DashedEndpoint]:
    """Only endpoints the stage hosts (model_data_url set) or names (an external attribute
    endpoint): a widget for an endpoint that does not exist would only show 'no data'."""
    return [
        DashedEndpoint(model.title, model.endpoint_name(config))
        for model in hosted_models()
        if model.is_hosted(config) or getattr(model.hosting(config), "endpoint_name", None)
    ]


def workflow_names(config: StageConfig) -> list[str]:
    """The stage's state machines, by the names their constructs give them."""
    names = [
        "describe-catalog",
        *(f"{model.training.workflow}-training" for model in trained_models() if model.training),
        "titan-release",
    ]
    if config.titan.customizable:
        names.append("titan-customize")
    return [config.resource_name(name) for name in names]


def deployment_name(config: StageConfig) -> str:
    """The `deployment` dimension the sweeper and the lifecycle check write (`<prefix>-<stage>`)."""
    return f"{config.name_prefix}-{config.stage}"


class StageDashboard(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        api: apigateway.RestApi,
        queue: sqs.IQueue,
        dead_letter_queue: sqs.IQueue,
        functions: Mapping[str, lambda_.IFunction],
    ) -> None:
        super().__init__(scope, construct_id)
        names = metric_names()
        self.dashboard_name = config.resource_name("operations")
        factory = monitoring.DefaultDashboardFactory(
            self,
            "Factory",
            dashboard_name_prefix=self.dashboard_name,
            create_dashboard=True,
            create_summary_dashboard=False,
            create_alarm_dashboard=False,
        )
        facade = monitoring.MonitoringFacade(self, "Facade", dashboard_factory=factory)
        facade.add_large_header(f"Atelier {config.stage}")

        facade.monitor_api_gateway(
            api=api, api_stage=api.deployment_stage.stage_name, human_readable_name="REST API"
        )
        for label, function in functions.items():
            facade.monitor_lambda_function(lambda_function=function, human_readable_name=label)
        facade.monitor_sqs_queue_with_dlq(
            queue=queue, dead_letter_queue=dead_letter_queue, human_readable_name="Uploads queue"
        )
        facade.monitor_custom(
            human_readable_name="Descriptions, images and generations",
            alarm_friendly_name="Application",
            metric_groups=self._application_groups(names),
        )
        endpoints = configured_endpoints(config)
        if endpoints:
            facade.monitor_custom(
                human_readable_name="SageMaker endpoints",
                alarm_friendly_name="Endpoints",
                metric_groups=self._endpoint_groups(endpoints),
            )
        facade.monitor_custom(
            human_readable_name="Workflows and Bedrock",
            alarm_friendly_name="WorkflowsBedrock",
            metric_groups=[
                self._workflow_failures(workflow_names(config)),
                self._bedrock_throttles(config),
            ],
        )
        deployment = {names.DEPLOYMENT_DIMENSION: deployment_name(config)}
        facade.monitor_custom(
            human_readable_name="Cost guard and model lifecycle",
            alarm_friendly_name="CostGuardLifecycle",
            metric_groups=[
                monitoring.CustomMetricGroup(
                    title="Throughput cost guard (sweeper actions)",
                    metrics=[
                        _atelier(names.CUSTOMIZATION_SERVICE, name, deployment, "Sum")
                        for name in (
                            names.THROUGHPUTS_RELEASED,
                            names.THROUGHPUT_EXPIRY_NOTICES,
                            names.THROUGHPUT_SWEEP_ERRORS,
                        )
                    ],
                ),
                monitoring.CustomMetricGroup(
                    title="Bedrock models needing attention",
                    metrics=[
                        _atelier(
                            LIFECYCLE_SERVICE,
                            names.MODELS_NEEDING_ATTENTION,
                            deployment,
                            "Maximum",
                            period=Duration.days(1),
                        )
                    ],
                ),
            ],
        )

    @staticmethod
    def _application_groups(names: ModuleType) -> list[monitoring.CustomMetricGroup]:
        described = names.DESCRIPTIONS_SERVICE
        images = names.IMAGES_SERVICE
        diffusion = names.DIFFUSION_SERVICE
        return [
            monitoring.CustomMetricGroup(
                title="Descriptions",
                metrics=[
                    _atelier(described, names.DESCRIPTIONS_CREATED, {}, "Sum"),
                    _search(described, names.DESCRIPTION_FAILURES, ("cause", "path")),
                    *(
                        _atelier(described, names.upload_outcome(status), {}, "Sum")
                        for status in names.UPLOAD_STATUSES
                    ),
                ],
            ),
            monitoring.CustomMetricGroup(
                title="Description latency (p90)",
                metrics=[
                    _atelier(described, names.description_latency(stage), {}, "p90")
                    for stage in ("attributes", "description", "total")
                ],
            ),
            monitoring.CustomMetricGroup(
                title="Titan images",
                metrics=[
                    _atelier(images, names.IMAGE_REQUESTS, {}, "Sum"),
                    _atelier(images, names.IMAGES_GENERATED, {}, "Sum"),
                    _search(images, names.IMAGE_FAILURES, ("cause",)),
                    _atelier(images, names.image_latency("total"), {}, "p90"),
                ],
            ),
            monitoring.CustomMetricGroup(
                title="DreamBooth generations and styling",
                metrics=[
                    *(
                        _atelier(diffusion, names.DIFFUSION_REQUESTS, {"route": route}, "Sum")
                        for route in names.DIFFUSION_ROUTES
                    ),
                    _atelier(diffusion, names.DIFFUSION_IMAGES_GENERATED, {}, "Sum"),
                    _search(diffusion, names.DIFFUSION_FAILURES, ("cause", "route")),
                    *(
                        _atelier(diffusion, names.diffusion_latency(route, "total"), {}, "p90")
                        for route in names.DIFFUSION_ROUTES
                    ),
                ],
            ),
        ]

    @staticmethod
    def _endpoint_groups(endpoints: Sequence[DashedEndpoint]) -> list[monitoring.CustomMetricGroup]:
        def each(
            namespace: str, metric: str, statistic: str, unit_label: str = ""
        ) -> list[cloudwatch.Metric]:
            return [
                cloudwatch.Metric(
                    namespace=namespace,
                    metric_name=metric,
                    dimensions_map={"EndpointName": e.name, "VariantName": e.variant},
                    statistic=statistic,
                    period=PERIOD,
                    label=f"{e.label}{unit_label}",
                )
                for e in endpoints
            ]

        return [
            monitoring.CustomMetricGroup(
                title="Endpoint invocations and errors",
                metrics=[
                    *each(SAGEMAKER_NAMESPACE, "Invocations", "Sum"),
                    *each(SAGEMAKER_NAMESPACE, "Invocation5XXErrors", "Sum", " 5XX"),
                    *each(SAGEMAKER_NAMESPACE, "Invocation4XXErrors", "Sum", " 4XX"),
                ],
            ),
            monitoring.CustomMetricGroup(
                title="Endpoint model latency (p90, microseconds)",
                metrics=each(SAGEMAKER_NAMESPACE, "ModelLatency", "p90"),
            ),
            monitoring.CustomMetricGroup(
                title="Endpoint GPU use (%)",
                metrics=[
                    *each(ENDPOINT_INSTANCE_NAMESPACE, "GPUUtilization", "Average"),
                    *each(ENDPOINT_INSTANCE_NAMESPACE, "GPUMemoryUtilization", "Average", " mem"),
                ],
            ),
        ]

    def _workflow_failures(self, workflows: Sequence[str]) -> monitoring.CustomMetricGroup:
        stack = Stack.of(self)
        metrics: list[cloudwatch.Metric] = []
        for name in workflows:
            arn = stack.format_arn(
                service="states",
                resource="stateMachine",
                resource_name=name,
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            )
            for metric in ("ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"):
                metrics.append(
                    cloudwatch.Metric(
                        namespace=STATES_NAMESPACE,
                        metric_name=metric,
                        dimensions_map={"StateMachineArn": arn},
                        statistic="Sum",
                        period=PERIOD,
                        label=f"{name} {metric.removeprefix('Executions').lower()}",
                    )
                )
        return monitoring.CustomMetricGroup(title="Workflow failures", metrics=metrics)

    @staticmethod
    def _bedrock_throttles(config: StageConfig) -> monitoring.CustomMetricGroup:
        model_ids = sorted({model.model_id for model in configured_bedrock_models(config)})
        return monitoring.CustomMetricGroup(
            title="Bedrock throttles",
            metrics=[
                cloudwatch.Metric(
                    namespace=BEDROCK_NAMESPACE,
                    metric_name="InvocationThrottles",
                    dimensions_map={"ModelId": model_id},
                    statistic="Sum",
                    period=PERIOD,
                    label=model_id,
                )
                for model_id in model_ids
            ],
        )


def _atelier(
    service: str,
    name: str,
    dimensions: Mapping[str, str],
    statistic: str,
    *,
    period: Duration = PERIOD,
) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=POWERTOOLS_METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={metric_names().SERVICE_DIMENSION: service, **dimensions},
        statistic=statistic,
        period=period,
        label=name
        if not dimensions or set(dimensions) == {"deployment"}
        else f"{name} {' '.join(dimensions.values())}",
    )


def _search(service: str, name: str, dimensions: Sequence[str]) -> cloudwatch.MathExpression:
    """A metric whose other dimensions have open-ended values (a failure's cause): one line per
    value, found by a CloudWatch SEARCH over exactly that dimension set."""
    keys = ",".join(sorted({metric_names().SERVICE_DIMENSION, *dimensions}))
    seconds = int(PERIOD.to_seconds())
    return cloudwatch.MathExpression(
        expression=(
            f"SEARCH('{{{POWERTOOLS_METRICS_NAMESPACE},{keys}}} "
            f'{metric_names().SERVICE_DIMENSION}="{service}" MetricName="{name}"\', '
            f"'Sum', {seconds})"
        ),
        using_metrics={},
        label=name,
        period=PERIOD,
    )
