"""cdk-nag AwsSolutions runs on the whole app, fails on findings, and honours reasoned acks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3

from app import build_app
from infra.nag import acknowledge, attach_nag
from infra.summary import load_acknowledgments
from tests.support import SynthesizedApp, cdk_json_context

pytestmark = pytest.mark.infra


def test_every_stage_synthesizes_with_no_unacknowledged_finding(
    synthesized_apps: dict[str, SynthesizedApp],
) -> None:
    # The session fixture synthesized each stage with cdk-nag attached; a finding would have
    # raised there. Here: the validation report records no failing plugin.
    for app in synthesized_apps.values():
        report = json.loads((app.assembly_dir / "validation-report.json").read_text())
        failures = [r for r in report["pluginReports"] if r["conclusion"] != "success"]
        assert failures == [], f"{app.stage}: {failures}"


def test_the_app_as_built_fails_synth_on_a_new_finding(tmp_path: Path) -> None:
    # Given the real app, with one insecure bucket slipped into its data stack
    app = build_app(App(context={**cdk_json_context(), "stage": "dev"}, outdir=str(tmp_path)))
    data_stack = next(child for child in app.node.children if isinstance(child, Stack))
    s3.Bucket(data_stack, "Careless")
    # When it synthesizes, Then cdk-nag stops it and names the rules
    with pytest.raises(RuntimeError, match="ValidationFailed") as caught:
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    (nag_report,) = report["pluginReports"]
    assert nag_report["pluginName"] == "AwsSolutions"
    assert nag_report["conclusion"] == "failure"
    violations = {
        violation["ruleName"]: [c["constructPath"] for c in violation["violatingConstructs"]]
        for violation in nag_report["violations"]
    }
    assert violations == {
        "AwsSolutions-S1": ["atelier-dev-data/Careless/Resource"],
        "AwsSolutions-S10": ["atelier-dev-data/Careless/Resource"],
    }
    assert "ValidationFailed" in str(caught.value)


def _stack_with_wildcard_policy(tmp_path: Path) -> tuple[App, iam.Policy]:
    app = App(outdir=str(tmp_path))
    stack = Stack(app, "Wildcard")
    role = iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    policy = iam.Policy(
        stack,
        "Policy",
        roles=[role],
        statements=[iam.PolicyStatement(actions=["xray:PutTraceSegments"], resources=["*"])],
    )
    attach_nag(app)
    return app, policy


def test_a_wildcard_resource_is_a_finding(tmp_path: Path) -> None:
    app, _ = _stack_with_wildcard_policy(tmp_path)
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    assert "AwsSolutions-IAM5" in (tmp_path / "validation-report.json").read_text()


XRAY_REASON = "X-Ray trace APIs have no resource-level permissions in IAM."


def _acknowledged_wildcard_policy(tmp_path: Path) -> tuple[App, iam.Policy]:
    app, policy = _stack_with_wildcard_policy(tmp_path)
    acknowledge(policy, "AwsSolutions-IAM5[Resource::*]", XRAY_REASON)
    return app, policy


def test_an_acknowledgment_with_a_reason_clears_exactly_that_finding(tmp_path: Path) -> None:
    app, _ = _acknowledged_wildcard_policy(tmp_path)
    app.synth()  # does not raise
    assert load_acknowledgments(tmp_path) == [
        ("/Wildcard/Policy", "AwsSolutions::AwsSolutions-IAM5[Resource::*]", XRAY_REASON)
    ]


def test_an_acknowledgment_does_not_hide_other_findings(tmp_path: Path) -> None:
    app, policy = _acknowledged_wildcard_policy(tmp_path)
    s3.Bucket(Stack.of(policy), "Unlogged", enforce_ssl=True)
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    rules = {v["ruleName"] for r in report["pluginReports"] for v in r["violations"]}
    assert rules == {"AwsSolutions-S1"}


# Every acknowledgment in the real app, by construct path and rule, `{stage}` standing for the
# stage name. A new one must be added here on purpose, so a broad acknowledgment (say, on a whole
# stack) cannot slip in unreviewed. cdk-nag names an imported ARN by its export.
_RESULTS_OBJECTS = (
    "AwsSolutions::AwsSolutions-IAM5[Resource::atelier-{stage}-data:"
    "ExportsOutputFnGetAttResults25575328Arn5DD4F5AA/descriptions/*]"
)
_UPLOADS_OBJECTS = (
    "AwsSolutions::AwsSolutions-IAM5[Resource::atelier-{stage}-data:"
    "ExportsOutputFnGetAttUploads4F6EB0FDArn5513CBEA/incoming/*]"
)
_IMAGES_OBJECTS = (
    "AwsSolutions::AwsSolutions-IAM5[Resource::atelier-{stage}-data:"
    "ExportsOutputFnGetAttResults25575328Arn5DD4F5AA/images/*]"
)
# POST /generations and /styling: outputs under two results prefixes, inputs under two uploads
# prefixes (styling/, and incoming/ so catalog photos can be restyled).
_DIFFUSION_OBJECTS = (
    "AwsSolutions::AwsSolutions-IAM5[Resource::atelier-{stage}-data:"
    "ExportsOutputFnGetAtt{bucket}/{prefix}/*]"
)
_DIFFUSION_PREFIXES = {
    ("Results25575328Arn5DD4F5AA", "generations"),
    ("Results25575328Arn5DD4F5AA", "styling"),
    ("Uploads4F6EB0FDArn5513CBEA", "styling"),
    ("Uploads4F6EB0FDArn5513CBEA", "incoming"),
}
_PROVISIONED_MODELS = (
    "AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:bedrock:<AWS::Region>:"
    "<AWS::AccountId>:provisioned-model/*]"
)
_XRAY = "AwsSolutions::AwsSolutions-IAM5[Resource::*]"
_ANY_RESOURCE = "AwsSolutions::AwsSolutions-IAM5[Resource::*]"
_VQA_DATASETS = (
    "AwsSolutions::AwsSolutions-IAM5[Resource::atelier-{stage}-data:"
    "ExportsOutputFnGetAttDatasets0030EE04Arn3BA423B5/vqa/*]"
)
_VQA_MODELS = (
    "AwsSolutions::AwsSolutions-IAM5[Resource::atelier-{stage}-data:"
    "ExportsOutputFnGetAttModelsC55D3500ArnC820EBA0/vqa/{prefix}/*]"
)
_TRAINING_LOG_STREAMS = (
    "AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:"
    "<AWS::AccountId>:log-group:/aws/sagemaker/TrainingJobs:*]"
)
_TRAINING_JOBS = (
    "AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:"
    "<AWS::AccountId>:training-job/atelier-{stage}-vqa-*]"
)
_EXECUTION_POLICY = "/atelier-{stage}-training/VqaExecutionRole/DefaultPolicy"
# Every training job reads the staged base models, every workflow their records.
_STAGED_MODELS = (
    "AwsSolutions::AwsSolutions-IAM5[Resource::atelier-{stage}-data:"
    "ExportsOutputFnGetAttModelsC55D3500ArnC820EBA0/base-models/*]"
)
_STAGED_RECORDS = (
    "AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ssm:<AWS::Region>:"
    "<AWS::AccountId>:parameter/atelier/{stage}/base-models/*]"
)
# The DreamBooth workflows: both read dreambooth/ datasets, each writes its own models prefixes.
_DREAMBOOTH_DATASETS = (
    "AwsSolutions::AwsSolutions-IAM5[Resource::atelier-{stage}-data:"
    "ExportsOutputFnGetAttDatasets0030EE04Arn3BA423B5/dreambooth/*]"
)
_DIFFUSION_MODELS = (
    "AwsSolutions::AwsSolutions-IAM5[Resource::atelier-{stage}-data:"
    "ExportsOutputFnGetAttModelsC55D3500ArnC820EBA0/{prefix}/*]"
)
_DIFFUSION_TRAINING_JOBS = (
    "AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:"
    "<AWS::AccountId>:training-job/atelier-{stage}-{mode}-*]"
)


def _diffusion_workflow(workflow: str, mode: str) -> set[tuple[str, str]]:
    """What one DreamBooth training workflow acknowledges: its execution role's prefixes and log
    streams, the two no-resource actions of that role, and its workflow's policies."""
    execution_policy = f"/atelier-{{stage}}-training/{workflow}ExecutionRole/DefaultPolicy"
    return {
        (f"/atelier-{{stage}}-training/{workflow}EcrAuthPolicy", _ANY_RESOURCE),
        (f"/atelier-{{stage}}-training/{workflow}MetricsPolicy", _ANY_RESOURCE),
        (execution_policy, _DREAMBOOTH_DATASETS),
        (execution_policy, _DIFFUSION_MODELS.replace("{prefix}", f"{mode}/training")),
        (execution_policy, _DIFFUSION_MODELS.replace("{prefix}", f"{mode}/checkpoints")),
        (execution_policy, _TRAINING_LOG_STREAMS),
        (execution_policy, _STAGED_MODELS),
        (
            f"/atelier-{{stage}}-training/{workflow}WorkflowPolicy",
            _DIFFUSION_TRAINING_JOBS.replace("{mode}", mode),
        ),
        (f"/atelier-{{stage}}-training/{workflow}WorkflowPolicy", _STAGED_RECORDS),
        (f"/atelier-{{stage}}-training/{workflow}WorkflowLoggingPolicy", _ANY_RESOURCE),
        (f"/atelier-{{stage}}-training/{workflow}WorkflowTracingPolicy", _ANY_RESOURCE),
    }


