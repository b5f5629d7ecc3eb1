"""Log groups and queues are encrypted with the stage's data key, which lets CloudWatch Logs use
it for the stage's log groups only; checkov skips are written the one way, with a reason."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs

from infra.checkov_skips import FUNCTION_SKIPS, skip_check, skipped_checks
from infra.config import StageConfig, load_stage_config
from infra.constructs.log_groups import encrypt_log_groups
from tests.support import SynthesizedApp, cdk_json_context
from tests.templates import exports, render, resources

REASON = "A reason long enough to tell a reviewer why this check does not apply here."


def _config(stage: str = "dev") -> StageConfig:
    return load_stage_config(cdk_json_context(), stage)


def _data_key(app: SynthesizedApp) -> str:
    (key_id,) = resources(app.template("-data"), "AWS::KMS::Key")
    return f"{key_id}.Arn"


def _logs_statement(app: SynthesizedApp) -> dict[str, Any]:
    (key,) = resources(app.template("-data"), "AWS::KMS::Key").values()
    (statement,) = [
        statement
        for statement in key["Properties"]["KeyPolicy"]["Statement"]
        if statement.get("Sid") == "CloudWatchLogsOfThisStage"
    ]
    return statement


@pytest.mark.infra
def test_every_log_group_and_queue_uses_the_data_key(
    synthesized_apps: dict[str, SynthesizedApp], variant_app: SynthesizedApp
) -> None:
    for app in [*synthesized_apps.values(), variant_app]:
        exported = exports(app)
        encrypted = 0
        for stack, template in app.templates.items():
            for resource_type, key_property in (
                ("AWS::Logs::LogGroup", "KmsKeyId"),
                ("AWS::SQS::Queue", "KmsMasterKeyId"),
            ):
                for logical_id, resource in resources(template, resource_type).items():
                    value = resource["Properties"].get(key_property)
                    assert value is not None, f"{app.stage} {stack}/{logical_id} is not encrypted"
                    assert render(value, exported) == _data_key(app), logical_id
                    encrypted += 1
        assert encrypted > 20, app.stage


@pytest.mark.infra
@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_cloudwatch_logs_may_use_the_key_for_the_stages_log_groups_only(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    statement = _logs_statement(synthesized_apps[stage])
    assert render(statement["Principal"]["Service"]) == "logs.${AWS::Region}.amazonaws.com"
    assert {"kms:Decrypt*", "kms:GenerateDataKey*"} <= set(statement["Action"])
    prefix = _config(stage).resource_name("")
    ((operator, condition),) = statement["Condition"].items()
    assert operator == "ArnLike"
    ((key, value),) = condition.items()
    assert key == "kms:EncryptionContext:aws:logs:arn"
    assert render(value) == (
        f"arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:{prefix}*"
    )
    # Every log group is unnamed, so CloudFormation names it after its stack: `<prefix>...`.
    for stack, template in synthesized_apps[stage].templates.items():
        assert stack.startswith(prefix)
        for resource in resources(template, "AWS::Logs::LogGroup").values():
            assert "LogGroupName" not in resource["Properties"]


@pytest.mark.infra
@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_eventbridge_may_use_the_key_only_to_send_to_the_stages_queues(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    (key,) = resources(synthesized_apps[stage].template("-data"), "AWS::KMS::Key").values()
    statements = [
        statement
        for statement in key["Properties"]["KeyPolicy"]["Statement"]
        if "events.amazonaws.com" in str(statement["Principal"])
    ]
    # One statement (CDK's SqsQueue target adds an account-wide one unless kept from it).
    (statement,) = statements
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    # What EventBridge needs to send to an SSE-KMS queue; no Encrypt, ReEncrypt* or wildcards.
    assert sorted(statement["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    prefix = _config(stage).resource_name("")
    condition = statement["Condition"]
    assert sorted(condition) == ["ArnLike", "StringEquals"]
    assert condition["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    # SQS names the queue in the encryption context of each call: this stage's queues only.
    ((context_key, queues),) = condition["ArnLike"].items()
    assert context_key == "kms:EncryptionContext:aws:sqs:arn"
    assert render(queues) == (
        f"arn:${{AWS::Partition}}:sqs:${{AWS::Region}}:${{AWS::AccountId}}:{prefix}*"
    )
    # Every queue is unnamed, so CloudFormation names it after its stack: `<prefix>...`.
    for stack, template in synthesized_apps[stage].templates.items():
        assert stack.startswith(prefix)
        for resource in resources(template, "AWS::SQS::Queue").values():
            assert "QueueName" not in resource["Properties"]


def test_a_log_group_named_outside_the_stage_is_refused_at_synthesis() -> None:
    app = App()
    stack = Stack(app, "atelier-dev-api")
    logs.LogGroup(stack, "Stray", log_group_name="/custom/elsewhere")
    key_stack = Stack(app, "atelier-dev-data")
    encrypt_log_groups(app, key=kms.Key(key_stack, "Key"), config=_config())
    # Raised inside the aspect, so it reaches Python through jsii as a RuntimeError.
    with pytest.raises(RuntimeError, match="named '/custom/elsewhere'"):
        app.synth()


def test_skip_check_writes_checkov_metadata_with_its_reason() -> None:
    queue = sqs.Queue(Stack(App(), "S"), "Queue")
    skip_check(queue, "CKV_AWS_27", REASON)
    skip_check(queue, "CKV2_AWS_73", REASON)
    cfn_queue = queue.node.default_child
    assert isinstance(cfn_queue, sqs.CfnQueue)
    assert skipped_checks(cfn_queue) == [
        {"id": "CKV_AWS_27", "comment": REASON},
        {"id": "CKV2_AWS_73", "comment": REASON},
    ]


@pytest.mark.parametrize(
    ("check_id", "reason", "message"),
    [
        ("AwsSolutions-S1", REASON, "not a checkov AWS check id"),
        ("CKV_AWS_27", "looked at it", "needs a real reason"),
    ],
)
def test_skip_check_refuses_a_bad_id_or_a_short_reason(
    check_id: str, reason: str, message: str
) -> None:
    queue = sqs.Queue(Stack(App(), "S"), "Queue")
    with pytest.raises(ValueError, match=message):
        skip_check(queue, check_id, reason)


def test_skip_check_refuses_a_second_skip_of_the_same_check() -> None:
    queue = sqs.Queue(Stack(App(), "S"), "Queue")
    skip_check(queue, "CKV_AWS_27", REASON)
    with pytest.raises(ValueError, match="already skipped"):
        skip_check(queue, "CKV_AWS_27", REASON)


@pytest.mark.infra
def test_functions_skip_the_reviewed_lambda_checks_only(dev_app: SynthesizedApp) -> None:
    functions = 0
    for template in dev_app.templates.values():
        for logical_id, function in resources(template, "AWS::Lambda::Function").items():
            skips = {skip["id"] for skip in function["Metadata"]["checkov"]["skip"]}
            reserved = "ReservedConcurrentExecutions" in function["Properties"]
            expected = set(FUNCTION_SKIPS) | (set() if reserved else {"CKV_AWS_115"})
            assert skips == expected, logical_id
            functions += 1
    assert functions > 10
