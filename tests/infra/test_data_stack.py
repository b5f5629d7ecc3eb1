"""The Data stack's security properties, asserted on the synthesized templates."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from infra.stacks.data import PUBLISHED_NAMES, TABLE_SCHEMA
from tests.support import SynthesizedApp

pytestmark = pytest.mark.infra

DATA_BUCKETS = ("Uploads", "Datasets", "Models", "Results")


def _resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def _bucket(template: dict[str, Any], name: str) -> tuple[str, dict[str, Any]]:
    matches = [
        (logical_id, resource)
        for logical_id, resource in _resources(template, "AWS::S3::Bucket").items()
        if logical_id.startswith(name)
    ]
    assert len(matches) == 1, f"expected one bucket named {name}, got {matches}"
    return matches[0]


def _key_id(template: dict[str, Any]) -> str:
    (key_id,) = _resources(template, "AWS::KMS::Key")
    return key_id


def test_customer_managed_key_rotates(dev_app: SynthesizedApp) -> None:
    template = Template.from_json(dev_app.template("-data"))
    template.resource_count_is("AWS::KMS::Key", 1)
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    template.has_resource_properties("AWS::KMS::Alias", {"AliasName": "alias/atelier-dev-data"})


def test_every_bucket_blocks_public_access_and_requires_tls(dev_app: SynthesizedApp) -> None:
    template = dev_app.template("-data")
    buckets = _resources(template, "AWS::S3::Bucket")
    assert len(buckets) == 5  # uploads, datasets, models, results, access logs
    policies = {
        policy["Properties"]["Bucket"]["Ref"]: policy["Properties"]["PolicyDocument"]["Statement"]
        for policy in _resources(template, "AWS::S3::BucketPolicy").values()
    }
    for logical_id, bucket in buckets.items():
        properties = bucket["Properties"]
        assert properties["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, logical_id
        assert properties["VersioningConfiguration"] == {"Status": "Enabled"}, logical_id
        assert properties["OwnershipControls"]["Rules"] == [
            {"ObjectOwnership": "BucketOwnerEnforced"}
        ]
        denies = [s for s in policies[logical_id] if s["Effect"] == "Deny"]
        assert {"Bool": {"aws:SecureTransport": "false"}} in [s["Condition"] for s in denies]
        assert {"NumericLessThan": {"s3:TlsVersion": 1.2}} in [s["Condition"] for s in denies]


@pytest.mark.parametrize("name", DATA_BUCKETS)
def test_data_buckets_use_the_customer_key_and_log_access(
    dev_app: SynthesizedApp, name: str
) -> None:
    template = dev_app.template("-data")
    _, bucket = _bucket(template, name)
    access_logs_id, _ = _bucket(template, "AccessLogs")
    properties = bucket["Properties"]
    (rule,) = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": {"Fn::GetAtt": [_key_id(template), "Arn"]},
    }
    assert rule["BucketKeyEnabled"] is True
    assert properties["LoggingConfiguration"] == {
        "DestinationBucketName": {"Ref": access_logs_id},
        "LogFilePrefix": f"{name.lower()}/",
    }


@pytest.mark.parametrize("name", DATA_BUCKETS)
def test_data_buckets_expire_only_scratch_data(dev_app: SynthesizedApp, name: str) -> None:
    _, bucket = _bucket(dev_app.template("-data"), name)
    rules = {rule["Id"]: rule for rule in bucket["Properties"]["LifecycleConfiguration"]["Rules"]}
    assert rules["abort-incomplete-multipart-uploads"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 3
    }
    assert rules["expire-noncurrent-versions"]["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": 30
    }
    expiring = {
        rule["Prefix"]: rule["ExpirationInDays"]
        for rule in rules.values()
        if "ExpirationInDays" in rule
    }
    # Only the configured temporary prefixes ever expire: customer data has no expiry rule.
    assert expiring == {"tmp/": 7, "staging/": 7}
    for rule in rules.values():
        if "Prefix" in rule:  # and their old versions do not linger for the versioning window
            assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}
    assert all(rule["Status"] == "Enabled" for rule in rules.values())


def test_access_log_bucket_is_sse_s3_and_expires_logs(prod_app: SynthesizedApp) -> None:
    # S3 cannot deliver server access logs into an SSE-KMS bucket.
    _, bucket = _bucket(prod_app.template("-data"), "AccessLogs")
    properties = bucket["Properties"]
    (rule,) = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    rules = {r["Id"]: r for r in properties["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-access-logs"]["ExpirationInDays"] == 365


def test_products_table_is_on_demand_recoverable_and_encrypted(dev_app: SynthesizedApp) -> None:
    template = Template.from_json(dev_app.template("-data"))
    template.resource_count_is("AWS::DynamoDB::Table", 1)
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [
                {"AttributeName": TABLE_SCHEMA.partition_key, "KeyType": "HASH"},
                {"AttributeName": TABLE_SCHEMA.sort_key, "KeyType": "RANGE"},
            ],
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "SSESpecification": {
                "SSEEnabled": True,
                "SSEType": "KMS",
                "KMSMasterKeyId": {"Fn::GetAtt": [_key_id(dev_app.template("-data")), "Arn"]},
            },
            "TimeToLiveSpecification": {
                "AttributeName": TABLE_SCHEMA.time_to_live,
                "Enabled": True,
            },
        },
    )


def test_dev_is_removable(dev_app: SynthesizedApp) -> None:
    template = dev_app.template("-data")
    for resource_type in ("AWS::S3::Bucket", "AWS::DynamoDB::Table", "AWS::KMS::Key"):
        for logical_id, resource in _resources(template, resource_type).items():
            assert resource["DeletionPolicy"] == "Delete", logical_id
    (table,) = _resources(template, "AWS::DynamoDB::Table").values()
    assert table["Properties"].get("DeletionProtectionEnabled") is False


def test_prod_retains_data_and_protects_the_table(prod_app: SynthesizedApp) -> None:
    template = prod_app.template("-data")
    for resource_type in ("AWS::S3::Bucket", "AWS::DynamoDB::Table", "AWS::KMS::Key"):
        for logical_id, resource in _resources(template, resource_type).items():
            assert resource["DeletionPolicy"] == "Retain", logical_id
            assert resource["UpdateReplacePolicy"] == "Retain", logical_id
    (table,) = _resources(template, "AWS::DynamoDB::Table").values()
    assert table["Properties"]["DeletionProtectionEnabled"] is True


@pytest.mark.parametrize("name", PUBLISHED_NAMES)
def test_names_are_published_as_ssm_parameters_and_outputs(
    dev_app: SynthesizedApp, name: str
) -> None:
    template = Template.from_json(dev_app.template("-data"))
    template.has_resource_properties(
        "AWS::SSM::Parameter",
        {"Name": f"/atelier/dev/data/{name}", "Type": "String", "Value": Match.any_value()},
    )
    output_id = "".join(part.capitalize() for part in name.split("-"))
    template.has_output(
        output_id, {"Description": f"Also in SSM parameter /atelier/dev/data/{name}"}
    )


@pytest.mark.parametrize(("stage", "protected"), [("dev", False), ("prod", True)])
def test_stacks_are_environment_agnostic_tagged_and_protected_in_prod(
    synthesized_apps: dict[str, SynthesizedApp], stage: str, protected: bool
) -> None:
    app = synthesized_apps[stage]
    manifest = json.loads((app.assembly_dir / "manifest.json").read_text())
    stack = manifest["artifacts"][f"atelier-{stage}-data"]
    assert stack["environment"] == "aws://unknown-account/unknown-region"
    assert stack["properties"]["tags"] == {"atelier:stage": stage, "project": "atelier"}
    assert stack["properties"]["terminationProtection"] is protected