# Bedrock stack: Bedrock resources named per run, and the titan/ object prefixes.
_BEDROCK_ARNS = (
    "AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:bedrock:<AWS::Region>:"
    "<AWS::AccountId>:{kind}/*]"
)
_TITAN_DATASETS = (
    "AwsSolutions::AwsSolutions-IAM5[Resource::atelier-{stage}-data:"
    "ExportsOutputFnGetAttDatasets0030EE04Arn3BA423B5/titan/*]"
)
_TITAN_MODELS = (
    "AwsSolutions::AwsSolutions-IAM5[Resource::atelier-{stage}-data:"
    "ExportsOutputFnGetAttModelsC55D3500ArnC820EBA0/titan/*]"
)
# Catalog stack (describe-catalog): run files live under catalog/<runId>/ of the results bucket,
# images and manifests anywhere in the buckets a run may read (uploads, datasets, results'
# catalog/ for a failures report used as a manifest).
_DATA_OBJECTS = (
    "AwsSolutions::AwsSolutions-IAM5[Resource::atelier-{{stage}}-data:"
    "ExportsOutputFnGetAtt{bucket}/{pattern}]"
)
_RESULTS_ARN = "Results25575328Arn5DD4F5AA"
_UPLOADS_ARN = "Uploads4F6EB0FDArn5513CBEA"
_DATASETS_ARN = "Datasets0030EE04Arn3BA423B5"
_MODELS_ARN = "ModelsC55D3500ArnC820EBA0"


