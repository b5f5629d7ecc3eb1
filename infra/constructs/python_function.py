"""The one way Atelier builds a Lambda function.

Every function gets: the shared `lambdas/` asset (optionally bundled with extra dependencies,
without Docker), the public Powertools layer at the configured version, JSON logs into its own
log group with the stage's retention, active X-Ray tracing, and a role of its own that starts with
nothing but permission to write its logs and traces. Callers add grants for exactly the resources
the function touches. With the stage's `network` section set, every function runs in its VPC (all
of them call AWS APIs, through the endpoints docs/networking.md lists), with a policy of its own
for the network interfaces Lambda creates with the function's role.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from aws_cdk import BundlingOptions, DockerImage, Duration, Size, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.checkov_skips import skip_function_checks
from infra.config import StageConfig
from infra.constructs.local_bundling import IGNORED_SOURCE_PATTERNS, LocalPipBundling
from infra.constructs.log_groups import create_log_group
from infra.constructs.network import lambda_network_policy, lambda_network_props
from infra.nag import acknowledge

LAMBDAS_DIR = Path(__file__).resolve().parents[2] / "lambdas"
REQUIREMENTS_DIR = LAMBDAS_DIR / "requirements"

# `lambdas/requirements/aws-sdk.txt`: the pinned boto3 and botocore, for functions whose calls
# need a newer botocore than Lambda's runtime ships (installed without dependencies: the file
# pins the whole closure).
AWS_SDK_REQUIREMENTS = "aws-sdk"
AWS_SDK_PIP_ARGS = ("--no-deps",)

# Account that publishes the Powertools layers in the commercial AWS regions.
POWERTOOLS_LAYER_ACCOUNT = "017000801446"
POWERTOOLS_METRICS_NAMESPACE = "Atelier"

_RUNTIMES = {
    "python3.12": lambda_.Runtime.PYTHON_3_12,
    "python3.13": lambda_.Runtime.PYTHON_3_13,
    "python3.14": lambda_.Runtime.PYTHON_3_14,
}
_ARCHITECTURES = {"x86_64": lambda_.Architecture.X86_64, "arm64": lambda_.Architecture.ARM_64}


def powertools_layer_arn(*, region: str, runtime: str, architecture: str, version: int) -> str:
    """ARN of the public Powertools v3 layer, e.g. ...PythonV3-python313-x86_64:36."""
    runtime_tag = runtime.replace(".", "")
    return (
        f"arn:aws:lambda:{region}:{POWERTOOLS_LAYER_ACCOUNT}:layer:"
        f"AWSLambdaPowertoolsPythonV3-{runtime_tag}-{architecture}:{version}"
    )


def lambda_code(
    *, config: StageConfig, requirements: str | None, extra_pip_args: Sequence[str] = ()
) -> lambda_.Code:
    """The `lambdas/` asset, bundled with `lambdas/requirements/<requirements>.txt` if named.

    The requirements file lives inside the asset folder, so the asset hash (computed from the
    source) changes whenever the dependencies do.
    """
    excludes = [f"**/{pattern}" for pattern in IGNORED_SOURCE_PATTERNS]
    if requirements is None:
        return lambda_.Code.from_asset(str(LAMBDAS_DIR), exclude=excludes)
    bundler = LocalPipBundling(
        source_dir=LAMBDAS_DIR,
        requirements_file=REQUIREMENTS_DIR / f"{requirements}.txt",
        python_version=config.lambdas.runtime.removeprefix("python"),
        architecture=config.lambdas.architecture,
        extra_pip_args=extra_pip_args,
    )
    return lambda_.Code.from_asset(
        str(LAMBDAS_DIR),
        exclude=excludes,
        bundling=BundlingOptions(
            # Required by the API but never pulled: the local bundler always does the work or
            # raises, because Docker is not part of this project's toolchain.
            image=DockerImage.from_registry("atelier-local-bundling-only"),
            local=bundler,
            # Never run (no container), but part of the asset hash: the local bundler object is
            # not, so without this every bundle of the same source would share one asset whatever
            # its requirements file, architecture or Python version.
            command=bundler.describe(),
        ),
    )


class PythonFunction(Construct):
    """A Lambda function with Atelier's logging, tracing and least-privilege defaults.

    `handler` is a dotted path inside `lambdas/`, e.g. `descriptions.handlers.api.handler`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        handler: str,
        description: str,
        service_name: str,
        environment: Mapping[str, str] | None = None,
        memory_size: int = 256,
        ephemeral_storage_mb: int | None = None,
        timeout: Duration | None = None,
        reserved_concurrent_executions: int | None = None,
        requirements: str | None = None,
        extra_pip_args: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Atelier {config.stage}: {description}"[:1000],
        )
        self.log_group = create_log_group(self, "Logs", config=config)
        layer = lambda_.LayerVersion.from_layer_version_arn(
            self,
            "Powertools",
            powertools_layer_arn(
                region=Stack.of(self).region,
                runtime=config.lambdas.runtime,
                architecture=config.lambdas.architecture,
                version=config.lambdas.powertools_layer_version,
            ),
        )
        self.function = lambda_.Function(
            self,
            "Function",
            description=description,
            runtime=_RUNTIMES[config.lambdas.runtime],
            architecture=_ARCHITECTURES[config.lambdas.architecture],
            code=lambda_code(
                config=config, requirements=requirements, extra_pip_args=extra_pip_args
            ),
            handler=handler,
            role=self.role,
            layers=[layer],
            memory_size=memory_size,
            # /tmp beyond Lambda's 512 MB default, for functions that spool files to local disk.
            ephemeral_storage_size=(
                Size.mebibytes(ephemeral_storage_mb) if ephemeral_storage_mb is not None else None
            ),
            timeout=timeout or Duration.seconds(30),
            reserved_concurrent_executions=reserved_concurrent_executions,
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=lambda_.ApplicationLogLevel(config.lambdas.log_level),
            system_log_level_v2=lambda_.SystemLogLevel.WARN,
            environment={
                "POWERTOOLS_SERVICE_NAME": service_name,
                "POWERTOOLS_METRICS_NAMESPACE": POWERTOOLS_METRICS_NAMESPACE,
                "POWERTOOLS_LOG_LEVEL": config.lambdas.log_level,
                "ATELIER_STAGE": config.stage,
                **(environment or {}),
            },
            **lambda_network_props(self, config),
        )
        network_policy = lambda_network_policy(self, "NetworkPolicy", config=config, role=self.role)
        if network_policy is not None:
            # Lambda checks the interface permissions when it creates the function.
            self.function.node.add_dependency(network_policy)
        self.log_group.grant_write(self.role)
        # lambda.Function makes itself depend on its whole role (so every policy added later is
        # in place first); cfn-lint reports the role's own entry as redundant with the `Role`
        # GetAtt. Harmless, and CDK's to change, so only this warning on this resource is off.
        cfn_function = self.function.node.default_child
        assert isinstance(cfn_function, lambda_.CfnFunction)
        cfn_function.add_metadata("cfn-lint", {"config": {"ignore_checks": ["W3005"]}})
        skip_function_checks(
            self.function,
            reserved_concurrency=reserved_concurrent_executions is not None,
            in_vpc=network_policy is not None,
        )
        self._enable_tracing()

    def _enable_tracing(self) -> None:
        # `tracing=Tracing.ACTIVE` would append the X-Ray statement (Resource "*") to the role's
        # default policy, where a blanket acknowledgment would also hide any later wildcard.
        # A separate policy keeps the acknowledgment on exactly these two actions.
        cfn_function = self.function.node.default_child
        assert isinstance(cfn_function, lambda_.CfnFunction)
        cfn_function.tracing_config = lambda_.CfnFunction.TracingConfigProperty(mode="Active")
        tracing_policy = iam.Policy(
            self,
            "TracingPolicy",
            roles=[self.role],
            statements=[
                iam.PolicyStatement(
                    actions=["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
                    resources=["*"],
                )
            ],
        )
        # The function must not start before it may write traces.
        self.function.node.add_dependency(tracing_policy)
        acknowledge(
            tracing_policy,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray PutTraceSegments and PutTelemetryRecords support no resource-level "
            "permissions; the service requires Resource '*'.",
        )

    def grant_invoke(self, grantee: iam.IGrantable) -> iam.Grant:
        return self.function.grant_invoke(grantee)
