"""`POST /generations` and `POST /styling` on the Api stack, asserted on the synthesized templates:
routes, request checks, throttling, the function's settings, and its least-privilege grants."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.config import StageConfig, load_stage_config
from infra.stacks.api_rest import base64_length
from infra.stacks.api_settings import MAX_SETTINGS_BYTES, diffusion_settings
from tests.support import SynthesizedApp, cdk_json_context
from tests.templates import exports, listed, one, render, resources, role_statements

pytestmark = pytest.mark.infra

STAGES = ("dev", "prod")
FUNCTION = "DiffusionFunction"
XRAY_ACTIONS = ["xray:PutTelemetryRecords", "xray:PutTraceSegments"]


def _config(stage: str) -> StageConfig:
    return load_stage_config(cdk_json_context(), stage)


def _method(template: dict[str, Any], path_part: str) -> dict[str, Any]:
    (method,) = [
        m["Properties"]
        for m in resources(template, "AWS::ApiGateway::Method").values()
        if template["Resources"][m["Properties"]["ResourceId"]["Ref"]]["Properties"]["PathPart"]
        == path_part
    ]
    return method


def _statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for found in role_statements(template, f"{FUNCTION}Role").values() for s in found]


def _granted(app: SynthesizedApp, action: str) -> set[str]:
    """Every resource granted `action`, readable, over all of the function's statements."""
    template = app.template("-api")
    exported = exports(app)
    return {
        render(resource, exported)
        for statement in _statements(template)
        if action in listed(statement["Action"])
        for resource in listed(statement["Resource"])
    }


def _bucket(app: SynthesizedApp, name: str) -> str:
    (logical_id,) = [
        logical_id
        for logical_id in resources(app.template("-data"), "AWS::S3::Bucket")
        if logical_id.startswith(name)
    ]
    return f"{logical_id}.Arn"


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("route", ["generations", "styling"])
def test_each_route_is_iam_signed_validated_and_proxied_to_the_function(
    synthesized_apps: dict[str, SynthesizedApp], stage: str, route: str
) -> None:
    template = synthesized_apps[stage].template("-api")
    post = _method(template, route)
    assert post["HttpMethod"] == "POST"
    assert post["AuthorizationType"] == "AWS_IAM"
    function_id, _ = one(template, "AWS::Lambda::Function", FUNCTION)
    assert post["Integration"]["Type"] == "AWS_PROXY"
    assert function_id in json.dumps(post["Integration"]["Uri"])
    validator = template["Resources"][post["RequestValidatorId"]["Ref"]]["Properties"]
    assert validator["ValidateRequestBody"] is True


