"""What every SageMaker execution role needs besides its own data.

A training or transform job reads and writes S3 objects under the data key, pulls its container
image from the Deep Learning Containers registry and writes its logs: the same five statements for
every such role, scoped to the key, the image's repository and the job kind's log group. An
endpoint's model role pulls and logs the same way (`image_pull_statement`, `log_statements`), and
every role gets its ECR token and metrics namespace through `image_pull_auth_policy` and
`metrics_policy`.
"""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.nag import acknowledge


def job_container_statements(
    *, key_arn: str, region: str, repository_arn: str, log_group_arn: str
) -> list[iam.PolicyStatement]:
    """The data key through S3 and SageMaker, volume-encryption grants, the image, the logs."""
    return [
        # Objects are under the data key, through S3; SageMaker itself checks the key named for
        # the output.
        iam.PolicyStatement(
            actions=["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"],
            resources=[key_arn],
            conditions={
                "StringEquals": {
                    "kms:ViaService": [
                        f"s3.{region}.amazonaws.com",
                        f"sagemaker.{region}.amazonaws.com",
                    ]
                }
            },
        ),
        # Volume encryption on instance types with EBS storage: a grant to the AWS resource.
        iam.PolicyStatement(
            actions=["kms:CreateGrant"],
            resources=[key_arn],
            conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
        ),
        image_pull_statement(repository_arn),
        *log_statements(log_group_arn),
    ]


def image_pull_statement(repository_arn: str) -> iam.PolicyStatement:
    """Pull the container image's layers from its one repository."""
    return iam.PolicyStatement(
        actions=[
            "ecr:BatchCheckLayerAvailability",
            "ecr:BatchGetImage",
            "ecr:GetDownloadUrlForLayer",
        ],
        resources=[repository_arn],
    )


def log_statements(log_group_arn: str) -> list[iam.PolicyStatement]:
    """Create the one log group and write its streams (named by SageMaker, hence `:*`)."""
    return [
        iam.PolicyStatement(actions=["logs:CreateLogGroup"], resources=[log_group_arn]),
        iam.PolicyStatement(
            actions=["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
            resources=[f"{log_group_arn}:*"],
        ),
    ]


def metrics_policy(
    scope: Construct, construct_id: str, *, role: iam.IRole, namespace: str, kind: str
) -> iam.Policy:
    """cloudwatch:PutMetricData for the job's (or instance's) own namespace only: the action takes
    no resource ARN, so a condition on the namespace is what limits it."""
    policy = iam.Policy(
        scope,
        construct_id,
        roles=[role],
        statements=[
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": namespace}},
            )
        ],
    )
    acknowledge(
        policy,
        "AwsSolutions-IAM5[Resource::*]",
        "cloudwatch:PutMetricData supports no resource-level permissions; the statement is "
        f"limited to SageMaker's {kind} metrics namespace by condition.",
    )
    return policy


def image_pull_auth_policy(
    scope: Construct, construct_id: str, *, role: iam.IRole, repository: str
) -> iam.Policy:
    """ecr:GetAuthorizationToken in a policy of its own: the action supports no resource-level
    permissions, so the acknowledgment covers exactly it and a later wildcard elsewhere still
    fails synth. Pulls themselves stay limited to `repository` (the job's image)."""
    policy = iam.Policy(
        scope,
        construct_id,
        roles=[role],
        statements=[iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"])],
    )
    acknowledge(
        policy,
        "AwsSolutions-IAM5[Resource::*]",
        "ecr:GetAuthorizationToken supports no resource-level permissions; image pulls "
        f"themselves are limited to the one {repository} in the role's default policy.",
    )
    return policy
