"""The Api stack's security and wiring, asserted on the synthesized templates."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App

from app import build_app
from infra.config import ConfigError, StageConfig, load_stage_config
from infra.constructs.bedrock_models import invoke_model_grants
from infra.stacks.api import PUBLISHED_NAMES
from infra.stacks.api_rest import GATEWAY_ERROR_CODES, VALIDATION_RESPONSE_TYPES
from infra.stacks.api_settings import (
    MAX_SETTINGS_BYTES,
    descriptions_settings,
    descriptions_settings_json,
    images_settings,
)
from tests.support import SynthesizedApp, cdk_json_context
from tests.templates import assembly_artifacts, listed, resources, ssm_parameters

pytestmark = pytest.mark.infra

STAGES = ("dev", "prod")
XRAY_ACTIONS = ["xray:PutTelemetryRecords", "xray:PutTraceSegments"]
USER_POOL_ARN = "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_AbCdEf123"
GLOBAL_PROFILE = "global.anthropic.claude-sonnet-4-20250514-v1:0"


def _config(stage: str) -> StageConfig:
    return load_stage_config(cdk_json_context(), stage)


def _one(template: dict[str, Any], resource_type: str, prefix: str = "") -> tuple[str, Any]:
    matches = [
        (logical_id, resource["Properties"])
        for logical_id, resource in resources(template, resource_type).items()
        if logical_id.startswith(prefix)
    ]
    assert len(matches) == 1, f"expected one {resource_type} {prefix!r}, got {matches}"
    return matches[0]


def _render(value: Any, exports: dict[str, Any]) -> str:
    """A resource expression as one readable string: `Results1234.Arn/descriptions/*`."""
    if isinstance(value, str):
        return value
    ((function, argument),) = value.items()
    if function == "Ref":
        return f"${{{argument}}}" if argument.startswith("AWS::") else argument
    if function == "Fn::GetAtt":
        return ".".join(argument)
    if function == "Fn::Join":
        separator, parts = argument
        return str(separator).join(_render(part, exports) for part in parts)
    if function == "Fn::ImportValue":  # follow the export into the data stack
        return _render(exports[argument], exports)
    raise AssertionError(f"unexpected intrinsic {value}")


def _exports(app: SynthesizedApp) -> dict[str, Any]:
    outputs = app.template("-data").get("Outputs", {})
    return {o["Export"]["Name"]: o["Value"] for o in outputs.values() if "Export" in o}


def _statements(template: dict[str, Any], function: str) -> list[dict[str, Any]]:
    """Every statement of the policies attached to `function`'s role."""
    role_id, _ = _one(template, "AWS::IAM::Role", f"{function}Role")
    return [
        statement
        for policy in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _method(template: dict[str, Any], verb: str, path_part: str) -> dict[str, Any]:
    """The properties of the API's only method with this HTTP verb on a resource `path_part`."""
    (method,) = [
        m["Properties"]
        for m in resources(template, "AWS::ApiGateway::Method").values()
        if m["Properties"]["HttpMethod"] == verb
        and template["Resources"][m["Properties"]["ResourceId"]["Ref"]]["Properties"]["PathPart"]
        == path_part
    ]
    return method


def _resources_for(
    app: SynthesizedApp, template: dict[str, Any], function: str, action: str
) -> set[str]:
    exports = _exports(app)
    found = [
        s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
        for s in _statements(template, function)
        if action in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    ]
    assert len(found) == 1, f"{function}: expected one statement granting {action}, got {found}"
    return {_render(resource, exports) for resource in found[0]}


def _bucket_arn(app: SynthesizedApp, name: str) -> str:
    (logical_id,) = [
        logical_id
        for logical_id in resources(app.template("-data"), "AWS::S3::Bucket")
        if logical_id.startswith(name)
    ]
    return f"{logical_id}.Arn"


# ---------------------------------------------------------------------------------------------
# REST API
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
def test_every_method_requires_iam_auth(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    methods = resources(synthesized_apps[stage].template("-api"), "AWS::ApiGateway::Method")
    # POST /descriptions, GET /descriptions/{productId}, POST /images, /generations, /styling.
    assert sorted(m["Properties"]["HttpMethod"] for m in methods.values()) == [
        "GET",
        "POST",
        "POST",
        "POST",
        "POST",
    ]
    for logical_id, method in methods.items():
        assert method["Properties"]["AuthorizationType"] == "AWS_IAM", logical_id


def test_post_validates_the_body_against_a_minimal_model(dev_app: SynthesizedApp) -> None:
    template = dev_app.template("-api")
    post = _method(template, "POST", "descriptions")
    validators = resources(template, "AWS::ApiGateway::RequestValidator")
    validator = validators[post["RequestValidatorId"]["Ref"]]["Properties"]
    assert validator["ValidateRequestBody"] is True
    model = template["Resources"][post["RequestModels"]["application/json"]["Ref"]]["Properties"]
    schema = model["Schema"]
    assert schema["$schema"] == "http://json-schema.org/draft-04/schema#"
    assert schema["type"] == "object"
    assert sorted(schema["required"]) == ["image", "productId"]
    assert schema["properties"]["image"] == {"type": "string"}
    assert schema["properties"]["productId"] == {
        "type": "string",
        "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
    }


def test_get_requires_and_validates_the_product_id(dev_app: SynthesizedApp) -> None:
    template = dev_app.template("-api")
    get = _method(template, "GET", "{productId}")
    assert get["RequestParameters"] == {"method.request.path.productId": True}
    validator = template["Resources"][get["RequestValidatorId"]["Ref"]]["Properties"]
    assert validator["ValidateRequestParameters"] is True
    resource = template["Resources"][get["ResourceId"]["Ref"]]["Properties"]
    assert resource["PathPart"] == "{productId}"


@pytest.mark.parametrize("stage", STAGES)
def test_stage_v1_is_throttled_traced_and_access_logged_as_json(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    config = _config(stage)
    template = synthesized_apps[stage].template("-api")
    _, properties = _one(template, "AWS::ApiGateway::Stage")
    assert properties["StageName"] == "v1"
    assert properties["TracingEnabled"] is True
    # The diffusion routes' own limits follow (tests/infra/test_diffusion_api.py).
    settings, images, *_ = properties["MethodSettings"]
    assert settings["HttpMethod"] == "*"
    assert settings["ResourcePath"] == "/*"
    assert settings["ThrottlingRateLimit"] == config.api.throttle_rate_limit
    assert settings["ThrottlingBurstLimit"] == config.api.throttle_burst_limit
    # Image generation has its own, lower limits: a few provisioned model units serve it.
    assert (images["HttpMethod"], images["ResourcePath"]) == ("POST", "/~1images")
    assert images["ThrottlingRateLimit"] == config.images.throttle_rate_limit
    assert images["ThrottlingBurstLimit"] == config.images.throttle_burst_limit
    access_log = properties["AccessLogSetting"]
    log_group_id, log_group = _one(template, "AWS::Logs::LogGroup", "AccessLogs")
    assert {"Ref": log_group_id} in access_log["DestinationArn"]["Fn::Join"][1]
    assert log_group["RetentionInDays"] == config.log_retention_days
    fields = json.loads(access_log["Format"])
    assert set(fields) >= {"requestId", "ip", "caller", "user", "requestTime", "httpMethod"}
    assert set(fields) >= {"resourcePath", "status", "protocol", "responseLength"}
    # The API must not install the account-wide CloudWatch role (no role, no account setting).
    assert resources(template, "AWS::ApiGateway::Account") == {}


def test_api_is_regional_and_cors_is_off_without_origins(dev_app: SynthesizedApp) -> None:
    template = dev_app.template("-api")
    _, api = _one(template, "AWS::ApiGateway::RestApi")
    assert api["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    assert api["DisableExecuteApiEndpoint"] is False
    methods = resources(template, "AWS::ApiGateway::Method").values()
    assert "OPTIONS" not in {m["Properties"]["HttpMethod"] for m in methods}


def test_every_gateway_error_has_our_json_body(dev_app: SynthesizedApp) -> None:
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in resources(dev_app.template("-api"), "AWS::ApiGateway::GatewayResponse").values()
    }
    assert set(responses) == set(GATEWAY_ERROR_CODES)
    # API Gateway substitutes messageString with a JSON string literal, quotes escaped.
    message = json.dumps('Invalid "request" \\ body')
    for response_type, code in GATEWAY_ERROR_CODES.items():
        template = responses[response_type]["ResponseTemplates"]["application/json"]
        if response_type in VALIDATION_RESPONSE_TYPES:
            # A fixed message: validationErrorString is not documented as JSON-escaped.
            assert "$context" not in template, response_type
            body = json.loads(template)
            assert body["error"]["code"] == code
            assert "productId" in body["error"]["message"]
            continue
        body = json.loads(template.replace("$context.error.messageString", message))
        assert body == {"error": {"code": code, "message": 'Invalid "request" \\ body'}}


# ---------------------------------------------------------------------------------------------
# Upload path
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
def test_uploads_queue_redrives_to_a_dead_letter_queue(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    config = _config(stage)
    template = synthesized_apps[stage].template("-api")
    dlq_id, dlq = _one(template, "AWS::SQS::Queue", "UploadsDeadLetterQueue")
    _, queue = _one(template, "AWS::SQS::Queue", "UploadsQueue")
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
        "maxReceiveCount": config.descriptions.max_receive_count,
    }
    assert queue["VisibilityTimeout"] >= 6 * config.descriptions.worker_timeout_seconds
    for properties in (queue, dlq):
        assert properties["MessageRetentionPeriod"] == 14 * 24 * 3600
        # Encrypted with the stage's data key (tests/infra/test_encryption_keys.py has the rest).
        (key_id,) = resources(synthesized_apps[stage].template("-data"), "AWS::KMS::Key")
        exported = _exports(synthesized_apps[stage])
        assert _render(properties["KmsMasterKeyId"], exported) == f"{key_id}.Arn"
    # Both queues refuse plain HTTP.
    for policy in resources(template, "AWS::SQS::QueuePolicy").values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert {"Bool": {"aws:SecureTransport": "false"}} in [
            s.get("Condition") for s in statements if s["Effect"] == "Deny"
        ]


@pytest.mark.parametrize("stage", STAGES)
def test_worker_reads_batches_and_reports_item_failures(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    d = _config(stage).descriptions
    template = synthesized_apps[stage].template("-api")
    queue_id, _ = _one(template, "AWS::SQS::Queue", "UploadsQueue")
    function_id, function = _one(template, "AWS::Lambda::Function", "UploadsFunction")
    _, mapping = _one(template, "AWS::Lambda::EventSourceMapping")
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert mapping["FunctionName"] == {"Ref": function_id}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] == d.worker_batch_size
    assert mapping["MaximumBatchingWindowInSeconds"] == d.worker_max_batching_window_seconds
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": d.worker_max_concurrency}
    assert function["Handler"] == "descriptions.handlers.uploads.handler"
    assert function["Timeout"] == d.worker_timeout_seconds
    assert function["MemorySize"] == 512


def test_rule_sends_incoming_uploads_to_the_queue_only(dev_app: SynthesizedApp) -> None:
    template = dev_app.template("-api")
    exports = _exports(dev_app)
    rule_id, rule = _one(template, "AWS::Events::Rule")
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.s3"]
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["object"] == {"key": [{"prefix": "incoming/"}]}
    (bucket_name,) = pattern["detail"]["bucket"]["name"]
    uploads_arn = _bucket_arn(dev_app, "Uploads")
    assert _render(bucket_name, exports) == uploads_arn.removesuffix(".Arn")
    queue_id, _ = _one(template, "AWS::SQS::Queue", "UploadsQueue")
    dlq_id, _ = _one(template, "AWS::SQS::Queue", "UploadsDeadLetterQueue")
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [dlq_id, "Arn"]}}
    assert 0 < target["RetryPolicy"]["MaximumRetryAttempts"] <= 185
    assert 60 <= target["RetryPolicy"]["MaximumEventAgeInSeconds"] <= 86_400
    # EventBridge may send to each queue only on behalf of this rule.
    this_rule = {"Fn::GetAtt": [rule_id, "Arn"]}
    policies = resources(template, "AWS::SQS::QueuePolicy")
    assert len(policies) == 2
    allowed = set()
    for policy in policies.values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        (allow,) = [s for s in statements if s["Effect"] == "Allow"]
        assert allow["Principal"] == {"Service": "events.amazonaws.com"}
        assert allow["Action"] == "sqs:SendMessage"
        assert allow["Condition"] == {"ArnEquals": {"aws:SourceArn": this_rule}}
        allowed.add(allow["Resource"]["Fn::GetAtt"][0])
    assert allowed == {queue_id, dlq_id}


@pytest.mark.parametrize("stage", STAGES)
def test_uploads_bucket_notifies_eventbridge_without_a_custom_resource(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    app = synthesized_apps[stage]
    _, uploads = _one(app.template("-data"), "AWS::S3::Bucket", "Uploads")
    assert uploads["NotificationConfiguration"] == {
        "EventBridgeConfiguration": {"EventBridgeEnabled": True}
    }
    for name, template in app.templates.items():
        types = {resource["Type"] for resource in template["Resources"].values()}
        assert "Custom::S3BucketNotifications" not in types, name
    assert resources(app.template("-data"), "AWS::Lambda::Function") == {}


def test_dead_letter_queue_alarms_on_the_first_message(dev_app: SynthesizedApp) -> None:
    template = dev_app.template("-api")
    dlq_id, _ = _one(template, "AWS::SQS::Queue", "UploadsDeadLetterQueue")
    _, alarm = _one(template, "AWS::CloudWatch::Alarm")
    assert alarm["Namespace"] == "AWS/SQS"
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq_id, "QueueName"]}}
    ]
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"


