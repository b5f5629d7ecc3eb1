"""The SageMakerEndpoint construct on its own: names, encryption, role, invoke grants."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk.assertions import Template

from infra.constructs.hf_images import ContainerImage
from infra.constructs.sagemaker_endpoint import SageMakerEndpoint
from infra.nag import attach_nag
from tests.templates import listed, one, render, resources, statements_granting

pytestmark = pytest.mark.infra

MODEL = "s3://example-models/vqa/training/job-1/output/model.tar.gz"
IMAGE = ContainerImage(
    uri="763104351884.dkr.ecr.eu-west-1.amazonaws.com/huggingface-pytorch-inference:tag",
    repository_arn="arn:aws:ecr:eu-west-1:763104351884:repository/huggingface-pytorch-inference",
)


def _synth(
    tmp_path: Path, *, instance_type: str = "ml.g5.2xlarge", with_key: bool = True
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(hosting template, caller template) of an app with cdk-nag attached."""
    app = App(outdir=str(tmp_path))
    hosting = Stack(app, "Hosting")
    key = kms.Key(hosting, "Key", enable_key_rotation=True)
    endpoint = SageMakerEndpoint(
        hosting,
        "Endpoint",
        endpoint_name="Shop-VQA",
        image=IMAGE,
        model_data_url=MODEL,
        model_data_key=key,
        instance_type=instance_type,
        initial_instance_count=1,
        volume_kms_key=key if with_key else None,
        environment={"HF_HUB_OFFLINE": "1"},
        startup_timeout=Duration.minutes(10),
        description="test endpoint",
    )
    endpoint.add_autoscaling(
        min_capacity=1,
        max_capacity=4,
        invocations_per_instance_per_minute=20,
        scale_in_cooldown=Duration.minutes(10),
        scale_out_cooldown=Duration.minutes(1),
    )
    endpoint.add_alarms(
        latency_p90=Duration.seconds(2), errors_5xx_threshold=3, description_prefix="test"
    )
    caller = Stack(app, "Caller")
    role = iam.Role(caller, "CallerRole", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    endpoint.grant_invoke(role)
    attach_nag(app)
    app.synth()  # cdk-nag raises on any finding the construct does not acknowledge
    return (
        Template.from_stack(hosting).to_json(),
        Template.from_stack(caller).to_json(),
    )


@pytest.fixture(scope="module")
def g5(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    return _synth(tmp_path_factory.mktemp("g5"))


def test_only_the_endpoint_has_a_fixed_name(g5: tuple[dict[str, Any], dict[str, Any]]) -> None:
    template, _ = g5
    _, model = one(template, "AWS::SageMaker::Model")
    _, config = one(template, "AWS::SageMaker::EndpointConfig")
    _, endpoint = one(template, "AWS::SageMaker::Endpoint")
    assert "ModelName" not in model
    assert "EndpointConfigName" not in config
    assert endpoint["EndpointName"] == "Shop-VQA"
    # Nothing is retained: deleting the stack stops the instances.
    for resource_type in (
        "AWS::SageMaker::Model",
        "AWS::SageMaker::EndpointConfig",
        "AWS::SageMaker::Endpoint",
    ):
        for resource in resources(template, resource_type).values():
            assert resource.get("DeletionPolicy", "Delete") == "Delete"


def test_the_model_runs_isolated_from_the_network(
    g5: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    template, _ = g5
    _, model = one(template, "AWS::SageMaker::Model")
    assert model["EnableNetworkIsolation"] is True
    assert model["PrimaryContainer"] == {
        "Image": IMAGE.uri,
        "ModelDataUrl": MODEL,
        "Environment": {"HF_HUB_OFFLINE": "1"},
    }
    _, config = one(template, "AWS::SageMaker::EndpointConfig")
    (variant,) = config["ProductionVariants"]
    assert variant["ModelDataDownloadTimeoutInSeconds"] == 600
    assert variant["ContainerStartupHealthCheckTimeoutInSeconds"] == 600


def test_an_nvme_instance_type_gets_no_volume_key(
    g5: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    # ml.g5 keeps the model on hardware-encrypted NVMe storage; CreateEndpointConfig refuses a
    # KmsKeyId for such types.
    template, _ = g5
    _, config = one(template, "AWS::SageMaker::EndpointConfig")
    assert "KmsKeyId" not in config


def test_an_ebs_instance_type_gets_the_volume_key(tmp_path: Path) -> None:
    template, _ = _synth(tmp_path, instance_type="ml.m5.xlarge")
    key_id, _ = one(template, "AWS::KMS::Key")
    _, config = one(template, "AWS::SageMaker::EndpointConfig")
    assert config["KmsKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}


def test_the_model_role_reads_exactly_its_archive(
    g5: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    template, _ = g5
    key_id, _ = one(template, "AWS::KMS::Key")
    (read,) = statements_granting(template, "EndpointModelRole", "s3:GetObject")
    assert render(read["Resource"]) == (
        "arn:${AWS::Partition}:s3:::example-models/vqa/training/job-1/output/model.tar.gz"
    )
    (decrypt,) = statements_granting(template, "EndpointModelRole", "kms:Decrypt")
    assert decrypt["Action"] == "kms:Decrypt"
    assert decrypt["Resource"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert render(decrypt["Condition"]["StringEquals"]["kms:ViaService"]) == (
        "s3.${AWS::Region}.amazonaws.com"
    )
    (pull,) = statements_granting(template, "EndpointModelRole", "ecr:BatchGetImage")
    assert pull["Resource"] == IMAGE.repository_arn
    (logs,) = statements_granting(template, "EndpointModelRole", "logs:PutLogEvents")
    assert render(logs["Resource"]).endswith(":log-group:/aws/sagemaker/Endpoints/Shop-VQA:*")
    wildcards = {
        action
        for statement in (
            s
            for policy in resources(template, "AWS::IAM::Policy").values()
            for s in policy["Properties"]["PolicyDocument"]["Statement"]
        )
        if "*" in listed(statement["Resource"])
        for action in listed(statement["Action"])
    }
    assert wildcards == {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}
    # The model waits for every policy of its role.
    (model,) = resources(template, "AWS::SageMaker::Model").values()
    assert set(resources(template, "AWS::IAM::Policy")) <= set(model["DependsOn"])


def test_grant_invoke_names_the_endpoint_without_a_cross_stack_reference(
    g5: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    hosting, caller = g5
    (statement,) = statements_granting(caller, "CallerRole", "sagemaker:InvokeEndpoint")
    assert statement["Action"] == "sagemaker:InvokeEndpoint"
    # Lowercased: SageMaker lowercases names in ARNs and IAM compares them case-sensitively.
    assert render(statement["Resource"]) == (
        "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:endpoint/shop-vqa"
    )
    assert "Outputs" not in hosting or not any(
        "Export" in output for output in hosting["Outputs"].values()
    )
    assert "Fn::ImportValue" not in str(caller)


def test_autoscaling_tracks_invocations_per_instance(
    g5: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    template, _ = g5
    endpoint_id, _ = one(template, "AWS::SageMaker::Endpoint")
    _, target = one(template, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert target["ServiceNamespace"] == "sagemaker"
    assert target["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 4)
    assert target["ResourceId"] == {
        "Fn::Join": [
            "",
            ["endpoint/", {"Fn::GetAtt": [endpoint_id, "EndpointName"]}, "/variant/AllTraffic"],
        ]
    }
    # Application Auto Scaling's service-linked role, not a role of our own.
    assert render(target["RoleARN"]).endswith(
        ":role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
        "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
    )
    assert len(resources(template, "AWS::IAM::Role")) == 1
    _, policy = one(template, "AWS::ApplicationAutoScaling::ScalingPolicy")
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking == {
        "PredefinedMetricSpecification": {
            "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
        },
        "TargetValue": 20,
        "ScaleInCooldown": 600,
        "ScaleOutCooldown": 60,
    }


def test_alarms_watch_5xx_errors_and_p90_latency_in_microseconds(
    g5: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    template, _ = g5
    alarms = {
        alarm["Properties"]["MetricName"]: alarm["Properties"]
        for alarm in resources(template, "AWS::CloudWatch::Alarm").values()
    }
    assert set(alarms) == {"Invocation5XXErrors", "ModelLatency"}
    for alarm in alarms.values():
        assert alarm["Namespace"] == "AWS/SageMaker"
        assert alarm["Dimensions"] == [
            {"Name": "EndpointName", "Value": "Shop-VQA"},
            {"Name": "VariantName", "Value": "AllTraffic"},
        ]
        assert alarm["TreatMissingData"] == "notBreaching"
    errors, latency = alarms["Invocation5XXErrors"], alarms["ModelLatency"]
    assert (errors["Statistic"], errors["Threshold"], errors["Period"]) == ("Sum", 3, 300)
    assert errors["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert latency["ExtendedStatistic"] == "p90"
    assert latency["Threshold"] == 2_000_000  # 2 s in microseconds
    assert (latency["EvaluationPeriods"], latency["DatapointsToAlarm"]) == (3, 3)


def test_a_model_url_must_be_an_s3_archive(tmp_path: Path) -> None:
    stack = Stack(App(outdir=str(tmp_path)), "Bad")
    with pytest.raises(ValueError, match=r"not an S3 URI of a \.tar\.gz model archive"):
        SageMakerEndpoint(
            stack,
            "Endpoint",
            endpoint_name="x",
            image=IMAGE,
            model_data_url="s3://bucket/models/*",
            model_data_key=None,
            instance_type="ml.g5.xlarge",
            initial_instance_count=1,
            description="bad",
        )
