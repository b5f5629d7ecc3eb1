"""The Hosting stack: an endpoint only when a model is configured, and nothing that outlives it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from infra import models
from infra.config import StageConfig, load_stage_config
from infra.stacks.hosting import PUBLISHED_NAMES, PUBLISHED_NAMES_WHEN_HOSTED
from infra.summary import render as render_summary
from tests.support import (
    DREAMBOOTH_MODEL_DATA_URL,
    HOSTED_MODEL_DATA_URL,
    STYLING_MODEL_DATA_URL,
    VARIANT_OVERRIDES,
    SynthesizedApp,
    cdk_json_context,
    synthesize,
)
from tests.templates import (
    assembly_artifacts,
    one,
    render,
    resources,
    ssm_parameters,
    stack_dependencies,
    statements_granting,
)

pytestmark = pytest.mark.infra

STAGES = ("dev", "prod")
# Logical ids of the attribute endpoint's resources start with this (the variant hosts three).
VQA = "VqaEndpoint"
INFERENCE_IMAGE = (
    "${HuggingFaceInferenceRegistries[${AWS::Region}].account}.dkr.ecr.${AWS::Region}."
    "${AWS::URLSuffix}/huggingface-pytorch-inference:"
    "2.6.0-transformers4.51.3-gpu-py312-cu124-ubuntu22.04"
)


def _config(stage: str) -> StageConfig:
    return load_stage_config(cdk_json_context(), stage)


def _parameters(template: dict[str, Any]) -> dict[str, Any]:
    return {name: properties["Value"] for name, properties in ssm_parameters(template).items()}


@pytest.mark.parametrize("stage", STAGES)
def test_no_model_no_endpoint(synthesized_apps: dict[str, SynthesizedApp], stage: str) -> None:
    # Given the shipped config, where vqa.hosting.model_data_url is null
    assert _config(stage).vqa.hosting.model_data_url is None
    template = synthesized_apps[stage].template("-hosting")
    # Then the stack holds no SageMaker resource, only the published endpoint name
    types = {resource["Type"] for resource in template["Resources"].values()}
    assert types == {"AWS::SSM::Parameter"}
    assert _parameters(template) == {
        f"/atelier/{stage}/hosting/vqa-endpoint-name": f"atelier-{stage}-vqa",
        f"/atelier/{stage}/hosting/dreambooth-endpoint-name": f"atelier-{stage}-dreambooth",
        f"/atelier/{stage}/hosting/styling-endpoint-name": f"atelier-{stage}-styling",
    }
    assert PUBLISHED_NAMES == (
        "vqa-endpoint-name",
        "dreambooth-endpoint-name",
        "styling-endpoint-name",
    )
    summary = render_summary(synthesized_apps[stage].assembly_dir)
    assert "SageMaker endpoints that would run: none in this assembly" in summary
    assert template["Description"] == (
        f"Atelier ({stage}) hosting: no endpoint (vqa, dreambooth and styling "
        "hosting.model_data_url are null)"
    )


def test_a_configured_model_is_served_under_the_pipelines_endpoint_name(
    variant_app: SynthesizedApp,
) -> None:
    template = variant_app.template("-hosting")
    hosting = VARIANT_OVERRIDES["vqa"]["hosting"]
    config = _config("dev")
    _, endpoint = one(template, "AWS::SageMaker::Endpoint", VQA)
    assert endpoint["EndpointName"] == models.VQA.endpoint_name(config) == "atelier-dev-vqa"
    _, model = one(template, "AWS::SageMaker::Model", VQA)
    assert model["EnableNetworkIsolation"] is True
    container = model["PrimaryContainer"]
    assert container["ModelDataUrl"] == HOSTED_MODEL_DATA_URL == hosting["model_data_url"]
    assert render(container["Image"]) == INFERENCE_IMAGE
    assert container["Environment"]["HF_HUB_OFFLINE"] == "1"
    assert container["Environment"]["SAGEMAKER_MODEL_SERVER_WORKERS"] == "1"
    _, config_properties = one(template, "AWS::SageMaker::EndpointConfig", VQA)
    (variant,) = config_properties["ProductionVariants"]
    assert variant["InstanceType"] == config.vqa.hosting.instance_type == "ml.g5.2xlarge"
    assert variant["InitialInstanceCount"] == config.vqa.hosting.min_instances
    assert variant["ModelDataDownloadTimeoutInSeconds"] == 900
    # ml.g5 encrypts its NVMe storage in hardware and refuses a volume key.
    assert "KmsKeyId" not in config_properties
    for resource in template["Resources"].values():
        assert resource.get("DeletionPolicy", "Delete") == "Delete"
    _, target = one(template, "AWS::ApplicationAutoScaling::ScalableTarget", VQA)
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, hosting["max_instances"])
    _, policy = one(template, "AWS::ApplicationAutoScaling::ScalingPolicy", VQA)
    assert policy["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 30
    alarms = {
        a["Properties"]["MetricName"]: a["Properties"]
        for logical_id, a in resources(template, "AWS::CloudWatch::Alarm").items()
        if logical_id.startswith(VQA)
    }
    assert alarms["ModelLatency"]["Threshold"] == config.vqa.hosting.latency_alarm_p90_ms * 1000
    assert (
        alarms["Invocation5XXErrors"]["Threshold"] == config.vqa.hosting.error_alarm_5xx_threshold
    )
    assert set(_parameters(template)) == {
        f"/atelier/dev/hosting/{name}" for name in PUBLISHED_NAMES_WHEN_HOSTED
    }


def test_autoscaling_can_be_switched_off_to_change_the_instance_type(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    overrides = copy.deepcopy(VARIANT_OVERRIDES)
    overrides["vqa"]["hosting"]["autoscaling"] = False
    app = synthesize(
        "dev", tmp_path_factory.mktemp("cdk-out-no-autoscaling"), stage_overrides=overrides
    )
    template = app.template("-hosting")
    types = {
        resource["Type"]
        for logical_id, resource in template["Resources"].items()
        if logical_id.startswith(VQA)
    }
    assert "AWS::SageMaker::Endpoint" in types
    assert "AWS::ApplicationAutoScaling::ScalableTarget" not in types
    assert "AWS::ApplicationAutoScaling::ScalingPolicy" not in types
    _, config_properties = one(template, "AWS::SageMaker::EndpointConfig", VQA)
    (variant,) = config_properties["ProductionVariants"]
    assert variant["InitialInstanceCount"] == _config("dev").vqa.hosting.min_instances
    # Alarms stay.
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    assert len([logical_id for logical_id in alarms if logical_id.startswith(VQA)]) == 2


def test_autoscaling_is_on_by_default() -> None:
    assert _config("dev").vqa.hosting.autoscaling is True
    assert _config("prod").vqa.hosting.autoscaling is True


def test_the_model_role_reads_the_archive_and_decrypts_with_the_data_key(
    variant_app: SynthesizedApp,
) -> None:
    template = variant_app.template("-hosting")
    (read,) = statements_granting(template, "VqaEndpointModelRole", "s3:GetObject")
    assert render(read["Resource"]) == "arn:${AWS::Partition}:s3:::" + HOSTED_MODEL_DATA_URL[5:]
    (decrypt,) = statements_granting(template, "VqaEndpointModelRole", "kms:Decrypt")
    imported = decrypt["Resource"]["Fn::ImportValue"]
    data_outputs = variant_app.template("-data")["Outputs"].values()
    (exported,) = [o["Value"] for o in data_outputs if o.get("Export", {}).get("Name") == imported]
    (key_id,) = resources(variant_app.template("-data"), "AWS::KMS::Key")
    assert exported == {"Fn::GetAtt": [key_id, "Arn"]}


def test_the_api_may_invoke_the_hosted_endpoint_and_does_not_depend_on_it(
    variant_app: SynthesizedApp, dev_app: SynthesizedApp
) -> None:
    # The variant hosts the VQA model, so its attribute source is the endpoint: one statement,
    # on the ARN built from the endpoint's name (no export). dev hosts none and reads attributes
    # with the vision model: no endpoint grant at all.
    template = variant_app.template("-api")
    for function in ("ApiFunction", "UploadsFunction"):
        (statement,) = statements_granting(template, function, "sagemaker:InvokeEndpoint")
        assert render(statement["Resource"]) == (
            "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:endpoint/atelier-dev-vqa"
        )
        assert not statements_granting(
            dev_app.template("-api"), function, "sagemaker:InvokeEndpoint"
        )
    artifacts = assembly_artifacts(variant_app)
    # Destroying the hosting stack (to stop the GPU bill) must not take the API with it.
    for stack in ("atelier-dev-api", "atelier-dev-training", "atelier-dev-data"):
        assert "atelier-dev-hosting" not in artifacts[stack].get("dependencies", [])
    assert stack_dependencies(variant_app, "atelier-dev-hosting") == ["atelier-dev-data"]


def test_the_summary_flags_the_gpu_endpoint(variant_app: SynthesizedApp) -> None:
    summary = render_summary(variant_app.assembly_dir)
    assert (
        "SageMaker endpoints that would run (billed per instance-hour while deployed):" in summary
    )
    assert "1 x ml.g5.2xlarge (GPU/accelerator)" in summary


# ---------------------------------------------------------------------------------------------
# The Stable Diffusion endpoints (the variant hosts both)
# ---------------------------------------------------------------------------------------------

DIFFUSION_ENDPOINTS = {
    # construct id: (endpoint name, archive, config section)
    "DreamboothEndpoint": ("atelier-dev-dreambooth", DREAMBOOTH_MODEL_DATA_URL, "dreambooth"),
    "StylingEndpoint": ("atelier-dev-styling", STYLING_MODEL_DATA_URL, "styling"),
}


def _of(template: dict[str, Any], resource_type: str, construct: str) -> dict[str, Any]:
    return {
        logical_id: resource["Properties"]
        for logical_id, resource in resources(template, resource_type).items()
        if logical_id.startswith(construct)
    }


@pytest.mark.parametrize("construct", list(DIFFUSION_ENDPOINTS))
def test_a_configured_diffusion_model_is_served_under_its_endpoint_name(
    variant_app: SynthesizedApp, construct: str
) -> None:
    name, url, section = DIFFUSION_ENDPOINTS[construct]
    config = _config("dev")
    hosting = config.dreambooth.hosting if section == "dreambooth" else config.styling.hosting
    template = variant_app.template("-hosting")
    _, endpoint = one(template, "AWS::SageMaker::Endpoint", construct)
    assert endpoint["EndpointName"] == name
    assert name == (models.model(section).endpoint_name(config))
    _, model = one(template, "AWS::SageMaker::Model", construct)
    assert model["EnableNetworkIsolation"] is True
    container = model["PrimaryContainer"]
    assert container["ModelDataUrl"] == url
    assert render(container["Image"]) == INFERENCE_IMAGE
    # One worker per GPU, and never the Hub: the archive carries every component.
    assert container["Environment"] == {
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
        "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    _, config_properties = one(template, "AWS::SageMaker::EndpointConfig", construct)
    (variant,) = config_properties["ProductionVariants"]
    assert variant["InstanceType"] == hosting.instance_type
    assert variant["InitialInstanceCount"] == hosting.min_instances
    assert variant["ModelDataDownloadTimeoutInSeconds"] == hosting.startup_timeout_seconds
    assert variant["ContainerStartupHealthCheckTimeoutInSeconds"] == (
        hosting.startup_timeout_seconds
    )
    # ml.g5 and ml.g4dn encrypt their NVMe storage in hardware and refuse a volume key.
    assert "KmsKeyId" not in config_properties
    alarms = {
        a["MetricName"]: a for a in _of(template, "AWS::CloudWatch::Alarm", construct).values()
    }
    assert alarms["ModelLatency"]["Threshold"] == hosting.latency_alarm_p90_ms * 1000
    assert alarms["Invocation5XXErrors"]["Threshold"] == hosting.error_alarm_5xx_threshold
    assert name in alarms["ModelLatency"]["AlarmDescription"]
    # The model role reads exactly its archive.
    (read,) = statements_granting(template, f"{construct}ModelRole", "s3:GetObject")
    assert render(read["Resource"]) == "arn:${AWS::Partition}:s3:::" + url[5:]
    parameters = _parameters(template)
    assert parameters[f"/atelier/dev/hosting/{section}-endpoint-name"] == name
    assert parameters[f"/atelier/dev/hosting/{section}-model-data-url"] == url


def test_the_diffusion_endpoints_default_to_the_spec_instances() -> None:
    config = _config("dev")
    assert config.dreambooth.hosting.instance_type == "ml.g5.2xlarge"
    # A T4 (ml.g4dn.xlarge) can host styling.
    assert config.styling.hosting.instance_type == "ml.g4dn.xlarge"


def test_each_endpoint_scales_by_its_own_setting(variant_app: SynthesizedApp) -> None:
    template = variant_app.template("-hosting")
    config = _config("dev").dreambooth.hosting
    # Text-to-image: autoscaling from dreambooth.hosting.
    (target,) = _of(template, "AWS::ApplicationAutoScaling::ScalableTarget", "Dreambooth").values()
    assert (target["MinCapacity"], target["MaxCapacity"]) == (
        config.min_instances,
        config.max_instances,
    )
    assert target["ResourceId"]["Fn::Join"][1][-1] == "/variant/AllTraffic"
    (policy,) = _of(template, "AWS::ApplicationAutoScaling::ScalingPolicy", "Dreambooth").values()
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == config.target_invocations_per_instance
    assert tracking["ScaleInCooldown"] == config.scale_in_cooldown_seconds
    assert tracking["ScaleOutCooldown"] == config.scale_out_cooldown_seconds
    # Styling: switched off in the variant, so no scalable target; its alarms stay.
    assert VARIANT_OVERRIDES["styling"]["hosting"]["autoscaling"] is False
    assert _of(template, "AWS::ApplicationAutoScaling::ScalableTarget", "Styling") == {}
    assert _of(template, "AWS::ApplicationAutoScaling::ScalingPolicy", "Styling") == {}
    assert len(_of(template, "AWS::CloudWatch::Alarm", "Styling")) == 2


def test_the_summary_lists_every_hosted_endpoint(variant_app: SynthesizedApp) -> None:
    summary = render_summary(variant_app.assembly_dir)
    assert "1 x ml.g4dn.xlarge (GPU/accelerator)" in summary
    assert summary.count("1 x ml.g5.2xlarge (GPU/accelerator)") == 2
    description = assembly_artifacts(variant_app)["atelier-dev-hosting"]["properties"].get(
        "description"
    )
    if description is not None:
        assert "atelier-dev-dreambooth on ml.g5.2xlarge" in description
        assert "atelier-dev-styling on ml.g4dn.xlarge" in description
