"""The synth summary reads the assembly on disk and flags what bills by the hour."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.summary import main, render
from tests.infra.test_nag import EXPECTED_APP_ACKNOWLEDGMENTS
from tests.support import SynthesizedApp


def _write_assembly(
    directory: Path,
    templates: dict[str, dict[str, object]],
    acknowledged: dict[str, dict[str, str]] | None = None,
) -> Path:
    artifacts: dict[str, dict[str, object]] = {
        name: {
            "type": "aws:cloudformation:stack",
            "properties": {"templateFile": f"{name}.json"},
            "additionalMetadataFile": f"{name}.metadata.json",
        }
        for name in templates
    }
    for name in templates:
        metadata = {
            f"/{name}/{path}": [{"type": "aws:cdk:acknowledged-rules", "data": rules}]
            for path, rules in (acknowledged or {}).items()
        }
        (directory / f"{name}.metadata.json").write_text(json.dumps(metadata))
    artifacts["Tree"] = {"type": "cdk:tree", "properties": {"file": "tree.json"}}
    (directory / "manifest.json").write_text(json.dumps({"artifacts": artifacts}))
    for name, template in templates.items():
        (directory / f"{name}.json").write_text(json.dumps(template))
    return directory


def test_counts_resources_and_lists_gpu_endpoints(tmp_path: Path) -> None:
    hosting = {
        "Resources": {
            "VqaConfig": {
                "Type": "AWS::SageMaker::EndpointConfig",
                "Properties": {
                    "ProductionVariants": [
                        {
                            "VariantName": "AllTraffic",
                            "InstanceType": "ml.g5.2xlarge",
                            "InitialInstanceCount": 1,
                        }
                    ]
                },
            },
            "Vqa": {"Type": "AWS::SageMaker::Endpoint", "Properties": {}},
            "Small": {
                "Type": "AWS::SageMaker::EndpointConfig",
                "Properties": {
                    "ProductionVariants": [
                        {
                            "VariantName": "cpu",
                            "InstanceType": "ml.m5.large",
                            "InitialInstanceCount": 2,
                        },
                        {"VariantName": "sls", "ServerlessConfig": {"MaxConcurrency": 1}},
                    ]
                },
            },
        }
    }
    data = {"Resources": {"Key": {"Type": "AWS::KMS::Key"}, "B": {"Type": "AWS::S3::Bucket"}}}
    acknowledged = {"Fn/TracingPolicy": {"AwsSolutions::AwsSolutions-IAM5[Resource::*]": "why"}}
    assembly = _write_assembly(tmp_path, {"a-data": data, "a-hosting": hosting}, acknowledged)
    text = render(assembly)
    assert f"Synthesized 2 stack(s) into {tmp_path}/" in text
    assert "  a-data: 2 resources (a-data.json)" in text
    assert "  a-hosting: 3 resources (a-hosting.json)" in text
    assert "        2  AWS::SageMaker::EndpointConfig" in text
    assert "a-hosting/VqaConfig [AllTraffic]: 1 x ml.g5.2xlarge (GPU/accelerator)" in text
    assert "a-hosting/Small [cpu]: 2 x ml.m5.large (CPU)" in text
    assert "a-hosting/Small [sls]: 0 x serverless (CPU)" in text
    assert "cdk-nag acknowledgments, each with its reason: 2" in text
    assert "  AwsSolutions-IAM5[Resource::*] on /a-data/Fn/TracingPolicy: why" in text


@pytest.mark.infra
def test_the_shipped_config_runs_no_endpoint(dev_app: SynthesizedApp) -> None:
    # vqa.hosting.model_data_url is null until a model has been trained
    text = render(dev_app.assembly_dir)
    assert "Synthesized 6 stack(s)" in text
    for stack in ("data", "training", "hosting", "bedrock", "api", "catalog"):
        assert f"atelier-dev-{stack}:" in text
    assert "SageMaker endpoints that would run: none in this assembly" in text
    # No VQA model hosted: the shipped stage reads attributes with the vision model (the API,
    # upload and catalog functions).
    (line,) = [line for line in text.splitlines() if line.startswith("Attribute source:")]
    assert line.startswith(
        "Attribute source: vision-llm: global.anthropic.claude-sonnet-4-6 (json_schema), in "
    )
    # tests/infra/test_nag.py reviews each one
    count = len(EXPECTED_APP_ACKNOWLEDGMENTS)
    assert f"cdk-nag acknowledgments, each with its reason: {count}" in text
    # tests/infra/test_encryption_keys.py reviews the Lambda ones
    assert "checkov skips, each with its reason:" in text
    assert "  CKV_AWS_18 on 1 resource(s): This is the access-log bucket itself" in text


def test_names_each_attribute_source_and_the_functions_that_use_it(tmp_path: Path) -> None:
    def function(variables: dict[str, str]) -> dict[str, object]:
        return {
            "Type": "AWS::Lambda::Function",
            "Properties": {"Environment": {"Variables": variables}},
        }

    endpoint = {
        "ATTRIBUTE_SOURCE": "endpoint",
        "DESCRIPTIONS_SETTINGS": json.dumps({"endpointName": "shop-vqa"}),
    }
    vision = {
        "ATTRIBUTE_SOURCE": "vision-llm",
        "ATTRIBUTE_MODEL_ID": "global.anthropic.claude-sonnet-4-6",
        "ATTRIBUTE_STRUCTURED_OUTPUT": "json_schema",
    }
    api = {"Resources": {"Api": function(endpoint), "Uploads": function(endpoint)}}
    catalog = {"Resources": {"Online": function(vision), "Other": function({"X": "1"})}}
    text = render(_write_assembly(tmp_path, {"a-api": api, "a-catalog": catalog}))
    assert "Attribute source: endpoint: shop-vqa, in 2 function(s)" in text
    assert (
        "Attribute source: vision-llm: global.anthropic.claude-sonnet-4-6 (json_schema), "
        "in 1 function(s)"
    ) in text


def test_lists_checkov_skips_with_their_reasons_and_the_gates_figure(tmp_path: Path) -> None:
    reason = "The functions reach only AWS service APIs; there is no private network to reach."
    skip = {"checkov": {"skip": [{"id": "CKV_AWS_117", "comment": reason}]}}
    function = {"Type": "AWS::Lambda::Function", "Properties": {}, "Metadata": skip}
    api = {"Resources": {"Fn": function, "Other": function, "Queue": {"Type": "AWS::SQS::Queue"}}}
    assembly = _write_assembly(tmp_path, {"a-api": api})
    text = render(assembly)
    assert "checkov: not run on this assembly (`make synth` runs it)" in text
    assert "checkov skips, each with its reason: 2 on 2 resource(s)" in text
    assert f"  CKV_AWS_117 on 2 resource(s): {reason}" in text
    assert "      a-api/Fn, a-api/Other" in text

    # What infra.checkov_gate leaves beside the templates.
    skipped = {
        "check_id": "CKV_AWS_117",
        "check_name": "Ensure that AWS Lambda function is configured inside a VPC",
        "file_path": "/a-api.json",
        "check_result": {"result": "SKIPPED", "suppress_comment": reason},
    }
    results = {
        "passed_checks": [{"check_id": "CKV_AWS_27"}] * 3,
        "failed_checks": [],
        "skipped_checks": [
            {**skipped, "resource": "AWS::Lambda::Function.Fn"},
            {**skipped, "resource": "AWS::Lambda::Function.Other"},
        ],
        "parsing_errors": [],
    }
    report = {"check_type": "cloudformation", "results": results}
    (assembly / "checkov.json").write_text(json.dumps(report))
    assert "checkov: 3 passed, 0 failed without a reason, 2 skipped with a reason" in render(
        assembly
    )


def test_missing_assembly_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "nowhere")]) == 1
    assert "no cloud assembly at" in capsys.readouterr().err