# ---------------------------------------------------------------------------------------------
# Least privilege
# ---------------------------------------------------------------------------------------------


def _expected_model_grants(config: StageConfig) -> list[tuple[list[str], str | None]]:
    """(resources, profile the call must come through) of each InvokeModel statement."""
    return [
        (sorted(grant.resources), grant.through_profile)
        for grant in invoke_model_grants(
            config.descriptions.model_id,
            region="${AWS::Region}",
            account="${AWS::AccountId}",
            partition="${AWS::Partition}",
        )
    ]


def _model_grants(
    app: SynthesizedApp, template: dict[str, Any], function: str
) -> list[tuple[list[str], str | None]]:
    """The same, read from the statements granting InvokeModel to `function`'s role."""
    exports = _exports(app)
    grants = []
    for statement in _statements(template, function):
        if "bedrock:InvokeModel" not in listed(statement["Action"]):
            continue
        condition = statement.get("Condition")
        through = None
        if condition is not None:
            ((operator, values),) = condition.items()
            assert operator == "StringEquals", condition
            through = _render(values.pop("bedrock:InferenceProfileArn"), exports)
            assert values == {}, condition
        resources = sorted(_render(r, exports) for r in listed(statement["Resource"]))
        grants.append((resources, through))
    return grants


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("function", ["ApiFunction", "UploadsFunction"])
def test_functions_may_invoke_exactly_their_endpoint_and_model(
    synthesized_apps: dict[str, SynthesizedApp], stage: str, function: str
) -> None:
    app, config = synthesized_apps[stage], _config(stage)
    template = app.template("-api")
    # A stage that hosts no VQA model reads attributes with the vision model: no endpoint grant.
    assert config.attribute_source == "vision-llm"
    assert not [
        statement
        for statement in _statements(template, function)
        if "sagemaker:InvokeEndpoint" in listed(statement["Action"])
    ]
    _, properties = _one(template, "AWS::Lambda::Function", function)
    assert {
        name: value
        for name, value in properties["Environment"]["Variables"].items()
        if name.startswith("ATTRIBUTE_")
    } == {
        "ATTRIBUTE_SOURCE": "vision-llm",
        "ATTRIBUTE_MODEL_ID": config.descriptions.attributes.model_id,
        "ATTRIBUTE_STRUCTURED_OUTPUT": config.descriptions.attributes.structured_output,
    }
    # A profile: the profile, and its model's (wide) ARNs only through that profile
    grants = _model_grants(app, template, function)
    assert sorted(grants, key=str) == sorted(_expected_model_grants(config), key=str)
    assert [through for _, through in grants if through is not None] == [
        f"arn:${{AWS::Partition}}:bedrock:${{AWS::Region}}:${{AWS::AccountId}}:inference-profile/"
        f"{config.descriptions.model_id}"
    ]