def _objects(bucket: str, pattern: str) -> str:
    return _DATA_OBJECTS.format(bucket=bucket, pattern=pattern)


_CATALOG_RUN = _objects(_RESULTS_ARN, "catalog/*")
_CATALOG_SOURCES = (_objects(_UPLOADS_ARN, "*"), _objects(_DATASETS_ARN, "*"), _CATALOG_RUN)
_CATALOG_ACKNOWLEDGMENTS: set[tuple[str, str]] = {
    # Every function's X-Ray policy.
    *(
        (f"/atelier-{{stage}}-catalog/{function}Function/TracingPolicy", _XRAY)
        for function in (
            "Start",
            "TransformInput",
            "Plan",
            "BedrockInput",
            "Results",
            "Online",
            "Finalize",
        )
    ),
    # The functions that read images and manifests a run names, and write its files.
    *(
        (f"/atelier-{{stage}}-catalog/{function}Function/Role/DefaultPolicy", source)
        for function in ("Start", "TransformInput", "Online")
        for source in _CATALOG_SOURCES
    ),
    (
        "/atelier-{stage}-catalog/StartFunction/Role/DefaultPolicy",
        _objects(_RESULTS_ARN, "catalog/*/request.json"),
    ),
    *(
        (f"/atelier-{{stage}}-catalog/{function}Function/Role/DefaultPolicy", _CATALOG_RUN)
        for function in ("Plan", "BedrockInput", "Results", "Finalize")
    ),
    *(
        (f"/atelier-{{stage}}-catalog/{function}Function/Role/DefaultPolicy", objects)
        for function, objects in (
            ("Results", _objects(_RESULTS_ARN, "descriptions/*")),
            ("Online", _objects(_RESULTS_ARN, "descriptions/*")),
            ("Online", _objects(_RESULTS_ARN, "catalog/*/failures/*")),
        )
    ),
    # The Bedrock batch inference service role.
    *(
        ("/atelier-{stage}-catalog/BedrockBatchRole/DefaultPolicy", objects)
        for objects in (
            _objects(_RESULTS_ARN, "catalog/*/groups/*/bedrock-input/*"),
            _objects(_RESULTS_ARN, "catalog/*/groups/*/bedrock-output/*"),
        )
    ),
    # The workflow: its child executions, per-run jobs, ItemReader and ResultWriter.
    ("/atelier-{stage}-catalog/WorkflowLoggingPolicy", _ANY_RESOURCE),
    ("/atelier-{stage}-catalog/WorkflowTracingPolicy", _ANY_RESOURCE),
    *(
        ("/atelier-{stage}-catalog/WorkflowPolicy", resource)
        for resource in (
            *_CATALOG_SOURCES,
            _objects(_RESULTS_ARN, "catalog/*/map-results/*"),
            *(
                "AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:"
                f"{service}:<AWS::Region>:<AWS::AccountId>:{resource}]"
                for service, resource in (
                    ("states", "execution:atelier-{stage}-describe-catalog/*"),
                    ("states", "execution:atelier-{stage}-describe-catalog:*"),
                    ("bedrock", "model-invocation-job/*"),
                )
            ),
        )
    ),
}
# The attribute source's own: the vision model's attributes job (dev and prod as shipped)...
_CATALOG_VISION_ACKNOWLEDGMENTS: set[tuple[str, str]] = {
    ("/atelier-{stage}-catalog/AttributeInputFunction/TracingPolicy", _XRAY),
    ("/atelier-{stage}-catalog/AttributeInputFunction/Role/DefaultPolicy", _CATALOG_RUN),
    *(
        ("/atelier-{stage}-catalog/BedrockBatchRole/DefaultPolicy", objects)
        for objects in (
            _objects(_RESULTS_ARN, "catalog/*/groups/*/attribute-input/*"),
            _objects(_RESULTS_ARN, "catalog/*/groups/*/attribute-output/*"),
        )
    ),
}
# ...or Batch Transform on the hosted VQA model (the variant).
_CATALOG_TRANSFORM_ACKNOWLEDGMENTS: set[tuple[str, str]] = {
    # The Batch Transform model's role.
    ("/atelier-{stage}-catalog/TransformEcrAuthPolicy", _ANY_RESOURCE),
    ("/atelier-{stage}-catalog/TransformMetricsPolicy", _ANY_RESOURCE),
    *(
        ("/atelier-{stage}-catalog/TransformModelRole/DefaultPolicy", objects)
        for objects in (
            _objects(_MODELS_ARN, "vqa/training/*"),
            _objects(_RESULTS_ARN, "catalog/*/transform-input/*"),
            _objects(_RESULTS_ARN, "catalog/*/groups/*/transform-manifest.json"),
            _objects(_RESULTS_ARN, "catalog/*/groups/*/transform-output/*"),
            "AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:"
            "<AWS::AccountId>:log-group:/aws/sagemaker/TransformJobs:*]",
        )
    ),
    # The workflow's per-run model and transform jobs.
    *(
        (
            "/atelier-{stage}-catalog/WorkflowPolicy",
            "AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:"
            f"sagemaker:<AWS::Region>:<AWS::AccountId>:{resource}]",
        )
        for resource in (
            "model/atelier-{stage}-catalog-*",
            "transform-job/atelier-{stage}-catalog-*",
        )
    ),
}
# The default text model is a global cross-region profile: its foundation model may serve from
# any commercial region, so each grant of it names the model in region `*` (the region-less ARN
# it also needs has no wildcard). Only these five policies invoke or start jobs on it.
_TEXT_MODEL_ANY_REGION = (
    "AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:bedrock:*::foundation-model/"
    "anthropic.claude-sonnet-4-6]"
)
_TEXT_MODEL_ACKNOWLEDGMENTS: set[tuple[str, str]] = {
    (path, _TEXT_MODEL_ANY_REGION)
    for path in (
        "/atelier-{stage}-api/ApiFunction/Role/DefaultPolicy",
        "/atelier-{stage}-api/UploadsFunction/Role/DefaultPolicy",
        "/atelier-{stage}-catalog/OnlineFunction/Role/DefaultPolicy",
        "/atelier-{stage}-catalog/BedrockBatchRole/DefaultPolicy",
        "/atelier-{stage}-catalog/WorkflowPolicy",
    )
}
EXPECTED_APP_ACKNOWLEDGMENTS: set[tuple[str, str]] = {
    *_CATALOG_ACKNOWLEDGMENTS,
    *_CATALOG_VISION_ACKNOWLEDGMENTS,
    *_TEXT_MODEL_ACKNOWLEDGMENTS,
    ("/atelier-{stage}-api/ApiFunction/TracingPolicy", _XRAY),
    ("/atelier-{stage}-api/UploadsFunction/TracingPolicy", _XRAY),
    ("/atelier-{stage}-api/ApiFunction/Role/DefaultPolicy", _RESULTS_OBJECTS),
    ("/atelier-{stage}-api/UploadsFunction/Role/DefaultPolicy", _RESULTS_OBJECTS),
    ("/atelier-{stage}-api/UploadsFunction/Role/DefaultPolicy", _UPLOADS_OBJECTS),
    # POST /images: its function's tracing, its object prefix, and the run-time provisioned model.
    ("/atelier-{stage}-api/ImagesFunction/TracingPolicy", _XRAY),
    ("/atelier-{stage}-api/ImagesFunction/Role/DefaultPolicy", _IMAGES_OBJECTS),
    ("/atelier-{stage}-api/ImagesFunction/Role/DefaultPolicy", _PROVISIONED_MODELS),
    ("/atelier-{stage}-api/Api/Default/images/POST", "AwsSolutions::AwsSolutions-COG4"),
    # POST /generations and /styling: one function's tracing and object prefixes (its endpoint
    # grant names both endpoints exactly), and the two IAM-authorized methods.
    ("/atelier-{stage}-api/DiffusionFunction/TracingPolicy", _XRAY),
    *(
        (
            "/atelier-{stage}-api/DiffusionFunction/Role/DefaultPolicy",
            _DIFFUSION_OBJECTS.replace("{bucket}", bucket).replace("{prefix}", prefix),
        )
        for bucket, prefix in _DIFFUSION_PREFIXES
    ),
    ("/atelier-{stage}-api/Api/Default/generations/POST", "AwsSolutions::AwsSolutions-COG4"),
    ("/atelier-{stage}-api/Api/Default/styling/POST", "AwsSolutions::AwsSolutions-COG4"),
    ("/atelier-{stage}-api/Api/DeploymentStage.v1", "AwsSolutions::AwsSolutions-APIG3"),
    ("/atelier-{stage}-api/Api/DeploymentStage.v1", "AwsSolutions::AwsSolutions-APIG6"),
    ("/atelier-{stage}-api/Api/Default/descriptions/POST", "AwsSolutions::AwsSolutions-COG4"),
    (
        "/atelier-{stage}-api/Api/Default/descriptions/{{productId}}/GET",
        "AwsSolutions::AwsSolutions-COG4",
    ),
    # Training: the SageMaker execution role and the workflow's role.
    ("/atelier-{stage}-training/VqaEcrAuthPolicy", _ANY_RESOURCE),
    ("/atelier-{stage}-training/VqaMetricsPolicy", _ANY_RESOURCE),
    (_EXECUTION_POLICY, _VQA_DATASETS),
    (_EXECUTION_POLICY, _VQA_MODELS.replace("{prefix}", "training")),
    (_EXECUTION_POLICY, _VQA_MODELS.replace("{prefix}", "checkpoints")),
    (_EXECUTION_POLICY, _TRAINING_LOG_STREAMS),
    (_EXECUTION_POLICY, _STAGED_MODELS),
    ("/atelier-{stage}-training/VqaWorkflowPolicy", _TRAINING_JOBS),
    ("/atelier-{stage}-training/VqaWorkflowPolicy", _STAGED_RECORDS),
    ("/atelier-{stage}-training/VqaWorkflowLoggingPolicy", _ANY_RESOURCE),
    ("/atelier-{stage}-training/VqaWorkflowTracingPolicy", _ANY_RESOURCE),
    # Training: the DreamBooth text-to-image and inpainting workflows, one role each.
    *_diffusion_workflow("Dreambooth", "dreambooth"),
    *_diffusion_workflow("Inpainting", "inpainting"),
    # Training: the SDXL LoRA workflow reads the same datasets and writes its own prefixes.
    *_diffusion_workflow("Lora", "lora"),
    # Bedrock: the sweeper, the lifecycle check and the release workflow (the customize pieces
    # exist only with titan.base_model_id set: EXPECTED_CUSTOMIZE_ACKNOWLEDGMENTS).
    (
        "/atelier-{stage}-bedrock/ThroughputSweeperFunction/Role/DefaultPolicy",
        _BEDROCK_ARNS.format(kind="provisioned-model"),
    ),
    ("/atelier-{stage}-bedrock/ThroughputSweeperFunction/TracingPolicy", _XRAY),
    ("/atelier-{stage}-bedrock/ModelLifecycle/CheckFunction/TracingPolicy", _XRAY),
    ("/atelier-{stage}-bedrock/ThroughputSweeperListPolicy", _ANY_RESOURCE),
    (
        "/atelier-{stage}-bedrock/TitanReleasePolicy",
        _BEDROCK_ARNS.format(kind="provisioned-model"),
    ),
    ("/atelier-{stage}-bedrock/TitanReleaseLoggingPolicy", _ANY_RESOURCE),
    ("/atelier-{stage}-bedrock/TitanReleaseTracingPolicy", _ANY_RESOURCE),
}
# Added by each hosted endpoint (its hosting.model_data_url set): the model role's two
# no-resource actions and its own log group's streams.
EXPECTED_HOSTING_ACKNOWLEDGMENTS: set[tuple[str, str]] = {
    acknowledgment
    for construct, endpoint in (
        ("VqaEndpoint", "vqa"),
        ("DreamboothEndpoint", "dreambooth"),
        ("StylingEndpoint", "styling"),
    )
    for acknowledgment in (
        (f"/atelier-{{stage}}-hosting/{construct}/EcrAuthPolicy", _ANY_RESOURCE),
        (f"/atelier-{{stage}}-hosting/{construct}/MetricsPolicy", _ANY_RESOURCE),
        (
            f"/atelier-{{stage}}-hosting/{construct}/ModelRole/DefaultPolicy",
            "AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:"
            f"<AWS::AccountId>:log-group:/aws/sagemaker/Endpoints/atelier-{{stage}}-{endpoint}:*]",
        ),
    )
}


