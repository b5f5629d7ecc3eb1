"""The Catalog stack (describe-catalog): its functions' settings and grants, the service roles,
the workflow's shape and grants, asserted on the synthesized templates."""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App

from infra.config import MAX_WORKFLOW_POLLS, ConfigError, StageConfig, load_stage_config
from infra.constructs.bedrock_models import invoke_model_arns, invoke_model_grants
from infra.constructs.catalog_group_states import check_group_polls
from infra.nag import attach_nag
from infra.stacks.catalog import (
    PUBLISHED_NAMES,
    CatalogStack,
    catalog_settings,
    transform_part_spool_mb,
)
from infra.stacks.data import DataStack
from shared.models.catalog import CatalogSettings
from shared.models.descriptions import PipelineSettings
from tests.support import SynthesizedApp, cdk_json_context
from tests.templates import (
    assembly_artifacts,
    exports,
    listed,
    one,
    published_output_id,
    render,
    resources,
    role_statements,
    ssm_parameters,
    stack_dependencies,
    state_machine_definition,
    statements_granting,
)

pytestmark = pytest.mark.infra

STAGES = ("dev", "prod")
# The functions of a stage whose attributes come from the VQA endpoint (the variant app)...
ENDPOINT_FUNCTIONS = {
    "StartFunction": "start",
    "TransformInputFunction": "transform_input",
    "PlanFunction": "plan",
    "BedrockInputFunction": "bedrock_input",
    "ResultsFunction": "results",
    "OnlineFunction": "online",
    "FinalizeFunction": "finalize",
}
# ...and of one that reads them with the vision model (dev and prod ship so).
FUNCTIONS = {**ENDPOINT_FUNCTIONS, "AttributeInputFunction": "attribute_input"}
GEO_PROFILE = "eu.anthropic.claude-3-7-sonnet-20250219-v1:0"
# The dev stage's text model, a global profile: the profile, and its model in any region and
# region-less.
TEMPLATE_ARN_PARTS = {
    "region": "${AWS::Region}",
    "account": "${AWS::AccountId}",
    "partition": "${AWS::Partition}",
}
TEXT_MODEL = "global.anthropic.claude-sonnet-4-6"
TEXT_MODEL_ARNS = invoke_model_arns(TEXT_MODEL, **TEMPLATE_ARN_PARTS)
ACCOUNT_PREFIX = "arn:${AWS::Partition}:{service}:${AWS::Region}:${AWS::AccountId}:"


def _config(stage: str) -> StageConfig:
    return load_stage_config(cdk_json_context(), stage)


def _arn(service: str, resource: str) -> str:
    return ACCOUNT_PREFIX.replace("{service}", service) + resource


def _function(app: SynthesizedApp, construct: str) -> dict[str, Any]:
    _, function = one(app.template("-catalog"), "AWS::Lambda::Function", construct)
    return dict(function)


def _rendered(app: SynthesizedApp, statement: dict[str, Any]) -> list[str]:
    exported = exports(app)
    return [render(resource, exported) for resource in listed(statement["Resource"])]