def test_functions_touch_only_their_table_prefixes_and_key(dev_app: SynthesizedApp) -> None:
    template = dev_app.template("-api")
    data = dev_app.template("-data")
    table = f"{_one(data, 'AWS::DynamoDB::Table')[0]}.Arn"
    key = f"{_one(data, 'AWS::KMS::Key')[0]}.Arn"
    results = f"{_bucket_arn(dev_app, 'Results')}/descriptions/*"
    uploads = f"{_bucket_arn(dev_app, 'Uploads')}/incoming/*"
    dlq_id, _ = _one(template, "AWS::SQS::Queue", "UploadsDeadLetterQueue")
    for function in ("ApiFunction", "UploadsFunction"):
        assert _resources_for(dev_app, template, function, "s3:PutObject") == {results}
        assert _resources_for(dev_app, template, function, "dynamodb:GetItem") == {table}
        # The worker has a second statement for the same key through SQS (the queues' key).
        assert {
            _render(resource, _exports(dev_app))
            for statement in _statements(template, function)
            if "kms:GenerateDataKey" in listed(statement["Action"])
            for resource in listed(statement["Resource"])
        } == {key}
    assert _resources_for(dev_app, template, "UploadsFunction", "s3:GetObject") == {uploads}
    assert _resources_for(dev_app, template, "UploadsFunction", "sqs:SendMessage") == {
        f"{dlq_id}.Arn"
    }
    # The API function reads no uploads and writes only descriptions (no update, no delete).
    api_actions = {
        action
        for statement in _statements(template, "ApiFunction")
        for action in (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
    }
    assert not api_actions & {"s3:GetObject", "dynamodb:DeleteItem", "sqs:SendMessage"}
    worker = {
        a for s in _statements(template, "UploadsFunction") for a in s["Action"] if "dynamodb" in a
    }
    assert worker == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
    }