@pytest.mark.parametrize("stage", STAGES)
def test_api_gateway_checks_the_shape_and_the_inline_image_size(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    template = synthesized_apps[stage].template("-api")
    generation = template["Resources"][
        _method(template, "generations")["RequestModels"]["application/json"]["Ref"]
    ]["Properties"]["Schema"]
    assert generation["required"] == ["prompt"]
    assert generation["properties"] == {"prompt": {"type": "string"}}

    styling = template["Resources"][
        _method(template, "styling")["RequestModels"]["application/json"]["Ref"]
    ]["Properties"]["Schema"]
    assert styling["$schema"] == "http://json-schema.org/draft-04/schema#"
    assert sorted(styling["required"]) == ["image", "prompt"]
    inline = base64_length(_config(stage).diffusion.max_inline_image_bytes)
    for name in ("image", "mask"):
        image = styling["properties"][name]
        assert image["type"] == "object"
        assert image["properties"]["key"] == {"type": "string"}
        # Room for a data: URL prefix, no more: a longer body could exceed Lambda's 6 MB event.
        assert 0 <= image["properties"]["base64"]["maxLength"] - inline <= 64
    assert inline == 2_796_204


def test_the_gateways_validation_message_says_to_upload_large_images(
    dev_app: SynthesizedApp,
) -> None:
    (template,) = [
        r["Properties"]["ResponseTemplates"]["application/json"]
        for r in resources(dev_app.template("-api"), "AWS::ApiGateway::GatewayResponse").values()
        if r["Properties"]["ResponseType"] == "BAD_REQUEST_BODY"
    ]
    message = json.loads(template)["error"]["message"]
    assert "POST /generations" in message
    assert "POST /styling" in message
    assert "upload larger ones to the uploads bucket under styling/ and pass their key" in message


@pytest.mark.parametrize("stage", STAGES)
def test_both_routes_have_their_own_method_throttling(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    d = _config(stage).diffusion
    _, properties = one(synthesized_apps[stage].template("-api"), "AWS::ApiGateway::Stage")
    limits = {
        s["ResourcePath"]: (s["ThrottlingRateLimit"], s["ThrottlingBurstLimit"])
        for s in properties["MethodSettings"]
        if s["HttpMethod"] == "POST"
    }
    expected = (d.throttle_rate_limit, d.throttle_burst_limit)
    assert limits["/~1generations"] == limits["/~1styling"] == expected


@pytest.mark.parametrize("stage", STAGES)
def test_the_function_gets_its_settings_buckets_and_timeout(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    app, config = synthesized_apps[stage], _config(stage)
    _, function = one(app.template("-api"), "AWS::Lambda::Function", FUNCTION)
    variables = function["Environment"]["Variables"]
    assert function["Handler"] == "diffusion.handlers.api.handler"
    assert function["Timeout"] == config.diffusion.api_timeout_seconds <= 29
    assert function["MemorySize"] == 1024
    assert variables["POWERTOOLS_SERVICE_NAME"] == "diffusion"
    settings = json.loads(variables["DIFFUSION_SETTINGS"])
    assert settings == json.loads(json.dumps(diffusion_settings(config)))
    assert settings["generation"]["endpointName"] == f"atelier-{stage}-dreambooth"
    assert settings["styling"]["endpointName"] == f"atelier-{stage}-styling"
    assert settings["generation"]["configKey"] == "dreambooth.hosting.model_data_url"
    assert settings["styling"]["modelDataParameter"] == f"/atelier/{stage}/styling/model-data-url"
    assert settings["modelReadTimeoutSeconds"] == config.diffusion.api_timeout_seconds - 3
    assert len(variables["DIFFUSION_SETTINGS"].encode()) <= MAX_SETTINGS_BYTES
    exported = exports(app)
    assert render(variables["UPLOADS_BUCKET"], exported).startswith("Uploads")
    assert render(variables["RESULTS_BUCKET"], exported).startswith("Results")


@pytest.mark.parametrize("stage", STAGES)
def test_the_function_may_invoke_exactly_the_two_endpoints(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    app = synthesized_apps[stage]
    endpoint = "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:endpoint/"
    assert _granted(app, "sagemaker:InvokeEndpoint") == {
        f"{endpoint}atelier-{stage}-dreambooth",
        f"{endpoint}atelier-{stage}-styling",
    }
    # And no other function may.
    for other in ("ApiFunction", "UploadsFunction", "ImagesFunction"):
        statements = json.dumps(role_statements(app.template("-api"), f"{other}Role"))
        assert "-dreambooth" not in statements
        assert "-styling" not in statements


@pytest.mark.parametrize("stage", STAGES)
def test_the_function_holds_exactly_its_grants(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    app = synthesized_apps[stage]
    template = app.template("-api")
    uploads, results = _bucket(app, "Uploads"), _bucket(app, "Results")
    outputs = {f"{results}/generations/*", f"{results}/styling/*"}
    inputs = {f"{uploads}/styling/*", f"{uploads}/incoming/*"}
    assert _granted(app, "s3:PutObject") == outputs
    # Inputs by key, and its own outputs back (the presigned URLs carry its credentials).
    assert _granted(app, "s3:GetObject") == inputs | outputs
    # The data key, through S3 only.
    key = f"{one(app.template('-data'), 'AWS::KMS::Key')[0]}.Arn"
    (kms,) = [s for s in _statements(template) if "kms:Decrypt" in listed(s["Action"])]
    assert sorted(listed(kms["Action"])) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert render(kms["Resource"], exports(app)) == key
    assert render(kms["Condition"]["StringEquals"]["kms:ViaService"]) == (
        "s3.${AWS::Region}.amazonaws.com"
    )
    granted = {action for s in _statements(template) for action in listed(s["Action"])}
    assert granted == {
        "sagemaker:InvokeEndpoint",
        "s3:GetObject",
        "s3:PutObject",
        "kms:Decrypt",
        "kms:GenerateDataKey",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        *XRAY_ACTIONS,
    }
    # No wildcard beyond X-Ray's, and no listing of the uploads bucket.
    for statement in _statements(template):
        if "*" in listed(statement["Resource"]):
            assert sorted(listed(statement["Action"])) == XRAY_ACTIONS
    assert "s3:ListBucket" not in granted


def test_other_functions_gained_nothing_from_it(dev_app: SynthesizedApp) -> None:
    template = dev_app.template("-api")
    for other in ("ApiFunction", "UploadsFunction", "ImagesFunction"):
        statements = json.dumps(role_statements(template, f"{other}Role"))
        assert "/generations/" not in statements
        assert "/styling/" not in statements
