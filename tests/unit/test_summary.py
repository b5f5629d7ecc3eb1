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
    # tests/infra/test_nag.py reviews each one
    count = len(EXPECTED_APP_ACKNOWLEDGMENTS)
    assert f"cdk-nag acknowledgments, each with its reason: {count}" in text


def test_missing_assembly_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "nowhere")]) == 1
    assert "no cloud assembly at" in capsys.readouterr().err
