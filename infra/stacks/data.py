"""The stateful stack: encryption key, buckets and the products table.

Everything a user would grieve to lose lives here, apart from compute, so `cdk destroy` of the
training, hosting or API stacks never touches data. In production-like stages (removal policy
`retain`) the key, buckets and table survive even a destroy of this stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.buckets import EncryptedBucket, create_access_log_bucket
from infra.constructs.encrypted_queue_target import eventbridge_queues_key_policy_statement
from infra.constructs.log_groups import logs_key_policy_statement, removal_policy_for
from infra.constructs.publishing import publish_names


@dataclass(frozen=True)
class TableSchema:
    """Attribute names of the products table, shared with the Lambda code through env vars."""

    partition_key: str = "pk"
    sort_key: str = "sk"
    time_to_live: str = "expiresAt"


TABLE_SCHEMA = TableSchema()

# Photos put under this prefix of the uploads bucket are described by the Api stack's worker.
UPLOADS_PREFIX = "incoming/"

# SSM parameter names under `/<name_prefix>/<stage>/data/`; other stacks and the CLI read these.
PUBLISHED_NAMES = (
    "kms-key-arn",
    "uploads-bucket",
    "datasets-bucket",
    "models-bucket",
    "results-bucket",
    "access-log-bucket",
    "table-name",
)


class DataStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: StageConfig, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        removal_policy = removal_policy_for(config)

        self.key = kms.Key(
            self,
            "DataKey",
            description=f"Atelier {config.stage}: encrypts uploads, datasets, models, results "
            "and the products table",
            enable_key_rotation=True,
            alias=f"alias/{config.resource_name('data')}",
            removal_policy=removal_policy,
            # A scheduled deletion can be cancelled; make the window the longest allowed.
            pending_window=Duration.days(30),
        )
        # Every log group of the stage is encrypted with this key (infra/constructs/log_groups.py).
        self.key.add_to_resource_policy(logs_key_policy_statement(config))
        # The Api stack's uploads queues are under this key and fed by an EventBridge rule.
        self.key.add_to_resource_policy(eventbridge_queues_key_policy_statement(config))

        self.access_log_bucket = create_access_log_bucket(
            self, "AccessLogs", data=config.data, removal_policy=removal_policy
        )

        def data_bucket(construct_id: str) -> s3.Bucket:
            return EncryptedBucket(
                self,
                construct_id,
                key=self.key,
                access_log_bucket=self.access_log_bucket,
                data=config.data,
                removal_policy=removal_policy,
            )

        # Customer photos arrive here; UPLOADS_PREFIX is what the description pipeline watches.
        self.uploads_bucket = data_bucket("Uploads")
        # S3 → EventBridge natively: `event_bridge_enabled=True` would do the same through a
        # custom-resource Lambda. The Api stack's rule picks the events it wants, so this stack
        # never depends on (or changes with) its consumers.
        uploads = self.uploads_bucket.node.default_child
        assert isinstance(uploads, s3.CfnBucket)
        uploads.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            event_bridge_configuration=s3.CfnBucket.EventBridgeConfigurationProperty(
                event_bridge_enabled=True
            )
        )
        # Training and customization datasets (question/answer rows, manifests, images).
        self.datasets_bucket = data_bucket("Datasets")
        # Model artifacts written by training jobs and read by endpoints.
        self.models_bucket = data_bucket("Models")
        # Descriptions as JSON and generated images.
        self.results_bucket = data_bucket("Results")

        self.table = dynamodb.Table(
            self,
            "Products",
            partition_key=dynamodb.Attribute(
                name=TABLE_SCHEMA.partition_key, type=dynamodb.AttributeType.STRING
            ),
            sort_key=dynamodb.Attribute(
                name=TABLE_SCHEMA.sort_key, type=dynamodb.AttributeType.STRING
            ),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self.key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute=TABLE_SCHEMA.time_to_live,
            deletion_protection=config.is_production_like,
            removal_policy=removal_policy,
        )

        publish_names(
            self,
            config=config,
            section="data",
            names=PUBLISHED_NAMES,
            values={
                "kms-key-arn": self.key.key_arn,
                "uploads-bucket": self.uploads_bucket.bucket_name,
                "datasets-bucket": self.datasets_bucket.bucket_name,
                "models-bucket": self.models_bucket.bucket_name,
                "results-bucket": self.results_bucket.bucket_name,
                "access-log-bucket": self.access_log_bucket.bucket_name,
                "table-name": self.table.table_name,
            },
        )