def test_key_use_is_limited_to_s3_and_dynamodb(dev_app: SynthesizedApp) -> None:
    template = dev_app.template("-api")
    for function in ("ApiFunction", "UploadsFunction"):
        (statement,) = [s for s in _statements(template, function) if "kms:Encrypt" in s["Action"]]
        services = statement["Condition"]["StringEquals"]["kms:ViaService"]
        assert [_render(service, {}) for service in services] == [
            "s3.${AWS::Region}.amazonaws.com",
            "dynamodb.${AWS::Region}.amazonaws.com",
        ]
    # The upload queues are under the data key too: the worker may use it through SQS to park
    # messages, and the SQS event source (CDK) grants kms:Decrypt to receive them.
    api_kms = [
        s for s in _statements(template, "ApiFunction") if "kms:Decrypt" in listed(s["Action"])
    ]
    assert len(api_kms) == 1
    worker_kms = [
        s for s in _statements(template, "UploadsFunction") if "kms:Decrypt" in listed(s["Action"])
    ]
    (through_sqs,) = [
        s for s in worker_kms if "kms:Encrypt" not in listed(s["Action"]) and "Condition" in s
    ]
    assert through_sqs["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert _render(through_sqs["Condition"]["StringEquals"]["kms:ViaService"], {}) == (
        "sqs.${AWS::Region}.amazonaws.com"
    )
    (receive,) = [s for s in worker_kms if "Condition" not in s]
    assert receive["Action"] == "kms:Decrypt"
    assert len(worker_kms) == 3