# Added by the customize workflow (titan.base_model_id set): the customization role, the manifest
# check and the workflow's own policies.
EXPECTED_CUSTOMIZE_ACKNOWLEDGMENTS: set[tuple[str, str]] = {
    ("/atelier-{stage}-bedrock/TitanCustomizationRole/DefaultPolicy", _TITAN_DATASETS),
    ("/atelier-{stage}-bedrock/TitanCustomizationRole/DefaultPolicy", _TITAN_MODELS),
    ("/atelier-{stage}-bedrock/ManifestCheckFunction/Role/DefaultPolicy", _TITAN_DATASETS),
    ("/atelier-{stage}-bedrock/ManifestCheckFunction/TracingPolicy", _XRAY),
    *(
        ("/atelier-{stage}-bedrock/TitanCustomizePolicy", _BEDROCK_ARNS.format(kind=kind))
        for kind in ("custom-model", "model-customization-job", "provisioned-model")
    ),
    ("/atelier-{stage}-bedrock/TitanCustomizeLoggingPolicy", _ANY_RESOURCE),
    ("/atelier-{stage}-bedrock/TitanCustomizeTracingPolicy", _ANY_RESOURCE),
}


def _expected(acknowledgments: set[tuple[str, str]], stage: str) -> set[tuple[str, str]]:
    return {(path.format(stage=stage), rule.format(stage=stage)) for path, rule in acknowledgments}


