"""S3 buckets with the security and lifecycle baseline every Atelier bucket shares."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.checkov_skips import skip_check
from infra.config import DataConfig

# Every bucket: no public access, TLS 1.2 or later only, versioned, ACLs disabled.
_PRIVATE_TLS_VERSIONED: dict[str, Any] = {
    "block_public_access": s3.BlockPublicAccess.BLOCK_ALL,
    "enforce_ssl": True,
    "minimum_tls_version": 1.2,
    "versioned": True,
    "object_ownership": s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
}


def _common_lifecycle(data: DataConfig) -> list[s3.LifecycleRule]:
    return [
        s3.LifecycleRule(
            id="abort-incomplete-multipart-uploads",
            abort_incomplete_multipart_upload_after=Duration.days(
                data.abort_incomplete_multipart_upload_days
            ),
        ),
        # Versioning keeps overwritten and deleted objects recoverable, for a bounded time only.
        s3.LifecycleRule(
            id="expire-noncurrent-versions",
            noncurrent_version_expiration=Duration.days(data.noncurrent_version_expiration_days),
            expired_object_delete_marker=True,
        ),
    ]


def create_access_log_bucket(
    scope: Construct, construct_id: str, *, data: DataConfig, removal_policy: RemovalPolicy
) -> s3.Bucket:
    """The target of every bucket's server access logs.

    S3 server access logging cannot deliver to a bucket encrypted with SSE-KMS, so this one
    bucket uses SSE-S3; it holds request logs only, never customer content.
    """
    bucket = s3.Bucket(
        scope,
        construct_id,
        encryption=s3.BucketEncryption.S3_MANAGED,
        **_PRIVATE_TLS_VERSIONED,
        removal_policy=removal_policy,
        auto_delete_objects=False,
        lifecycle_rules=[
            *_common_lifecycle(data),
            s3.LifecycleRule(
                id="expire-access-logs",
                expiration=Duration.days(data.access_log_expiration_days),
            ),
        ],
    )
    skip_check(
        bucket,
        "CKV_AWS_18",
        "This is the access-log bucket itself: logging its requests into itself would log each "
        "log delivery again, and a second log bucket would only move the same question there.",
    )
    return bucket


class EncryptedBucket(s3.Bucket):
    """A private, KMS-encrypted, versioned, TLS-only bucket that logs every request.

    Objects under the configured temporary prefixes expire; nothing else is ever deleted by a
    lifecycle rule, because these buckets hold customers' images, datasets and models.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        key: kms.IKey,
        access_log_bucket: s3.IBucket,
        data: DataConfig,
        removal_policy: RemovalPolicy,
    ) -> None:
        temporary_rules = [
            s3.LifecycleRule(
                id=f"expire-temporary-{index}",
                prefix=prefix,
                expiration=Duration.days(data.temporary_object_expiration_days),
                # Versioning would otherwise keep expired scratch objects as old versions.
                noncurrent_version_expiration=Duration.days(1),
            )
            for index, prefix in enumerate(data.temporary_prefixes)
        ]
        super().__init__(
            scope,
            construct_id,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=key,
            # One data key per bucket instead of one KMS call per object: same protection,
            # a fraction of the KMS request cost on catalogs of millions of images.
            bucket_key_enabled=True,
            **_PRIVATE_TLS_VERSIONED,
            server_access_logs_bucket=access_log_bucket,
            server_access_logs_prefix=f"{construct_id.lower()}/",
            removal_policy=removal_policy,
            lifecycle_rules=[*_common_lifecycle(data), *temporary_rules],
        )


def list_prefix_statement(bucket: s3.IBucket, prefix: str) -> iam.PolicyStatement:
    """s3:ListBucket on `bucket`, for keys under `prefix` only."""
    return iam.PolicyStatement(
        actions=["s3:ListBucket"],
        resources=[bucket.bucket_arn],
        conditions={"StringLike": {"s3:prefix": [f"{prefix}*"]}},
    )


def read_prefix_statements(bucket: s3.IBucket, prefix: str) -> list[iam.PolicyStatement]:
    """List and read the objects under `prefix` of `bucket` (listing lets a missing object answer
    404 rather than 403)."""
    return [
        list_prefix_statement(bucket, prefix),
        iam.PolicyStatement(
            actions=["s3:GetObject"], resources=[bucket.arn_for_objects(f"{prefix}*")]
        ),
    ]