@pytest.mark.parametrize("stage", STAGES)
def test_only_xray_is_granted_on_every_resource(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    template = synthesized_apps[stage].template("-api")
    for logical_id, policy in resources(template, "AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            granted = statement["Resource"]
            if granted == "*" or (isinstance(granted, list) and "*" in granted):
                assert statement["Action"] == XRAY_ACTIONS, logical_id


# ---------------------------------------------------------------------------------------------
# Settings, outputs, stack relations
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
def test_functions_get_the_settings_and_names_they_need(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    app, config = synthesized_apps[stage], _config(stage)
    template = app.template("-api")
    exports = _exports(app)
    for function in ("ApiFunction", "UploadsFunction"):
        _, properties = _one(template, "AWS::Lambda::Function", function)
        variables = properties["Environment"]["Variables"]
        settings = json.loads(variables["DESCRIPTIONS_SETTINGS"])
        assert settings == json.loads(json.dumps(descriptions_settings(config)))
        assert settings["endpointName"] == f"atelier-{stage}-vqa"
        assert settings["modelId"] == config.descriptions.model_id
        assert settings["questions"] == dict(config.descriptions.questions)
        assert settings["image"]["maxBytes"] == config.descriptions.image.max_bytes
        assert len(variables["DESCRIPTIONS_SETTINGS"].encode()) <= MAX_SETTINGS_BYTES
        assert _render(variables["TABLE_NAME"], exports).startswith("Products")
        assert _render(variables["RESULTS_BUCKET"], exports).startswith("Results")
    _, api = _one(template, "AWS::Lambda::Function", "ApiFunction")
    assert api["Handler"] == "descriptions.handlers.api.handler"
    assert api["Timeout"] == config.descriptions.api_timeout_seconds
    _, worker = _one(template, "AWS::Lambda::Function", "UploadsFunction")
    variables = worker["Environment"]["Variables"]
    dlq_id, _ = _one(template, "AWS::SQS::Queue", "UploadsDeadLetterQueue")
    assert variables["DEAD_LETTER_QUEUE_URL"] == {"Ref": dlq_id}
    assert _render(variables["UPLOADS_BUCKET"], exports).startswith("Uploads")
    assert variables["IDEMPOTENCY_TTL_SECONDS"] == str(
        config.descriptions.idempotency_ttl_hours * 3600
    )
    assert variables["WORKER_CONCURRENCY"] == str(config.descriptions.worker_batch_size)


def test_settings_too_large_for_a_lambda_environment_fail_with_one_line() -> None:
    # Given the largest question sets the config accepts (20 questions of 300 characters)
    config = _config("dev")
    questions = {f"attribute_{index}": "What is it? " + "x" * 288 for index in range(20)}
    oversized = replace(
        config,
        descriptions=replace(
            config.descriptions, questions=questions, categories={"default": tuple(questions)}
        ),
    )
    # When the stack serializes them, Then synthesis stops with one clear line
    with pytest.raises(ConfigError, match="too large for a Lambda environment") as caught:
        descriptions_settings_json(oversized)
    assert "\n" not in str(caught.value)
    # and the shipped config stays under the limit
    assert len(descriptions_settings_json(config).encode()) <= MAX_SETTINGS_BYTES


@pytest.mark.parametrize("name", PUBLISHED_NAMES)
def test_names_are_published_as_ssm_parameters_and_outputs(
    dev_app: SynthesizedApp, name: str
) -> None:
    template = dev_app.template("-api")
    parameters = ssm_parameters(template)
    assert parameters[f"/atelier/dev/api/{name}"]["Type"] == "String"
    output_id = "".join(part.capitalize() for part in name.split("-"))
    assert template["Outputs"][output_id]["Description"] == (
        f"Also in SSM parameter /atelier/dev/api/{name}"
    )
    assert template["Outputs"]["UploadsPrefix"]["Value"] == "incoming/"


@pytest.mark.parametrize("stage", STAGES)
def test_data_stack_never_depends_on_the_api_stack(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    app = synthesized_apps[stage]
    artifacts = assembly_artifacts(app)
    assert f"atelier-{stage}-data" in artifacts[f"atelier-{stage}-api"]["dependencies"]
    assert f"atelier-{stage}-api" not in artifacts[f"atelier-{stage}-data"].get("dependencies", [])
    assert artifacts[f"atelier-{stage}-api"]["properties"]["terminationProtection"] is (
        stage == "prod"
    )
    # Nothing in the data template points at an api resource.
    assert "atelier-" + stage + "-api" not in json.dumps(app.template("-data"))


# ---------------------------------------------------------------------------------------------
# POST /images
# ---------------------------------------------------------------------------------------------


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return actions if isinstance(actions, list) else [actions]


@pytest.mark.parametrize("stage", STAGES)
def test_post_images_is_validated_and_proxied_to_its_own_function(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    template = synthesized_apps[stage].template("-api")
    post = _method(template, "POST", "images")
    assert post["AuthorizationType"] == "AWS_IAM"
    function_id, _ = _one(template, "AWS::Lambda::Function", "ImagesFunction")
    uri = json.dumps(post["Integration"]["Uri"])
    assert post["Integration"]["Type"] == "AWS_PROXY"
    assert function_id in uri
    validator = template["Resources"][post["RequestValidatorId"]["Ref"]]["Properties"]
    assert validator["ValidateRequestBody"] is True
    model = template["Resources"][post["RequestModels"]["application/json"]["Ref"]]["Properties"]
    schema = model["Schema"]
    assert schema["$schema"] == "http://json-schema.org/draft-04/schema#"
    assert sorted(schema["required"]) == ["height", "prompt", "width"]
    assert schema["properties"] == {
        "prompt": {"type": "string"},
        "width": {"type": "integer"},
        "height": {"type": "integer"},
    }


@pytest.mark.parametrize("stage", STAGES)
def test_images_function_gets_its_settings_parameter_and_timeout(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    app, config = synthesized_apps[stage], _config(stage)
    _, function = _one(app.template("-api"), "AWS::Lambda::Function", "ImagesFunction")
    variables = function["Environment"]["Variables"]
    assert function["Handler"] == "images.handlers.api.handler"
    assert function["Timeout"] == config.images.api_timeout_seconds <= 29
    assert variables["MODEL_ARN_PARAMETER"] == f"/atelier/{stage}/titan/provisioned-model-arn"
    assert variables["MODEL_ARN_PARAMETER"] == config.titan_provisioned_model_parameter
    assert json.loads(variables["IMAGES_SETTINGS"]) == images_settings(config)
    settings = json.loads(variables["IMAGES_SETTINGS"])
    assert settings["modelReadTimeoutSeconds"] < config.images.api_timeout_seconds
    assert len(settings["sizes"]) == 25
    assert _render(variables["RESULTS_BUCKET"], _exports(app)).startswith("Results")
    assert variables["POWERTOOLS_SERVICE_NAME"] == "images"


@pytest.mark.parametrize("stage", STAGES)
def test_images_function_holds_exactly_its_grants(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    app = synthesized_apps[stage]
    template = app.template("-api")
    data = app.template("-data")
    key = f"{_one(data, 'AWS::KMS::Key')[0]}.Arn"
    region, account = "${AWS::Region}", "${AWS::AccountId}"
    assert _resources_for(app, template, "ImagesFunction", "ssm:GetParameter") == {
        f"arn:${{AWS::Partition}}:ssm:{region}:{account}:parameter/atelier/{stage}/titan/"
        "provisioned-model-arn"
    }
    # Any provisioned model of the account and region (the ARN is made at run time); no custom
    # or foundation model: invoking a provisioned model is authorized on it alone.
    assert _resources_for(app, template, "ImagesFunction", "bedrock:InvokeModel") == {
        f"arn:${{AWS::Partition}}:bedrock:{region}:{account}:provisioned-model/*"
    }
    images = {f"{_bucket_arn(app, 'Results')}/images/*"}
    assert _resources_for(app, template, "ImagesFunction", "s3:PutObject") == images
    assert _resources_for(app, template, "ImagesFunction", "s3:GetObject") == images
    # The data key: through S3 for the images, through Bedrock (decrypt only) for the custom
    # model the Bedrock workflow encrypts with it.
    key_use = {
        _render(s["Condition"]["StringEquals"]["kms:ViaService"], {}): sorted(_actions(s))
        for s in _statements(template, "ImagesFunction")
        if any(action.startswith("kms:") for action in _actions(s))
    }
    assert key_use == {
        "s3.${AWS::Region}.amazonaws.com": ["kms:Decrypt", "kms:GenerateDataKey"],
        "bedrock.${AWS::Region}.amazonaws.com": ["kms:Decrypt"],
    }
    for statement in _statements(template, "ImagesFunction"):
        if "kms:Decrypt" in _actions(statement):
            assert _render(statement["Resource"], _exports(app)) == key
    granted = {a for s in _statements(template, "ImagesFunction") for a in _actions(s)}
    assert granted == {
        "ssm:GetParameter",
        "bedrock:InvokeModel",
        "s3:PutObject",
        "s3:GetObject",
        "kms:Decrypt",
        "kms:GenerateDataKey",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        *XRAY_ACTIONS,
    }
    # And the description functions gained nothing from it.
    for function in ("ApiFunction", "UploadsFunction"):
        actions = {a for s in _statements(template, function) for a in _actions(s)}
        assert "ssm:GetParameter" not in actions
        resources = json.dumps(_statements(template, function))
        assert "provisioned-model" not in resources
        assert "/images/" not in resources


# ---------------------------------------------------------------------------------------------
# Cognito, CORS and an inference profile: one more synthesis with those settings
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cognito_app(tmp_path_factory: pytest.TempPathFactory) -> SynthesizedApp:
    context = copy.deepcopy(cdk_json_context())
    context["atelier"]["stages"]["dev"] = {
        "api": {
            "auth": "cognito",
            "cognito_user_pool_arn": USER_POOL_ARN,
            "cors_allowed_origins": ["https://shop.example.com"],
        },
        # The vision model is the same profile: one model's grants, as this module checks.
        "descriptions": {"model_id": GLOBAL_PROFILE, "attributes": {"model_id": GLOBAL_PROFILE}},
    }
    outdir: Path = tmp_path_factory.mktemp("cdk-out-cognito")
    # cdk-nag is attached by build_app: synth raises on any unacknowledged finding.
    assembly = build_app(App(context={**context, "stage": "dev"}, outdir=str(outdir))).synth()
    templates = {stack.stack_name: stack.template for stack in assembly.stacks}
    return SynthesizedApp(stage="dev", assembly_dir=outdir, templates=templates)


def test_cognito_auth_uses_the_configured_user_pool(cognito_app: SynthesizedApp) -> None:
    template = cognito_app.template("-api")
    authorizer_id, authorizer = _one(template, "AWS::ApiGateway::Authorizer")
    assert authorizer["Type"] == "COGNITO_USER_POOLS"
    assert authorizer["ProviderARNs"] == [USER_POOL_ARN]
    methods = [m["Properties"] for m in resources(template, "AWS::ApiGateway::Method").values()]
    for method in methods:
        if method["HttpMethod"] == "OPTIONS":
            # Browsers send CORS preflights without credentials.
            assert method["AuthorizationType"] == "NONE"
        else:
            assert method["AuthorizationType"] == "COGNITO_USER_POOLS"
            assert method["AuthorizerId"] == {"Ref": authorizer_id}
    assert {m["HttpMethod"] for m in methods} == {"GET", "POST", "OPTIONS"}
    preflight = json.dumps([m for m in methods if m["HttpMethod"] == "OPTIONS"])
    assert "https://shop.example.com" in preflight


def test_an_inference_profile_is_granted_with_its_models(cognito_app: SynthesizedApp) -> None:
    template = cognito_app.template("-api")
    config = replace(
        _config("dev"), descriptions=replace(_config("dev").descriptions, model_id=GLOBAL_PROFILE)
    )
    expected = _expected_model_grants(config)
    profile_arn = (
        "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}:inference-profile/"
        f"{GLOBAL_PROFILE}"
    )
    region_less = (
        "arn:${AWS::Partition}:bedrock:::foundation-model/anthropic.claude-sonnet-4-20250514-v1:0"
    )
    # The profile alone; the model (any region, and region-less) only through the profile
    assert ([profile_arn], None) in expected
    assert any(region_less in arns and through == profile_arn for arns, through in expected)
    for function in ("ApiFunction", "UploadsFunction"):
        grants = _model_grants(cognito_app, template, function)
        assert sorted(grants, key=str) == sorted(expected, key=str)