# ---------------------------------------------------------------------------------------------
# The stack's place in the app
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
def test_the_catalog_stack_depends_on_data_only(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    app = synthesized_apps[stage]
    assert stack_dependencies(app, f"atelier-{stage}-catalog") == [f"atelier-{stage}-data"]
    artifacts = assembly_artifacts(app)
    assert artifacts[f"atelier-{stage}-catalog"]["properties"]["terminationProtection"] is (
        stage == "prod"
    )
    for name, artifact in artifacts.items():
        assert f"atelier-{stage}-catalog" not in artifact.get("dependencies", []), name


@pytest.mark.parametrize("name", PUBLISHED_NAMES)
def test_the_state_machine_arn_is_published(dev_app: SynthesizedApp, name: str) -> None:
    template = dev_app.template("-catalog")
    parameter = ssm_parameters(template)[f"/atelier/dev/catalog/{name}"]
    machine_id, _ = one(template, "AWS::StepFunctions::StateMachine", "DescribeCatalog")
    assert parameter["Value"] == {"Ref": machine_id}
    assert template["Outputs"][published_output_id(name)]["Value"] == {"Ref": machine_id}


# ---------------------------------------------------------------------------------------------
# Functions: handlers and settings
# ---------------------------------------------------------------------------------------------


def test_catalog_settings_are_what_the_functions_read() -> None:
    config = _config("dev")
    settings = catalog_settings(
        config, results_bucket="results", table_name="products", source_buckets=["a", "b"]
    )
    parsed = CatalogSettings.model_validate(settings)
    assert parsed.records_per_part == config.catalog.records_per_part == 500
    assert parsed.online_threshold == 100
    assert parsed.transform_max_payload_bytes == 6_000_000
    assert parsed.bedrock.min_records_per_job == 100
    assert parsed.bedrock.max_file_bytes == 1024 * 1024 * 1024
    assert parsed.bedrock.max_job_bytes == 5 * 1024 * 1024 * 1024
    assert parsed.source_buckets == ("a", "b")


@pytest.mark.parametrize("construct", list(FUNCTIONS))
def test_every_function_runs_its_handler_with_both_settings(
    dev_app: SynthesizedApp, construct: str
) -> None:
    function = _function(dev_app, construct)
    module = f"catalog.handlers.{FUNCTIONS[construct]}"
    assert function["Handler"] == f"{module}.handler"
    assert importlib.util.find_spec(module) is not None, f"{module} is missing"
    variables = function["Environment"]["Variables"]
    exported = exports(dev_app)
    settings = CatalogSettings.model_validate(
        json.loads(render(variables["CATALOG_SETTINGS"], exported))
    )
    # The results bucket and table come from the Data stack (as rendered logical ids here).
    assert settings.results_bucket.startswith("Results")
    assert settings.table_name.startswith("Products")
    assert [name[:7] for name in settings.source_buckets] == ["Uploads", "Dataset", "Results"]
    PipelineSettings.model_validate_json(variables["DESCRIPTIONS_SETTINGS"])
    environment_bytes = sum(
        len(name) + len(render(value, exported)) for name, value in variables.items()
    )
    assert environment_bytes < 4096


def test_the_spooling_steps_get_the_local_disk_their_files_need(dev_app: SynthesizedApp) -> None:
    config = _config("dev")
    # Given 500 lines per part of at most 6 MB each: 3 GB of part, plus headroom
    part_bytes = config.catalog.records_per_part * 6_000_000
    storage = {
        construct: _function(dev_app, construct).get("EphemeralStorage", {}).get("Size", 512)
        for construct in FUNCTIONS
    }
    assert part_bytes <= storage["TransformInputFunction"] * 2**20 <= part_bytes * 1.2
    assert storage["BedrockInputFunction"] == storage["ResultsFunction"] == 2048
    assert storage["StartFunction"] == storage["OnlineFunction"] == 512


def test_parts_too_large_for_lambda_disk_are_refused() -> None:
    config = _config("dev")
    catalog = replace(config.catalog, records_per_part=2000)
    with pytest.raises(ConfigError, match=r"catalog.records_per_part \(2000\).*lower one"):
        transform_part_spool_mb(replace(config, catalog=catalog))


# ---------------------------------------------------------------------------------------------
# Least privilege
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", [*STAGES, "variant"])
def test_only_acknowledged_policies_grant_on_every_resource(
    synthesized_apps: dict[str, SynthesizedApp], variant_app: SynthesizedApp, stage: str
) -> None:
    app = variant_app if stage == "variant" else synthesized_apps[stage]
    template = app.template("-catalog")
    # (the variant hosts the VQA model: its batch path runs Batch Transform)
    endpoint = stage == "variant"
    functions = ENDPOINT_FUNCTIONS if endpoint else FUNCTIONS
    transform = (
        {
            "TransformEcrAuthPolicy": ["ecr:GetAuthorizationToken"],
            "TransformMetricsPolicy": ["cloudwatch:PutMetricData"],
        }
        if endpoint
        else {}
    )
    wildcard_actions: dict[str, list[str]] = {}
    for logical_id, policy in resources(template, "AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert not [a for a in listed(statement["Action"]) if "*" in a], statement
            if "*" in listed(statement["Resource"]):
                wildcard_actions[logical_id.rstrip("0123456789ABCDEF")] = listed(
                    statement["Action"]
                )
    xray = ["xray:PutTelemetryRecords", "xray:PutTraceSegments"]
    assert wildcard_actions == {
        **{f"{construct}TracingPolicy": xray for construct in functions},
        **transform,
        "WorkflowLoggingPolicy": [
            "logs:CreateLogDelivery",
            "logs:DeleteLogDelivery",
            "logs:DescribeLogGroups",
            "logs:DescribeResourcePolicies",
            "logs:GetLogDelivery",
            "logs:ListLogDeliveries",
            "logs:PutResourcePolicy",
            "logs:UpdateLogDelivery",
        ],
        "WorkflowTracingPolicy": [
            "xray:GetSamplingRules",
            "xray:GetSamplingTargets",
            "xray:PutTelemetryRecords",
            "xray:PutTraceSegments",
        ],
    }


def _actions(app: SynthesizedApp, role: str) -> set[str]:
    return {
        action
        for statements in role_statements(app.template("-catalog"), role).values()
        for statement in statements
        for action in listed(statement["Action"])
    }


def test_each_function_may_do_only_what_its_step_needs(dev_app: SynthesizedApp) -> None:
    common = {
        "kms:Decrypt",
        "kms:DescribeKey",
        "kms:Encrypt",
        "kms:GenerateDataKey",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "xray:PutTelemetryRecords",
        "xray:PutTraceSegments",
    }
    expected = {
        "StartFunction": {"s3:ListBucket", "s3:GetObject", "s3:PutObject"},
        # Deletes: a retried batch replaces its own files (a missing delete right fails it).
        "TransformInputFunction": {
            "s3:ListBucket",
            "s3:GetObject",
            "s3:PutObject",
            "s3:DeleteObject",
            "dynamodb:BatchGetItem",
        },
        "PlanFunction": {"s3:ListBucket", "s3:GetObject", "s3:PutObject"},
        "BedrockInputFunction": {
            "s3:ListBucket",
            "s3:GetObject",
            "s3:PutObject",
            "s3:DeleteObject",
        },
        "AttributeInputFunction": {
            "s3:ListBucket",
            "s3:GetObject",
            "s3:PutObject",
            "s3:DeleteObject",
        },
        "ResultsFunction": {
            "s3:ListBucket",
            "s3:GetObject",
            "s3:PutObject",
            "dynamodb:BatchWriteItem",
        },
        "OnlineFunction": {
            "s3:ListBucket",
            "s3:GetObject",
            "s3:PutObject",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            # The dev stage reads attributes with the vision model, which is the text model.
            "bedrock:InvokeModel",
        },
        "FinalizeFunction": {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"},
    }
    for construct, actions in expected.items():
        assert _actions(dev_app, f"{construct}Role") == actions | common, construct


def test_the_online_function_invokes_exactly_the_text_model_with_the_vision_source(
    dev_app: SynthesizedApp,
) -> None:
    template = dev_app.template("-catalog")
    # The dev stage hosts no VQA model: its attributes come from the vision model, the text model
    assert _config("dev").attribute_source == "vision-llm"
    assert not statements_granting(template, "OnlineFunctionRole", "sagemaker:InvokeEndpoint")
    # The profile, and its model in any region only through that profile (never directly)
    granted = [
        (sorted(_rendered(dev_app, statement)), _through_profile(statement))
        for statement in statements_granting(template, "OnlineFunctionRole", "bedrock:InvokeModel")
    ]
    expected = [
        (sorted(grant.resources), grant.through_profile)
        for grant in invoke_model_grants(TEXT_MODEL, **TEMPLATE_ARN_PARTS)
    ]
    assert sorted(granted, key=str) == sorted(expected, key=str)
    assert [through for _, through in granted if through] == [TEXT_MODEL_ARNS[0]]


@pytest.mark.parametrize("construct", list(FUNCTIONS))
def test_every_function_reads_the_stages_attribute_source(
    dev_app: SynthesizedApp, construct: str
) -> None:
    variables = _function(dev_app, construct)["Environment"]["Variables"]
    assert variables["ATTRIBUTE_SOURCE"] == "vision-llm"
    assert variables["ATTRIBUTE_MODEL_ID"] == TEXT_MODEL
    assert variables["ATTRIBUTE_STRUCTURED_OUTPUT"] == "json_schema"


def _catalog_template(config: StageConfig, outdir: Path) -> dict[str, Any]:
    """The Catalog stack alone (with its Data stack) for `config`, cdk-nag attached: synthesis
    raises on an unacknowledged finding."""
    app = App(context=cdk_json_context(), outdir=str(outdir))
    data = DataStack(app, "atelier-dev-data", config=config)
    CatalogStack(app, "atelier-dev-catalog", config=config, data=data)
    attach_nag(app)
    return dict(app.synth().get_stack_by_name("atelier-dev-catalog").template)


def _with_attributes(config: StageConfig, **changes: Any) -> StageConfig:
    descriptions = config.descriptions
    attributes = replace(descriptions.attributes, **changes)
    return replace(config, descriptions=replace(descriptions, attributes=attributes))


def test_the_endpoint_source_grants_exactly_the_vqa_endpoint_to_the_online_function(
    tmp_path: Path,
) -> None:
    # Given a stage that reads attributes from its VQA endpoint
    config = _with_attributes(_config("dev"), source="endpoint")
    # When the Catalog stack synthesizes
    template = _catalog_template(config, tmp_path)
    # Then the online function may invoke exactly that endpoint, and the functions know it
    (endpoint,) = statements_granting(template, "OnlineFunctionRole", "sagemaker:InvokeEndpoint")
    assert [render(arn) for arn in listed(endpoint["Resource"])] == [
        _arn("sagemaker", "endpoint/atelier-dev-vqa")
    ]
    for logical_id, function in resources(template, "AWS::Lambda::Function").items():
        variables = function["Properties"]["Environment"]["Variables"]
        if "CATALOG_SETTINGS" in variables:
            assert variables["ATTRIBUTE_SOURCE"] == "endpoint", logical_id
            assert "ATTRIBUTE_MODEL_ID" not in variables, logical_id


def test_a_vision_model_of_its_own_is_granted_to_the_online_function_with_its_regions(
    tmp_path: Path,
) -> None:
    # Given a vision model that is not the text model, through a geographic profile
    config = _with_attributes(
        _config("dev"), source="vision-llm", model_id=GEO_PROFILE, structured_output="tool"
    )
    # When the Catalog stack synthesizes (cdk-nag raises on an unacknowledged wildcard: the
    # profile's model in every EU region must be acknowledged, not only the text model's)
    template = _catalog_template(config, tmp_path)
    # Then the online function may invoke both models, each model only through its profile,
    # and no endpoint
    assert not statements_granting(template, "OnlineFunctionRole", "sagemaker:InvokeEndpoint")
    # (CDK merges statements without a condition: compare resource by resource)
    granted = {
        (render(arn), _through_profile(s))
        for s in statements_granting(template, "OnlineFunctionRole", "bedrock:InvokeModel")
        for arn in listed(s["Resource"])
    }
    expected = {
        (arn, grant.through_profile)
        for model in (TEXT_MODEL, GEO_PROFILE)
        for grant in invoke_model_grants(model, **TEMPLATE_ARN_PARTS)
        for arn in grant.resources
    }
    assert granted == expected
    _, online = one(template, "AWS::Lambda::Function", "OnlineFunction")
    assert online["Environment"]["Variables"]["ATTRIBUTE_MODEL_ID"] == GEO_PROFILE
    # And each group's attributes job runs on the vision model, in its mode (tool: InvokeModel),
    # before the description job on the text model (json_schema: Converse)
    definition = state_machine_definition(template, "DescribeCatalog")
    attributes_job = _job_arguments(definition, "Start attributes batch job")
    assert (attributes_job["ModelId"], attributes_job["ModelInvocationType"]) == (
        GEO_PROFILE,
        "InvokeModel",
    )
    description_job = _job_arguments(definition, "Start Bedrock batch job")
    assert (description_job["ModelId"], description_job["ModelInvocationType"]) == (
        TEXT_MODEL,
        "Converse",
    )
    # And the workflow may create jobs on both models, the batch role invoke both
    vision_arns = invoke_model_arns(GEO_PROFILE, **TEMPLATE_ARN_PARTS)
    created = {
        render(arn)
        for statement in statements_granting(
            template, "WorkflowRole", "bedrock:CreateModelInvocationJob"
        )
        for arn in listed(statement["Resource"])
    }
    assert set(TEXT_MODEL_ARNS) | set(vision_arns) <= created
    (invoke,) = statements_granting(template, "BedrockBatchRole", "bedrock:InvokeModel")
    assert {render(arn) for arn in listed(invoke["Resource"])} == set(TEXT_MODEL_ARNS) | set(
        vision_arns
    )


def _through_profile(statement: dict[str, Any]) -> str | None:
    """The profile a statement's `bedrock:InferenceProfileArn` condition requires, if any."""
    condition = statement.get("Condition")
    if condition is None:
        return None
    assert condition.keys() == {"StringEquals"}, condition
    ((key, value),) = condition["StringEquals"].items()
    assert key == "bedrock:InferenceProfileArn", condition
    return render(value)


def test_the_functions_write_only_below_their_prefixes(dev_app: SynthesizedApp) -> None:
    template = dev_app.template("-catalog")
    for construct in FUNCTIONS:
        for statement in statements_granting(template, f"{construct}Role", "s3:PutObject"):
            for resource in _rendered(dev_app, statement):
                assert resource.startswith("Results25575328.Arn/"), (construct, resource)
                assert resource.split("/", 1)[1].startswith(("catalog/", "descriptions/"))


def test_the_bedrock_role_is_for_batch_jobs_of_this_account_only(
    dev_app: SynthesizedApp,
) -> None:
    template = dev_app.template("-catalog")
    _, role = one(template, "AWS::IAM::Role", "BedrockBatchRole")
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "bedrock.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert render(trust["Condition"]["ArnLike"]["aws:SourceArn"]) == _arn(
        "bedrock", "model-invocation-job/*"
    )
    reads = statements_granting(template, "BedrockBatchRole", "s3:GetObject")
    writes = statements_granting(template, "BedrockBatchRole", "s3:PutObject")
    # The description jobs' files, and (vision source) the attributes jobs' files
    assert [sorted(_rendered(dev_app, s)) for s in reads] == [
        [
            "Results25575328.Arn/catalog/*/groups/*/attribute-input/*",
            "Results25575328.Arn/catalog/*/groups/*/bedrock-input/*",
        ]
    ]
    assert [sorted(_rendered(dev_app, s)) for s in writes] == [
        [
            "Results25575328.Arn/catalog/*/groups/*/attribute-output/*",
            "Results25575328.Arn/catalog/*/groups/*/bedrock-output/*",
        ]
    ]
    # Through an inference profile the job runs as this role: the profile, and its model in
    # every region it routes to (a global profile: any region, and the region-less model ARN).
    (model,) = statements_granting(template, "BedrockBatchRole", "bedrock:InvokeModel")
    assert sorted(_rendered(dev_app, model)) == sorted(TEXT_MODEL_ARNS)


def test_the_vision_source_builds_no_transform_model_role_or_grants(
    dev_app: SynthesizedApp,
) -> None:
    template = dev_app.template("-catalog")
    assert not [r for r in resources(template, "AWS::IAM::Role") if "TransformModelRole" in r]
    granted = _actions(dev_app, "WorkflowRole")
    assert not {a for a in granted if a.startswith(("sagemaker:", "ssm:", "events:"))}


def test_the_transform_model_role_reads_the_archive_and_its_inputs_writes_its_outputs(
    variant_app: SynthesizedApp,
) -> None:
    dev_app = variant_app  # (the variant hosts the VQA model: the endpoint source)
    template = dev_app.template("-catalog")
    _, role = one(template, "AWS::IAM::Role", "TransformModelRole")
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    (reads,) = statements_granting(template, "TransformModelRole", "s3:GetObject")
    assert set(_rendered(dev_app, reads)) == {
        "ModelsC55D3500.Arn/vqa/training/*",
        "Results25575328.Arn/catalog/*/transform-input/*",
        "Results25575328.Arn/catalog/*/groups/*/transform-manifest.json",
    }
    (writes,) = statements_granting(template, "TransformModelRole", "s3:PutObject")
    assert _rendered(dev_app, writes) == [
        "Results25575328.Arn/catalog/*/groups/*/transform-output/*"
    ]
    (pull,) = statements_granting(template, "TransformModelRole", "ecr:BatchGetImage")
    assert _rendered(dev_app, pull)[0].endswith(":repository/huggingface-pytorch-inference")


def test_the_workflow_may_touch_exactly_its_resources(variant_app: SynthesizedApp) -> None:
    dev_app = variant_app  # (the endpoint source: Batch Transform)
    template = dev_app.template("-catalog")
    granted = {
        action: _rendered(dev_app, statement)
        for statement in role_statements(template, "WorkflowRole")[
            next(
                logical_id
                for logical_id in role_statements(template, "WorkflowRole")
                if logical_id.startswith("WorkflowPolicy")
            )
        ]
        for action in listed(statement["Action"])
    }
    machine = "atelier-dev-describe-catalog"
    # Built from the name: no reference from the role's policy back to the state machine.
    assert granted["states:StartExecution"] == [_arn("states", f"stateMachine:{machine}")]
    assert set(granted["states:DescribeExecution"]) == {
        _arn("states", f"execution:{machine}/*"),
        _arn("states", f"execution:{machine}:*"),
    }
    assert len(granted["lambda:InvokeFunction"]) == len(ENDPOINT_FUNCTIONS)
    assert granted["ssm:GetParameter"] == [_arn("ssm", "parameter/atelier/dev/vqa/model-data-url")]
    assert granted["sagemaker:CreateModel"] == [_arn("sagemaker", "model/atelier-dev-catalog-*")]
    assert granted["sagemaker:CreateTransformJob"] == [
        _arn("sagemaker", "transform-job/atelier-dev-catalog-*")
    ]
    assert set(granted["bedrock:CreateModelInvocationJob"]) == {
        *TEXT_MODEL_ARNS,
        _arn("bedrock", "model-invocation-job/*"),
    }
    assert granted["bedrock:GetModelInvocationJob"] == [_arn("bedrock", "model-invocation-job/*")]
    assert granted["s3:ListMultipartUploadParts"] == ["Results25575328.Arn/catalog/*/map-results/*"]
    passes = statements_granting(template, "WorkflowRole", "iam:PassRole")
    assert {
        (render(s["Resource"]), s["Condition"]["StringEquals"]["iam:PassedToService"])
        for s in passes
    } == {
        (
            f"{one(template, 'AWS::IAM::Role', 'TransformModelRole')[0]}.Arn",
            "sagemaker.amazonaws.com",
        ),
        (
            f"{one(template, 'AWS::IAM::Role', 'BedrockBatchRole')[0]}.Arn",
            "bedrock.amazonaws.com",
        ),
    }
    # CDK's own Distributed Map policy (by the machine's ARN) is replaced by the reviewed one.
    assert not [p for p in resources(template, "AWS::IAM::Policy") if "DistributedMap" in p]


# ---------------------------------------------------------------------------------------------
# The workflow's shape
# ---------------------------------------------------------------------------------------------


def test_the_workflow_fans_out_with_bounded_concurrency(dev_app: SynthesizedApp) -> None:
    definition = state_machine_definition(dev_app.template("-catalog"), "DescribeCatalog")
    config = _config("dev").catalog
    assert definition["TimeoutSeconds"] == config.max_run_hours * 3600
    readers = {}
    for kind in ("Prefix", "Csv", "Jsonl"):
        build = definition["States"][f"Build{kind}"]
        assert build["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
        assert build["ItemBatcher"]["MaxItemsPerBatch"] == config.records_per_part
        assert build["MaxConcurrency"] == config.build_concurrency
        assert build["ToleratedFailurePercentage"] == 0
        assert build["ResultWriter"]["Arguments"]["Prefix"] == (
            "{% 'catalog/' & $runId & '/map-results/' %}"
        )
        readers[kind] = (build["ItemReader"]["Resource"], build["ItemReader"].get("ReaderConfig"))
    assert readers == {
        "Prefix": ("arn:${AWS::Partition}:states:::s3:listObjectsV2", None),
        "Csv": (
            "arn:${AWS::Partition}:states:::s3:getObject",
            {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"},
        ),
        "Jsonl": ("arn:${AWS::Partition}:states:::s3:getObject", {"InputType": "JSONL"}),
    }
    groups = definition["States"]["Describe groups"]
    assert groups["MaxConcurrency"] == config.max_concurrent_groups
    assert groups["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert definition["States"]["Describe online"]["MaxConcurrency"] == config.online_concurrency
    wait = groups["ItemProcessor"]["States"]["Wait for Bedrock job"]
    assert wait["Seconds"] == config.bedrock.poll_seconds


def test_every_lambda_task_retries_lambda_service_errors(dev_app: SynthesizedApp) -> None:
    definition = state_machine_definition(dev_app.template("-catalog"), "DescribeCatalog")

    def states(machine: dict[str, Any]) -> list[dict[str, Any]]:
        found = []
        for state in machine["States"].values():
            found.append(state)
            if "ItemProcessor" in state:
                found.extend(states(state["ItemProcessor"]))
        return found

    tasks = [s for s in states(definition) if str(s.get("Resource", "")).endswith("lambda:invoke")]
    # One per function (the vision source's attribute input included), the build step's child
    # in each of the three Distributed Maps, and the reports of a failed build and of failed
    # groups.
    assert len(tasks) == len(FUNCTIONS) + 2 + 2
    names = {
        re.sub(r"[0-9A-F]{8}\.Arn\}$", "", task["Arguments"]["FunctionName"].removeprefix("${"))
        for task in tasks
    }
    assert names == set(FUNCTIONS)
    for task in tasks:
        service, dependency = task["Retry"]
        assert "Lambda.TooManyRequestsException" in service["ErrorEquals"]
        assert "Lambda.ServiceException" in service["ErrorEquals"]
        # S3 or DynamoDB failing after the functions' own retries: a few more, later
        assert dependency["ErrorEquals"] == ["DependencyError"]
        assert dependency["IntervalSeconds"] >= 10
        assert dependency["MaxAttempts"] == 3


def test_a_geographic_profile_in_tool_mode_is_granted_its_regions_and_runs_invokemodel_jobs(
    tmp_path: Path,
) -> None:
    # Given the catalog stack alone with an EU profile of an older Claude (tool mode) as text model
    # (read by the endpoint: the text model is the only Bedrock model)
    base = _with_attributes(_config("dev"), source="endpoint")
    config = replace(
        base,
        descriptions=replace(base.descriptions, model_id=GEO_PROFILE, structured_output="tool"),
    )
    # (cdk.json's context: the feature flags the real app synthesizes with)
    app = App(context=cdk_json_context(), outdir=str(tmp_path))
    data = DataStack(app, "atelier-dev-data", config=config)
    CatalogStack(app, "atelier-dev-catalog", config=config, data=data)
    attach_nag(app)
    # When it synthesizes (cdk-nag raises on an unacknowledged wildcard)
    template = app.synth().get_stack_by_name("atelier-dev-catalog").template
    # Then the Bedrock service role may invoke the profile and its model wherever it routes
    (invoke,) = statements_granting(template, "BedrockBatchRole", "bedrock:InvokeModel")
    expected = invoke_model_arns(GEO_PROFILE, **TEMPLATE_ARN_PARTS)
    assert sorted(render(arn) for arn in listed(invoke["Resource"])) == sorted(expected)
    # (its geography's regions, not any region; no profile condition on the service role)
    assert expected[1:] == [
        "arn:${AWS::Partition}:bedrock:eu-*::foundation-model/"
        "anthropic.claude-3-7-sonnet-20250219-v1:0"
    ]
    assert "Condition" not in invoke
    # And the workflow may create jobs on the profile
    created = [
        render(arn)
        for statement in statements_granting(
            template, "WorkflowRole", "bedrock:CreateModelInvocationJob"
        )
        for arn in listed(statement["Resource"])
    ]
    assert set(expected) <= set(created)
    # And tool mode's jobs are InvokeModel jobs (Converse batch records may not carry toolConfig)
    definition = state_machine_definition(template, "DescribeCatalog")
    assert _bedrock_job_arguments(definition)["ModelInvocationType"] == "InvokeModel"


def test_json_schema_mode_runs_converse_jobs(dev_app: SynthesizedApp) -> None:
    definition = state_machine_definition(dev_app.template("-catalog"), "DescribeCatalog")
    arguments = _bedrock_job_arguments(definition)
    assert arguments["ModelInvocationType"] == "Converse"
    assert arguments["ModelId"] == "global.anthropic.claude-sonnet-4-6"


def _bedrock_job_arguments(definition: dict[str, Any]) -> dict[str, Any]:
    """The Arguments of the state that creates the description job, wherever it is nested."""
    return _job_arguments(definition, "Start Bedrock batch job")


def _job_arguments(definition: dict[str, Any], state_name: str) -> dict[str, Any]:
    """The Arguments of the state named `state_name`, wherever it is nested."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            state = node.get(state_name)
            if isinstance(state, dict):
                found.append(state["Arguments"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(definition)
    (arguments,) = found
    return arguments


def test_a_vision_stage_must_fit_two_jobs_polls_in_a_groups_history() -> None:
    # Given polls that fit one job's loop (the config's own check) but not two
    config = _config("dev")
    bedrock = replace(config.catalog.bedrock, timeout_hours=24, poll_seconds=60)
    slow = replace(config, catalog=replace(config.catalog, bedrock=bedrock))
    assert 24 * 3600 // 60 <= MAX_WORKFLOW_POLLS < 2 * 24 * 3600 // 60
    # Then the vision source refuses them, naming the settings; the endpoint source has one job
    with pytest.raises(ConfigError, match=r"two Bedrock jobs.*poll_seconds = 60 makes 2880 polls"):
        check_group_polls(slow)
    check_group_polls(_with_attributes(slow, source="endpoint"))
    check_group_polls(config)
