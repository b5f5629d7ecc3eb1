"""The Bedrock stack: Titan customize and release workflows, their roles, the cost guard.

The shipped stages configure no base model (`titan.base_model_id: null`: no Bedrock image model can
be fine-tuned today), so they build no customize workflow; its tests read `variant_app`, the dev
stage with Titan Image Generator G1 v2 configured (tests/support.py, VARIANT_OVERRIDES).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.config import StageConfig, load_stage_config
from infra.stacks.bedrock import PUBLISHED_NAMES, PUBLISHED_NAMES_WHEN_CUSTOMIZABLE
from infra.workflows.states import BEDROCK_TRANSIENT_ERRORS
from infra.workflows.titan_common import DEPLOYMENT_TAG, EXPIRES_AT_TAG, EXPIRY_NOTIFIED_TAG
from shared.models import customization as lambda_tags
from tests.support import VARIANT_OVERRIDES, SynthesizedApp, cdk_json_context
from tests.templates import (
    assembly_artifacts,
    exports,
    listed,
    one,
    published_output_id,
    render,
    render_definition,
    resources,
    role_statements,
    ssm_parameters,
    stack_dependencies,
    statements_granting,
)

pytestmark = pytest.mark.infra

STAGES = ("dev", "prod")
BEDROCK = "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}"


def _config(stage: str) -> StageConfig:
    return load_stage_config(cdk_json_context(), stage)


def _variant_config() -> StageConfig:
    """The configuration `variant_app` was synthesized from."""
    context = cdk_json_context()
    context["atelier"]["stages"]["dev"] = VARIANT_OVERRIDES
    return load_stage_config(context, "dev")


@pytest.fixture(params=["dev", "prod", "variant"])
def bedrock_app(request: pytest.FixtureRequest) -> tuple[str, SynthesizedApp, StageConfig]:
    """(stage, app, config) of each synthesis: the shipped dev and prod, and the variant."""
    if request.param == "variant":
        return "dev", request.getfixturevalue("variant_app"), _variant_config()
    apps: dict[str, SynthesizedApp] = request.getfixturevalue("synthesized_apps")
    return request.param, apps[request.param], _config(request.param)


def _definition(app: SynthesizedApp, prefix: str) -> dict[str, Any]:
    _, properties = one(app.template("-bedrock"), "AWS::StepFunctions::StateMachine", prefix)
    definition: dict[str, Any] = json.loads(render_definition(properties["DefinitionString"]))
    return definition


def _resources_of(statement: dict[str, Any], app: SynthesizedApp) -> set[str]:
    return {render(resource, exports(app)) for resource in listed(statement["Resource"])}


def _bucket(app: SynthesizedApp, name: str) -> str:
    (logical_id,) = [
        logical_id
        for logical_id in resources(app.template("-data"), "AWS::S3::Bucket")
        if logical_id.startswith(name)
    ]
    return logical_id


def _key(app: SynthesizedApp) -> str:
    (logical_id,) = resources(app.template("-data"), "AWS::KMS::Key")
    return f"{logical_id}.Arn"


# ---------------------------------------------------------------------------------------------
# The customize workflow
# ---------------------------------------------------------------------------------------------

CUSTOMIZE_FAILS = (
    "InvalidInput",
    "InvalidManifest",
    "InvalidCustomModelName",
    "InvalidHyperparameters",
    "InvalidModelUnits",
    "InvalidCommitment",
    "InvalidTtlHours",
)


@pytest.mark.parametrize("stage", STAGES)
def test_no_customize_workflow_without_a_base_model(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    """The shipped default: nothing that customizes, and no grant on an image model."""
    assert _config(stage).titan.base_model_id is None
    template = synthesized_apps[stage].template("-bedrock")
    machines = [
        machine["Properties"]["StateMachineName"]
        for machine in resources(template, "AWS::StepFunctions::StateMachine").values()
    ]
    assert machines == [f"atelier-{stage}-titan-release"]
    logical_ids = set(template["Resources"])
    for absent in ("TitanCustomizationRole", "TitanCustomizeRole", "ManifestCheckFunction"):
        assert not [i for i in logical_ids if i.startswith(absent)], absent
    assert "titan-image-generator" not in json.dumps(template)
    assert "nova-canvas" not in json.dumps(template)
    # The cost guard and the lifecycle check stay.
    assert [i for i in logical_ids if i.startswith("ThroughputSweeperFunction")]
    assert [i for i in logical_ids if i.startswith("ModelLifecycleCheckFunction")]


def test_customize_validates_checks_trains_provisions_records_and_notifies(
    variant_app: SynthesizedApp,
) -> None:
    app, stage = variant_app, "dev"
    _, properties = one(app.template("-bedrock"), "AWS::StepFunctions::StateMachine", "TitanCust")
    definition = _definition(app, "TitanCustomize")
    states = definition["States"]
    assert properties["StateMachineName"] == f"atelier-{stage}-titan-customize"
    assert definition["QueryLanguage"] == "JSONata"
    assert definition["StartAt"] == "Validate input"

    validate = states["Validate input"]
    assert [rule["Next"] for rule in validate["Choices"]] == list(CUSTOMIZE_FAILS)
    assert validate["Default"] == "Prepare run"
    for name in CUSTOMIZE_FAILS:
        assert states[name]["Type"] == "Fail"
        assert states[name]["Error"] == name
        assert len(states[name]["Cause"]) > 30

    # The happy path, state by state.
    path = ["Prepare run"]
    while "Next" in states[path[-1]] or states[path[-1]]["Type"] == "Choice":
        state = states[path[-1]]
        if state["Type"] == "Choice":
            first = state["Choices"][0]["Next"]
            path.append(
                first
                if not first.startswith(("Invalid", "Manifest", "BaseModel"))
                else state["Default"]
            )
        else:
            path.append(state["Next"])
        if path[-1] in path[:-1]:
            break
    assert path[:14] == [
        "Prepare run",
        "Check base model lifecycle",
        "Base model usable?",
        "Check manifest",
        "Manifest usable?",
        "Prepare customization job",
        "Start customization job",
        "Wait for job",
        "Get job status",
        "Job finished?",
        "Prepare throughput",
        "Provision throughput",
        "Wait for throughput",
        "Get throughput status",
    ]
    assert states["Throughput ready?"]["Choices"][0]["Next"] == "Set expiry"
    assert states["Set expiry"]["Next"] == "Record throughput"
    assert states["Record throughput"]["Next"] == "Notify"
    assert states["Notify"]["End"] is True


def test_the_job_is_polled_until_it_ends_and_stopped_past_its_runtime(
    variant_app: SynthesizedApp,
) -> None:
    config = _variant_config().titan
    states = _definition(variant_app, "TitanCustomize")["States"]
    assert states["Wait for job"]["Seconds"] == config.job_poll_seconds
    assert states["Get job status"]["Resource"].endswith(
        ":aws-sdk:bedrock:getModelCustomizationJob"
    )
    assert states["Get job status"]["Next"] == "Job finished?"
    finished = states["Job finished?"]
    rules = {rule["Next"]: rule["Condition"] for rule in finished["Choices"]}
    assert list(rules) == ["Prepare throughput", "JobFailed", "Stop job"]
    assert rules["Prepare throughput"] == "{% $jobStatus = 'Completed' %}"
    assert rules["JobFailed"] == "{% $jobStatus in ['Failed', 'Stopped'] %}"
    assert str(config.max_job_runtime_hours * 3_600_000) in rules["Stop job"]
    assert finished["Default"] == "Wait for job"
    # A failed job ends the run with Bedrock's own failure message.
    assert "$jobFailure" in states["JobFailed"]["Cause"]
    assert states["Get job status"]["Assign"]["jobFailure"].count("FailureMessage") == 1
    assert states["Stop job"]["Next"] == "JobStopped"
    assert states["Stop job"]["Catch"][-1]["Next"] == "JobStopFailed"
    assert states["JobStopped"]["Error"] == "{% $stop.error %}"
    # A job whose status cannot be read may still be running (and billing): it is stopped too.
    (unknown,) = states["Get job status"]["Catch"]
    assert (unknown["ErrorEquals"], unknown["Next"]) == (["States.ALL"], "Stop job")
    assert "'error': 'JobStatusUnknown'" in unknown["Assign"]["stop"]


def test_the_throughput_is_polled_until_in_service_and_released_when_it_cannot_be(
    variant_app: SynthesizedApp,
) -> None:
    config = _variant_config().titan
    states = _definition(variant_app, "TitanCustomize")["States"]
    assert states["Wait for throughput"]["Seconds"] == config.throughput_poll_seconds
    ready = states["Throughput ready?"]
    assert [rule["Next"] for rule in ready["Choices"]] == [
        "Set expiry",
        "Throughput failed",
        "Throughput too slow",
    ]
    assert str(config.max_throughput_wait_hours * 3_600_000) in ready["Choices"][2]["Condition"]
    assert ready["Default"] == "Wait for throughput"
    # Whatever goes wrong once a throughput exists hands it to the release workflow.
    for name in ("Throughput failed", "Throughput too slow"):
        assert states[name]["Next"] == "Release throughput"
    for name in ("Get throughput status", "Record throughput"):
        (catch,) = states[name]["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"]
        assert catch["Next"] == "Release throughput"
        assert "failure" in catch["Assign"]
    release = states["Release throughput"]
    assert release["Resource"] == "arn:${AWS::Partition}:states:::states:startExecution"
    assert release["Arguments"]["StateMachineArn"] == "${TitanRelease885F03E4}"
    assert release["Arguments"]["Input"]["provisionedModelArn"] == "{% $provisionedModelArn %}"
    assert release["Next"] == "ProvisioningFailed"
    assert release["Catch"][0]["Next"] == "ProvisioningFailed"
    assert states["ProvisioningFailed"]["Error"] == "{% $failure.error %}"


def test_every_bedrock_call_retries_throttling_and_has_a_catch(
    bedrock_app: tuple[str, SynthesizedApp, StageConfig],
) -> None:
    _, app, config = bedrock_app
    prefixes = (
        ("TitanCustomize", "TitanRelease") if config.titan.customizable else ("TitanRelease",)
    )
    for prefix in prefixes:
        for name, state in _definition(app, prefix)["States"].items():
            if ":aws-sdk:bedrock:" not in state.get("Resource", ""):
                continue
            retry = state["Retry"][0]
            assert retry["ErrorEquals"] == BEDROCK_TRANSIENT_ERRORS, name
            assert retry["MaxAttempts"] >= 5, name
            assert retry["BackoffRate"] == 2, name
            assert retry["JitterStrategy"] == "FULL", name
            assert state["Catch"][-1]["ErrorEquals"] == ["States.ALL"], name


def test_the_job_is_created_as_spec_says(variant_app: SynthesizedApp) -> None:
    config = _variant_config()
    states = _definition(variant_app, "TitanCustomize")["States"]
    start = states["Start customization job"]
    assert start["Resource"] == (
        "arn:${AWS::Partition}:states:::aws-sdk:bedrock:createModelCustomizationJob"
    )
    arguments = start["Arguments"]
    datasets = "${import:atelier-dev-data:ExportsOutputRefDatasets0030EE0478B3FE2D}"
    models = "${import:atelier-dev-data:ExportsOutputRefModelsC55D3500937A2AB2}"
    assert arguments["CustomizationType"] == "FINE_TUNING"
    assert (
        arguments["BaseModelIdentifier"]
        == config.titan.base_model_id
        == ("amazon.titan-image-generator-v2:0")
    )
    assert arguments["RoleArn"].startswith("${TitanCustomizationRole")
    assert arguments["CustomModelKmsKeyId"] == (
        "${import:atelier-dev-data:ExportsOutputFnGetAttDataKey17AFBB84ArnCE2A1BC6}"
    )
    assert arguments["TrainingDataConfig"] == {
        "S3Uri": f"{{% 's3://{datasets}/' & $request.manifest %}}"
    }
    assert arguments["OutputDataConfig"] == {
        "S3Uri": f"{{% 's3://{models}/titan/' & $jobName & '/' %}}"
    }
    assert arguments["JobName"] == "{% $jobName %}"
    assert arguments["ClientRequestToken"] == "{% $jobToken %}"
    assert arguments["HyperParameters"] == "{% $hyperParameters %}"
    assert {"Key": "atelier:stage", "Value": "dev"} in arguments["JobTags"]
    assert {"Key": DEPLOYMENT_TAG, "Value": "atelier-dev"} in arguments["CustomModelTags"]
    # Defaults from the config, stepCount from the manifest's size (config null).
    expression = states["Prepare customization job"]["Assign"]["hyperParameters"]
    assert '{"batchSize": "8", "learningRate": "0.00001"}' in expression
    assert "$manifestReport.recommendedStepCount" in expression


def test_the_throughput_is_created_with_its_expiry_and_a_commitment_only_when_asked(
    variant_app: SynthesizedApp,
) -> None:
    states = _definition(variant_app, "TitanCustomize")["States"]
    provision = states["Provision throughput"]
    assert provision["Resource"] == (
        "arn:${AWS::Partition}:states:::aws-sdk:bedrock:createProvisionedModelThroughput"
    )
    arguments = provision["Arguments"]
    assert f"'Key': '{EXPIRES_AT_TAG}', 'Value': $expiresAt" in arguments
    assert '{"Key": "atelier:deployment", "Value": "atelier-dev"}' in arguments
    assert "$commitment ? { 'CommitmentDuration': $commitment } : {}" in arguments
    assert "'ModelId': $customModelArn" in arguments
    # Created with room for its creation (titan.max_throughput_wait_hours, 3 in dev) ...
    prepare = states["Prepare throughput"]["Assign"]
    assert prepare["expiresAt"] == (
        "{% $fromMillis($millis() + ($ttlHours + 3) * 3600000, "
        "'[Y0001]-[M01]-[D01]T[H01]:[m01]:[s01]Z') %}"
    )
    # ... and its time counted from when it is in service.
    (in_service, *_) = states["Throughput ready?"]["Choices"]
    assert in_service["Assign"]["inServiceExpiresAt"] == (
        "{% $fromMillis($millis() + $ttlHours * 3600000, "
        "'[Y0001]-[M01]-[D01]T[H01]:[m01]:[s01]Z') %}"
    )
    set_expiry = states["Set expiry"]
    assert set_expiry["Resource"] == "arn:${AWS::Partition}:states:::aws-sdk:bedrock:tagResource"
    assert set_expiry["Arguments"] == {
        "ResourceARN": "{% $provisionedModelArn %}",
        "Tags": [{"Key": EXPIRES_AT_TAG, "Value": "{% $inServiceExpiresAt %}"}],
    }
    assert set_expiry["Assign"] == {"expiresAt": "{% $inServiceExpiresAt %}"}
    # A tag that cannot be moved leaves the (later) creation expiry, reported as such.
    assert set_expiry["Catch"][-1] == {"ErrorEquals": ["States.ALL"], "Next": "Record throughput"}


def test_the_throughput_is_recorded_where_the_images_api_reads_it(
    variant_app: SynthesizedApp,
) -> None:
    app, stage = variant_app, "dev"
    record = _definition(app, "TitanCustomize")["States"]["Record throughput"]
    parameter = _config(stage).titan_provisioned_model_parameter
    assert parameter == f"/atelier/{stage}/titan/provisioned-model-arn"
    assert record["Resource"] == "arn:${AWS::Partition}:states:::aws-sdk:ssm:putParameter"
    assert record["Arguments"]["Name"] == parameter
    assert record["Arguments"]["Value"] == "{% $provisionedModelArn %}"
    assert record["Arguments"]["Overwrite"] is True
    # Not a stack resource: deploying or destroying the stack never touches the record.
    names = [
        p["Properties"]["Name"]
        for p in resources(app.template("-bedrock"), "AWS::SSM::Parameter").values()
    ]
    assert parameter not in names


def test_the_notice_names_the_throughput_its_expiry_and_how_to_release(
    variant_app: SynthesizedApp,
) -> None:
    notify = _definition(variant_app, "TitanCustomize")["States"]["Notify"]
    assert notify["Resource"] == "arn:${AWS::Partition}:states:::sns:publish"
    message = notify["Arguments"]["Message"]
    for part in (
        "$provisionedModelArn",
        "$expiresAt",
        "aws stepfunctions start-execution --state-machine-arn ${TitanRelease885F03E4}",
        "aws bedrock tag-resource",
    ):
        assert part in message


# ---------------------------------------------------------------------------------------------
# The release workflow
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
def test_release_deletes_only_this_deployments_throughput_then_clears_the_record(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    app = synthesized_apps[stage]
    _, properties = one(app.template("-bedrock"), "AWS::StepFunctions::StateMachine", "TitanRel")
    assert properties["StateMachineName"] == f"atelier-{stage}-titan-release"
    states = _definition(app, "TitanRelease")["States"]
    assert [rule["Next"] for rule in states["Validate input"]["Choices"]] == [
        "InvalidInput",
        "InvalidProvisionedModelArn",
        "InvalidReason",
    ]
    assert states["Throughput named?"]["Choices"][0]["Next"] == "Use the named throughput"
    assert states["Throughput named?"]["Default"] == "Read the recorded throughput"
    assert states["Read the recorded throughput"]["Catch"][0] == {
        "ErrorEquals": ["Ssm.ParameterNotFoundException"],
        "Next": "Nothing to release",
    }
    owner = states["Check the owner"]
    assert owner["Arguments"] == {"ResourceARN": "{% $arn %}"}
    assert states["This deployment's?"]["Choices"][0]["Condition"] == (
        f"{{% $owner = 'atelier-{stage}' %}}"
    )
    assert states["This deployment's?"]["Default"] == "NotThisDeployment"
    delete = states["Delete the throughput"]
    assert delete["Resource"].endswith(":aws-sdk:bedrock:deleteProvisionedModelThroughput")
    # A throughput already gone counts as released.
    assert delete["Catch"][0] == {
        "ErrorEquals": ["Bedrock.ResourceNotFoundException"],
        "Next": "Already released",
    }
    assert any(r["ErrorEquals"] == ["Bedrock.ConflictException"] for r in delete["Retry"])
    assert states["Still recorded?"]["Choices"][0] == {
        "Condition": "{% $recorded = $arn %}",
        "Next": "Clear the record",
    }
    assert states["Clear the record"]["Resource"].endswith(":aws-sdk:ssm:deleteParameter")
    assert states["Clear the record"]["Next"] == "Notify"
    assert states["Notify"]["End"] is True


# ---------------------------------------------------------------------------------------------
# Least privilege
# ---------------------------------------------------------------------------------------------


def test_only_acknowledged_policies_grant_on_every_resource(
    bedrock_app: tuple[str, SynthesizedApp, StageConfig],
) -> None:
    _, app, config = bedrock_app
    template = app.template("-bedrock")
    workflows = ("Customize", "Release") if config.titan.customizable else ("Release",)
    wildcard_actions = {}
    for logical_id, policy in resources(template, "AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if "*" in listed(statement["Resource"]):
                wildcard_actions[logical_id.rstrip("0123456789ABCDEF")] = listed(
                    statement["Action"]
                )
    xray = ["xray:PutTelemetryRecords", "xray:PutTraceSegments"]
    assert wildcard_actions == {
        **({"ManifestCheckFunctionTracingPolicy": xray} if config.titan.customizable else {}),
        "ThroughputSweeperFunctionTracingPolicy": xray,
        "ModelLifecycleCheckFunctionTracingPolicy": xray,
        "ThroughputSweeperListPolicy": ["bedrock:ListProvisionedModelThroughputs"],
        **{
            f"Titan{workflow}LoggingPolicy": [
                "logs:CreateLogDelivery",
                "logs:DeleteLogDelivery",
                "logs:DescribeLogGroups",
                "logs:DescribeResourcePolicies",
                "logs:GetLogDelivery",
                "logs:ListLogDeliveries",
                "logs:PutResourcePolicy",
                "logs:UpdateLogDelivery",
            ]
            for workflow in workflows
        },
        **{
            f"Titan{workflow}TracingPolicy": [
                "xray:GetSamplingRules",
                "xray:GetSamplingTargets",
                "xray:PutTelemetryRecords",
                "xray:PutTraceSegments",
            ]
            for workflow in workflows
        },
    }
    # No action wildcards anywhere.
    for policy in resources(template, "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert not [a for a in listed(statement["Action"]) if "*" in a], statement


def test_the_customization_role_is_for_bedrock_jobs_of_this_account_only(
    variant_app: SynthesizedApp,
) -> None:
    _, role = one(variant_app.template("-bedrock"), "AWS::IAM::Role", "TitanCustomizationRole")
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {
            "Action": "sts:AssumeRole",
            "Condition": {
                "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
                "ArnLike": {
                    "aws:SourceArn": {
                        "Fn::Join": [
                            "",
                            [
                                "arn:",
                                {"Ref": "AWS::Partition"},
                                ":bedrock:",
                                {"Ref": "AWS::Region"},
                                ":",
                                {"Ref": "AWS::AccountId"},
                                ":model-customization-job/*",
                            ],
                        ]
                    }
                },
            },
            "Effect": "Allow",
            "Principal": {"Service": "bedrock.amazonaws.com"},
        }
    ]
    assert "ManagedPolicyArns" not in role


def test_the_customization_role_reads_titan_datasets_and_writes_titan_outputs(
    variant_app: SynthesizedApp,
) -> None:
    template = variant_app.template("-bedrock")
    datasets, models = _bucket(variant_app, "Datasets"), _bucket(variant_app, "Models")
    (reads,) = [
        s
        for s in statements_granting(template, "TitanCustomizationRole", "s3:GetObject")
        if "s3:PutObject" not in listed(s["Action"])
    ]
    assert _resources_of(reads, variant_app) == {f"{datasets}.Arn/titan/*"}
    (writes,) = statements_granting(template, "TitanCustomizationRole", "s3:PutObject")
    assert _resources_of(writes, variant_app) == {f"{models}.Arn/titan/*"}
    # Listing: both buckets, only under titan/ (one statement: same condition).
    (listing,) = statements_granting(template, "TitanCustomizationRole", "s3:ListBucket")
    assert _resources_of(listing, variant_app) == {f"{datasets}.Arn", f"{models}.Arn"}
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["titan/*"]}}
    (use,) = statements_granting(template, "TitanCustomizationRole", "kms:Decrypt")
    assert _resources_of(use, variant_app) == {_key(variant_app)}
    assert [render(s) for s in use["Condition"]["StringEquals"]["kms:ViaService"]] == [
        "s3.${AWS::Region}.amazonaws.com",
        "bedrock.${AWS::Region}.amazonaws.com",
    ]
    (grant,) = statements_granting(template, "TitanCustomizationRole", "kms:CreateGrant")
    assert grant["Condition"]["Bool"] == {"kms:GrantIsForAWSResource": "true"}


def test_the_customize_workflow_passes_only_the_customization_role_to_bedrock(
    variant_app: SynthesizedApp,
) -> None:
    template = variant_app.template("-bedrock")
    role_id, _ = one(template, "AWS::IAM::Role", "TitanCustomizationRole")
    (pass_role,) = statements_granting(template, "TitanCustomizeRole", "iam:PassRole")
    assert pass_role["Resource"] == {"Fn::GetAtt": [role_id, "Arn"]}
    assert pass_role["Condition"] == {
        "StringEquals": {"iam:PassedToService": "bedrock.amazonaws.com"}
    }


def test_the_customize_workflow_may_touch_exactly_its_resources(
    variant_app: SynthesizedApp,
) -> None:
    template = variant_app.template("-bedrock")

    def granted(action: str) -> set[str]:
        (statement,) = statements_granting(template, "TitanCustomizeRole", action)
        return _resources_of(statement, variant_app)

    foundation = (
        "arn:${AWS::Partition}:bedrock:${AWS::Region}::foundation-model/"
        "amazon.titan-image-generator-v2:0"
    )
    assert granted("bedrock:CreateModelCustomizationJob") == {
        foundation,
        f"{BEDROCK}:custom-model/*",
        f"{BEDROCK}:model-customization-job/*",
    }
    assert granted("bedrock:GetModelCustomizationJob") == {f"{BEDROCK}:model-customization-job/*"}
    assert granted("bedrock:CreateProvisionedModelThroughput") == {
        foundation,
        f"{BEDROCK}:custom-model/*",
        f"{BEDROCK}:provisioned-model/*",
    }
    assert granted("ssm:PutParameter") == {
        "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:"
        "parameter/atelier/dev/titan/provisioned-model-arn"
    }
    assert granted("states:StartExecution") == {"TitanRelease885F03E4"}
    topic_id, _ = one(template, "AWS::SNS::Topic")
    assert granted("sns:Publish") == {topic_id}
    (kms,) = statements_granting(template, "TitanCustomizeRole", "kms:CreateGrant")
    assert _resources_of(kms, variant_app) == {_key(variant_app)}
    assert [render(v) for v in listed(kms["Condition"]["StringEquals"]["kms:ViaService"])] == [
        "bedrock.${AWS::Region}.amazonaws.com"
    ]
    assert kms["Condition"]["Bool"] == {"kms:GrantIsForAWSResource": "true"}
    assert kms["Action"] == "kms:CreateGrant"
    # Every grant is in this stack's explicit policies: CDK added nothing of its own.
    policies = role_statements(template, "TitanCustomizeRole")
    assert {p.rstrip("0123456789ABCDEF") for p in policies} == {
        "TitanCustomizePolicy",
        "TitanCustomizeLoggingPolicy",
        "TitanCustomizeTracingPolicy",
    }


def test_the_release_workflow_and_sweeper_delete_and_read_only_throughputs(
    variant_app: SynthesizedApp,
) -> None:
    template = variant_app.template("-bedrock")
    (delete,) = statements_granting(
        template, "TitanReleaseRole", "bedrock:DeleteProvisionedModelThroughput"
    )
    assert _resources_of(delete, variant_app) == {f"{BEDROCK}:provisioned-model/*"}
    assert sorted(listed(delete["Action"])) == [
        "bedrock:DeleteProvisionedModelThroughput",
        "bedrock:ListTagsForResource",
    ]
    (ssm,) = statements_granting(template, "TitanReleaseRole", "ssm:DeleteParameter")
    assert sorted(listed(ssm["Action"])) == ["ssm:DeleteParameter", "ssm:GetParameter"]
    sweeper = statements_granting(template, "ThroughputSweeperFunction", "bedrock:TagResource")
    assert [_resources_of(s, variant_app) for s in sweeper] == [{f"{BEDROCK}:provisioned-model/*"}]
    # It may set its notice mark only, never move a throughput's expiry.
    (tagging,) = sweeper
    assert tagging["Action"] == "bedrock:TagResource"
    assert tagging["Condition"] == {
        "ForAllValues:StringEquals": {"aws:TagKeys": [EXPIRY_NOTIFIED_TAG]}
    }
    (start,) = statements_granting(template, "ThroughputSweeperFunction", "states:StartExecution")
    assert _resources_of(start, variant_app) == {"TitanRelease885F03E4"}
    key_id, _ = one(template, "AWS::KMS::Key")
    for role in ("TitanReleaseRole", "ThroughputSweeperFunction", "TitanCustomizeRole"):
        (publish_key,) = [
            statement
            for statement in statements_granting(template, role, "kms:GenerateDataKey")
            if statement["Resource"] == {"Fn::GetAtt": [key_id, "Arn"]}
        ]
        via = publish_key["Condition"]["StringEquals"]["kms:ViaService"]
        assert render(via) == "sns.${AWS::Region}.amazonaws.com", role


def test_the_manifest_check_reads_only_titan_datasets(variant_app: SynthesizedApp) -> None:
    template = variant_app.template("-bedrock")
    datasets = _bucket(variant_app, "Datasets")
    (reads,) = statements_granting(template, "ManifestCheckFunction", "s3:GetObject")
    assert _resources_of(reads, variant_app) == {f"{datasets}.Arn/titan/*"}
    (listing,) = statements_granting(template, "ManifestCheckFunction", "s3:ListBucket")
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["titan/*"]}}
    _, function = one(template, "AWS::Lambda::Function", "ManifestCheckFunction")
    assert function["Handler"] == "customization.handlers.manifest.handler"
    assert function["Timeout"] == 300


# ---------------------------------------------------------------------------------------------
# Notifications, the cost guard, alarms
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
def test_the_topic_is_encrypted_and_tls_only(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    template = synthesized_apps[stage].template("-bedrock")
    _, topic = one(template, "AWS::SNS::Topic")
    key_id, key = one(template, "AWS::KMS::Key")
    assert topic["TopicName"] == f"atelier-{stage}-titan-notifications"
    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert key["EnableKeyRotation"] is True
    _, policy = one(template, "AWS::SNS::TopicPolicy")
    statements = policy["PolicyDocument"]["Statement"]
    (deny,) = [s for s in statements if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    (alarms,) = [s for s in statements if s.get("Sid") == "CloudWatchAlarms"]
    assert alarms["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert "aws:SourceAccount" in alarms["Condition"]["StringEquals"]
    # CloudWatch alarms may use the key to publish; nobody else but the account's IAM.
    principals = [s["Principal"] for s in key["KeyPolicy"]["Statement"]]
    assert {"Service": "cloudwatch.amazonaws.com"} in principals
    # No e-mail configured, no subscription.
    assert resources(template, "AWS::SNS::Subscription") == {}


@pytest.mark.parametrize("stage", STAGES)
def test_the_sweeper_runs_on_a_schedule_for_this_deployment(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    template = synthesized_apps[stage].template("-bedrock")
    config = _config(stage).titan
    _, rule = one(template, "AWS::Events::Rule", "ThroughputSweep")
    assert rule["ScheduleExpression"] == f"rate({config.sweep_interval_minutes} minutes)"
    assert rule["Name"] == f"atelier-{stage}-titan-throughput-sweep"
    function_id, function = one(template, "AWS::Lambda::Function", "ThroughputSweeperFunction")
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 2
    # A failed sweep is not re-run by Lambda: the next scheduled one retries.
    _, invoke_config = one(template, "AWS::Lambda::EventInvokeConfig", "ThroughputSweeper")
    assert invoke_config["FunctionName"] == {"Ref": function_id}
    assert invoke_config["MaximumRetryAttempts"] == 0
    assert function["Handler"] == "customization.handlers.sweep.handler"
    variables = function["Environment"]["Variables"]
    assert variables["DEPLOYMENT"] == f"atelier-{stage}"
    assert variables["RELEASE_STATE_MACHINE_ARN"] == {"Ref": "TitanRelease885F03E4"}
    assert function["Timeout"] < config.sweep_interval_minutes * 60


def test_unwatched_failures_raise_alarms_on_the_topic(
    bedrock_app: tuple[str, SynthesizedApp, StageConfig],
) -> None:
    stage, app, config = bedrock_app
    template = app.template("-bedrock")
    workflows = ("release", "customize") if config.titan.customizable else ("release",)
    topic_id, _ = one(template, "AWS::SNS::Topic")
    alarms = {
        alarm["Properties"]["AlarmName"]: alarm["Properties"]
        for alarm in resources(template, "AWS::CloudWatch::Alarm").values()
    }
    assert set(alarms) == {
        f"atelier-{stage}-titan-sweeper-errors",
        *(f"atelier-{stage}-titan-{workflow}-failed" for workflow in workflows),
        # tests/infra/test_model_lifecycle.py checks these two
        f"atelier-{stage}-model-lifecycle-attention",
        f"atelier-{stage}-model-lifecycle-errors",
    }
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [{"Ref": topic_id}]
        assert alarm["Threshold"] == 1
        assert alarm["TreatMissingData"] == "notBreaching"
    assert alarms[f"atelier-{stage}-titan-sweeper-errors"]["MetricName"] == "Errors"
    # A workflow that failed, timed out or was stopped (aborted) all count.
    for workflow in workflows:
        alarm = alarms[f"atelier-{stage}-titan-{workflow}-failed"]
        (expression,) = [m for m in alarm["Metrics"] if "Expression" in m]
        assert expression["ReturnData"] is not False
        inputs = {m["Id"]: m["MetricStat"] for m in alarm["Metrics"] if "MetricStat" in m}
        assert sorted(m["Metric"]["MetricName"] for m in inputs.values()) == [
            "ExecutionsAborted",
            "ExecutionsFailed",
            "ExecutionsTimedOut",
        ]
        assert all(m["Stat"] == "Sum" for m in inputs.values())
        assert sorted(expression["Expression"].replace("+", " ").split()) == sorted(inputs)


def test_both_workflows_log_everything_and_trace(
    bedrock_app: tuple[str, SynthesizedApp, StageConfig],
) -> None:
    _, app, config = bedrock_app
    template = app.template("-bedrock")
    for machine_id, machine in resources(template, "AWS::StepFunctions::StateMachine").items():
        properties = machine["Properties"]
        assert properties["LoggingConfiguration"]["Level"] == "ALL"
        assert properties["LoggingConfiguration"]["IncludeExecutionData"] is True
        assert properties["TracingConfiguration"] == {"Enabled": True}
        policies = {p for p in machine["DependsOn"] if p.startswith(machine_id[:12])}
        assert any("LoggingPolicy" in p for p in policies), machine_id
    if not config.titan.customizable:
        return
    titan = config.titan
    definition = _definition(app, "TitanCustomize")
    hours = titan.max_job_runtime_hours + titan.max_throughput_wait_hours + 2
    assert definition["TimeoutSeconds"] == hours * 3600


# ---------------------------------------------------------------------------------------------
# Contracts and names
# ---------------------------------------------------------------------------------------------


def test_tag_names_match_what_the_sweeper_reads() -> None:
    assert EXPIRES_AT_TAG == lambda_tags.EXPIRES_AT_TAG
    assert DEPLOYMENT_TAG == lambda_tags.DEPLOYMENT_TAG
    assert EXPIRY_NOTIFIED_TAG == lambda_tags.EXPIRY_NOTIFIED_TAG


def test_names_are_published(bedrock_app: tuple[str, SynthesizedApp, StageConfig]) -> None:
    stage, app, config = bedrock_app
    template = app.template("-bedrock")
    parameters = ssm_parameters(template)
    names = PUBLISHED_NAMES_WHEN_CUSTOMIZABLE if config.titan.customizable else PUBLISHED_NAMES
    # Exactly these: without a base model, no customize workflow name is published.
    assert sorted(parameters) == sorted(f"/atelier/{stage}/bedrock/{name}" for name in names)
    for name in names:
        assert published_output_id(name) in template["Outputs"]
    assert parameters[f"/atelier/{stage}/bedrock/titan-provisioned-model-parameter"]["Value"] == (
        f"/atelier/{stage}/titan/provisioned-model-arn"
    )


@pytest.mark.parametrize("stage", STAGES)
def test_the_bedrock_stack_depends_on_data_only(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    app = synthesized_apps[stage]
    assert stack_dependencies(app, f"atelier-{stage}-bedrock") == [f"atelier-{stage}-data"]
    artifacts = assembly_artifacts(app)
    bedrock = artifacts[f"atelier-{stage}-bedrock"]
    assert bedrock["properties"]["terminationProtection"] is (stage == "prod")
    others = [name for name, artifact in artifacts.items() if artifact.get("dependencies")]
    for name in others:
        assert f"atelier-{stage}-bedrock" not in artifacts[name]["dependencies"], name
