"""A SageMaker real-time endpoint: model → endpoint config → endpoint, with its own role.

The model and the endpoint config have no fixed names, so CloudFormation can replace them (a new
artifact, image or instance type gives a new model and config, and the endpoint is updated in
place, blue/green). The endpoint alone has a fixed name: the one its callers were configured with.
Every resource is deleted with the stack (no retain): destroying the stack stops the billing.

The model's role may read exactly its model archive, decrypt it through S3 with the named key,
pull its image, and write its own log group; with the stage's `network` section set, the model runs
in its VPC and the role gets the network-interface permissions SageMaker uses (a policy of its
own, infra/constructs/network.py). Callers get `sagemaker:InvokeEndpoint` on exactly
this endpoint through `grant_invoke`, with the ARN built from the known name, so a caller in
another stack needs no cross-stack export.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Aws, Duration, Stack
from aws_cdk import aws_applicationautoscaling as autoscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from infra.config import S3_MODEL_URI, StageConfig
from infra.constructs.hf_images import ContainerImage
from infra.constructs.ml_instances import has_instance_storage
from infra.constructs.network import cfn_model_vpc_config, sagemaker_network_policy
from infra.constructs.sagemaker_roles import (
    image_pull_auth_policy,
    image_pull_statement,
    log_statements,
    metrics_policy,
)
from infra.nag import acknowledge

# SageMaker publishes endpoint metrics here; ModelLatency is in microseconds.
METRICS_NAMESPACE = "AWS/SageMaker"
# The namespace of the instance metrics (CPU, GPU, memory, disk) the platform publishes.
INSTANCE_METRICS_NAMESPACE = "/aws/sagemaker/Endpoints"
ALARM_PERIOD = Duration.minutes(5)


def endpoint_arn(stack: Stack, endpoint_name: str) -> str:
    """The ARN IAM checks for `endpoint_name` (SageMaker lowercases names in ARNs; IAM does not)."""
    return (
        f"arn:{stack.partition}:sagemaker:{stack.region}:{stack.account}:"
        f"endpoint/{endpoint_name.lower()}"
    )


def grant_invoke_endpoint(
    grantee: iam.IGrantable, *, stack: Stack, endpoint_name: str
) -> iam.Grant:
    """Allow `grantee` to invoke exactly the endpoint named `endpoint_name` in `stack`'s account
    and region (pseudo parameters when the stack is environment-agnostic: no export either way)."""
    return iam.Grant.add_to_principal(
        grantee=grantee,
        actions=["sagemaker:InvokeEndpoint"],
        resource_arns=[endpoint_arn(stack, endpoint_name)],
    )


class SageMakerEndpoint(Construct):
    """A real-time endpoint serving one model archive on instances of one type."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        endpoint_name: str,
        image: ContainerImage,
        model_data_url: str,
        model_data_key: kms.IKey | None,
        instance_type: str,
        initial_instance_count: int,
        volume_kms_key: kms.IKey | None = None,
        environment: Mapping[str, str] | None = None,
        enable_network_isolation: bool = True,
        startup_timeout: Duration | None = None,
        variant_name: str = "AllTraffic",
        description: str,
        config: StageConfig | None = None,
    ) -> None:
        """`config`: the stage, for its `network` section (None: no VPC)."""
        super().__init__(scope, construct_id)
        match = S3_MODEL_URI.fullmatch(model_data_url)
        if match is None:
            raise ValueError(f"not an S3 URI of a .tar.gz model archive: {model_data_url!r}")
        self.endpoint_name = endpoint_name
        self.variant_name = variant_name
        self.instance_type = instance_type
        stack = Stack.of(self)

        self.role = iam.Role(
            self,
            "ModelRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=description[:1000],
        )
        role_policies = self._grant_model_role(
            bucket=match["bucket"], key=match["key"], key_for_data=model_data_key, image=image
        )
        network_policy = (
            sagemaker_network_policy(self, "NetworkPolicy", config=config, role=self.role)
            if config is not None
            else None
        )
        if network_policy is not None:
            role_policies.append(network_policy)

        self.model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=self.role.role_arn,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=image.uri,
                model_data_url=model_data_url,
                environment=dict(environment or {}),
            ),
            enable_network_isolation=enable_network_isolation,
            vpc_config=cfn_model_vpc_config(config) if config is not None else None,
        )
        # The model (and so the endpoint) is created only once its role may do all it needs.
        # (On the policies, not the role: the role is already a GetAtt dependency.)
        self.model.node.add_dependency(self.role.node.find_child("DefaultPolicy"), *role_policies)

        timeout = int(startup_timeout.to_seconds()) if startup_timeout else None
        # Instance types with NVMe instance storage keep the model on a volume their hardware
        # encrypts, and CreateEndpointConfig fails if a KMS key is named for them.
        self.volume_encrypted_with_key = volume_kms_key is not None and not has_instance_storage(
            instance_type
        )
        self.endpoint_config = sagemaker.CfnEndpointConfig(
            self,
            "Config",
            production_variants=[
                sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                    variant_name=variant_name,
                    model_name=self.model.attr_model_name,
                    instance_type=instance_type,
                    initial_instance_count=initial_instance_count,
                    initial_variant_weight=1.0,
                    model_data_download_timeout_in_seconds=timeout,
                    container_startup_health_check_timeout_in_seconds=timeout,
                )
            ],
            kms_key_id=(
                volume_kms_key.key_arn
                if volume_kms_key is not None and self.volume_encrypted_with_key
                else None
            ),
        )
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=endpoint_name,
            endpoint_config_name=self.endpoint_config.attr_endpoint_config_name,
        )
        self.endpoint_arn = endpoint_arn(stack, endpoint_name)

    def _grant_model_role(
        self, *, bucket: str, key: str, key_for_data: kms.IKey | None, image: ContainerImage
    ) -> list[iam.Policy]:
        stack = Stack.of(self)
        statements = [
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[f"arn:{Aws.PARTITION}:s3:::{bucket}/{key}"],
            ),
            image_pull_statement(image.repository_arn),
            *log_statements(self._log_group_arn(stack)),
        ]
        if key_for_data is not None:
            statements.append(
                iam.PolicyStatement(
                    actions=["kms:Decrypt"],
                    resources=[key_for_data.key_arn],
                    conditions={
                        "StringEquals": {"kms:ViaService": f"s3.{stack.region}.amazonaws.com"}
                    },
                )
            )
        for statement in statements:
            self.role.add_to_principal_policy(statement)
        acknowledge(
            self.role.node.find_child("DefaultPolicy"),
            f"AwsSolutions-IAM5[Resource::{self._log_group_arn(stack, for_nag=True)}:*]",
            "Log streams of this endpoint's own log group only; SageMaker names a stream per "
            "instance and container, so they cannot be listed in advance.",
        )

        ecr_auth = image_pull_auth_policy(
            self, "EcrAuthPolicy", role=self.role, repository="repository"
        )
        metrics = metrics_policy(
            self,
            "MetricsPolicy",
            role=self.role,
            namespace=INSTANCE_METRICS_NAMESPACE,
            kind="endpoint instance",
        )
        return [ecr_auth, metrics]

    def _log_group_arn(self, stack: Stack, *, for_nag: bool = False) -> str:
        name = f"/aws/sagemaker/Endpoints/{self.endpoint_name}"
        if for_nag:  # cdk-nag names pseudo parameters this way in its finding ids
            return f"arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:{name}"
        return f"arn:{Aws.PARTITION}:logs:{stack.region}:{stack.account}:log-group:{name}"

    def grant_invoke(self, grantee: iam.IGrantable) -> iam.Grant:
        """`sagemaker:InvokeEndpoint` on exactly this endpoint."""
        return grant_invoke_endpoint(
            grantee, stack=Stack.of(self), endpoint_name=self.endpoint_name
        )

    # --- autoscaling and alarms ---------------------------------------------------------------

    def add_autoscaling(
        self,
        *,
        min_capacity: int,
        max_capacity: int,
        invocations_per_instance_per_minute: int,
        scale_in_cooldown: Duration,
        scale_out_cooldown: Duration,
    ) -> autoscaling.ScalableTarget:
        """Target tracking on SageMakerVariantInvocationsPerInstance (a per-minute rate)."""
        stack = Stack.of(self)
        # SageMaker endpoints scale through Application Auto Scaling's service-linked role (created
        # on first use); left out, CDK would make a role of its own that nothing uses.
        service_linked_role = iam.Role.from_role_arn(
            self,
            "AutoScalingRole",
            f"arn:{Aws.PARTITION}:iam::{stack.account}:role/aws-service-role/"
            "sagemaker.application-autoscaling.amazonaws.com/"
            "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint",
        )
        target = autoscaling.ScalableTarget(
            self,
            "ScalableTarget",
            service_namespace=autoscaling.ServiceNamespace.SAGEMAKER,
            # attr_endpoint_name makes the target wait for the endpoint to exist.
            resource_id=f"endpoint/{self.endpoint.attr_endpoint_name}/variant/{self.variant_name}",
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            min_capacity=min_capacity,
            max_capacity=max_capacity,
            role=service_linked_role,
        )
        target.scale_to_track_metric(
            "InvocationsPerInstance",
            target_value=invocations_per_instance_per_minute,
            predefined_metric=(
                autoscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE
            ),
            scale_in_cooldown=scale_in_cooldown,
            scale_out_cooldown=scale_out_cooldown,
        )
        return target

    def metric(self, metric_name: str, *, statistic: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name=metric_name,
            dimensions_map={"EndpointName": self.endpoint_name, "VariantName": self.variant_name},
            statistic=statistic,
            period=ALARM_PERIOD,
        )

    def add_alarms(
        self, *, latency_p90: Duration, errors_5xx_threshold: int, description_prefix: str
    ) -> tuple[cloudwatch.Alarm, cloudwatch.Alarm]:
        """Alarms on 5xx responses (sum over 5 minutes) and on p90 model latency (15 minutes)."""
        errors = cloudwatch.Alarm(
            self,
            "Errors5xxAlarm",
            alarm_description=f"{description_prefix}: the model container answered with 5xx "
            f"errors ({errors_5xx_threshold} or more in 5 minutes)",
            metric=self.metric("Invocation5XXErrors", statistic=cloudwatch.Stats.SUM),
            threshold=errors_5xx_threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        latency = cloudwatch.Alarm(
            self,
            "LatencyAlarm",
            alarm_description=f"{description_prefix}: p90 model latency above "
            f"{int(latency_p90.to_milliseconds())} ms for 15 minutes",
            metric=self.metric("ModelLatency", statistic=cloudwatch.Stats.percentile(90)),
            # ModelLatency is reported in microseconds.
            threshold=latency_p90.to_milliseconds() * 1000,
            evaluation_periods=3,
            datapoints_to_alarm=3,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        return errors, latency