def test_the_app_acknowledges_only_what_was_reviewed(
    synthesized_apps: dict[str, SynthesizedApp],
) -> None:
    for app in synthesized_apps.values():
        found = {(path, rule) for path, rule, _ in load_acknowledgments(app.assembly_dir)}
        assert found == _expected(EXPECTED_APP_ACKNOWLEDGMENTS, app.stage), app.stage


def test_a_hosted_endpoint_adds_only_its_reviewed_acknowledgments(
    variant_app: SynthesizedApp,
) -> None:
    # The variant synthesis also ran cdk-nag: a finding would have raised in the fixture. It
    # hosts every endpoint and configures an image base model (the customize workflow).
    found = {(path, rule) for path, rule, _ in load_acknowledgments(variant_app.assembly_dir)}
    # (its hosted VQA model makes the catalog's attribute source the endpoint: Batch Transform)
    expected = _expected(
        (EXPECTED_APP_ACKNOWLEDGMENTS - _CATALOG_VISION_ACKNOWLEDGMENTS)
        | _CATALOG_TRANSFORM_ACKNOWLEDGMENTS
        | EXPECTED_HOSTING_ACKNOWLEDGMENTS
        | EXPECTED_CUSTOMIZE_ACKNOWLEDGMENTS,
        "dev",
    )
    assert found == expected


@pytest.mark.parametrize(
    ("rule_id", "reason", "error"),
    [
        ("AwsSolutions-S1", "ok", "needs a real reason"),
        ("AwsSolutions-S1", "   " * 30, "needs a real reason"),
        ("S1", "a sufficiently long reason that explains the choice", "not an AwsSolutions rule"),
    ],
)
def test_acknowledgments_must_explain_themselves(
    tmp_path: Path, rule_id: str, reason: str, error: str
) -> None:
    stack = Stack(App(outdir=str(tmp_path)), "Any")
    with pytest.raises(ValueError, match=error):
        acknowledge(stack, rule_id, reason)
