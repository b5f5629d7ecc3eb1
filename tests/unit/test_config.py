"""Stage config: the real cdk.json parses, and every bad value fails with one clear line."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest

from infra.config import ConfigError, load_stage_config
from infra.models import VQA
from tests.support import ROOT, cdk_json_context


@pytest.fixture
def context() -> dict[str, Any]:
    return copy.deepcopy(cdk_json_context())


def _defaults(context: dict[str, Any]) -> dict[str, Any]:
    defaults: dict[str, Any] = context["atelier"]["defaults"]
    return defaults


def _error(context: dict[str, Any], stage: str | None = "dev") -> str:
    with pytest.raises(ConfigError) as caught:
        load_stage_config(context, stage)
    message = str(caught.value)
    assert "\n" not in message, "config errors must fit on one line"
    return message


def test_dev_stage_destroys_and_prod_retains(context: dict[str, Any]) -> None:
    # Given the shipped cdk.json, When both stages load
    dev = load_stage_config(context, "dev")
    prod = load_stage_config(context, "prod")
    # Then dev tears down and prod keeps data, each with its own retention
    assert (dev.removal_policy, prod.removal_policy) == ("destroy", "retain")
    assert (dev.log_retention_days, prod.log_retention_days) == (30, 365)
    assert not dev.is_production_like
    assert prod.is_production_like
    # And prod inherits the defaults it does not override
    assert prod.lambdas == dev.lambdas
    assert prod.data.temporary_prefixes == dev.data.temporary_prefixes
    assert prod.data.access_log_expiration_days == 365


def test_environment_agnostic_by_default(context: dict[str, Any]) -> None:
    config = load_stage_config(context, "dev")
    assert config.account is None
    assert config.region is None


def test_default_stage_applies_without_stage_flag(context: dict[str, Any]) -> None:
    context["atelier"]["default_stage"] = "prod"
    assert load_stage_config(context, None).stage == "prod"


def test_names_derive_from_prefix_and_stage(context: dict[str, Any]) -> None:
    config = load_stage_config(context, "prod")
    assert config.resource_name("data") == "atelier-prod-data"
    assert config.ssm_prefix == "/atelier/prod"


def test_unknown_stage_lists_the_allowed_stages(context: dict[str, Any]) -> None:
    message = _error(context, "staging")
    assert message == "stage = 'staging' is not allowed; allowed values: dev, prod"


def test_wrong_removal_policy_names_key_and_allowed_values(context: dict[str, Any]) -> None:
    context["atelier"]["stages"]["prod"]["removal_policy"] = "delete"
    message = _error(context, "prod")
    assert message == (
        "stage 'prod': removal_policy = 'delete' is not allowed; allowed values: destroy, retain"
    )


def test_missing_key_is_named(context: dict[str, Any]) -> None:
    del _defaults(context)["name_prefix"]
    message = _error(context)
    assert message.startswith("stage 'dev': name_prefix is missing; expected 3-20 lowercase")


def test_missing_nested_key_is_named_with_its_path(context: dict[str, Any]) -> None:
    del _defaults(context)["lambdas"]["powertools_layer_version"]
    message = _error(context)
    assert message == (
        "stage 'dev': lambdas.powertools_layer_version is missing; "
        "expected a whole number from 1 to 10000"
    )


def test_typo_in_a_key_is_rejected_not_ignored(context: dict[str, Any]) -> None:
    context["atelier"]["stages"]["dev"]["log_retension_days"] = 7
    message = _error(context)
    assert message.startswith("stage 'dev': log_retension_days is not a known key; allowed keys:")
    assert "log_retention_days" in message


def test_log_retention_must_be_a_cloudwatch_value(context: dict[str, Any]) -> None:
    context["atelier"]["stages"]["dev"]["log_retention_days"] = 10
    message = _error(context)
    assert message.startswith(
        "stage 'dev': log_retention_days = 10 is not allowed; allowed values: 1, 3,"
    )


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("data", "abort_incomplete_multipart_upload_days", 0, "from 1 to 30"),
        ("data", "temporary_object_expiration_days", True, "whole number"),
        ("data", "temporary_prefixes", ["/tmp"], "temporary_prefixes[0] = '/tmp'"),
        ("data", "temporary_prefixes", [], "list of S3 prefixes"),
        ("lambdas", "architecture", "x86", "allowed values: x86_64, arm64"),
        ("lambdas", "runtime", "python3.9", "allowed values: python3.12, python3.13, python3.14"),
        ("lambdas", "log_level", "verbose", "allowed values: DEBUG, INFO, WARN, ERROR"),
    ],
)
def test_nested_values_are_validated(
    context: dict[str, Any], section: str, key: str, value: Any, expected: str
) -> None:
    context["atelier"]["stages"]["dev"][section] = {key: value}
    message = _error(context)
    assert message.startswith(f"stage 'dev': {section}.{key}")
    assert expected in message


def test_account_and_region_go_together(context: dict[str, Any]) -> None:
    context["atelier"]["stages"]["dev"]["account"] = "123456789012"
    assert "account and region must be set together" in _error(context)
    context["atelier"]["stages"]["dev"]["region"] = "eu-west-1"
    config = load_stage_config(context, "dev")
    assert (config.account, config.region) == ("123456789012", "eu-west-1")


@pytest.mark.parametrize(
    ("key", "value"),
    [("account", "12345"), ("region", "Europe"), ("name_prefix", "Atelier_Prod")],
)
def test_identifiers_are_checked(context: dict[str, Any], key: str, value: str) -> None:
    context["atelier"]["stages"]["dev"][key] = value
    assert f"{key} = '{value}' is not valid" in _error(context)


def test_reserved_tag_names_are_rejected(context: dict[str, Any]) -> None:
    context["atelier"]["stages"]["dev"]["tags"] = {"aws:owner": "me"}
    assert "tags.aws:owner is not a valid tag name" in _error(context)


def test_missing_atelier_context_is_reported() -> None:
    with pytest.raises(ConfigError, match=r"context key 'atelier' is missing from cdk\.json"):
        load_stage_config({}, None)


@pytest.mark.infra
def test_synth_with_a_bad_stage_prints_one_line_and_fails() -> None:
    # Given the CDK CLI's way of passing context (CDK_CONTEXT_JSON), with a stage that is not there
    context = {**cdk_json_context(), "stage": "qa"}
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": "/nonexistent"}
    # When the app runs as `cdk synth` would run it
    result = subprocess.run(
        [sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    # Then it exits non-zero with exactly one line naming the key and the allowed values
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("Config error")]
    assert lines == ["Config error: stage = 'qa' is not allowed; allowed values: dev, prod"]
    assert "Traceback" not in result.stderr


def test_stage_tags_merge_with_default_tags(context: dict[str, Any]) -> None:
    context["atelier"]["stages"]["prod"]["tags"] = {"owner": "platform"}
    config = load_stage_config(context, "prod")
    assert config.tags == {"project": "atelier", "owner": "platform"}


def test_default_stage_is_checked_even_when_a_stage_is_given(context: dict[str, Any]) -> None:
    context["atelier"]["default_stage"] = "nope"
    assert (
        _error(context, "dev") == "default_stage = 'nope' is not allowed; allowed values: dev, prod"
    )


@pytest.mark.parametrize("stage", ["dev\nprod", "dev' ; rm -rf /"])
def test_hostile_values_stay_on_one_line(context: dict[str, Any], stage: str) -> None:
    # _error asserts the message has no newline; repr quoting keeps it readable.
    assert _error(context, stage).startswith("stage = ")


def test_hostile_key_names_stay_on_one_line(context: dict[str, Any]) -> None:
    context["atelier"]["stages"]["dev"]["tags"] = {"a\nb": "x"}
    assert "tags.'a\\nb' is not a valid tag name" in _error(context)


def test_only_commercial_regions_are_accepted(context: dict[str, Any]) -> None:
    # The public Powertools layer ARN differs in GovCloud and China.
    context["atelier"]["stages"]["dev"].update(account="123456789012", region="us-gov-west-1")
    assert "region = 'us-gov-west-1' is not valid" in _error(context)


def test_a_non_object_context_is_reported() -> None:
    with pytest.raises(ConfigError, match=r"^the 'atelier' context must be an object, got 'dev'$"):
        load_stage_config({"atelier": "dev"}, None)


def test_description_defaults_follow_the_spec(context: dict[str, Any]) -> None:
    config = load_stage_config(context, "dev")

    # An Active Claude through the global cross-region profile (checked 2026-12-07).
    assert config.descriptions.model_id == "global.anthropic.claude-sonnet-4-6"
    assert config.descriptions.structured_output == "json_schema"
    assert config.descriptions.temperature == pytest.approx(0.1)
    assert len(config.descriptions.categories["default"]) == 8
    assert VQA.endpoint_name(config) == "atelier-dev-vqa"
    assert config.api.auth == "iam"
    assert config.api.cors_allowed_origins == ()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"default_languages": ["xx"]}, "default_languages names 'xx', which is not in"),
        ({"categories": {"default": []}}, "categories.default = [] is not valid"),
        ({"categories": {"default": ["fabric", "weight"]}}, "asks 'weight', which has no question"),
        ({"questions": {"Fabric!": "What is it made of?"}}, "is not a valid attribute name"),
        ({"temperature": True}, "temperature = True is not valid"),
        ({"temperature": 1.5}, "expected a number from 0.0 to 1.0"),
        ({"model_id": "claude please"}, "model_id = 'claude please' is not valid"),
        ({"structured_output": "xml"}, "allowed values: auto, tool, json_schema"),
        (
            {"model_id": "amazon.nova-pro-v1:0", "structured_output": "tool"},
            "structured_output is 'tool', which means forced tool use for amazon.nova-pro-v1:0",
        ),
        ({"image": {"max_bytes": 8_000_000}}, "image.max_bytes = 8000000 is not valid"),
        ({"image": {"min_side": 2000, "max_side": 1000}}, "image.min_side = 2000 is larger than"),
        ({"worker_max_concurrency": 1}, "from 2 to 1000"),
        ({"api_timeout_seconds": 60}, "from 5 to 29"),
    ],
)
def test_description_settings_are_validated(
    context: dict[str, Any], overrides: dict[str, Any], expected: str
) -> None:
    context["atelier"]["stages"]["dev"]["descriptions"] = overrides

    assert expected in _error(context)


def test_inference_profiles_and_their_arns_are_accepted_as_model_ids(
    context: dict[str, Any],
) -> None:
    for model_id in (
        "anthropic.claude-sonnet-4-6",
        "global.anthropic.claude-sonnet-4-6",
        "jp.anthropic.claude-sonnet-4-6",
        "apac.anthropic.claude-sonnet-4-6",
        "eu.anthropic.claude-3-5-sonnet-20240620-v1:0",
        "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.anthropic.claude-3-haiku-20240307-v1:0",
        "arn:aws:bedrock:eu-west-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
    ):
        context["atelier"]["stages"]["dev"]["descriptions"] = {"model_id": model_id}
        assert load_stage_config(context, "dev").descriptions.model_id == model_id


@pytest.mark.parametrize(
    ("model_id", "setting", "mode"),
    [
        ("global.anthropic.claude-sonnet-4-6", "auto", "json_schema"),
        ("anthropic.claude-sonnet-4-6", "auto", "json_schema"),
        ("eu.anthropic.claude-sonnet-4-5-20250929-v1:0", "auto", "json_schema"),
        ("jp.anthropic.claude-haiku-4-5-20251001-v1:0", "auto", "json_schema"),
        ("us.anthropic.claude-sonnet-5-5", "auto", "json_schema"),
        ("apac.anthropic.claude-3-7-sonnet-20250219-v1:0", "auto", "tool"),
        ("anthropic.claude-sonnet-4-20250514-v1:0", "auto", "tool"),
        ("anthropic.claude-opus-4-1-20250805-v1:0", "auto", "tool"),
        ("amazon.nova-pro-v1:0", "auto", "json_schema"),
        ("global.anthropic.claude-sonnet-4-6", "tool", "tool"),
        ("anthropic.claude-3-5-sonnet-20240620-v1:0", "json_schema", "json_schema"),
        (
            "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/global.anthropic.claude-sonnet-4-6",
            "auto",
            "json_schema",
        ),
    ],
)
def test_structured_output_auto_follows_the_model_family(
    context: dict[str, Any], model_id: str, setting: str, mode: str
) -> None:
    context["atelier"]["stages"]["dev"]["descriptions"] = {
        "model_id": model_id,
        "structured_output": setting,
    }

    descriptions = load_stage_config(context, "dev").descriptions
    assert (descriptions.model_id, descriptions.structured_output) == (model_id, mode)


def test_cognito_auth_needs_a_user_pool(context: dict[str, Any]) -> None:
    context["atelier"]["stages"]["dev"]["api"] = {"auth": "cognito"}

    assert "cognito_user_pool_arn is missing" in _error(context)


def test_vqa_defaults_follow_the_spec(context: dict[str, Any]) -> None:
    config = load_stage_config(context, "dev")
    training, hosting = config.vqa.training, config.vqa.hosting

    assert training.base_model == "Salesforce/blip2-flan-t5-xl"
    assert training.instance_type == hosting.instance_type == "ml.g5.2xlarge"
    hyperparameters = training.hyperparameters
    assert (hyperparameters.lora_r, hyperparameters.lora_alpha) == (8, 32)
    assert hyperparameters.lora_dropout == pytest.approx(0.05)
    assert hyperparameters.lora_target_modules == "q,v"
    assert hyperparameters.epochs == 10
    assert hyperparameters.as_strings()["learning_rate"] == "0.0001"
    # No model configured: no endpoint, and none bills.
    assert hosting.model_data_url is None
    assert VQA.model_data_parameter(config) == "/atelier/dev/vqa/model-data-url"


@pytest.mark.parametrize(
    ("section", "overrides", "expected"),
    [
        ("training", {"instance_type": "g5.2xlarge"}, "training.instance_type = 'g5.2xlarge'"),
        ("training", {"instance_count": 0}, "training.instance_count = 0 is not valid"),
        (
            "training",
            {"instance_count": 2},
            "training.instance_count = 2 is not valid; train.py trains on one instance; "
            "multi-instance training is not implemented",
        ),
        ("training", {"instance_count": True}, "training.instance_count = True is not valid"),
        ("training", {"use_spot": "yes"}, "training.use_spot = 'yes' is not valid; expected true"),
        (
            "training",
            {"use_spot": True, "max_runtime_hours": 24, "max_wait_hours": 12},
            "training.max_wait_hours = 12 is less than vqa.training.max_runtime_hours = 24",
        ),
        ("training", {"max_runtime_hours": 700}, "from 1 to 672"),
        ("training", {"base_model": "blip2"}, "training.base_model = 'blip2' is not valid"),
        ("training", {"image_uri": "python:3.12"}, "training.image_uri = 'python:3.12'"),
        ("training", {"hyperparameters": {"epoch": 3}}, "hyperparameters.epoch is not a known"),
        ("training", {"hyperparameters": {"precision": "fp16"}}, "allowed values: auto, fp32"),
        ("training", {"hyperparameters": {"learning_rate": 0}}, "learning_rate = 0 is not valid"),
        ("training", {"hyperparameters": {"lora_dropout": 1.0}}, "lora_dropout = 1.0"),
        ("training", {"hyperparameters": {"lora_target_modules": "q, v"}}, "'q, v' is not valid"),
        ("hosting", {"model_data_url": "s3://bucket/model.zip"}, "model_data_url = 's3://bucket"),
        ("hosting", {"model_data_url": "s3://bucket/models/*"}, "is not valid; expected an S3"),
        ("hosting", {"model_data_url": "https://x/model.tar.gz"}, "is not valid"),
        ("hosting", {"instance_type": "ml.g5"}, "hosting.instance_type = 'ml.g5' is not valid"),
        ("hosting", {"min_instances": 0}, "hosting.min_instances = 0 is not valid"),
        (
            "hosting",
            {"min_instances": 3, "max_instances": 2},
            "hosting.min_instances = 3 is larger than vqa.hosting.max_instances = 2",
        ),
        ("hosting", {"startup_timeout_seconds": 30}, "from 60 to 3600"),
        ("hosting", {"latency_alarm_p90_ms": 0}, "latency_alarm_p90_ms = 0 is not valid"),
        ("hosting", {"target_invocations_per_instance": True}, "whole number"),
    ],
)
def test_vqa_settings_are_validated(
    context: dict[str, Any], section: str, overrides: dict[str, Any], expected: str
) -> None:
    context["atelier"]["stages"]["dev"]["vqa"] = {section: overrides}

    message = _error(context)

    assert message.startswith(f"stage 'dev': vqa.{section}."), message
    assert expected in message


def test_vqa_hyperparameters_must_all_be_given(context: dict[str, Any]) -> None:
    del _defaults(context)["vqa"]["training"]["hyperparameters"]["seed"]

    assert _error(context) == (
        "stage 'dev': vqa.training.hyperparameters.seed is missing; "
        "expected a whole number from 0 to 4294967295"
    )


def test_a_spot_wait_shorter_than_the_run_is_fine_without_spot(context: dict[str, Any]) -> None:
    context["atelier"]["stages"]["dev"]["vqa"] = {
        "training": {"use_spot": False, "max_runtime_hours": 24, "max_wait_hours": 1}
    }
    assert load_stage_config(context, "dev").vqa.training.max_wait_hours == 1


def test_a_model_archive_and_an_image_can_be_configured(context: dict[str, Any]) -> None:
    url = "s3://atelier-dev-data-models1234/vqa/training/atelier-dev-vqa-1/output/model.tar.gz"
    image = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/team/vqa:2026-08"
    context["atelier"]["stages"]["dev"]["vqa"] = {
        "hosting": {"model_data_url": url, "image_uri": image}
    }
    hosting = load_stage_config(context, "dev").vqa.hosting
    assert (hosting.model_data_url, hosting.image_uri) == (url, image)


# ---------------------------------------------------------------------------------------------
# catalog (describe-catalog)
# ---------------------------------------------------------------------------------------------


def test_catalog_defaults_follow_the_services_limits(context: dict[str, Any]) -> None:
    catalog = load_stage_config(context, "dev").catalog
    # Batch Transform like the VQA endpoint, SageMaker's default 6 MB payload.
    assert catalog.transform.instance_type == "ml.g5.2xlarge"
    assert (catalog.transform.max_payload_mb, catalog.transform.max_concurrent_transforms) == (6, 1)
    # Bedrock batch inference quotas (defaults): 100 to 50,000 records, 1 GB a file, 5 GB a job.
    bedrock = catalog.bedrock
    assert (bedrock.min_records_per_job, bedrock.max_records_per_job) == (100, 50_000)
    assert (bedrock.max_file_mb, bedrock.max_job_mb) == (1024, 5120)
    assert bedrock.timeout_hours == 24
    assert catalog.online_threshold >= bedrock.min_records_per_job
    assert catalog.max_records_per_group <= bedrock.max_records_per_job


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"transform": {"max_payload_mb": 20, "max_concurrent_transforms": 6}},
            "catalog.transform.max_payload_mb = 20 times catalog.transform."
            "max_concurrent_transforms = 6 is 120 MB; Batch Transform allows at most 100 MB",
        ),
        ({"transform": {"max_payload_mb": 101}}, "expected a whole number from 1 to 100"),
        ({"transform": {"max_payload_mb": 0}}, "catalog.transform.max_payload_mb = 0"),
        ({"transform": {"invocation_max_retries": 4}}, "from 0 to 3"),
        ({"transform": {"invocation_timeout_seconds": 3601}}, "from 1 to 3600"),
        ({"transform": {"instance_type": "g5.2xlarge"}}, "a SageMaker instance type"),
        ({"transform": {"instancetype": "ml.g5.xlarge"}}, "is not a known key"),
        (
            {"max_records_per_group": 60_000},
            "catalog.max_records_per_group = 60000 is larger than "
            "catalog.bedrock.max_records_per_job = 50000",
        ),
        (
            {"online_threshold": 50},
            "catalog.online_threshold = 50 is smaller than catalog.bedrock.min_records_per_job",
        ),
        (
            {"max_records_per_group": 1500},
            "catalog.max_records_per_group = 1500 is smaller than 3 x catalog.records_per_part "
            "+ 2 x catalog.bedrock.min_records_per_job = 1700",
        ),
        ({"online_threshold": 501}, "from 0 to 500"),
        ({"records_per_part": 1001}, "from 1 to 1000"),
        ({"build_concurrency": 10_001}, "from 1 to 10000"),
        ({"bedrock": {"timeout_hours": 23}}, "from 24 to 168"),
        ({"bedrock": {"timeout_hours": 169}}, "from 24 to 168"),
        (
            {"bedrock": {"timeout_hours": 168, "poll_seconds": 60}, "max_run_hours": 200},
            "makes 10080 polls",
        ),
        (
            {"bedrock": {"min_records_per_job": 60_000}},
            "catalog.bedrock.min_records_per_job = 60000 is larger than",
        ),
        (
            {"bedrock": {"max_file_mb": 6000}},
            "catalog.bedrock.max_file_mb = 6000 is larger than catalog.bedrock.max_job_mb",
        ),
        (
            {"max_run_hours": 24},
            "catalog.max_run_hours = 24 is not more than catalog.bedrock.timeout_hours = 24",
        ),
        (
            {"transform": {"max_payload_mb": 5}},
            "catalog.transform.max_payload_mb = 5 cannot carry the largest image",
        ),
    ],
)
def test_catalog_settings_are_validated(
    context: dict[str, Any], overrides: dict[str, Any], expected: str
) -> None:
    context["atelier"]["stages"]["dev"]["catalog"] = overrides

    message = _error(context)

    assert message.startswith("stage 'dev': "), message
    assert expected in message


def test_smaller_images_fit_a_smaller_transform_payload(context: dict[str, Any]) -> None:
    context["atelier"]["stages"]["dev"]["catalog"] = {"transform": {"max_payload_mb": 2}}
    context["atelier"]["stages"]["dev"]["descriptions"] = {"image": {"max_bytes": 1_000_000}}
    assert load_stage_config(context, "dev").catalog.transform.max_payload_mb == 2


def test_catalog_job_names_fit_63_characters_for_every_prefix_and_stage(
    context: dict[str, Any],
) -> None:
    # The shipped stages get the readable name.
    assert load_stage_config(context, "prod").catalog_job_name_prefix == "atelier-prod-catalog"
    # The longest prefix (20) and stage (12) still fit the model, transform and Bedrock job names.
    _defaults(context)["name_prefix"] = "a" * 20
    context["atelier"]["stages"]["longeststage"] = {}
    for stage in ("dev", "longeststage"):
        prefix = load_stage_config(context, stage).catalog_job_name_prefix
        longest = f"{prefix}-20260101000000-0123abcd-g9999"
        assert len(longest) <= 63, longest
        assert re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", longest)
    assert load_stage_config(context, "dev").catalog_job_name_prefix == f"{'a' * 20}-dev-catalog"
